"""The ``.crai`` accessor on xarray objects: the user-facing surface, nothing else.

Implementations are imported on first call, keeping ``import xcrai`` free of torch.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:  # annotations only: importing these would import torch
    from xcrai.model import CraiModel, Ensemble
    from xcrai.nn import Architecture
    from xcrai.train.losses import LossWeights


def _options(cls: type, arguments: dict[str, Any]) -> Any:
    """An options object (:mod:`xcrai.options`) from a method's arguments, by field name.

    The DataArray accessor's methods spell every option out, for ``help()`` and IDEs (the
    tests check that their signatures and the option fields agree); the Dataset
    accessor's take theirs from them (:func:`_verb_of`).
    """
    return cls(**{f.name: arguments[f.name] for f in fields(cls)})


def _verb_of(base: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A Dataset accessor's verb from the DataArray accessor's ``base``, its one definition:
    the signature is ``base``'s (every option, with its default), with the parameters the
    decorated method names itself (its data arguments: their types and defaults) in their
    place, and those ``base`` lacks after its first. A call is bound to that signature
    (defaults applied; an unknown keyword is a TypeError, as for any function) and handed
    to the method by keyword; ``help()`` and Sphinx show the whole signature."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        mine = inspect.signature(method)
        own = {n: p for n, p in mine.parameters.items() if p.kind is not p.VAR_KEYWORD}
        inherited = list(inspect.signature(base).parameters.values())
        params = [own.get(p.name, p) for p in inherited]
        added = [p for n, p in own.items() if n not in {q.name for q in inherited}]
        params[2:2] = added  # after self and the first data argument
        signature = mine.replace(parameters=params)

        @functools.wraps(method)
        def verb(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return method(**bound.arguments)

        verb.__signature__ = signature  # type: ignore[attr-defined]
        return verb

    return decorate


@xr.register_dataarray_accessor("crai")
class CraiDataArrayAccessor:
    """CRAI infilling for a DataArray: ``da.crai.infill(model)``."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def infill(
        self,
        model: Any,
        *,
        mask: Any = None,
        steady_mask: xr.DataArray | None = None,
        padding: str | None = None,
        time_context: tuple[int, int] | None = None,
        bounds: tuple[float | None, float | None] | None = None,
        unreachable: str = "crai",
        sigma: bool = False,
        members: str = "keep",
        return_output: bool = False,
        device: str = "auto",
        batch_size: int | None = None,
        tile_size: int | None = None,
        precision: str = "fp32",
        compile: bool = False,
        threads: int | str = "auto",
        progress: bool = True,
    ) -> xr.DataArray | xr.Dataset:
        """Fill the holes of this DataArray with a partial-convolution U-Net.

        Latitude, longitude and time are found from CF metadata (cf-xarray) or
        the usual names; dimensions may come in any order and extra ones
        (member, level, ...) are infilled field by field. Dask-backed input
        gives a lazy result; nothing is computed until asked for.

        The model sees the orientation it was trained in (xcrai models record
        it; CRAI checkpoints are assumed to be in CRAI's: latitude south to
        north, longitude ascending from the first cell east of 0 degrees, time
        ascending); the result comes back in the data's own order and
        coordinates. Non-monotonic coordinates are refused. Rotated grids
        (CORDEX's rlat/rlon with 2-D lat/lon) are infilled on their 1-D
        dimension coordinates. A model run on another grid size than its
        training grid warns.

        Parameters
        ----------
        model : str, path, CraiModel, Ensemble, or a list of these
            A CRAI checkpoint, an xcrai model file, or a loaded model. An
            :class:`~xcrai.Ensemble` (``xcrai.load_model(path, label="all")``: every
            label of a CRAI checkpoint) or a list of models infills once per member
            and stacks the results along a ``member`` dimension (coordinate
            ``member``, standard name ``realization``, and ``member_label``, each
            member's label or file name); reduce it with ``.mean("member")`` and
            ``.std("member")``. A model of several input variables (``inputs=`` of
            :func:`xcrai.load_model`, or ``fit`` on a Dataset) infills a Dataset.
        mask : DataArray or array, optional
            1 (or True) where valid, 0 where missing; broadcast against the data.
            A point is valid only where the mask allows it **and** the value is
            finite. Default: the non-NaN points. A DataArray is aligned by its
            labels: its latitude may run the other way, its longitude be rolled.
        steady_mask : DataArray, optional
            (lat, lon) on the data's grid, True (or 1) where a point is never valid
            (e.g. land in an SST field): left NaN and flagged -2 (``steady_mask``).
            Replaces the model's own, which ``fit`` stores for the points no training
            field observed (applied only on the model's training grid size; another
            size is refused unless this is given).
        padding : {"zeros", "global", "auto"}, optional
            Override the model's padding. "global" wraps longitude around (needs
            a uniform 360-degree longitude); "auto" picks it when the grid allows.
        time_context : (int, int), optional
            Override the model's (P, F): steps t-P .. t+F become input channels.
            Windows are clamped at the ends of the series, so every step is
            infilled.
        bounds : (float or None, float or None), optional
            Keep the output inside (lower, upper), None for an open side, e.g.
            ``(0, None)`` for precipitation; overrides the model's (``fit`` stores
            them), ``(None, None)`` removes them. As CRAI's ``--min-bounds`` and
            ``--max-bounds``: a sigmoid maps the network's output into a closed
            interval, an exponential onto a half-line. ``history`` names them.
        unreachable : {"crai", "poisson"}
            What holes beyond the network's reach hold (no window of the network saw
            a valid point near them; flagged -1). "crai": CRAI's fill value, the
            training mean, as CRAI leaves them (on fitbench it beats the Laplace fill
            there: benchmarks/README.md). "poisson": Laplace's equation solved from the
            values around them, the network's infill included (as
            :func:`xcrai.baselines.poisson_fill`; the bounds, if any, kept); ``history``
            says so. The raw network output keeps the fill value either way.
        sigma : bool
            Return a Dataset with ``<name>_sigma`` too: the standard deviation of
            each infilled value that a model trained with ``fit(...,
            uncertainty=True)`` gives (in the data's units; 0 at observed points; NaN
            where the value is NaN), named in ``<name>``'s ``ancillary_variables``. A
            model without it is refused. ``return_output=True`` includes it for a
            model that has it. With ``members="mean"``, the σ of an ensemble's
            mean: ``sqrt(mean(σ_i²) + var(x_i))`` over its members (their spread, and
            their own σ when they have one; NaN at holes beyond the network's reach
            when they have none, as no member infills those).
        members : {"keep", "mean"}
            For an ensemble (or a list of models): keep the members along a
            ``member`` dimension, or return their mean (observed points unchanged;
            the flag the lowest of the members'). "mean" with one model is refused.
        return_output : bool
            Return a Dataset with ``<name>`` (the infilled data), ``<name>_output``
            (the raw network output) and ``<name>_flag``, a CF flag variable (1
            observed, 0 infilled, -1 hole beyond the network's reach, -2 steady
            point when a steady mask applies) named in the data's
            ``ancillary_variables``; ``history`` is its global attribute.
            An unnamed DataArray is called ``infilled``.
        device : str
            "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        batch_size : int, optional
            Fields per forward pass; chosen from free memory when omitted.
        tile_size : int, optional
            Run fields in spatial tiles of about this many points a side, each
            with a halo as wide as the network's receptive field, so the result
            equals the untiled one. By default only fields too large for the
            device's memory are tiled.
        precision : {"fp32", "tf32", "bf16", "fp16"}
            "fp32" is IEEE float32 on every device, with the same numbers for any
            batch size and chunking. "tf32" lets CUDA convolutions use TF32;
            "bf16"/"fp16" run the convolutions in reduced precision (autocast).
            They are faster on GPUs and differ from fp32 by amounts the README
            gives; valid points are unchanged.
        compile : bool
            Run the network through ``torch.compile``, after building kernels at
            the first batch (cached on disk by PyTorch for later runs). For long
            runs; figures in ``benchmarks/README.md``.
        threads : int or "auto"
            CPU threads of the forward passes. "auto" takes the cores that other
            processes leave free when called (never more than torch's setting);
            results do not depend on it.
        progress : bool
            A progress bar of the fields infilled (tqdm's: a widget in Jupyter where
            ipywidgets can draw it, text otherwise, never a warning), shown when an
            eager call takes more than a second. Lazy input
            is infilled when computed, outside this call, and shows none here.

        Returns
        -------
        DataArray (or Dataset with ``return_output=True``)
            Same dims, coords, name and attrs (none of the input's under
            ``xr.set_options(keep_attrs=False)``); valid points are bitwise
            unchanged; ``history`` gains a line naming xcrai, the model and its
            sha256, the padding and the fraction of points infilled.

        Warns
        -----
        UserWarning
            When the model records a variable name or units that differ from the
            data's, or another grid size.
        UnreachableWarning
            Once per call, for eager input, when holes are beyond the network's
            reach or fields have no valid point. Lazy input is not counted (the
            flags hold them); decisions (device, batch size, tiling, padding) are
            logged to ``logging.getLogger("xcrai")``.

        Examples
        --------
        >>> import xarray as xr, xcrai
        >>> ds = xr.open_dataset(xcrai.data.hadcrut4_sample())
        >>> filled = ds.tas.crai.infill(xcrai.data.demo_model())
        >>> bool(filled.isnull().any())
        False
        """
        from xcrai.infill import infill_dataarray
        from xcrai.options import InfillOptions

        options = _options(InfillOptions, locals())
        return infill_dataarray(self._da, model, options, mask=mask, steady_mask=steady_mask)

    def plot(
        self,
        original: xr.DataArray | None = None,
        *,
        flags: xr.DataArray | None = None,
        time: Any = None,
        panels: Sequence[str] | None = None,
        ax: Any = None,
        projection: Any = None,
        cmap: str | None = None,
        robust_limit: float | None = None,
    ) -> Any:
        """Plot this (infilled) field beside ``original`` (holes grey) and the coverage.

        Only the time steps shown are computed. Needs matplotlib (``xcrai[plot]``).

        Parameters
        ----------
        original : DataArray, optional
            The field before infilling. Without it, the plot shows this field as
            infilled (and its coverage with ``flags``); "original" needs it.
        flags : DataArray, optional
            The result's flags (``<name>_flag``): the coverage panel then marks holes
            beyond the network's reach and steady points in colours of their own.
        time : label or list of labels, optional
            Time steps to show (the first, up to 6, by default).
        panels : sequence of {"original", "infilled", "coverage"}, optional
            What each row shows; by default every panel the fields given can draw.
        ax : matplotlib Axes or sequence of Axes, optional
            Draw into these (time steps times panels, row by row).
        projection : cartopy CRS or its name, optional
            Map projection with coastlines (needs cartopy; plain axes without it).
        cmap, robust_limit
            See :func:`xcrai.plot.plot_infilled`.

        Returns
        -------
        matplotlib.figure.Figure or None
            The new figure (not left open in pyplot), shown once in Jupyter whether
            assigned or not; None with ``ax``.

        Examples
        --------
        >>> filled.crai.plot(original=ds.tas, time="1877-09")  # doctest: +SKIP
        """
        from xcrai.plot import plot_infilled

        return plot_infilled(
            original, self._da, flags=flags, time=time, panels=panels, ax=ax,
            projection=projection, cmap=cmap, robust_limit=robust_limit,
        )  # fmt: skip

    def fit(
        self,
        masks: xr.DataArray,
        *,
        validation: float | xr.DataArray | None = 0.1,
        steady_mask: xr.DataArray | None = None,
        iterations: int = 10_000,
        batch_size: int = 16,
        lr: float = 1e-3,
        lr_schedule: str = "cosine",
        finetune_iterations: int = 0,
        lr_finetune: float = 5e-5,
        loss: dict[str, float] | LossWeights | None = None,
        architecture: dict[str, Any] | Architecture | None = None,
        network: str = "unet",
        padding: str = "auto",
        time_context: tuple[int, int] | None = None,
        normalize: bool = True,
        ensemble: int = 1,
        uncertainty: bool = False,
        bounds: tuple[float | None, float | None] | None = None,
        device: str = "auto",
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        resume: str | os.PathLike[str] | None = None,
        progress: bool = True,
        early_stopping: int | None = None,
        log_every: int | None = None,
        init: str | os.PathLike[str] | CraiModel = "kaiming",
        distributed: bool = False,
        augment: bool | str = "auto",
        mix: float = 1.0,
        first_guess: str | None = "auto",
        precision: str = "fp32",
        vgg_weights: str | os.PathLike[str] | None = None,
        deterministic: bool = True,
        threads: int | str = "auto",
    ) -> CraiModel | Ensemble:
        """Train a partial-convolution U-Net to infill fields like these.

        The DataArray holds complete training fields (time, lat, lon; extra
        dimensions are more samples). Each training sample pairs a field with a
        coverage pattern drawn at random (seeded) from ``masks``; the network sees
        the field where the mask is 1 and learns to fill the rest.

        Parameters
        ----------
        masks : DataArray
            Coverage patterns on the same grid: bool, 0/1, or a field whose NaNs
            mark missing points (e.g. real HadCRUT4 observations). Extra dimensions
            (time, ...) enumerate the patterns.
        validation : float, DataArray or None, default 0.1
            The last fraction of the time axis, or separate fields, held out;
            validation field k is paired with mask ``k % len(masks)``, so the
            validation loss is comparable between runs. Separate fields are put on
            the data's grid (latitude may run the other way) and must be complete
            where the data has values.
        steady_mask : DataArray, optional
            (lat, lon) on the data's grid, True (or 1) where a point is never valid
            (e.g. a land-sea mask). Added to the points that are NaN in every field;
            the network neither sees nor learns them, and the model stores them all
            (``model.config.steady_mask``) for ``infill`` to leave NaN.
        iterations : int, default 10_000
            Optimiser steps (over which the cosine ``lr_schedule`` falls to 0).
        batch_size : int, default 16
        lr : float, default 1e-3
            Adam learning rate: the start of the cosine ``lr_schedule``, or all of a
            constant one (CRAI's: a constant 2e-4).
        lr_schedule : {"cosine", "constant"}, default "cosine"
            The learning rate over ``iterations``: falling from ``lr`` to 0 along half
            a cosine period, or constant (CRAI's). A cosine run follows from its
            ``iterations``, so it resumes only to the same number; a constant one may
            also be continued further. On fitbench's 18 fields, the defaults (with
            ``mix``) beat CRAI's constant 2e-4 at every budget measured:
            ``benchmarks/README.md``.
        finetune_iterations : int, default 0
            Further steps at ``lr_finetune`` with the encoder's batch norm frozen,
            as in CRAI's fine-tuning phase.
        lr_finetune : float, default 5e-5
        loss : dict, optional
            Weights of the ``valid``, ``hole`` and ``tv`` (total variation) terms;
            default CRAI's ``{"valid": 1, "hole": 6, "tv": 0.1}`` (without its VGG
            terms). Terms left out of a dict weigh 0, so ``{"hole": 1}`` is CRAI's
            hole-only criterion; ``"perceptual"`` and ``"style"`` need ``vgg_weights``.
            The validation loss uses the valid, hole and tv terms.
        architecture : dict or a network configuration, optional
            The sizes ``{"n_filters": 18, "depth": 3, "normalization": "crai"}`` (the
            CRAI demo architecture, the default) of the ``network``, or a full
            configuration (:class:`xcrai.nn.UNetConfig`, :class:`xcrai.nn.CraiNetConfig`).
        network : {"unet", "convlstm", "trajgru", "attention"}, default "unet"
            The network to train, built from the ``architecture`` sizes
            (:data:`xcrai.nn.DESIGNS`): CRAI's U-Net (with several inputs, CRAI's
            channel-infusion network); the U-Net with ConvLSTM or TrajGRU memory in
            every block, run over the ``time_context`` steps as a sequence (CRAI's
            ``--lstm-steps`` and ``--gru-steps``; give P + F >= 1); or the U-Net with an
            attention encoder for the inputs after the first (CRAI's ``--attention``; a
            Dataset of 2 or more inputs). The recurrent and attention networks run one
            field at a time and untiled when infilling.
        padding : {"auto", "global", "zeros"}, default "auto"
            "auto": global for a uniform 360-degree longitude.
        time_context : (int, int), optional
            (P, F): steps t-P .. t+F as input channels (a sequence for the ConvLSTM and
            TrajGRU ``network``); default (0, 0).
        normalize : bool, default True
            Train on ``(x - mean) / std`` of the training data; the statistics are
            stored in the model and applied when infilling.
        ensemble : int, default 1
            Train this many models from the seeds ``seed .. seed + ensemble - 1``
            (other initial weights and data orders), and return them as an
            :class:`xcrai.Ensemble` (``.save(path)`` writes one file;
            :func:`xcrai.load_model` reads it back with ``label="all"``, ``infill``
            with its path or the Ensemble gives a ``member`` dimension, or the mean
            and spread with ``members="mean"``). It costs N trainings and N infills.
            Each member's checkpoints go to ``checkpoint_dir/member-<i>``.
        uncertainty : bool, default False
            Add a log-variance output channel, trained with a Gaussian negative
            log-likelihood at the hidden points (weight ``loss["nll"]``, default 1,
            on top of the other terms, which it leaves as they are: see
            :class:`xcrai.train.LossWeights`). ``infill(..., sigma=True)`` then gives
            each infilled value a standard deviation. The model file records it.
        bounds : (float or None, float or None), optional
            Keep the output inside (lower, upper), None for an open side (e.g.
            ``(0, None)`` for precipitation), in training as in infilling: CRAI's
            ``--min-bounds``/``--max-bounds`` transforms (see ``infill``), stored in
            the model.
        device : str, default "auto"
        seed : int, default 0
            Initial weights and every batch follow from it.
        checkpoint_dir : path, optional
            Folder for ``checkpoint.pth``, written atomically every
            ``checkpoint_every`` iterations and at the end. A folder that holds an
            earlier run's checkpoint is refused unless ``resume`` continues it.
        checkpoint_every : int, optional
        resume : path, optional
            A training checkpoint (or its folder) to continue from; with the same
            settings, the result equals an uninterrupted run's (on the CPU).
        progress : bool, default True
            A progress bar with the current losses (a widget in Jupyter).
        early_stopping : int, optional
            Stop after this many logging steps without a better validation loss
            and return the best weights (needs validation fields); without it, the
            last weights are returned.
        log_every : int, optional
            Iterations per logging step (losses, validation); default 1 % of the run.
        init : str, CraiModel or path, default "kaiming"
            An initialisation of the convolution weights, CRAI's "kaiming", "gaussian",
            "xavier", "orthogonal" or PyTorch's "torch" (biases zero),
            or a model to fine-tune: a :class:`xcrai.CraiModel` (a CRAI checkpoint of any
            variant read with :func:`xcrai.load_model`) or an xcrai model file. Training
            starts from its weights, in its network, time context and normalisation
            (give the same ``time_context``; leave ``architecture``, ``network`` and
            ``first_guess`` out); the fine-tuning phase is ``finetune_iterations``.
        augment : bool or "auto", default "auto"
            Roll each training field by a random number of longitudes and mirror
            half of them north-south (the coverage masks stay as they are); "auto"
            does so on global grids. Mirroring needs latitudes symmetric about the
            equator (within 0.001 degrees): on other grids (say 77 S to 90 N) the
            fields are only rolled. Helps most when training fields are few.
        mix : float, default 1.0
            The share of training samples ``a`` blended with another training sample
            ``b``: ``c + cos θ (a - c) + sin θ (b - c)``, θ uniform in [0, 2π) and
            ``c`` the training fields' mean at each point (every variable alike);
            with ``augment``, ``b - c`` is rolled and mirrored on its own. The blends
            keep the fields' mean and covariance and give a short record an endless
            supply of new patterns, so that long runs do not learn the few fields by
            heart (every sample, the default, did best on fitbench's 18 fields); 0
            trains on the fields as they are.
        first_guess : {"auto", None, "climatology", "eof"}, default "auto"
            A classical fill made from the training fields that the network corrects
            (:mod:`xcrai.firstguess`): it reads each field's departures from the first
            guess at the observed points and learns the departures in the holes;
            ``infill`` adds the first guess back. "climatology": the training fields'
            mean at each point by calendar month (their mean where the time axis is not
            datetime-like); "eof": their mean and leading EOFs fitted to each field's
            observed points (k by cross-validation), which leaves ``augment`` off;
            "auto": the one whose classical fill scores best on the validation fields,
            where it beats Poisson's, else none (none, too, without validation fields or
            with ``bounds``); None: no first guess, the network infills the field itself.
            A guess is not taken with ``bounds``. Stored in the model.
        precision : {"fp32", "tf32", "bf16"}, default "fp32"
            "fp32" is IEEE float32 on every device; "tf32" lets CUDA use TF32;
            "bf16" runs forward and backward passes under bfloat16 autocast (faster
            on recent GPUs); losses and weights stay float32.
        deterministic : bool, default True
            Only deterministic algorithms, no cuDNN autotuning: the same seed gives
            the same weights on CUDA, and a resumed run equals the uninterrupted
            one. (The CPU is deterministic either way, for a given ``threads``.)
            False lets cuDNN autotune; see the README for what each costs.
        threads : int or "auto", default "auto"
            CPU threads. "auto" takes the cores other processes leave free at the
            start (a resumed run takes its checkpoint's count). On the CPU the
            weights repeat bit for bit for the same count.
        distributed : bool, default False
            Data-parallel training under ``torchrun`` (see the README).
        vgg_weights : path, optional
            A local file of ImageNet VGG16 weights (torchvision's state dict), needed
            for ``perceptual`` and ``style`` loss terms (CRAI's weights: 0.05 and 120).
            Nothing is downloaded.

        Returns
        -------
        CraiModel (an Ensemble with ``ensemble`` > 1)
            With normalisation, grid, variable, units, padding, time context,
            provenance and the loss history (``model.history``).

        Examples
        --------
        >>> model = train.zg.crai.fit(masks.zg, iterations=1500, batch_size=8)  # doctest: +SKIP
        >>> model.save("zg.pth")  # doctest: +SKIP
        >>> filled = test.zg.crai.infill("zg.pth")  # doctest: +SKIP
        """
        from xcrai.fit import fit
        from xcrai.options import FitOptions

        options = _options(FitOptions, locals())
        return fit(self._da, masks, options, validation=validation, steady_mask=steady_mask)


@xr.register_dataset_accessor("crai")
class CraiDatasetAccessor:
    """CRAI infilling for a Dataset: ``ds.crai.infill(model, variables=[...])``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @_verb_of(CraiDataArrayAccessor.infill)
    def infill(
        self,
        model: Any,
        *,
        variables: str | list[str] | None = None,
        mask: Any = None,
        **options: Any,
    ) -> xr.Dataset:
        """Infill the named variables and leave the rest untouched.

        A model of several input variables reads each of them from the Dataset (each
        with its own holes) and infills its output variable: the first input, or a
        target variable, which it predicts at every point where the Dataset has no
        value of it.

        Parameters
        ----------
        model : str, path, CraiModel, Ensemble, or a list of these
            See :meth:`CraiDataArrayAccessor.infill`.
        variables : str or list of str, optional
            Default: the variable the model was trained on, when the Dataset has
            it; else every data variable with latitude and longitude dimensions.
            A model of several input variables infills its output variable only.
        mask : DataArray, array, or dict of them by variable name, optional
            Broadcast against each variable; see :meth:`CraiDataArrayAccessor.infill`.
            A dict gives each input variable of a several-variable model its own.
        return_output : bool
            Add ``<name>_output`` (the raw network output) and ``<name>_flag`` (CF flags:
            1 observed, 0 infilled, -1 hole beyond the network's reach, named in the
            variable's ``ancillary_variables``) beside each infilled variable.
        steady_mask, padding, time_context, bounds, unreachable, sigma, members
            As for :meth:`CraiDataArrayAccessor.infill`.
        device, batch_size
            As for :meth:`CraiDataArrayAccessor.infill`.
        tile_size, precision
            As for :meth:`CraiDataArrayAccessor.infill`.
        compile
            As for :meth:`CraiDataArrayAccessor.infill`.
        threads, progress
            As for :meth:`CraiDataArrayAccessor.infill`.

        Returns
        -------
        Dataset
            A copy with the variables infilled; the global ``history`` gains a
            line per variable (the variables' attrs gain none).

        Examples
        --------
        >>> ds = xr.open_dataset(xcrai.data.hadcrut4_sample())
        >>> out = ds.crai.infill(xcrai.data.demo_model(), variables="tas")
        """
        from xcrai.infill import infill_dataset
        from xcrai.options import InfillOptions

        return infill_dataset(
            self._ds, model, _options(InfillOptions, options), variables=variables, mask=mask,
            steady_mask=options["steady_mask"],
        )  # fmt: skip

    @_verb_of(CraiDataArrayAccessor.fit)
    def fit(
        self,
        masks: xr.DataArray | dict[str, xr.DataArray],
        *,
        inputs: str | list[str] | None = None,
        target: str | None = None,
        validation: float | xr.Dataset | None = 0.1,
        **options: Any,
    ) -> CraiModel | Ensemble:
        """Train a partial-convolution U-Net that reads several variables of this Dataset.

        The network reads each input's window of time steps in turn (CRAI's channel
        order, ``--data-types``) and outputs one variable: ``target`` when it is not an
        input (predicted from the inputs, as CRAI's ``--n-target-data 1``; its training
        fields must be complete), else the first input, infilled. Every training sample
        pairs each input with a coverage pattern of its own, drawn at random (seeded);
        each variable is normalised by its own statistics (``model.config.stats``). The
        losses are those of :meth:`CraiDataArrayAccessor.fit` on the output variable: for
        an input, split into its shown points and its holes; for a target, all of it is
        hole. ``ds.crai.infill(model)`` then reads the inputs and returns the output.

        Parameters
        ----------
        masks : DataArray or dict of DataArray
            Coverage patterns (as :meth:`CraiDataArrayAccessor.fit` takes them) for every
            input, or a dict of them by input variable (one for each).
        inputs : str or list of str, optional
            The variables the network reads, in channel order; default the only variable
            with latitude and longitude (besides ``target``). All share one grid and
            time axis.
        target : str, optional
            The output variable: another variable (predicted) or an input (infilled: it
            becomes the first input). Default the first input, infilled. One input and
            no target gives the model ``self[input].crai.fit`` gives.
        validation : float, Dataset or None, default 0.1
            The last fraction of the time axis, or a Dataset of validation fields of
            every variable, held out.
        steady_mask : DataArray, optional
            (lat, lon), True where the output variable is never valid (e.g. land);
            stored in the model with its points that are NaN in every field.
        iterations, batch_size, lr, lr_schedule, finetune_iterations, lr_finetune, loss
            As for :meth:`CraiDataArrayAccessor.fit`.
        architecture, network
            As for :meth:`CraiDataArrayAccessor.fit`; a full configuration reads
            ``len(inputs) * (P + F + 1)`` channels.
        padding, time_context, normalize, ensemble, uncertainty, bounds, device, seed
            As for :meth:`CraiDataArrayAccessor.fit`.
        checkpoint_dir
            As for :meth:`CraiDataArrayAccessor.fit`.
        checkpoint_every
            As for :meth:`CraiDataArrayAccessor.fit`.
        resume, progress, early_stopping, log_every, init, distributed, augment
            As for :meth:`CraiDataArrayAccessor.fit`; a checkpoint resumes only with
            the same variables, data and masks.
        mix, precision, vgg_weights, deterministic, threads
            As for :meth:`CraiDataArrayAccessor.fit`; ``mix`` blends every variable of
            two samples alike.
        first_guess : {"auto", None}, default "auto"
            A first guess (:meth:`CraiDataArrayAccessor.fit`) is for a model of one
            variable; a model of several takes none yet ("auto" takes none).

        Returns
        -------
        CraiModel (an Ensemble with ``ensemble`` > 1)
            With ``config.inputs``, ``config.target`` and ``config.stats`` besides what
            :meth:`CraiDataArrayAccessor.fit` records.

        Examples
        --------
        >>> model = train.crai.fit(masks, inputs=["tas", "psl"], iterations=900)  # doctest: +SKIP
        >>> filled = test.crai.infill(model)  # doctest: +SKIP
        """
        from xcrai.fit import fit_dataset
        from xcrai.options import FitOptions

        return fit_dataset(
            self._ds, masks, _options(FitOptions, options), inputs=inputs, target=target,
            validation=validation, steady_mask=options["steady_mask"],
        )  # fmt: skip
