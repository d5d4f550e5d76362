"""Infilling xarray objects: grid, masks, dask blocks, and the assembled result."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import warnings
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, cast

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from xcrai._version import __version__
from xcrai.attrs import add_history, keep_attrs
from xcrai.baselines import calendar_months, laplace_fill
from xcrai.bounds import describe as describe_bounds
from xcrai.callsite import user_stacklevel
from xcrai.checkpoint import load_any, load_model
from xcrai.choices import check_padding, check_time_context
from xcrai.encoding import float_encoding
from xcrai.engine import EngineOptions, resolve_device, run
from xcrai.firstguess import FirstGuess
from xcrai.grid import Grid, Orientation, aligned, find_grid, orientation, resolve_padding
from xcrai.missing import missing_as_nan
from xcrai.model import CraiModel, Ensemble
from xcrai.numerics import choose_threads
from xcrai.observer import BlockObserver
from xcrai.options import InfillOptions
from xcrai.steady import check_steady_mask

logger = logging.getLogger("xcrai")

#: said in ``history`` by ``unreachable="poisson"``
UNREACHABLE_POISSON_NOTE = "holes beyond the network's reach filled by Laplace's equation"
#: values of the ``<var>_flag`` variable that ``return_output=True`` and ``flags=True`` add
FLAG_OBSERVED, FLAG_INFILLED, FLAG_UNREACHABLE = 1, 0, -1
FLAG_ATTRS = {
    "long_name": "coverage flag of the infilled field",
    "flag_values": np.array([FLAG_UNREACHABLE, FLAG_INFILLED, FLAG_OBSERVED], dtype=np.int8),
    "flag_meanings": "unreachable_hole infilled observed",
    "comment": "unreachable_hole: no window of the network saw valid data; the value there is "
    "CRAI's fill value (0 before denormalisation), or the solution of Laplace's equation from "
    f"the values around it where history says {UNREACHABLE_POISSON_NOTE!r}; NaN for a field "
    "without any valid point",
}
#: the flag of points that are never valid (the model's or the call's steady mask), left NaN
FLAG_STEADY = -2
#: the flag variable's attributes when a steady mask applies (only then: files infilled
#: without one keep the three flags above)
FLAG_ATTRS_STEADY = {
    **FLAG_ATTRS,
    "flag_values": np.array(
        [FLAG_STEADY, FLAG_UNREACHABLE, FLAG_INFILLED, FLAG_OBSERVED], dtype=np.int8
    ),
    "flag_meanings": "steady_mask unreachable_hole infilled observed",
    "comment": f"{FLAG_ATTRS['comment']}; steady_mask: a point that is never valid (no "
    "training field observed it, or the steady_mask given), left NaN",
}


#: said in ``history`` when the input is lazy (the share of holes is unknown at call time)
LAZY_NOTE = "fraction infilled not computed (lazy input)"
#: the name an unnamed DataArray takes in ``return_output=True``'s Dataset
UNNAMED = "infilled"
#: the dimension along which a model's several input variables are stacked for the engine
INPUTS_DIM = "__xcrai_input__"


class UnreachableWarning(UserWarning):
    """Holes that no window of the network reached: they hold CRAI's fill value (or a Laplace
    fill of the values around them, ``unreachable="poisson"``), not the network's infill."""


@dataclass(frozen=True)
class Plan:
    """What one infill call does, decided once before any data is touched."""

    model: CraiModel  # with concrete padding and time context
    grid: Grid
    # dims of the working array: (*extra, inputs, time, lat, lon), one input or several
    order: tuple[Hashable, ...]
    added_time: bool  # a length-1 time axis was added for time-less data
    orientation: Orientation  # into the model's training orientation, and back


def as_model(model: Any, time_context: Any = None) -> CraiModel:
    """``model``, or the model file it names (loaded for ``time_context``, which CRAI's
    recurrent networks are built for)."""
    if isinstance(model, CraiModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, time_context=time_context)
    raise TypeError(
        f"model: expected a path to a checkpoint or a CraiModel, got {type(model).__name__}"
    )


def as_members(model: Any, time_context: Any = None) -> CraiModel | Ensemble:
    """``model`` as one model, or as an Ensemble when it is one, a list of models (paths
    or CraiModels; each labelled by its CRAI label, else its file name), or the path of
    an xcrai ensemble file."""
    if isinstance(model, Ensemble):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_any(model, time_context=time_context)
    if isinstance(model, (list, tuple)):
        if not model:
            raise ValueError("model: expected a model or a non-empty list of models, got []")
        members = [as_model(m, time_context) for m in model]
        names = [str(m.config.provenance.get("label") or m.name) for m in members]
        if len(set(names)) != len(names):  # e.g. the same label in two files
            names = [f"{i}: {name}" for i, name in enumerate(names)]
        return Ensemble(tuple(members), tuple(names))
    return as_model(model, time_context)


def make_plan(
    da: xr.DataArray, model: Any, padding: str | None, time_context: Any, bounds: Any = None
) -> Plan:
    model = as_model(model)
    grid = find_grid(da)
    padding = resolve_padding(check_padding(padding or model.config.padding), grid)
    if time_context is None:
        time_context = model.config.time_context
    if time_context is None:
        raise ValueError(
            f"time_context: the model reads a window of P + F + 1 = {model.window} time "
            "steps of each input variable, and its checkpoint does not say how "
            "many are past and future; pass time_context=(P, F), e.g. (3, 1)"
        )
    time_context = check_time_context(time_context, model.window)
    if time_context != (0, 0) and grid.time is None:
        raise ValueError(
            f"time_context: {time_context} needs a time dimension, but none was found in dims "
            f"{tuple(da.dims)}"
        )
    model = model.with_options(padding=padding, time_context=time_context, bounds=bounds)
    warn_other_grid(model, da, grid)
    if INPUTS_DIM not in da.dims:
        warn_other_variable(model, da)
    turn = orientation(da, grid, model.config.grid, time_context != (0, 0))
    logger.info(
        "infilling %s with %s: padding %s, time context %s, grid %s x %s (%s x %s)",
        da.name or "data", model.name, padding, time_context, grid.lat, grid.lon,
        da.sizes[grid.lat], da.sizes[grid.lon],
    )  # fmt: skip
    if turn.order:
        logger.info(
            "reordering %s into the model's training orientation (and back afterwards)",
            ", ".join(map(repr, turn.order)),
        )
    spatial = (grid.lat, grid.lon)
    extra = tuple(d for d in da.dims if d not in (*spatial, grid.time, INPUTS_DIM))
    time = (grid.time,) if grid.time else ("__xcrai_time__",)
    return Plan(model, grid, (*extra, INPUTS_DIM, *time, *spatial), grid.time is None, turn)


def warn_other_grid(model: CraiModel, da: xr.DataArray, grid: Grid) -> None:
    """Warn when ``da``'s grid is not the one ``model`` was trained on (when known)."""
    trained = (model.config.grid or {}).get("shape")
    found = [da.sizes[grid.lat], da.sizes[grid.lon]]
    if trained and list(trained) != found:
        warnings.warn(
            f"model: {model.name} was trained on a {trained[0]}x{trained[1]} (lat x lon) grid; "
            f"the data ({grid.lat!r} x {grid.lon!r}) is {found[0]}x{found[1]}. A network "
            "applied to another resolution can give values far outside the data's range; "
            "regrid to the training grid, or use a model trained on this one",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def warn_other_variable(model: CraiModel, da: xr.DataArray) -> None:
    """Warn when ``da``'s name or units differ from the variable ``model`` was trained on
    (when the model records it), as scikit-learn warns of other feature names."""
    found = {"variable": da.name, "units": da.attrs.get("units")}
    trained = {"variable": model.config.variable, "units": model.config.units}
    differ = [
        f"{key} {trained[key]!r} (the data's: {found[key]!r})"
        for key in trained
        if trained[key] is not None and found[key] is not None
        and str(trained[key]).strip() != str(found[key]).strip()
    ]  # fmt: skip
    if differ:
        warnings.warn(
            f"model: {model.name} was trained on {' and '.join(differ)}. A network applied "
            "to another quantity, or to values in other units, gives meaningless values; "
            "convert the data, or use a model trained on this variable",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def valid_points(da: xr.DataArray, mask: Any) -> xr.DataArray:
    """Boolean DataArray like ``da``: True where the mask allows and the value is finite."""
    finite: xr.DataArray = xr.apply_ufunc(np.isfinite, da, dask="allowed", keep_attrs=False)
    if mask is None:
        return finite
    if isinstance(mask, dict):
        raise TypeError(
            "mask: a dict of masks by variable is for models of several input variables; "
            "give this model one DataArray (or array) of the data's shape"
        )
    if not isinstance(mask, xr.DataArray):
        if np.shape(mask) != da.shape:
            raise ValueError(
                f"mask: expected a DataArray broadcastable against the data (dims "
                f"{tuple(da.dims)}) or an array of shape {da.shape}; got shape {np.shape(mask)}"
            )
        mask = xr.DataArray(np.asarray(mask), dims=da.dims, coords=da.coords)
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.number):
        raise TypeError(f"mask: expected bool or 0/1 values, got dtype {mask.dtype}")
    unknown = set(mask.dims) - set(da.dims)
    wrong = {
        d: (mask.sizes[d], da.sizes[d])
        for d in mask.dims
        if d in da.dims and mask.sizes[d] != da.sizes[d]
    }
    if unknown or wrong:
        raise ValueError(
            f"mask: does not broadcast against the data: data dims {dict(da.sizes)}, mask dims "
            f"{dict(mask.sizes)} (unknown dims {sorted(map(str, unknown))}, size mismatches "
            f"{wrong}); drop or select the extra dimensions, e.g. mask.isel(time=0)"
        )
    mask = aligned(
        mask, da, "mask: its coordinates differ from the data's along a shared dimension (a mask "
        "is aligned by its labels); put it on the data's grid, e.g. "
        "mask.reindex_like(data, method='nearest')",
    )  # fmt: skip
    if mask.dtype != bool:
        if isinstance(mask.data, dsa.Array):  # checked when computed, block by block
            mask = mask.copy(data=dsa.map_blocks(_zero_one, mask.data, dtype=bool))
        else:
            mask = mask.copy(data=_zero_one(mask.values))
    return finite & mask.broadcast_like(da).transpose(*da.dims)


def _zero_one(mask: np.ndarray) -> np.ndarray:
    """``mask == 1``, or a ValueError when it holds values other than 0 and 1."""
    values = np.unique(mask)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"mask: expected bool or 0/1 values (1 = valid), found {values[:6]}")
    return mask == 1


def _block(
    fields: np.ndarray,
    valid: np.ndarray,
    *,
    model: CraiModel,
    halo: int,
    engine: EngineOptions,
    variable: Hashable = None,
    steady: np.ndarray | None = None,
    observer: BlockObserver | None = None,
) -> np.ndarray:
    """Infill one block shaped (*extra, inputs, time + 2 halo, lat, lon) (one input
    variable or several); returns (2, *extra, 1, time, lat, lon) holding the network
    output (one variable) and its coverage:
    0 where the network did not reach valid data, 1 where it did; then, for a model with a
    σ channel, the network's σ.

    Warns of nothing: a warning here would come once per dask block, from a worker, and
    point at this file. Unreachable holes and empty fields are counted from the flags
    and reported once per call (:func:`count_unreached`), or tallied here for an
    ``observer`` that asks (the command line's report, without a second pass); the
    ``observer`` also hears of each batch of fields done (progress bars).
    """
    extra = fields.shape[:-4]
    inputs, length, height, width = fields.shape[-4:]
    core = (halo, length - halo)
    flat = fields.reshape(-1, inputs, length, height, width)
    flat_valid = valid.reshape(-1, inputs, length, height, width)
    sigma = None
    if model.config.uncertainty:
        sigma = np.empty((len(flat), core[1] - core[0], height, width), dtype=np.float32)
    output, reach = run(
        model, flat, flat_valid, engine, core=core, sigma=sigma,
        report=None if observer is None else observer.fields_done,
    )  # fmt: skip
    # fields without any valid point (of any input variable) come out NaN
    core_valid = np.asarray(flat_valid[:, :, core[0] : core[1]].any(axis=1))
    empty = ~core_valid.any(axis=(-2, -1))
    output[empty] = np.nan
    reach[empty] = False
    if sigma is not None:
        sigma[empty] = np.nan
    if observer is not None and observer.tallies:
        unseen = ~reach & ~core_valid
        points = height * width
        if steady is not None:  # flagged steady, not unreachable
            unseen &= ~steady
            points -= int(steady.sum())
        holes = int(unseen.sum()) - int(empty.sum()) * points
        observer.tally(variable, holes, int(empty.sum()))
    shape = (*extra, 1, core[1] - core[0], height, width)
    layers = [output, reach.astype(np.float32)] + ([] if sigma is None else [sigma])
    return np.stack([layer.reshape(shape) for layer in layers])


@contextmanager
def field_bar(
    total: int, observer: BlockObserver, desc: str = "infilling", delay: float = 0
) -> Iterator[None]:
    """A progress bar (a widget in Jupyter where ipywidgets can draw it, else text) of the
    fields ``observer``'s blocks infill while the block runs; ``delay``: seconds before it
    shows (short calls show none)."""
    from xcrai.observer import progress_bar_class

    with progress_bar_class()(total=total, desc=desc, unit="field", delay=delay) as bar:
        with observer.listening(bar.update):
            yield


def _run(
    values: Any,
    valid: Any,
    plan: Plan,
    engine: EngineOptions,
    variable: Hashable,
    steady: np.ndarray | None = None,
    observer: BlockObserver | None = None,
) -> Any:
    """(2, ...) array of output and reach, NumPy or lazy dask like ``values``; ``steady``
    (lat, lon), in the working orientation, only keeps those points out of the tally;
    every block reports to ``observer``."""
    past, future = plan.model.config.time_context or (0, 0)
    if not isinstance(values, dsa.Array):
        return _block(values, np.asarray(valid), model=plan.model, halo=0, engine=engine,
                      variable=variable, steady=steady, observer=observer)  # fmt: skip
    # one key for the model: dask.distributed ships it to each worker once, not per task
    # (not name=: dask's map_blocks takes that as the result's name)
    kwargs = dict(model=dask.delayed(plan.model, pure=True), engine=engine, variable=variable,
                  steady=steady, observer=observer)  # fmt: skip
    halo = max(past, future)
    time_axis = values.ndim - 3
    whole = {values.ndim - 2: -1, values.ndim - 1: -1}
    whole[values.ndim - 4] = -1  # every input variable of a field in one block
    values = values.rechunk(whole)
    if values.shape[time_axis] <= halo:  # a series shorter than its windows: one block
        values = values.rechunk({time_axis: -1})
        halo = 0
    valid = dsa.asarray(valid).rechunk(values.chunks)
    user_chunks = values.chunks
    if halo:  # map_overlap would do this too, but the output's chunks must be known here
        time_chunks = dsa.overlap.ensure_minimum_chunksize(halo, user_chunks[time_axis])
        values = values.rechunk({time_axis: time_chunks})
        valid = valid.rechunk(values.chunks)
    logger.info(
        "lazy input: %d block(s) of %s time step(s), each with %d step(s) of time context "
        "on either side", values.npartitions, sorted(set(values.chunks[time_axis])), halo,
    )  # fmt: skip
    # the block trims its halo itself (the engine infills only the core steps), hence
    # trim=False, and a leading axis (output, reach) that map_overlap's trim would not know
    chunks = list(values.chunks)
    chunks[values.ndim - 4] = (1,)  # the output: one variable
    result = dsa.map_overlap(
        _block, values, valid, depth={time_axis: halo}, boundary={time_axis: "nearest"},
        trim=False, halo=halo, **kwargs, new_axis=0,
        chunks=((2 + plan.model.config.uncertainty,), *chunks),
        dtype=np.float32, meta=np.empty((0,) * (values.ndim + 1), dtype=np.float32),
    )  # fmt: skip
    # back to the input's time chunks (halos may have needed larger ones): zarr, for one,
    # takes only uniform chunks, and merging two chunkings would fragment them
    return result.rechunk({time_axis + 1: user_chunks[time_axis]})


def history_line(model: CraiModel, padding: str, fraction: float | None, name: Any) -> str:
    """The line ``history`` gains: xcrai's version, the model and its hash, padding, share
    (a target variable is predicted from the model's inputs at every point)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    share = LAZY_NOTE if fraction is None else fraction_note(fraction)
    verb = "infilled"
    if model.config.target is not None:
        verb, share = "predicted", f"from {', '.join(model.config.inputs or ())}"
    return (
        f"{stamp}: xcrai {__version__} {verb} {name or 'data'} with model {model.name} "
        f"(sha256 {model.sha256}), padding {padding}, {share}"
    )


def bounds_note(bounds: Any) -> str:
    """What the history line says of output bounds: the interval. The transform keeps every
    infilled value inside it; the network's output before the transform is a logit (both
    bounds) or a logarithm (one), not a value of the variable, so nothing there is counted."""
    return f"output bounds {describe_bounds(bounds)}"


def fraction_note(fraction: float) -> str:
    return f"{fraction:.2%} of points infilled"


def gridded_variables(ds: xr.Dataset) -> list[Hashable]:
    """Data variables of ``ds`` with latitude and longitude dimensions."""
    return [name for name in ds.data_vars if _has_grid(ds[name])]


def flag_name(name: Hashable) -> str:
    """The name of the flag variable of variable ``name``: ``<name>_flag``."""
    return f"{name}_flag"


def flag_variable(
    flag: xr.DataArray, name: Hashable, attrs: dict[str, Any], steady: bool = False
) -> xr.DataArray:
    """``flag`` as the CF flag variable of ``name`` (whose attrs are ``attrs``): named
    ``<name>_flag``, with ``flag_values``/``flag_meanings`` (``steady``: with
    ``FLAG_STEADY``'s too) and, when the variable has a ``standard_name``, the standard
    name ``"<standard_name> status_flag"``."""
    cf = {}
    if attrs.get("standard_name"):
        cf["standard_name"] = f"{attrs['standard_name']} status_flag"
    flag_attrs = FLAG_ATTRS_STEADY if steady else FLAG_ATTRS
    return flag.rename(flag_name(name)).assign_attrs({**cf, **flag_attrs})


def link_flag(attrs: dict[str, Any], name: Hashable, other: str = "flag") -> dict[str, Any]:
    """``attrs`` with ``<name>_flag`` (or ``<name>_<other>``) added to
    ``ancillary_variables`` (a blank-separated list in CF, kept when the variable already
    names others)."""
    linked = str(attrs.get("ancillary_variables", "")).split()
    if f"{name}_{other}" not in linked:
        linked.append(f"{name}_{other}")
    return {**attrs, "ancillary_variables": " ".join(linked)}


def sigma_variable(sigma: xr.DataArray, name: Hashable, attrs: dict[str, Any]) -> xr.DataArray:
    """``<name>_sigma``: the network's standard deviation of each infilled value, 0 where
    observed, with CF's ``standard_error`` modifier on the data's standard name."""
    sigma = sigma.rename(f"{name}_sigma")
    if "standard_name" in attrs:
        sigma.attrs = {**sigma.attrs, "standard_name": f"{attrs['standard_name']} standard_error"}
    return sigma


def members_of(model: CraiModel | Ensemble) -> list[CraiModel]:
    """The models an infill runs: the one model, or an ensemble's members."""
    return [model] if isinstance(model, CraiModel) else list(model.members)


def check_members(model: CraiModel | Ensemble, options: InfillOptions) -> None:
    """``members="mean"`` needs several models to average: refuse it for one."""
    members = members_of(model)
    if options.members == "mean" and len(members) < 2:
        raise ValueError(
            f"members: 'mean' averages the members of an ensemble, but {members[0].name} is "
            "one model; leave members at 'keep', or give an ensemble (its file, or several "
            "models)"
        )


def wants_sigma(model: CraiModel | Ensemble, options: InfillOptions) -> bool:
    """Whether the result holds ``<name>_sigma``: asked for (``sigma=True``: an error for a
    model without a σ channel), or with ``return_output`` from a model that has one."""
    members = members_of(model)
    # the mean of an ensemble's members has their spread for a σ
    has = all(m.config.uncertainty for m in members) or (
        isinstance(model, Ensemble) and options.members == "mean"
    )
    if options.sigma and not has:
        lacking = next(m for m in members if not m.config.uncertainty)
        if isinstance(model, Ensemble) or len(members) > 1:
            raise ValueError(
                f"sigma: {lacking.name} has no uncertainty output of its own, and members "
                f"{options.members!r} keeps each member's: pass members='mean' (xcrai "
                "infill --members mean) for the members' mean with their spread as sigma, "
                "or train members with fit(..., uncertainty=True)"
            )
        raise ValueError(
            f"sigma: {lacking.name} has no uncertainty output; train one with "
            "fit(..., uncertainty=True) (xcrai fit --uncertainty)"
        )
    wanted = options.sigma or (options.return_output and has)
    own = [m for m in members if m.config.uncertainty]
    if wanted and options.members == "mean" and 0 < len(own) < len(members):
        warnings.warn(
            f"sigma: only {len(own)} of the {len(members)} members have a sigma of their own; "
            "the mean's sigma is the members' spread alone",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return wanted


def count_unreached(flag: xr.DataArray, spatial: tuple[Hashable, Hashable]) -> tuple[Any, Any]:
    """Hole points beyond the network's reach, and fields with no valid point at all.

    Counted on the flags (-1 marks both), so they cost a reduction of the flags, not a
    warning per dask block.

    Parameters
    ----------
    flag : DataArray
        Flags as :func:`infill_dataset` writes them (1 observed, 0 infilled, -1 neither,
        -2 steady).
    spatial : (Hashable, Hashable)
        The latitude and longitude dimensions.

    Returns
    -------
    holes, empty : 0-d arrays
        Unreachable hole points outside empty fields, and empty fields; lazy (dask)
        when ``flag`` is.

    Examples
    --------
    >>> holes, empty = count_unreached(ds.tas_flag, ("lat", "lon"))  # doctest: +SKIP
    >>> int(holes), int(empty)  # doctest: +SKIP
    (10, 0)
    """
    per_field = (flag == FLAG_UNREACHABLE).sum(spatial)
    empty = (flag <= FLAG_UNREACHABLE).all(spatial)  # unreachable, or steady (-2)
    return per_field.where(~empty, 0).sum().data, empty.sum().data


def unreached_message(
    counts: dict[Hashable, tuple[int, int]], unreachable: str = "crai"
) -> str | None:
    """What :func:`count_unreached` found, one clause per variable; None when nothing.
    ``unreachable``: what those holes hold (:class:`~xcrai.options.InfillOptions`)."""
    held = {"poisson": "a Laplace fill of the values around them", "crai": "CRAI's fill value"}
    parts = []
    for name, (holes, empty) in counts.items():
        said = []
        if holes:
            said.append(
                f"{int(holes)} hole point(s) are beyond the network's reach (no window saw "
                f"valid data) and hold {held[unreachable]}"
            )
        if empty:
            said.append(f"{int(empty)} field(s) have no valid point at all and stay NaN")
        if said:
            parts.append(f"{name or 'data'}: {' and '.join(said)}")
    return "; ".join(parts) or None


def flagged_names(counts: dict[Hashable, tuple[int, int]]) -> str:
    """The flag variables of the variables with something to report, e.g. "'tas_flag'"."""
    return ", ".join(repr(flag_name(name)) for name, found in counts.items() if any(found))


def _warn_unreached(
    results: dict[Hashable, Infilled], hint: str, unreachable: str = "crai"
) -> None:
    """One UnreachableWarning for the whole call, at the user's line; for lazy results
    (the counts are unknown until computed) a log record instead."""
    lazy = [name for name, r in results.items() if isinstance(r.flag.data, dsa.Array)]
    if lazy:  # a warning when computed would come from a dask task, not the user's line
        flags = ", ".join(repr(flag_name(name)) for name in lazy)
        logger.info(
            "%s: lazy input, so holes beyond the network's reach are not counted; %s",
            ", ".join(map(str, lazy)), hint.format(flags=flags),
        )  # fmt: skip
    counts = {}
    for name, result in results.items():
        if name not in lazy:
            holes, empty = count_unreached(result.flag, result.spatial)
            counts[name] = (int(holes), int(empty))
    message = unreached_message(counts, unreachable)
    if message:
        warnings.warn(
            f"{message}; {hint.format(flags=flagged_names(counts))}",
            UnreachableWarning,
            stacklevel=user_stacklevel(),
        )


@dataclass(frozen=True)
class Infilled:
    """One variable infilled, before its attributes are assembled into a result."""

    data: xr.DataArray  # the infilled variable, attrs as the input's (or none: keep_attrs)
    output: xr.DataArray  # the raw network output
    flag: xr.DataArray  # 1 observed, 0 infilled, -1 unreachable, -2 steady (int8, no attrs)
    line: str  # the history line
    spatial: tuple[Hashable, Hashable]  # (lat, lon) dimension names
    steady: bool = False  # whether a steady mask applied (FLAG_STEADY among the flags)
    sigma: xr.DataArray | None = None  # the network's σ (models with uncertainty), 0 observed
    # the points to infill: not valid (data and mask) and not steady; from the inputs alone
    holes: xr.DataArray | None = None
    blanked: int | None = None  # observed values on steady points (NaN out); None when lazy


def infill_dataarray(
    da: xr.DataArray,
    model: Any,
    options: InfillOptions | None = None,
    *,
    mask: Any = None,
    steady_mask: Any = None,
) -> xr.DataArray | xr.Dataset:
    """Infill ``da``; see :meth:`xcrai.accessor.CraiDataArrayAccessor.infill`.

    Without ``return_output``, the DataArray carries its own ``history`` (no Dataset
    exists to hold a global one). With it, the Dataset holds ``<name>`` (the infilled
    data, ``ancillary_variables = "<name>_flag"``), ``<name>_output`` (the raw network
    output) and ``<name>_flag`` (CF flags), with ``history`` as its only global attribute
    (a DataArray does not know its file's global attributes). An unnamed DataArray is
    called ``infilled``.
    """
    options = _check_options(options)
    chosen = as_members(model, options.time_context)
    check_members(chosen, options)
    sigma = wants_sigma(chosen, options)
    if isinstance(da, xr.DataArray):
        warn_infilled_before(da)
        da = missing_as_nan(da, "data")  # undecoded fill values are holes, not data
    result = _infill_members(da, chosen, mask, options, steady_mask)
    name = da.name if da.name is not None else UNNAMED
    hint = (
        "they are flagged -1 in {flags}" if options.return_output
        else "return_output=True flags them -1 in {flags}"
    )  # fmt: skip
    _warn_unreached({name: result}, hint, options.unreachable)
    if not options.return_output and not sigma:
        return result.data.assign_attrs(add_history(result.data.attrs, result.line))
    attrs = dict(result.data.attrs)  # the variable's history becomes the Dataset's
    history = {"history": attrs.pop("history")} if "history" in attrs else {}
    parts = result_variables(result, name, attrs, output=options.return_output,
                             flags=options.return_output, sigma=sigma)  # fmt: skip
    return xr.Dataset(parts, attrs=add_history(history, result.line))


def result_variables(
    result: Infilled, name: Hashable, attrs: dict[str, Any], *, output: bool, flags: bool,
    sigma: bool,
) -> dict[Hashable, xr.DataArray]:  # fmt: skip
    """One infilled variable's part of a result, DataArray's or Dataset's alike: ``name``
    (the infilled data, with ``attrs`` and its flag and σ variables named in
    ``ancillary_variables``), and with ``output`` its raw network output
    ``<name>_output``, with ``flags`` its CF flags ``<name>_flag``, with ``sigma`` its σ
    ``<name>_sigma``."""
    parts: dict[Hashable, xr.DataArray] = {}
    linked = dict(attrs)
    if output:
        raw = result.output.rename(f"{name}_output")
        raw.attrs = {k: v for k, v in raw.attrs.items() if k != "history"}
        parts[raw.name] = raw
    if flags:
        linked = link_flag(linked, name)
        parts[flag_name(name)] = flag_variable(result.flag, name, attrs, result.steady)
    if sigma:
        assert result.sigma is not None  # wants_sigma: every member has a σ channel
        linked = link_flag(linked, name, "sigma")
        parts[f"{name}_sigma"] = sigma_variable(result.sigma, name, attrs)
    data = result.data.rename(name).copy(deep=False)
    data.attrs = linked
    return {name: data, **parts}


def _check_options(options: Any) -> InfillOptions:
    if options is None:
        return InfillOptions()
    if not isinstance(options, InfillOptions):
        raise TypeError(f"options: expected an InfillOptions, got {type(options).__name__}")
    return options


def first_guess_of(work: xr.DataArray, valid: xr.DataArray, plan: Plan) -> xr.DataArray:
    """The first guess of every field of ``work`` (in the working layout and orientation)
    from its ``valid`` points, as the model was trained with (:mod:`xcrai.firstguess`):
    lazy where ``work`` is, field by field (so chunking-invariant)."""
    guess = cast(FirstGuess, plan.model.config.first_guess)
    lat, lon = plan.grid.lat, plan.grid.lon
    if (work.sizes[lat], work.sizes[lon]) != guess.shape:
        raise ValueError(
            f"data: the model's first guess is on a {guess.shape[0]}x{guess.shape[1]} grid, "
            f"the data's {work.sizes[lat]}x{work.sizes[lon]}"
        )
    time = plan.grid.time
    months = None
    if not plan.added_time and time is not None and time in work.coords:
        months = calendar_months(work[time].values)
    if guess.monthly and months is None:
        guess.bases(None, 0)  # the error: a monthly climatology needs datetimes
    month = xr.DataArray(
        np.zeros(work.sizes[plan.order[-3]], np.int64) if months is None else months,
        dims=(plan.order[-3],),
    )

    def fields(values: np.ndarray, seen: np.ndarray, steps: np.ndarray) -> np.ndarray:
        shape = values.shape
        steps = np.broadcast_to(steps, shape[:-2]).reshape(-1)
        flat = guess.guess(
            values.reshape(-1, *shape[-2:]), seen.reshape(-1, *shape[-2:]),
            None if months is None else steps,
        )  # fmt: skip
        return flat.reshape(shape).astype(values.dtype)

    return xr.apply_ufunc(
        fields, work, valid, month, input_core_dims=[[lat, lon], [lat, lon], []],
        output_core_dims=[[lat, lon]], dask="parallelized", output_dtypes=[work.dtype],
    ).transpose(*work.dims)  # fmt: skip


def _infill(
    da: xr.DataArray,
    model: Any,
    mask: Any,
    options: InfillOptions,
    steady_mask: Any = None,
    sources: tuple[xr.DataArray, xr.DataArray] | None = None,
    observer: BlockObserver | None = None,
) -> Infilled:
    """The infilled variable (attrs as the input's, or none when ``keep_attrs`` is off),
    the raw output, the flags and the history line; the network's blocks report to
    ``observer`` (default: one of this call's own, for its progress bar).

    ``sources``, for a model of several input variables: those variables stacked along
    ``INPUTS_DIM`` (first, in the model's order) and where each is valid; ``da`` is then
    the output variable (all NaN for a target the data does not hold), and ``mask``
    applies to it alone."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"data: expected an xarray.DataArray, got {type(da).__name__}")
    engine = EngineOptions(**options.engine())
    device = resolve_device(engine.device)  # options are checked; whether it exists, here
    # CPU threads free now (results do not depend on their number; speed under load does)
    engine = replace(engine, threads=choose_threads(engine.threads, samples=1))
    padding, time_context = options.padding, options.time_context
    if da.dtype == bool or np.issubdtype(da.dtype, np.integer):
        da = da.astype(np.float32)
    elif not np.issubdtype(da.dtype, np.floating):
        raise TypeError(f"data: expected a floating-point or integer array, got dtype {da.dtype}")
    model = as_model(model, time_context)
    if (model.config.inputs is not None) != (sources is not None):
        raise ValueError(
            f"data: {model.name} reads the variables {list(model.config.variables)}; infill "
            "a Dataset holding them (ds.crai.infill)"
            if sources is None
            else f"model: {model.name} reads one variable; got several"
        )
    plan = make_plan(
        da if sources is None else sources[0], model, padding, time_context, options.bounds
    )
    logger.info(
        "device %s, precision %s, %s CPU thread(s)%s", device, engine.precision,
        engine.threads, ", compiled" if engine.compile else "",
    )  # fmt: skip
    valid = valid_points(da, mask)
    steady = steady_points(da, plan, steady_mask)
    seen = valid if steady is None else (valid & ~steady).transpose(*da.dims)
    blanked = None  # observed values the steady mask sets to NaN (eager input: counted)
    if steady is not None and not isinstance(valid.data, dsa.Array):
        blanked = int((valid & steady).sum())
    # one input variable, or several: an inputs axis either way
    work, work_valid = (
        (da.expand_dims(INPUTS_DIM), seen.expand_dims(INPUTS_DIM)) if sources is None
        else sources
    )  # fmt: skip
    if plan.added_time:
        work, work_valid = (
            work.expand_dims("__xcrai_time__"),
            work_valid.expand_dims("__xcrai_time__"),
        )
    # Hand-written rather than xr.apply_ufunc(dask="allowed"): apply_ufunc would do only the
    # transpose below; the added time axis, the orientation (an isel on coordinates, both
    # ways), the split of _run's stacked (output, reach) and the attrs stay ours either way
    work, work_valid = work.transpose(*plan.order), work_valid.transpose(*plan.order)
    work, work_valid = plan.orientation.apply(work), plan.orientation.apply(work_valid)
    guess = None
    if plan.model.config.first_guess is not None:  # the network corrects a first guess
        guess = first_guess_of(work, work_valid, plan)
        work = work - guess
    eager = not isinstance(work.data, dsa.Array)  # lazy input runs later, in dask's threads
    fields = work.size // (work.sizes[plan.grid.lat] * work.sizes[plan.grid.lon])
    fields //= work.sizes[INPUTS_DIM]
    observer = BlockObserver() if observer is None else observer
    bar = field_bar(fields, observer, f"infilling {da.name or ''}".strip(), delay=1)
    with bar if eager and options.progress else nullcontext():
        work_steady = None if steady is None else plan.orientation.apply(steady).values
        result = _run(work.data, work_valid.data, plan, engine, da.name, work_steady, observer)
    work = work.isel({INPUTS_DIM: [0]})  # one output variable

    def back(data: Any) -> xr.DataArray:
        """A layer of the result, in ``da``'s layout."""
        layer = work.copy(data=data).isel({INPUTS_DIM: 0})
        layer = plan.orientation.undo(layer)
        if plan.added_time:
            layer = layer.isel(__xcrai_time__=0)
        return layer.transpose(*da.dims)

    if guess is None:
        raw = result[0]
    else:  # the guess plus the share of the network's correction the model keeps
        weight = cast(FirstGuess, plan.model.config.first_guess).weight
        raw = result[0] + guess.data if weight == 1 else guess.data + weight * result[0]
    output = back(raw.astype(da.dtype))
    reach = back(result[1] > 0)
    attrs = dict(da.attrs) if keep_attrs() else {}
    infilled = da.where(seen, output)
    if steady is not None:  # never valid: NaN, whatever the input held there
        infilled = infilled.where(~steady).transpose(*da.dims)
    holes = ~valid if steady is None else (~valid & ~steady).transpose(*da.dims)
    if options.unreachable == "poisson":
        infilled = fill_unreached(infilled, holes & ~reach, plan)
    infilled.attrs = attrs
    infilled.encoding, stored_as = float_encoding(da.encoding, da.name)
    infilled.name = da.name
    lazy = isinstance(holes.data, dsa.Array)
    fraction = None if lazy else float(holes.values.mean())
    line = history_line(plan.model, plan.model.config.padding, fraction, da.name)
    if plan.model.config.bounds is not None:
        line += f", {bounds_note(plan.model.config.bounds)}"
    if plan.model.config.first_guess is not None:
        line += f", correcting a first guess ({plan.model.config.first_guess.describe()})"
    if options.unreachable == "poisson":
        line += f", {UNREACHABLE_POISSON_NOTE}"
    line = line if stored_as is None else f"{line}, {stored_as}"
    flag = xr.where(valid, FLAG_OBSERVED, xr.where(reach, FLAG_INFILLED, FLAG_UNREACHABLE))
    if steady is not None:
        flag = flag.where(~steady, FLAG_STEADY).transpose(*da.dims)
    flag = flag.astype(np.int8)
    flag.attrs, flag.encoding = {}, {}
    output.attrs = {**attrs, "long_name": "raw network output"}
    output.encoding = dict(infilled.encoding)  # the raw output leaves the packing's range too
    output.name = da.name
    sigma = None
    if plan.model.config.uncertainty:  # 0 where observed, NaN where never valid
        sigma = back(result[2].astype(da.dtype)).where(~seen, 0)
        if steady is not None:
            sigma = sigma.where(~steady).transpose(*da.dims)
        sigma.attrs = {
            "long_name": "standard deviation of the infilled value (the network's estimate)",
            **({"units": attrs["units"]} if "units" in attrs else {}),
        }
        sigma.encoding = dict(infilled.encoding)
    spatial = (plan.grid.lat, plan.grid.lon)
    return Infilled(
        infilled, output, flag, line, spatial, steady is not None, sigma, holes, blanked
    )


def fill_unreached(infilled: xr.DataArray, unreached: xr.DataArray, plan: Plan) -> xr.DataArray:
    """``infilled`` with the ``unreached`` holes (beyond the network's reach) filled by
    Laplace's equation from the values around them, observed and infilled, in the
    input's chunks."""
    filled = laplace_fill(infilled, unreached, plan.grid)
    if isinstance(infilled.data, dsa.Array):  # back to the input's chunks
        filled = filled.chunk(infilled.chunksizes)
    return filled


#: the dimension of an ensemble's members, with the auxiliary coordinate ``member_label``
MEMBER_DIM = "member"


def _infill_members(
    data: xr.DataArray | xr.Dataset,
    model: CraiModel | Ensemble,
    mask: Any,
    options: InfillOptions,
    steady_mask: Any,
    name: Hashable = None,
    observer: BlockObserver | None = None,
) -> Infilled:
    """Infill ``data`` (a DataArray, or variable ``name`` of a Dataset) with a model, or
    with each member of an ensemble, stacked along ``member`` (one pass over the data per
    member; lazy input stays lazy), or reduced to their mean (``members="mean"``); the
    blocks report to ``observer``."""
    members = members_of(model)
    results = []
    for member in members:
        if isinstance(data, xr.DataArray):
            results.append(_infill(data, member, mask, options, steady_mask,
                                   observer=observer))  # fmt: skip
        elif member.config.inputs is None:
            results.append(_infill(data[name], member, mask, options, steady_mask,
                                   observer=observer))  # fmt: skip
        else:
            da, sources, output_mask = stack_inputs(data, member, mask)
            results.append(_infill(da, member, output_mask, options, steady_mask, sources,
                                   observer))  # fmt: skip
    if results[0].blanked:  # documented, but a coarse land mask would delete data unseen
        warnings.warn(
            f"steady_mask: {results[0].blanked} observed value(s) of "
            f"{results[0].data.name or 'the data'} lie on steady points (never valid for the "
            "model) and come back NaN",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if isinstance(model, CraiModel):
        return results[0]
    coords = {
        MEMBER_DIM: (MEMBER_DIM, np.arange(len(members)), {"standard_name": "realization"}),
        "member_label": (MEMBER_DIM, list(model.labels), {"long_name": "model of the member"}),
    }

    def stack(parts: list[xr.DataArray]) -> xr.DataArray:
        stacked = xr.concat(parts, dim=MEMBER_DIM, coords="minimal", compat="override")
        return stacked.assign_coords(coords).assign_attrs(parts[0].attrs)

    first = results[0]
    sigmas = [r.sigma for r in results]
    line = "\n".join(
        f"{r.line} (member {label})" for label, r in zip(model.labels, results, strict=True)
    )
    if options.members == "mean":
        return _mean_of_members(
            results, stack([r.data for r in results]), stack([r.output for r in results]),
            None if any(s is None for s in sigmas) else stack(cast(list[xr.DataArray], sigmas)),
            f"{line}\n(the mean of the {len(results)} members above)",
        )  # fmt: skip
    return Infilled(
        stack([r.data for r in results]), stack([r.output for r in results]),
        stack([r.flag for r in results]), line, first.spatial, first.steady,
        None if any(s is None for s in sigmas) else stack(cast(list[xr.DataArray], sigmas)),
        first.holes,
    )  # fmt: skip


def _mean_of_members(
    results: list[Infilled], data: xr.DataArray, output: xr.DataArray,
    sigma: xr.DataArray | None, line: str,
) -> Infilled:  # fmt: skip
    """An ensemble's members reduced to their mean, with a σ that holds their spread and
    (for members with a σ channel) their own: ``sqrt(mean(σ_i²) + var(x_i))``. Observed
    points keep their values bitwise; the flag is the lowest of the members' (an
    unreachable hole in any member is flagged -1). Members without a σ channel give no σ
    (NaN) at unreachable holes, where none holds an infill of its own (CRAI's fill value,
    on which they agree, or a Laplace fill of the infill around it), so their spread
    measures nothing there; σ channels learn the error of what the network gives there."""
    first = results[0]
    flag = xr.concat([r.flag for r in results], dim=MEMBER_DIM).min(MEMBER_DIM)
    observed = flag == FLAG_OBSERVED
    mean = data.mean(MEMBER_DIM).astype(first.data.dtype)
    variance = data.var(MEMBER_DIM)
    if sigma is not None:
        variance = variance + (sigma**2).mean(MEMBER_DIM)
    spread = np.sqrt(variance).astype(first.data.dtype).where(~observed, 0)
    spread = spread.where(data.notnull().all(MEMBER_DIM))  # NaN where the values are
    if sigma is None:  # beyond the reach, no member infilled: no σ there
        spread = spread.where(flag != FLAG_UNREACHABLE)
    spread.attrs = {
        "long_name": "standard deviation of the infilled value (the members' spread and "
        "their own sigma)" if sigma is not None else
        "standard deviation of the infilled value (the members' spread)",
        **({"units": first.data.attrs["units"]} if "units" in first.data.attrs else {}),
    }  # fmt: skip
    spread.encoding = dict(first.data.encoding)
    values = first.data.where(observed, mean)
    values.attrs, values.encoding = dict(first.data.attrs), dict(first.data.encoding)
    raw = output.mean(MEMBER_DIM).astype(first.output.dtype)
    raw.attrs, raw.encoding = dict(first.output.attrs), dict(first.output.encoding)
    return Infilled(values, raw, flag.astype(np.int8), line, first.spatial, first.steady,
                    spread, first.holes)  # fmt: skip


def steady_points(da: xr.DataArray, plan: Plan, steady_mask: Any) -> xr.DataArray | None:
    """The points infill leaves NaN, as a bool (lat, lon) DataArray in ``da``'s order:
    ``steady_mask`` when given (it replaces the model's), else the model's steady mask
    turned from its training orientation into the data's; None when neither exists."""
    spatial = (plan.grid.lat, plan.grid.lon)
    if steady_mask is not None:
        return check_steady_mask(steady_mask, da, plan.grid)
    trained = plan.model.config.steady_mask
    if trained is None:
        return None
    found = (da.sizes[spatial[0]], da.sizes[spatial[1]])
    if trained.shape != found:
        raise ValueError(
            f"steady_mask: {plan.model.name} leaves {int(trained.sum())} never-valid point(s) "
            f"of its {trained.shape[0]}x{trained.shape[1]} (lat x lon) training grid NaN, but "
            f"the data is {found[0]}x{found[1]}; regrid the data to the training grid, or "
            "pass steady_mask= on the data's grid (all False to leave none NaN)"
        )
    coords = {d: da[d] for d in spatial if d in da.coords}
    frame = xr.DataArray(np.zeros(found, bool), dims=spatial, coords=coords)
    oriented = plan.orientation.apply(frame)  # the model's orientation: its mask fits here
    return plan.orientation.undo(oriented.copy(data=trained))


def choose_variables(ds: xr.Dataset, model: CraiModel, variables: Any) -> list[Hashable]:
    """The variables ``infill_dataset`` infills: ``variables``, checked; by default the
    model's variable when the Dataset has it, else every variable with lat and lon (for
    a model of several inputs, its output variable)."""
    if model.config.inputs is not None:
        output = model.config.output_variable
        chosen = [variables] if isinstance(variables, str) else variables
        if chosen is not None and list(chosen) != [output]:
            raise ValueError(
                f"variables: {model.name} reads {list(model.config.inputs)} and infills "
                f"{output!r} alone; got {chosen!r}"
            )
        return [output]
    if variables is None:
        if model.config.variable is not None and model.config.variable in ds.data_vars:
            logger.info("infilling %r, the variable the model was trained on",
                        model.config.variable)  # fmt: skip
            return [model.config.variable]
        variables = gridded_variables(ds)
        if not variables:
            raise ValueError(
                f"variables: no data variable of the dataset has latitude and longitude "
                f"dimensions (variables: {list(ds.data_vars)})"
            )
    elif isinstance(variables, str):
        variables = [variables]
    variables = list(dict.fromkeys(variables))  # each once, as the command line's --var
    if not variables:
        raise ValueError(
            f"variables: an empty list infills nothing; name some of {list(ds.data_vars)}, "
            "or leave it out for the default"
        )
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"variables: {missing} not in the dataset; it has {list(ds.data_vars)}")
    return variables


def stack_inputs(
    ds: xr.Dataset, model: CraiModel, mask: Any
) -> tuple[xr.DataArray, tuple[xr.DataArray, xr.DataArray], Any]:
    """For a model of several input variables: its output variable (all NaN when it is a
    target that ``ds`` lacks), its inputs stacked along ``INPUTS_DIM`` with where each is
    valid, and the output variable's mask.

    ``mask`` is one mask for every variable, or a dict of masks by variable name.
    """
    config = model.config
    inputs = list(config.inputs or ())
    missing = [v for v in inputs if v not in ds.data_vars]
    if missing:
        raise ValueError(
            f"data: {model.name} reads the variables {inputs}; the dataset lacks {missing} "
            f"(it has {list(ds.data_vars)})"
        )
    if isinstance(mask, dict):
        unknown = sorted(map(str, set(mask) - set(config.variables)))
        if unknown:
            raise ValueError(
                f"mask: keys {unknown} are not variables of {model.name} ({list(config.variables)})"
            )
        masks = mask
    else:
        masks = dict.fromkeys(config.variables, mask)
    arrays = []
    first = ds[inputs[0]]
    for name in inputs:
        da = ds[name]
        if da.dims != first.dims or da.shape != first.shape:
            raise ValueError(
                f"data: the input variables must share their dimensions; {inputs[0]!r} is "
                f"{dict(first.sizes)}, {name!r} is {dict(da.sizes)}"
            )
        if da.dtype == bool or np.issubdtype(da.dtype, np.integer):
            da = da.astype(np.float32)
        elif not np.issubdtype(da.dtype, np.floating):
            raise TypeError(f"data: {name!r} has dtype {da.dtype}; expected floating point")
        arrays.append(da)
    try:
        xr.align(*arrays, join="exact")
    except ValueError:
        raise ValueError(
            f"data: the input variables {inputs} have different coordinates; put them on "
            "one grid and time axis first (e.g. xr.align, or regridding)"
        ) from None
    valid = [valid_points(da, masks.get(name)) for name, da in zip(inputs, arrays, strict=True)]
    stack = {"dim": INPUTS_DIM, "coords": "minimal", "compat": "override", "join": "override"}
    stacked = xr.concat([da.drop_attrs() for da in arrays], **stack)  # type: ignore[call-overload]
    stacked_valid = xr.concat(valid, **stack)  # type: ignore[call-overload]
    name = str(config.output_variable)
    if name in ds.data_vars:
        output = ds[name]
    else:  # a target the data does not hold: predicted everywhere
        output = first.where(False).astype(np.float32).rename(name).drop_attrs()
    return output, (stacked, stacked_valid), masks.get(name)


def infill_dataset(
    ds: xr.Dataset,
    model: Any,
    options: InfillOptions | None = None,
    *,
    variables: str | list[str] | None = None,
    mask: Any = None,
    steady_mask: Any = None,
    flags: bool = False,
) -> xr.Dataset:
    """Infill variables of ``ds`` with ``model`` as ``options`` say.

    See :meth:`xcrai.accessor.CraiDatasetAccessor.infill`, which builds ``options``.

    Parameters
    ----------
    ds : Dataset
    model : str, path or CraiModel
    options : InfillOptions, optional
        Default ``InfillOptions()``. With ``return_output``, each infilled variable
        ``name`` is joined by ``name_output`` (the raw network output) and ``name_flag``.
    variables : str or list of str, optional
        Default: the model's variable when ``ds`` has it, else every data variable with
        latitude and longitude dimensions.
    mask : DataArray or array, optional
        1 (or True) where valid; broadcast against each variable. A DataArray is
        aligned by its labels (latitude may run the other way, longitude be rolled).
    steady_mask : DataArray, optional
        (lat, lon), True where a point is never valid; replaces the model's steady mask.
        Aligned by its labels, as ``mask`` is.
    flags : bool, default False
        Add ``<var>_flag`` for each infilled variable (1 observed, 0 infilled, -1 hole
        beyond the network's reach), a CF flag variable named in the variable's
        ``ancillary_variables`` (``return_output`` implies it).

    Returns
    -------
    Dataset
        A copy with the variables infilled (and flagged); the global ``history`` gains a
        line per variable, and the variables' own attrs gain none.

    Examples
    --------
    >>> out = infill_dataset(ds, "20crtasgn72.pth", flags=True)  # doctest: +SKIP
    >>> out.tas.attrs["ancillary_variables"]  # doctest: +SKIP
    'tas_flag'
    """
    out, results = infill_variables(ds, model, options, variables=variables, mask=mask,
                                    steady_mask=steady_mask, flags=flags)  # fmt: skip
    flagged = flags or _check_options(options).return_output
    hint = (
        "they are flagged -1 in {flags}"
        if flagged
        else "return_output=True flags them -1 in {flags}"
    )
    _warn_unreached(results, hint, _check_options(options).unreachable)
    return out


def infill_variables(
    ds: xr.Dataset,
    model: Any,
    options: InfillOptions | None = None,
    *,
    variables: Any = None,
    mask: Any = None,
    steady_mask: Any = None,
    flags: bool = False,
    observer: BlockObserver | None = None,
) -> tuple[xr.Dataset, dict[Hashable, Infilled]]:
    """:func:`infill_dataset` without its UnreachableWarning, for callers that report
    unreachable holes themselves: ``xcrai infill`` counts them in the same
    ``dask.compute`` that writes its file (``observer``'s tally).

    Parameters
    ----------
    ds, model, options, variables, mask, steady_mask, flags
        As for :func:`infill_dataset`.
    observer : BlockObserver, optional
        What every block of the network reports to, as it runs (fields done, and, where
        it asks, unreachable holes).

    Returns
    -------
    Dataset
        What :func:`infill_dataset` returns.
    dict
        Each infilled variable's :class:`Infilled` (its flags, lazy for lazy input, and
        its lat/lon dimensions, for :func:`count_unreached`).

    Examples
    --------
    >>> out, infilled = infill_variables(ds, model)  # doctest: +SKIP
    >>> counts = count_unreached(infilled["tas"].flag, infilled["tas"].spatial)  # doctest: +SKIP
    >>> dask.compute(out.to_netcdf(path, compute=False), counts)  # doctest: +SKIP
    """
    options = _check_options(options)
    if not isinstance(flags, bool):
        raise TypeError(f"flags: expected True or False, got {flags!r}")
    flags = flags or options.return_output
    chosen = as_members(model, options.time_context)
    check_members(chosen, options)
    first = chosen if isinstance(chosen, CraiModel) else chosen.members[0]
    variables = choose_variables(ds, first, variables)
    sigma = wants_sigma(chosen, options)
    keep = keep_attrs()
    out = ds.copy()
    source = readable(ds, [*variables, *(first.config.inputs or ())])
    results = {}
    for name in variables:
        result = _infill_members(source, chosen, mask, options, steady_mask, name, observer)
        results[name] = result
        if options.return_output:
            warn_replacing(ds, f"{name}_output", "the raw output")
        if flags and flag_name(name) in ds.variables and not is_xcrai_flag(ds[flag_name(name)]):
            warn_replacing(ds, flag_name(name), "the flags")
        out.update(result_variables(result, name, result.data.attrs, flags=flags, sigma=sigma,
                                    output=options.return_output))  # fmt: skip
    attrs = dict(ds.attrs) if keep else {}
    for result in results.values():
        attrs = add_history(attrs, result.line)
    out.attrs = attrs
    return out, results


def is_xcrai_flag(flag: xr.DataArray) -> bool:
    """Whether ``flag`` is a flag variable that xcrai wrote (:func:`flag_variable`)."""
    meanings = flag.attrs.get("flag_meanings")
    return meanings in (FLAG_ATTRS["flag_meanings"], FLAG_ATTRS_STEADY["flag_meanings"])


def readable(ds: xr.Dataset, names: list[Hashable]) -> xr.Dataset:
    """``ds`` with the variables ``names`` as infill reads them: undecoded fill values
    NaN (:func:`xcrai.missing.missing_as_nan`), and the points that xcrai's flags of an
    earlier infill (``<name>_flag``) mark infilled or unreachable holes again, so that
    they are infilled afresh from the observations and flagged as infilled again (one
    UserWarning each)."""
    decoded = {}
    for name in dict.fromkeys(names):
        if name not in ds.data_vars:
            continue  # a target the data lacks
        da = missing_as_nan(ds[name], f"data {str(name)!r}")
        if flag_name(name) in ds.variables and is_xcrai_flag(ds[flag_name(name)]):
            flag = ds[flag_name(name)]
            again = flag.isin([FLAG_INFILLED, FLAG_UNREACHABLE])
            eager = not isinstance(again.data, dsa.Array)
            count = f"{int(again.sum())} point(s)" if eager else "the points"
            warnings.warn(
                f"data: {str(name)!r} was infilled before ({flag_name(name)} holds xcrai's "
                f"flags); {count} it flags infilled or unreachable are holes again, infilled "
                "afresh from the observed points",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            da = da.where(~again.broadcast_like(da).transpose(*da.dims))
            da.attrs, da.encoding = dict(ds[name].attrs), dict(ds[name].encoding)
        decoded[name] = da
    return ds.assign(decoded)


def warn_replacing(ds: xr.Dataset, name: str, what: str) -> None:
    """A UserWarning when ``ds`` already holds ``name``, which this call replaces."""
    if name in ds.variables:
        warnings.warn(
            f"{name}: the dataset already holds a variable {name!r}; it is replaced by "
            f"{what} of this call",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def warn_infilled_before(da: xr.DataArray) -> None:
    """A UserWarning when a DataArray was infilled by xcrai (its history says so, or it
    names its flag variable in ``ancillary_variables``): its infilled points will be taken
    for observations (its flags are not part of a DataArray)."""
    name = da.name if da.name is not None else UNNAMED
    linked = flag_name(name) in str(da.attrs.get("ancillary_variables", "")).split()
    if linked or f"infilled {name} with" in str(da.attrs.get("history", "")):
        warnings.warn(
            f"data: {str(name)!r} was infilled by xcrai before (it names {flag_name(name)}, "
            "or its history says so); its "
            "infilled points are taken for observations; infill the Dataset holding "
            f"{flag_name(name)} (ds.crai.infill) to infill them afresh",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _has_grid(da: xr.DataArray) -> bool:
    try:
        find_grid(da)
    except ValueError:
        return False
    return True
