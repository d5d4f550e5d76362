"""Training on xarray data: checking data and masks, splitting, normalising, provenance."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr

from xcrai._version import __version__
from xcrai.baselines import calendar_months
from xcrai.bounds import normalised
from xcrai.callsite import user_stacklevel
from xcrai.choices import INITS
from xcrai.digests import digest, field_digests
from xcrai.engine import resolve_device
from xcrai.firstguess import FirstGuess, build, residual_statistics
from xcrai.grid import describe, find_grid, resolve_padding
from xcrai.missing import missing_as_nan
from xcrai.model import CraiModel, Ensemble, ModelConfig
from xcrai.nn import DESIGNS, Architecture, build_network, is_architecture
from xcrai.numerics import Numerics, choose_threads, cpu_threads, scoped
from xcrai.options import DEFAULT_ARCHITECTURE, DEFAULT_NETWORK, FitOptions
from xcrai.skill import PROVENANCE_KEY, Holdout, classical_table, report, validation_table
from xcrai.steady import check_steady_mask
from xcrai.train.checkpoints import (
    check_checkpoint_dir,
    hold_checkpoint_dir,
    load_resume,
    member_folders,
)
from xcrai.train.loop import (
    TrainConfig,
    TrainingData,
    Variables,
    train,
    validate,
)
from xcrai.train.losses import LossWeights
from xcrai.train.weights import initialize

logger = logging.getLogger("xcrai")


def _fields(da: xr.DataArray, argument: str) -> tuple[Any, Any]:
    """(S, T, H, W) array (NumPy or dask, not loaded) and the grid of ``da``."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{argument}: expected an xarray.DataArray, got {type(da).__name__}")
    if not np.issubdtype(da.dtype, np.floating):
        if np.issubdtype(da.dtype, np.integer):
            da = da.astype(np.float32)
        else:
            raise TypeError(f"{argument}: expected floating-point fields, got dtype {da.dtype}")
    grid = find_grid(da, argument)
    if grid.time is None:
        raise ValueError(f"{argument}: expected a time dimension of training fields, dims "
                         f"{tuple(da.dims)}")  # fmt: skip
    extra = [d for d in da.dims if d not in (grid.time, grid.lat, grid.lon)]
    da = da.transpose(*extra, grid.time, grid.lat, grid.lon)
    data = da.data
    shape = (-1, *data.shape[-3:])
    return data.reshape(shape), grid


def _same_axis(a: xr.DataArray, b: xr.DataArray) -> str | None:
    """ "same", "reversed", or None when two 1-D coordinates do not match."""
    x, y = np.asarray(a.values, np.float64), np.asarray(b.values, np.float64)
    if x.shape != y.shape:
        return None
    if np.allclose(x, y, atol=1e-4):
        return "same"
    if np.allclose(x, y[::-1], atol=1e-4):
        return "reversed"
    return None


def prepare_masks(masks: Any, da: xr.DataArray, grid: Any) -> np.ndarray:
    """Coverage patterns as bool (M, H, W), True where observed, on ``da``'s grid."""
    if not isinstance(masks, xr.DataArray):
        raise TypeError(f"masks: expected an xarray.DataArray of coverage patterns, got "
                        f"{type(masks).__name__}")  # fmt: skip
    if masks.dtype != bool and not np.issubdtype(masks.dtype, np.number):
        raise TypeError(
            "masks: expected bool, 0/1, or a field whose NaNs mark missing points; "
            f"got dtype {masks.dtype}"
        )
    masks, mgrid = on_data_grid(masks, da, grid, "masks")
    extra = [d for d in masks.dims if d not in (mgrid.lat, mgrid.lon)]
    values = np.asarray(masks.transpose(*extra, mgrid.lat, mgrid.lon).values)
    values = values.reshape(-1, *values.shape[-2:])
    if values.dtype == bool:
        observed = values
    else:
        observed = _observed(values)
    everything = np.flatnonzero(~observed.any(axis=(1, 2)))
    if everything.size:
        raise ValueError(
            f"masks: {everything.size} of {len(observed)} masks hide every point (e.g. number "
            f"{everything[0]}); the network would see nothing. Drop them."
        )
    if observed.all():
        raise ValueError("masks: no mask hides any point, so there is no hole to learn to fill")
    return observed


def on_data_grid(other: xr.DataArray, da: xr.DataArray, grid: Any, argument: str) -> Any:
    """``other`` (masks, validation fields) on ``da``'s grid: flipped where an axis runs
    the other way, refused where its latitudes or longitudes differ; and its grid."""
    ogrid = find_grid(other, argument)
    for role, dim, odim in (("latitude", grid.lat, ogrid.lat), ("longitude", grid.lon, ogrid.lon)):
        same = None
        if dim in da.coords and odim in other.coords:
            same = _same_axis(da[dim], other[odim])
        elif da.sizes[dim] == other.sizes[odim]:
            same = "same"
        if same is None:
            raise ValueError(
                f"{argument}: on another grid than the data: {role} {odim!r} has "
                f"{other.sizes[odim]} points ({_span(other, odim)}), the data's {dim!r} "
                f"{da.sizes[dim]} ({_span(da, dim)}); regrid the {argument} (e.g. nearest "
                "neighbour) first"
            )
        if same == "reversed":
            other = other.isel({odim: slice(None, None, -1)})
    return other, ogrid


def check_validation(
    validation: xr.DataArray, da: xr.DataArray, grid: Any, target: np.ndarray, argument: str
) -> xr.DataArray:
    """Validation fields on the data's grid (flipped where an axis runs the other way),
    finite wherever the data is ever valid (``target``): a NaN there would make every
    validation loss NaN, and early stopping keep the wrong weights."""
    validation, _ = on_data_grid(validation, da, grid, argument)
    fields, _ = _fields(validation, argument)
    xp = dsa if isinstance(fields, dsa.Array) else np
    bad = (~xp.isfinite(fields)).any(axis=(0, 1)) & target
    count = int(bad.sum().compute() if isinstance(bad, dsa.Array) else bad.sum())
    if count:
        raise ValueError(
            f"{argument}: {count} grid points are NaN or infinite in the validation fields "
            "where the data has values; validation fields must be complete there"
        )
    return validation


def _observed(values: np.ndarray) -> np.ndarray:
    """True where a numeric mask says observed: 1 of 0/1 values, or finite where NaNs mark
    the missing points."""
    finite = np.isfinite(values)
    if np.isin(values[finite], (0, 1)).all():
        return finite & (values == 1)
    if finite.all():
        found = np.unique(values)
        raise ValueError(
            "masks: expected bool, 0/1 or NaN-marked fields, found values "
            f"{found[:6]}{' ...' if found.size > 6 else ''} and no NaN"
        )
    return finite


def _span(da: xr.DataArray, dim: str) -> str:
    if dim not in da.coords:
        return "no coordinate"
    values = np.asarray(da[dim].values)
    return f"{values[0]:g} to {values[-1]:g}"


def _static_target(fields: Any, argument: str) -> np.ndarray:
    """Points valid in every field (False where NaN throughout); error on scattered NaNs."""
    xp = dsa if isinstance(fields, dsa.Array) else np
    nan = xp.isnan(fields)
    some, every, infinite = nan.any(axis=(0, 1)), nan.all(axis=(0, 1)), xp.isinf(fields).any()
    empty = nan.all(axis=(2, 3))  # (series, time): fields without a value
    if isinstance(fields, dsa.Array):
        some, every, infinite, empty = dsa.compute(some, every, infinite, empty)
    if infinite:
        raise ValueError(f"{argument}: holds infinite values; training fields must be finite")
    if np.asarray(empty).any() and not np.asarray(empty).all():
        steps = sorted({int(t) for t in np.nonzero(np.asarray(empty))[1]})
        raise ValueError(
            f"{argument}: the fields at time index {steps[:5]}{' ...' if len(steps) > 5 else ''} "
            "have no value at all; drop them (e.g. da.dropna('time', how='all'))"
        )
    scattered = some & ~every
    if scattered.any():
        raise ValueError(
            f"{argument}: {int(scattered.sum())} grid points are NaN in some fields but not in "
            "others; training fields must be complete, apart from points that are NaN in every "
            "field (e.g. land in an SST field), which are never used as targets. Infill or drop "
            "the incomplete fields first."
        )
    if every.all():
        raise ValueError(f"{argument}: every point is NaN")
    return ~np.asarray(every)


def _architecture(
    o: FitOptions, n_inputs: int, steps: tuple[int, int], shape: tuple[int, int]
) -> Architecture:
    """The network's configuration: ``architecture`` when it is one (checked by
    :class:`FitOptions`), else the ``network`` design of its sizes for ``n_inputs``
    variables, ``steps`` of time context and fields of ``shape``; ``uncertainty`` adds the
    log-variance channel."""
    if is_architecture(o.architecture):
        return o.architecture
    chosen = {**DEFAULT_ARCHITECTURE, **cast("dict[str, Any]", o.architecture or {})}
    return DESIGNS[o.network].build(
        int(chosen["n_filters"]), int(chosen["depth"]), str(chosen["normalization"]),
        n_inputs, steps, 1 + o.uncertainty, (int(shape[0]), int(shape[1])),
    )  # fmt: skip


def start_model(init: Any, steps: tuple[int, int] = (0, 0)) -> CraiModel | None:
    """The model ``init`` names (a CraiModel, or a model file read with
    :func:`xcrai.load_model`, given the run's time context ``steps`` where it has one: CRAI's
    files do not record theirs), or None for an initialisation scheme."""
    if isinstance(init, CraiModel):
        return init
    if isinstance(init, str) and init in INITS:
        return None
    from xcrai.checkpoint import load_model

    model = load_model(init, time_context=None if steps == (0, 0) else steps)
    if not isinstance(model, CraiModel):
        raise ValueError(f"init: {str(init)!r} holds several models; load one with "
                         "xcrai.load_model(path, label=...) and pass it")  # fmt: skip
    return model


def _start_architecture(
    o: FitOptions, start: CraiModel, n_inputs: int, steps: tuple[int, int]
) -> Architecture:
    """The network of the model training starts from, checked against the data and the
    options: it brings its own layers, time context and outputs."""
    if o.architecture is not None or o.network != DEFAULT_NETWORK:
        raise ValueError(
            "init: a model to start from brings its own network; leave architecture and "
            "network out"
        )
    theirs = tuple(start.config.time_context or (0, 0))
    if theirs != steps:
        raise ValueError(
            f"time_context: the init model reads the steps {theirs}; give "
            f"time_context={theirs}"
        )
    arch = start.config.architecture
    if arch.in_channels != n_inputs * (sum(steps) + 1):
        raise ValueError(
            f"init: the model reads {start.config.n_inputs} variable(s) "
            f"{list(start.config.inputs or [start.config.variable])}, the data gives {n_inputs}"
        )
    if arch.out_channels != 1 + o.uncertainty:
        raise ValueError(
            f"uncertainty: the init model {'has' if arch.out_channels > 1 else 'has no'} "
            f"sigma channel; give uncertainty={arch.out_channels > 1}"
        )
    if start.config.first_guess is not None:
        raise ValueError("init: fine-tuning a model that corrects a first guess is not "
                         "supported; start from a model without one")  # fmt: skip
    return arch


def _start_norms(start: CraiModel) -> tuple[tuple[float, float], ...]:
    """The (mean, std) of every variable the model reads and writes (its inputs, then a
    target), as it normalises them."""
    c = start.config
    if c.stats is not None:
        return tuple((float(m), float(sd)) for m, sd in c.stats)
    return ((float(c.mean or 0.0), float(c.std or 1.0)),)


def _with_start(o: FitOptions) -> FitOptions:
    """The options of a run that starts from a model (``init=``): its normalisation, and no
    first guess (the model infills the fields themselves)."""
    start = start_model(o.init, cast("tuple[int, int]", o.time_context))
    if start is None:
        return o
    if o.first_guess not in (None, "auto"):
        raise ValueError(
            f"first_guess: the init model infills the fields themselves; a first guess "
            f"({o.first_guess!r}) would change what it reads; leave first_guess out"
        )
    normalizes = start.config.mean is not None or start.config.stats is not None
    if not o.normalize and normalizes:  # the default (True) follows the model either way
        raise ValueError(
            "normalize: the init model's weights read normalised fields (its statistics "
            "are in its file); normalize=False would feed them raw values; leave normalize out"
        )
    return replace(o, init=start, first_guess=None, normalize=normalizes)


def _augment(augment: bool | str, grid: Any) -> bool:
    """Random longitude rolls of the training fields: on by default for global grids."""
    if augment == "auto":
        return grid.periodic
    if augment and not grid.periodic:
        raise ValueError("augment: rolling fields in longitude needs a global (periodic) grid")
    return bool(augment)


#: how far (degrees) a latitude may lie from the mirror image of another for the grid to
#: count as symmetric about the equator
SYMMETRY_TOLERANCE = 1e-3


def symmetric_latitudes(da: xr.DataArray, grid: Any) -> bool:
    """Whether ``da``'s latitudes are symmetric about the equator (within
    :data:`SYMMETRY_TOLERANCE` degrees), so that a field mirrored north-south lies on the
    same grid; False without a latitude coordinate (nothing says where the equator is)."""
    if grid.lat not in da.coords:
        return False
    lat = np.asarray(da[grid.lat].values, np.float64)
    return bool(np.allclose(lat, -lat[::-1], rtol=0, atol=SYMMETRY_TOLERANCE))


def _check_early_stopping(o: FitOptions, validation: Any) -> None:
    """``early_stopping`` watches the validation loss: refused without validation fields,
    before any pass over the data."""
    none = validation is None or (isinstance(validation, (int, float)) and not validation)
    if o.early_stopping is not None and none:
        raise ValueError(
            "early_stopping: it watches the validation loss, but there are no validation "
            "fields (validation=None or 0); give validation= a fraction or fields"
        )


def _check_options(options: Any) -> FitOptions:
    if options is None:
        return FitOptions()
    if not isinstance(options, FitOptions):
        raise TypeError(f"options: expected a FitOptions, got {type(options).__name__}")
    return options


@dataclass
class _Setup:
    """What every training run settles before it reads the data: the loss weights, time
    context, padding, network, processes and device."""

    weights: LossWeights
    time_context: tuple[int, int]
    padding: str
    arch: Architecture
    world: Any
    dev: torch.device
    #: the model whose weights training starts from (``init=``), else None
    start: CraiModel | None = None


def _setup(o: FitOptions, grid: Any, n_inputs: int, shape: tuple[int, ...]) -> _Setup:
    # FitOptions normalises these two: loss to LossWeights, a missing time context to (0, 0)
    weights = cast(LossWeights, o.loss)
    time_context = cast("tuple[int, int]", o.time_context)
    if weights.needs_vgg:  # FitOptions made sure there is a file
        from xcrai.train.perceptual import VGG16Features

        VGG16Features.from_file(str(o.vgg_weights))  # fail before any training, clearly
    padding = resolve_padding(o.padding, grid)
    in_channels = n_inputs * (sum(time_context) + 1)
    if is_architecture(o.architecture) and o.architecture.in_channels != in_channels:
        raise ValueError(
            f"architecture: expected {in_channels} input channels ({n_inputs} variable(s) "
            f"times a window of {sum(time_context) + 1} step(s)), got "
            f"{o.architecture.in_channels}"
        )
    start = start_model(o.init, time_context)
    if start is None:
        arch = _architecture(o, n_inputs, time_context, (shape[-2], shape[-1]))
    else:
        arch = _start_architecture(o, start, n_inputs, time_context)
    world = None
    if o.distributed:
        from xcrai.train.distributed import join

        world, dev = join(o.device)
        if o.batch_size % world.size:
            raise ValueError(
                f"batch_size: the global batch {o.batch_size} must split evenly over "
                f"{world.size} processes"
            )
    else:
        dev = resolve_device(o.device)
    return _Setup(weights, time_context, padding, arch, world, dev, start)


def _check_batch(fields: Any, batch_size: int) -> None:
    n_train = fields.shape[0] * fields.shape[-3]
    if n_train < batch_size:
        raise ValueError(
            f"batch_size: {batch_size} is larger than the {n_train} training fields (after "
            "the validation split); use a smaller batch or more data"
        )


def _train_config(
    o: FitOptions, setup: _Setup, grid: Any, mean: float, std: float, symmetric: bool
) -> TrainConfig:
    """The run's settings; ``symmetric``: whether the latitudes are symmetric about the
    equator (``augment`` mirrors north-south only then)."""
    iterations = o.iterations
    return TrainConfig(
        iterations=iterations, batch_size=o.batch_size, lr=float(o.lr),
        finetune_iterations=o.finetune_iterations, lr_finetune=float(o.lr_finetune),
        loss=setup.weights, padding=setup.padding, time_context=setup.time_context, mean=mean,
        std=std, seed=o.seed,
        log_every=o.log_every or max(1, (iterations + o.finetune_iterations) // 100),
        early_stopping=o.early_stopping, checkpoint_every=o.checkpoint_every,
        augment=_augment(o.augment, grid) and o.first_guess != "eof", precision=o.precision,
        vgg_weights=None if o.vgg_weights is None else str(o.vgg_weights),
        deterministic=o.deterministic,
        bounds=None if o.bounds is None else normalised(o.bounds, (mean, std)),
        uncertainty=o.uncertainty,
        lr_schedule=o.lr_schedule,
        mix=float(o.mix),
        mirror=symmetric,
        first_guess=o.first_guess,
    )  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """What the validation fields set once the weights are trained.

    Attributes
    ----------
    sigma_scale : float
        The factor that calibrates a σ channel (1 without either).
    hole_rmse : float or None
        The model's hole RMSE on the validation fields (None without them).
    weight : float
        The share of the network's correction of a first guess that the model keeps
        (1 without a first guess, validation fields, or with a σ channel).
    """

    sigma_scale: float = 1.0
    hole_rmse: float | None = None
    weight: float = 1.0


def _run(
    o: FitOptions,
    setup: _Setup,
    config: TrainConfig,
    fingerprint: dict[str, Any],
    data: TrainingData,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]], int, TrainConfig, Calibration]:
    """Resume (when asked), build the network from the seed, and train it; returns the
    weights, the loss history, the iterations run, the run's configuration, and what the
    validation fields set (:class:`Calibration`). The ``checkpoint_dir`` is held for the
    whole run (:func:`hold_checkpoint_dir`)."""
    checkpoint_path = None
    if setup.start is not None:  # absent otherwise, as in checkpoints from before init models
        fingerprint = {**fingerprint, "init": setup.start.sha256}
    if o.checkpoint_dir is not None:  # refusals that leave the folder as it is
        checkpoint_path = check_checkpoint_dir(o.checkpoint_dir, o.resume)
    with hold_checkpoint_dir(o):
        if checkpoint_path is not None:  # again: a run that held it may have ended since
            check_checkpoint_dir(checkpoint_path, o.resume)
        return _train(o, setup, config, fingerprint, data, checkpoint_path)


def _train(
    o: FitOptions,
    setup: _Setup,
    config: TrainConfig,
    fingerprint: dict[str, Any],
    data: TrainingData,
    checkpoint_path: Path | None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]], int, TrainConfig, Calibration]:
    """The body of :func:`_run`, with the checkpoint folder checked and held."""
    threads = o.threads
    state = None
    if o.resume is not None:
        state = load_resume(o.resume, config, fingerprint, explicit_log_every=o.log_every)
        config = replace(config, log_every=state["train_config"]["log_every"])
        if threads == "auto":  # CPU training repeats bit for bit for the same thread count
            threads = state.get("threads", "auto")
    threads = choose_threads(threads)
    with torch.random.fork_rng(devices=[]):  # the user's random state stays as it was
        torch.default_generator.manual_seed(o.seed)
        net = build_network(setup.arch)
        if setup.start is None:
            initialize(net, o.init)
        else:
            net.load_state_dict(setup.start.net.state_dict())
    if setup.world is not None:
        from xcrai.train.distributed import globalize_batch_norm

        net = globalize_batch_norm(net, setup.dev)
    trained, history, done = train(
        net, data, config, device=setup.dev, checkpoint_dir=checkpoint_path, resume=state,
        progress=o.progress, world=setup.world, fingerprint=fingerprint, threads=threads,
    )  # fmt: skip
    sigma_scale, hole_rmse, weight = 1.0, None, 1.0
    if data.val_fields is not None:  # the weights returned, on unseen fields
        net.load_state_dict(trained)
        numerics = Numerics.training(config.precision, config.deterministic, setup.dev)
        # a σ channel is calibrated on the whole correction, so it keeps all of it
        weigh = data.guess is not None and not config.uncertainty
        with cpu_threads(choose_threads(threads)), scoped(numerics):
            scale = validate(net, data, config, setup.dev, weigh=weigh)
        hole_rmse = scale["val_hole_rmse"]
        weight = scale.get("val_correction_weight", 1.0)
    if config.uncertainty and data.val_fields is not None:  # calibrated on unseen fields
        if "val_sigma_scale" in scale:
            sigma_scale = scale["val_sigma_scale"]
        else:
            warnings.warn(
                "validation: the masks hide no point the model learns in the validation "
                "fields, so the sigma of uncertainty=True is left uncalibrated (sigma_scale "
                "1); give masks with holes there",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
    return trained, history, done, config, Calibration(sigma_scale, hole_rmse, weight)


def _standing(
    holdout: Holdout | None, hole_rmse: float | None, units: Any,
    classical: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``{"validation_skill": table}`` for the provenance, reported (:mod:`xcrai.skill`);
    empty without validation fields, or when their masks hide no learnt point
    (``classical``: the classical fills' scores, when already made)."""
    if holdout is None or hole_rmse is None:
        return {}
    table = validation_table(holdout, hole_rmse, units, classical)
    if table is None:
        return {}
    report(table)
    return {PROVENANCE_KEY: table}


def _months(da: Any, argument: str) -> np.ndarray | None:
    """Calendar months of the time steps of ``da`` (None where not datetime-like)."""
    time_dim = find_grid(da, argument).time
    if time_dim is None or time_dim not in da.coords:
        return None
    return calendar_months(da[time_dim].values)


def _ensemble(o: FitOptions, train_one: Callable[[FitOptions], CraiModel | Ensemble]) -> Ensemble:
    """With ``o.ensemble`` N > 1: an Ensemble of N models, ``train_one`` of each seed
    ``o.seed .. o.seed + N - 1`` (their initial weights and data orders) with ``ensemble=1``,
    each checkpointed in its own ``member-<i>`` folder of ``checkpoint_dir``."""
    if o.resume is not None:
        raise ValueError(
            "resume: an ensemble is trained member by member; resume one member with "
            "ensemble=1, seed= its seed and resume= its member-<i> checkpoint"
        )
    folders = member_folders(o)
    for i, folder in enumerate(folders):  # before the first member trains: not wasted then
        if folder is not None:
            check_checkpoint_dir(folder, member=i)
    with hold_checkpoint_dir(o):  # the whole ensemble's folder, for all its members
        members = []
        for i, folder in enumerate(folders):
            member = train_one(replace(o, ensemble=1, seed=o.seed + i, checkpoint_dir=folder))
            assert isinstance(member, CraiModel)  # ensemble=1: one model
            members.append(member)
    labels = tuple(f"seed {o.seed + i}" for i in range(o.ensemble))
    return Ensemble(tuple(members), labels)


def fit(
    da: xr.DataArray,
    masks: xr.DataArray,
    options: FitOptions | None = None,
    *,
    validation: float | xr.DataArray | None = 0.1,
    steady_mask: xr.DataArray | None = None,
) -> CraiModel | Ensemble:
    """Train a model (or, with ``ensemble=N``, N of them) on ``da`` with coverage patterns
    ``masks``.

    See :meth:`xcrai.accessor.CraiDataArrayAccessor.fit`, which builds ``options``.

    Parameters
    ----------
    da : DataArray
        Complete training fields.
    masks : DataArray
        Coverage patterns on the same grid.
    options : FitOptions, optional
        Default ``FitOptions()``.
    validation : float, DataArray or None
        The held-out fraction of the time axis, or separate validation fields.
    steady_mask : DataArray, optional
        (lat, lon), True where a point is never valid (e.g. land); added to the points
        that are NaN in every field. The network neither sees nor learns them, and the
        model stores them all (``ModelConfig.steady_mask``) for ``infill``.

    Returns
    -------
    CraiModel, or an Ensemble with ``ensemble`` > 1

    Examples
    --------
    >>> model = fit(train.zg, masks.zg, FitOptions(iterations=1500))  # doctest: +SKIP
    """
    if isinstance(da, xr.DataArray):  # undecoded fill values are holes, not data
        da = missing_as_nan(da, "data")
    held = (
        [missing_as_nan(validation, "validation")]
        if isinstance(validation, xr.DataArray)
        else validation
    )
    return _fit(_Run([da], [masks], None, None, held, steady_mask), options)


def _provenance(
    o: FitOptions, setup: _Setup, output: xr.DataArray, data_sha256: Any, masks_shape: Any,
    masks_sha256: Any, done: int, train_config: dict[str, Any], history: Any,
    standing: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The provenance record of a fitted model: what it was trained on (the output
    variable's shape and dimensions; the hashes and mask shapes of every variable, or of the
    one), how (the run's configuration, seed and initial weights) and how far, with its loss
    history and its standing against the classical fills."""
    return {
        "source": "xcrai fit",
        "xcrai_version": __version__,
        "data_shape": list(output.shape),
        "data_dims": [str(d) for d in output.dims],
        "data_sha256": data_sha256,
        "masks_shape": masks_shape,
        "masks_sha256": masks_sha256,
        "iterations": done,
        "seed": o.seed,
        "init": o.init if setup.start is None else f"model sha256 {setup.start.sha256}",
        "train_config": train_config,
        "history": history,
        **standing,
    }


def choose_first_guess(classical: dict[str, Any] | None, o: FitOptions) -> str | None:
    """``first_guess="auto"`` (the default): the first guess whose classical fill does best
    on the validation fields, climatology or EOF, where it beats Poisson's (a fill from the
    observed points alone, which the network without a guess already beats); else None.

    ``classical`` is :func:`xcrai.skill.classical_table`'s (None: no validation fields, or
    none of their points hidden). None, too, with ``bounds`` (a guess is refused with
    them); EOF is not a candidate with ``augment=True`` (rolled fields leave the EOFs).
    """
    if classical is None or o.bounds is not None:
        logger.info("first_guess='auto': none (%s)", "no validation fields to choose on"
                    if classical is None else "the run has bounds")  # fmt: skip
        return None
    rmse = classical["rmse"]
    candidates = ("climatology",) if o.augment is True else ("climatology", "EOF")
    best = min(candidates, key=lambda name: rmse[name])
    chosen = best.lower() if rmse[best] < rmse["Poisson"] else None
    logger.info(
        "first_guess='auto': %s (validation hole RMSE: %s)", chosen or "none",
        ", ".join(f"{name} {value:.4g}" for name, value in rmse.items()),
    )  # fmt: skip
    return chosen


def _first_guess(
    kind: str, fields: Any, months: np.ndarray | None, observed: np.ndarray, target: np.ndarray
) -> tuple[FirstGuess, tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]]:
    """The first guess of ``kind`` from the training fields (S, T, H, W), and the arguments
    of :func:`residual_statistics` (every training field in turn, with its month; lazy
    where ``fields`` is: the guess reads a sample of them, or means by month)."""
    series, length = fields.shape[:2]
    flat = fields.reshape(series * length, *fields.shape[2:])
    flat_months = None if months is None else np.tile(months, series)
    guess = build(kind, flat, flat_months, observed, target)
    logger.info("first guess: %s", guess.describe())
    return guess, (flat, flat_months, observed, target)


def _split_validation(fields: Any, validation: Any) -> tuple[Any, Any]:
    """(training fields, validation fields or None) from the ``validation`` argument."""
    if isinstance(validation, xr.DataArray):
        val_fields, _ = _fields(validation, "validation")
        if val_fields.shape[-2:] != fields.shape[-2:]:
            raise ValueError(
                f"validation: expected fields on the data's grid {fields.shape[-2:]}, got "
                f"{val_fields.shape[-2:]}"
            )
        return fields, val_fields
    if not validation:
        return fields, None
    if not isinstance(validation, float) or not 0 < validation < 1:
        got = (
            repr(validation)
            if isinstance(validation, (int, float, str))
            else type(validation).__name__
        )
        raise ValueError(
            f"validation: expected a fraction in (0, 1), a DataArray or None, got {got}"
        )
    n_val = max(1, round(fields.shape[1] * validation))
    if n_val >= fields.shape[1]:
        raise ValueError(
            f"validation: {validation} of {fields.shape[1]} time steps leaves none to train on"
        )
    return fields[:, :-n_val], fields[:, -n_val:]


def _centre(fields: Any, valid: np.ndarray, time_axis: int) -> Any:
    """The training fields' mean at each point over series and time (0 where never valid;
    lazy for dask-backed fields)."""
    xp = dsa if isinstance(fields, dsa.Array) else np
    return xp.where(valid, fields, 0).astype(np.float64).mean(axis=(0, time_axis))


def _statistics(fields: Any, target: np.ndarray) -> tuple[Any, Any]:
    """Mean and standard deviation of the training fields over points that are ever valid
    (lazy for dask-backed fields, to be computed with the other passes over the data)."""
    xp = dsa if isinstance(fields, dsa.Array) else np
    masked = xp.where(target, fields, np.nan).astype(np.float64)
    return xp.nanmean(masked), xp.nanstd(masked)


def _variables(ds: xr.Dataset, inputs: Any, target: Any) -> tuple[list[str], str | None]:
    """(inputs, target) checked against ``ds``: ``target`` None when it is an input (that
    input comes first: the one infilled)."""
    if inputs is None:  # the only gridded variable (besides the target)
        from xcrai.infill import gridded_variables

        found = [str(v) for v in gridded_variables(ds) if v != target]
        if len(found) != 1:
            raise ValueError(
                f"inputs: the dataset has gridded variables {found}; name the inputs, in "
                "channel order, with inputs=[...]"
            )
        inputs = found
    if isinstance(inputs, str):
        inputs = [inputs]
    if not all(isinstance(v, str) and v for v in inputs) or not inputs:
        raise ValueError(f"inputs: expected a list of variable names, got {inputs!r}")
    inputs = list(inputs)
    repeated = sorted({v for v in inputs if inputs.count(v) > 1})
    if repeated:
        raise ValueError(f"inputs: {repeated} given more than once; name each input once")
    if target is not None and (not isinstance(target, str) or not target):
        raise ValueError(f"target: expected a variable name or None, got {target!r}")
    missing = [v for v in [*inputs, *([target] if target else [])] if v not in ds.data_vars]
    if missing:
        raise ValueError(f"inputs: {missing} not in the dataset; it has {list(ds.data_vars)}")
    if target in inputs:  # infill that input: the network outputs its first
        inputs.remove(target)
        return [target, *inputs], None
    return inputs, target


def _masks_by_input(masks: Any, inputs: list[str], target: str | None) -> list[Any]:
    """Each input's coverage patterns from ``masks``: one DataArray for all, or a dict."""
    if not isinstance(masks, dict):
        return [masks] * len(inputs)
    unknown = [str(k) for k in masks if k not in inputs]
    if unknown:
        what = "the target, which the network never sees" if unknown == [target] else "inputs"
        raise ValueError(f"masks: {unknown} are not {what} (inputs: {inputs})")
    missing = [v for v in inputs if v not in masks]
    if missing:
        raise ValueError(f"masks: no coverage patterns for the inputs {missing}")
    return [masks[v] for v in inputs]


def fit_dataset(
    ds: xr.Dataset,
    masks: xr.DataArray | dict[str, xr.DataArray],
    options: FitOptions | None = None,
    *,
    inputs: Any = None,
    target: str | None = None,
    validation: float | xr.Dataset | None = 0.1,
    steady_mask: xr.DataArray | None = None,
) -> CraiModel | Ensemble:
    """Train a model (with ``ensemble=N``, N of them) that reads several variables of ``ds``
    (and may predict another).

    See :meth:`xcrai.accessor.CraiDatasetAccessor.fit`, which builds ``options``. One
    input and no target is :func:`fit` of that variable.

    Parameters
    ----------
    ds : Dataset
        Complete training fields of every input (and the target), on one grid and time
        axis.
    masks : DataArray or dict of DataArray
        Coverage patterns for every input, or a dict of them by input.
    options : FitOptions, optional
        Default ``FitOptions()``.
    inputs : list of str
        The variables the network reads, in channel order.
    target : str, optional
        The variable it outputs: another variable of ``ds``, predicted, or an input,
        infilled (it then comes first); default the first input, infilled.
    validation : float, Dataset or None
        The held-out fraction of the time axis, or a Dataset of validation fields of
        every variable.
    steady_mask : DataArray, optional
        (lat, lon), True where the output variable is never valid.

    Returns
    -------
    CraiModel, or an Ensemble with ``ensemble`` > 1
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"data: expected an xarray.Dataset, got {type(ds).__name__}")
    inputs, target = _variables(ds, inputs, target)
    masks_list = _masks_by_input(masks, inputs, target)
    names = [*inputs, *([target] if target else [])]
    one = target is None and len(inputs) == 1  # a model of one variable, as fit makes
    label = (lambda kind, v: kind) if one else (lambda kind, v: f"{kind} {v!r}")
    arrays = [missing_as_nan(ds[v], label("data", v)) for v in names]
    if isinstance(validation, xr.DataArray):
        raise TypeError("validation: expected a fraction, a Dataset of every variable, or "
                        "None; got a DataArray")  # fmt: skip
    held: float | list[xr.DataArray] | None = None
    if isinstance(validation, xr.Dataset):
        held = [
            missing_as_nan(v, label("validation", name))
            for name, v in zip(names, _validation_variables(validation, names), strict=True)
        ]
    else:
        held = validation
    if not one:
        try:
            xr.align(*arrays, join="exact")
        except ValueError:
            raise ValueError(
                f"data: the variables {names} have different coordinates; put them on one "
                "grid and time axis first (e.g. xr.align, or regridding)"
            ) from None
    run = _Run(arrays, masks_list, None if one else inputs, target, held, steady_mask)
    return _fit(run, options)


@dataclass(frozen=True)
class _Run:
    """What a training run reads, from the xarray edge (:func:`fit`, :func:`fit_dataset`):
    one canonical form for one variable or several."""

    #: the training fields of every variable: the inputs, in channel order, then a target
    arrays: list[xr.DataArray]
    #: each input's coverage patterns
    masks: list[Any]
    #: the inputs' names for a model of several variables (or of a target); None: a model
    #: of one variable, whose model file records its normalisation as ``mean``/``std``
    inputs: list[str] | None
    target: str | None
    #: a held-out fraction, None, or validation fields of every variable
    validation: float | list[xr.DataArray] | None
    steady_mask: xr.DataArray | None

    @property
    def one(self) -> bool:
        return self.inputs is None

    @property
    def names(self) -> list[str]:
        if self.inputs is None:
            return [str(getattr(self.arrays[0], "name", None))]
        return [*self.inputs, *([self.target] if self.target else [])]

    @property
    def out(self) -> int:
        """The variable the network outputs: a target (last), or the first input."""
        return len(self.arrays) - 1 if self.target else 0

    def label(self, kind: str, v: int) -> str:
        """How messages name variable ``v``'s ``kind`` ("data", "validation")."""
        return kind if self.one else f"{kind} {self.names[v]!r}"


def _fit(run: _Run, options: FitOptions | None) -> CraiModel | Ensemble:
    """Train a model (or, with ``ensemble=N``, N of them) on ``run``: the one pipeline
    behind :func:`fit` and :func:`fit_dataset`."""
    o = _with_start(_check_options(options))
    _check_early_stopping(o, run.validation)
    if o.ensemble > 1:
        return _ensemble(o, lambda one: _fit(run, one))
    if not run.one or run.target is not None:
        if o.first_guess == "auto":  # no guess for several variables yet
            o = replace(o, first_guess=None)
        if o.first_guess is not None:
            raise ValueError(
                f"first_guess: a model of several variables ({run.inputs}"
                f"{'' if run.target is None else f', target {run.target!r}'}) takes no "
                "first guess yet; fit one variable with it"
            )
    names, out, arrays = run.names, run.out, run.arrays
    prepared = [_fields(da, run.label("data", v)) for v, da in enumerate(arrays)]
    grid = prepared[out][1]
    shapes = {v: tuple(f.shape) for v, (f, _) in zip(names, prepared, strict=True)}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"data: the variables must share their dimensions; got {shapes}")
    valid = [_static_target(f, run.label("data", v)) for v, (f, _) in enumerate(prepared)]
    explicit = None
    if run.steady_mask is not None:  # the output variable's, as infill applies it
        explicit = check_steady_mask(run.steady_mask, arrays[out], grid).values
        valid[out] = valid[out] & ~explicit
        if not valid[out].any():
            raise ValueError("steady_mask: with the data's NaNs it leaves no point to learn")
    observed = [prepare_masks(m, arrays[v], grid) for v, m in enumerate(run.masks)]
    validation = run.validation
    if isinstance(validation, list):
        validation = [
            check_validation(v, arrays[i], grid, valid[i], run.label("validation", i))
            for i, v in enumerate(validation)
        ]
    setup = _setup(o, grid, len(run.masks), next(iter(shapes.values())))

    if len(prepared) == 1:  # a view: (S, 1, T, H, W)
        fields = prepared[0][0][:, None]
    else:
        stack = dsa.stack if any(isinstance(f, dsa.Array) for f, _ in prepared) else np.stack
        fields = stack([f for f, _ in prepared], axis=1)  # (S, V, T, H, W)
    digests = [field_digests(f) for f, _ in prepared]
    if isinstance(validation, list):
        val_prepared = [
            _fields(da, run.label("validation", v))[0] for v, da in enumerate(validation)
        ]
        if len({tuple(f.shape) for f in val_prepared}) > 1:
            raise ValueError("validation: the variables must share their dimensions")
        if val_prepared[0].shape[-2:] != fields.shape[-2:]:
            raise ValueError(
                f"validation: expected fields on the data's grid {fields.shape[-2:]}, got "
                f"{val_prepared[0].shape[-2:]}"
            )
        val_fields = (
            val_prepared[0][:, None] if len(val_prepared) == 1 else stack(val_prepared, axis=1)
        )
        val_digests = [field_digests(f) for f in val_prepared]
    else:
        _, val_fields = _split_validation(prepared[0][0], validation)
        n_train = fields.shape[2] - (0 if val_fields is None else val_fields.shape[1])
        fields, val_fields = (
            fields[:, :, :n_train],
            (None if val_fields is None else fields[:, :, n_train:]),
        )
        digests, val_digests = (
            [d[:, :n_train] for d in digests],
            [d[:, n_train:] for d in digests],
        )
    _check_batch(fields, o.batch_size)
    output = arrays[out]
    stats = [
        _statistics(fields[:, v], valid[v]) if o.normalize else (0.0, 1.0)
        for v in range(len(names))
    ]
    centre = _centre(fields, np.stack(valid)[:, None], 2) if o.mix else None
    stats, centre, digests, val_digests = dask.compute(stats, centre, digests, val_digests)
    norms = tuple((float(m), float(s) or 1.0) for m, s in stats)
    if setup.start is not None and o.normalize:  # the units the model's weights read
        norms = _start_norms(setup.start)
        if len(norms) != len(names):
            raise ValueError(
                f"init: the model normalises {len(norms)} variable(s), the data has "
                f"{len(names)} ({names}); start from a model of the same variables"
            )
    months = _months(output, "data")
    n_train = fields.shape[2]
    val_months = None
    if months is not None:
        months, val_months = months[:n_train], months[n_train:]
    if isinstance(validation, list):
        val_months = _months(validation[out], "validation")
    holdout, classical = None, None
    if val_fields is not None and run.target is None:  # a target is never shown
        holdout = Holdout(fields[:, out], val_fields[:, out], months, val_months, observed[out],
                          valid[out], grid.periodic)  # fmt: skip
        classical = classical_table(holdout, output.attrs.get("units"))
    if o.first_guess == "auto":
        o = replace(o, first_guess=choose_first_guess(classical, o))
    guess = None
    if o.first_guess is not None:  # one variable: the network learns departures from it
        guess, departures = _first_guess(o.first_guess, fields[:, 0], months, observed[0],
                                         valid[0])  # fmt: skip
        norms = (residual_statistics(guess, *departures) if o.normalize else (0.0, 1.0),)
        if centre is not None:  # mixing turns departures from the base about their mean
            flat_months = departures[1]
            base = guess.base[0]
            if guess.monthly:  # the mean of each field's month's base
                counts = np.bincount(np.asarray(flat_months) - 1, minlength=12)
                base = np.tensordot(counts / counts.sum(), guess.base, 1)
            centre = np.where(valid[0], centre - base, 0)
    if centre is not None:  # each variable in its network units, (V, 1, H, W)
        mean, std = (np.array(n, np.float64)[:, None, None] for n in zip(*norms, strict=True))
        centre = ((centre - mean) / std).astype(np.float32)[:, None]
    fingerprint = {
        "data": digest(np.stack(digests)),
        "validation": digest(np.stack(val_digests)) if val_fields is not None else None,
        "masks": digest(observed[0]) if run.one
        else digest(np.array([digest(m) for m in observed])),
        "architecture": setup.arch.to_dict(),
    }  # fmt: skip
    if not run.one:
        fingerprint["variables"] = {"inputs": run.inputs, "target": run.target}
    if explicit is not None:  # absent otherwise, as in checkpoints from before steady masks
        fingerprint["steady_mask"] = digest(explicit)
    if guess is not None:  # absent otherwise, as in checkpoints from before first guesses
        fingerprint["first_guess"] = digest(np.frombuffer(
            json.dumps(guess.to_dict(), sort_keys=True).encode(), np.uint8
        ))  # fmt: skip

    config = _train_config(o, setup, grid, *norms[out], symmetric_latitudes(output, grid))
    variables = Variables(observed, np.stack(valid), out, norms)
    data = TrainingData(fields, variables, val_fields, centre, guess, months, val_months)
    trained, history, done, config, calibration = _run(o, setup, config, fingerprint, data)
    standing = _standing(holdout, calibration.hole_rmse, output.attrs.get("units"), classical)
    if guess is not None and calibration.weight != 1:
        guess = replace(guess, weight=calibration.weight)
    model_config = _model_config(run, o, setup, config, norms, observed, valid[out], guess,
                                 calibration.sigma_scale, done, history, standing)  # fmt: skip
    return CraiModel(model_config, trained)


def _model_config(
    run: _Run, o: FitOptions, setup: _Setup, config: TrainConfig,
    norms: tuple[tuple[float, float], ...], observed: list[np.ndarray], valid: np.ndarray,
    guess: FirstGuess | None, sigma_scale: float, done: int, history: Any,
    standing: dict[str, Any],
) -> ModelConfig:  # fmt: skip
    """The fitted model's configuration: how it reads the data, and its provenance. A model
    of one variable records its normalisation as ``mean``/``std``, one of several (or of a
    target) each variable's as ``stats``, with its inputs and target."""
    output = run.arrays[run.out]
    grid = find_grid(output, "data")
    if run.one:
        da = run.arrays[0]
        mean, std = norms[0]
        variables: dict[str, Any] = {
            "mean": mean if o.normalize else None,
            "std": std if o.normalize else None,
            "variable": None if da.name is None else str(da.name),
        }
        train_config = config.to_dict()
        sha256: Any
        masks_shape: Any
        masks_sha256: Any
        sha256, masks_shape, masks_sha256 = (
            digest(da.data), list(observed[0].shape), digest(observed[0])
        )  # fmt: skip
    else:
        inputs = cast("list[str]", run.inputs)
        variables = {
            "variable": run.names[run.out],
            "inputs": tuple(inputs),
            "target": run.target,
            "stats": norms if o.normalize else None,
        }
        train_config = {**config.to_dict(), "stats": [list(n) for n in norms]}
        sha256 = {v: digest(da.data) for v, da in zip(run.names, run.arrays, strict=True)}
        masks_shape = {v: list(m.shape) for v, m in zip(inputs, observed, strict=True)}
        masks_sha256 = {v: digest(m) for v, m in zip(inputs, observed, strict=True)}
    provenance = _provenance(o, setup, output, sha256, masks_shape, masks_sha256, done,
                             train_config, history, standing)  # fmt: skip
    return ModelConfig(
        bounds=o.bounds,
        sigma_scale=sigma_scale,
        architecture=setup.arch,
        padding=setup.padding,
        time_context=setup.time_context,
        units=output.attrs.get("units"),
        grid={**describe(output, grid), "lat_ascending": grid.lat_ascending},
        provenance=provenance,
        # fields are trained in the data's own order, so this is the training orientation
        steady_mask=None if valid.all() else ~valid,
        first_guess=guess,
        **variables,
    )


def _validation_variables(validation: xr.Dataset, names: list[str]) -> list[xr.DataArray]:
    missing = [v for v in names if v not in validation.data_vars]
    if missing:
        raise ValueError(f"validation: the Dataset lacks {missing} (it has "
                         f"{list(validation.data_vars)})")  # fmt: skip
    return [validation[v] for v in names]
