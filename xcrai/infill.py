"""Infilling xarray objects: grid, masks, dask blocks, and the assembled result."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from xcrai import __version__
from xcrai.callsite import user_stacklevel
from xcrai.checkpoint import load_model
from xcrai.encoding import float_encoding
from xcrai.engine import predict, resolve_device
from xcrai.grid import Grid, Orientation, find_grid, orientation, resolve_padding
from xcrai.model import CraiModel, check_padding, check_time_context
from xcrai.numerics import choose_threads
from xcrai.options import InfillOptions

#: values of the ``mask`` variable that ``return_output=True`` adds
FLAG_OBSERVED, FLAG_INFILLED, FLAG_UNREACHABLE = 1, 0, -1
FLAG_ATTRS = {
    "long_name": "coverage flag of the infilled field",
    "flag_values": np.array([FLAG_UNREACHABLE, FLAG_INFILLED, FLAG_OBSERVED], dtype=np.int8),
    "flag_meanings": "unreachable_hole infilled observed",
    "comment": "unreachable_hole: no window of the network saw valid data; the value there is "
    "CRAI's fill value (0 before denormalisation), or NaN for a field without any valid point",
}


#: said in ``history`` when the input is lazy (the share of holes is unknown at call time)
LAZY_NOTE = "fraction infilled not computed (lazy input)"


class UnreachableWarning(UserWarning):
    """Holes that no window of the network reached; they hold CRAI's fill value."""


@dataclass(frozen=True)
class Plan:
    """What one infill call does, decided once before any data is touched."""

    model: CraiModel  # with concrete padding and time context
    grid: Grid
    order: tuple[str, ...]  # dims of the working array: (*extra, time, lat, lon)
    added_time: bool  # a length-1 time axis was added for time-less data
    orientation: Orientation  # into the model's training orientation, and back


def as_model(model: Any) -> CraiModel:
    if isinstance(model, CraiModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise TypeError(
        f"model: expected a path to a checkpoint or a CraiModel, got {type(model).__name__}"
    )


def make_plan(da: xr.DataArray, model: Any, padding: str | None, time_context: Any) -> Plan:
    model = as_model(model)
    grid = find_grid(da)
    padding = resolve_padding(check_padding(padding or model.config.padding), grid)
    if time_context is None:
        time_context = model.config.time_context
    if time_context is None:
        raise ValueError(
            f"time_context: the model takes {model.in_channels} input channels (a window of "
            f"P + F + 1 = {model.in_channels} time steps), and its checkpoint does not say how "
            "many are past and future; pass time_context=(P, F), e.g. (3, 1)"
        )
    time_context = check_time_context(time_context, model.in_channels)
    if time_context != (0, 0) and grid.time is None:
        raise ValueError(
            f"time_context: {time_context} needs a time dimension, but none was found in dims "
            f"{tuple(da.dims)}"
        )
    model = model.with_options(padding=padding, time_context=time_context)
    warn_other_grid(model, da, grid)
    turn = orientation(da, grid, model.config.grid, time_context != (0, 0))
    spatial = (grid.lat, grid.lon)
    extra = tuple(d for d in da.dims if d not in (*spatial, grid.time))
    time = (grid.time,) if grid.time else ("__xcrai_time__",)
    return Plan(model, grid, (*extra, *time, *spatial), grid.time is None, turn)


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


def valid_points(da: xr.DataArray, mask: Any) -> xr.DataArray:
    """Boolean DataArray like ``da``: True where the mask allows and the value is finite."""
    finite = np.isfinite(da)
    if mask is None:
        return finite
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
    try:
        mask, _ = xr.align(mask, da, join="exact")
    except ValueError:
        raise ValueError(
            "mask: its coordinates differ from the data's along a shared dimension; "
            "give the mask the data's coordinates (mask.assign_coords(...))"
        ) from None
    if mask.dtype != bool:
        if isinstance(mask.data, dsa.Array):  # checked when computed, block by block
            mask = mask.copy(data=mask.data.map_blocks(_zero_one, dtype=bool))
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
    engine: dict[str, Any],
) -> np.ndarray:
    """Infill one block shaped (*extra, time + 2 halo, lat, lon); returns (2, *extra, time, ...)
    holding the network output and where it reached valid data."""
    *extra, length, height, width = fields.shape
    core = (halo, length - halo)
    flat = fields.reshape(-1, length, height, width)
    flat_valid = valid.reshape(-1, length, height, width)
    output, reach = predict(model, flat, flat_valid, core=core, **engine)
    core_valid = flat_valid[:, core[0] : core[1]]
    empty = ~core_valid.any(axis=(-2, -1))
    output[empty] = np.nan
    reach[empty] = False
    unreachable = int((~reach & ~core_valid & ~empty[..., None, None]).sum())
    if unreachable:
        warnings.warn(
            f"{unreachable} hole point(s) are beyond the network's reach (no window saw valid "
            "data); they hold CRAI's fill value and are flagged -1 in "
            "return_output=True's 'mask'",
            UnreachableWarning,
            stacklevel=2,
        )
    if empty.any():
        warnings.warn(
            f"{int(empty.sum())} field(s) have no valid point at all; they stay NaN",
            UnreachableWarning,
            stacklevel=2,
        )
    shape = (*extra, core[1] - core[0], height, width)
    return np.stack([output.reshape(shape), reach.reshape(shape).astype(np.float32)])


def _run(values: Any, valid: Any, plan: Plan, engine: dict[str, Any]) -> Any:
    """(2, ...) array of output and reach, NumPy or lazy dask like ``values``."""
    past, future = plan.model.config.time_context or (0, 0)
    if not isinstance(values, dsa.Array):
        return _block(values, np.asarray(valid), model=plan.model, halo=0, engine=engine)
    # one key for the model: dask.distributed ships it to each worker once, not per task
    kwargs = dict(model=dask.delayed(plan.model, pure=True), engine=engine)
    halo = max(past, future)
    time_axis = values.ndim - 3
    values = values.rechunk({values.ndim - 2: -1, values.ndim - 1: -1})
    if values.shape[time_axis] <= halo:  # a series shorter than its windows: one block
        values = values.rechunk({time_axis: -1})
        halo = 0
    valid = dsa.asarray(valid).rechunk(values.chunks)
    chunks = user_chunks = values.chunks
    if halo:
        time_chunks = dsa.overlap.ensure_minimum_chunksize(halo, chunks[time_axis])
        values = values.rechunk({time_axis: time_chunks})
        valid = valid.rechunk(values.chunks)
        chunks = values.chunks
        depth = {time_axis: halo}
        boundary = {time_axis: "nearest"}
        values = dsa.overlap.overlap(values, depth=depth, boundary=boundary)
        valid = dsa.overlap.overlap(valid, depth=depth, boundary=boundary)
    result = dsa.map_blocks(
        _block, values, valid, halo=halo, **kwargs,
        new_axis=0, chunks=((2,), *chunks), dtype=np.float32,
        meta=np.empty((0,) * (values.ndim + 1), dtype=np.float32),
    )  # fmt: skip
    # back to the input's time chunks (halos may have needed larger ones): zarr, for one,
    # takes only uniform chunks, and merging two chunkings would fragment them
    return result.rechunk({time_axis + 1: user_chunks[time_axis]})


def history_line(model: CraiModel, padding: str, fraction: float | None, name: Any) -> str:
    """The line ``history`` gains: xcrai's version, the model and its hash, padding, share."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    share = LAZY_NOTE if fraction is None else fraction_note(fraction)
    return (
        f"{stamp}: xcrai {__version__} infilled {name or 'data'} with model {model.name} "
        f"(sha256 {model.sha256}), padding {padding}, {share}"
    )


def fraction_note(fraction: float) -> str:
    return f"{fraction:.2%} of points infilled"


def gridded_variables(ds: xr.Dataset) -> list[str]:
    """Data variables of ``ds`` with latitude and longitude dimensions."""
    return [name for name in ds.data_vars if _has_grid(ds[name])]


def add_history(attrs: dict[str, Any], line: str) -> dict[str, Any]:
    """New attrs with ``line`` prepended to ``history`` (newest first, as NCO and CDO do)."""
    old = attrs.get("history")
    return {**attrs, "history": line if not old else f"{line}\n{old}"}


def infill_dataarray(
    da: xr.DataArray,
    model: Any,
    options: InfillOptions | None = None,
    *,
    mask: Any = None,
) -> xr.DataArray | xr.Dataset:
    """Infill ``da`` with ``model`` as ``options`` say.

    See :meth:`xcrai.accessor.CraiDataArrayAccessor.infill`, which builds ``options``.

    Parameters
    ----------
    da : DataArray
    model : str, path or CraiModel
    options : InfillOptions, optional
        Default ``InfillOptions()``.
    mask : DataArray or array, optional
        1 (or True) where valid; broadcast against ``da``.

    Returns
    -------
    DataArray, or Dataset with ``options.return_output``

    Examples
    --------
    >>> infill_dataarray(ds.tas, "m.pth", InfillOptions(device="cpu"))  # doctest: +SKIP
    """
    options = _check_options(options)
    result, line = _infill(
        da, model, mask, options.padding, options.time_context, options.return_output,
        options.engine(),
    )  # fmt: skip
    result.attrs = add_history(result.attrs, line)
    if options.return_output:
        result["infilled"].attrs = result.attrs
    return result


def _check_options(options: Any) -> InfillOptions:
    if options is None:
        return InfillOptions()
    if not isinstance(options, InfillOptions):
        raise TypeError(f"options: expected an InfillOptions, got {type(options).__name__}")
    return options


def _infill(
    da: xr.DataArray,
    model: Any,
    mask: Any,
    padding: str | None,
    time_context: Any,
    return_output: bool,
    engine: dict[str, Any],
) -> tuple[xr.DataArray | xr.Dataset, str]:
    """The infilled result (attrs as the input's) and its history line."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"data: expected an xarray.DataArray, got {type(da).__name__}")
    resolve_device(engine["device"])  # options are checked; whether the device exists, here
    # CPU threads free now (results do not depend on their number; speed under load does)
    engine = {**engine, "threads": choose_threads(engine["threads"], samples=1)}
    if da.dtype == bool or np.issubdtype(da.dtype, np.integer):
        da = da.astype(np.float32)
    elif not np.issubdtype(da.dtype, np.floating):
        raise TypeError(f"data: expected a floating-point or integer array, got dtype {da.dtype}")
    plan = make_plan(da, model, padding, time_context)
    valid = valid_points(da, mask)
    work, work_valid = da, valid
    if plan.added_time:
        work, work_valid = (
            work.expand_dims("__xcrai_time__"),
            work_valid.expand_dims("__xcrai_time__"),
        )
    work, work_valid = work.transpose(*plan.order), work_valid.transpose(*plan.order)
    work, work_valid = plan.orientation.apply(work), plan.orientation.apply(work_valid)
    result = _run(work.data, work_valid.data, plan, engine)
    output = work.copy(data=result[0].astype(da.dtype))
    reach = work.copy(data=result[1] > 0)
    output, reach = plan.orientation.undo(output), plan.orientation.undo(reach)
    if plan.added_time:
        output, reach = output.isel(__xcrai_time__=0), reach.isel(__xcrai_time__=0)
    output, reach = output.transpose(*da.dims), reach.transpose(*da.dims)
    infilled = da.where(valid, output)
    infilled.attrs = dict(da.attrs)
    infilled.encoding, stored_as = float_encoding(da.encoding, da.name)
    infilled.name = da.name
    lazy = isinstance(valid.data, dsa.Array)
    fraction = None if lazy else float(1 - valid.values.mean())
    line = history_line(plan.model, plan.model.config.padding, fraction, da.name)
    line = line if stored_as is None else f"{line}, {stored_as}"
    if not return_output:
        return infilled, line
    flag = xr.where(valid, FLAG_OBSERVED, xr.where(reach, FLAG_INFILLED, FLAG_UNREACHABLE))
    flag = flag.astype(np.int8).assign_attrs(FLAG_ATTRS)
    output.attrs = {**da.attrs, "long_name": "raw network output"}
    output.encoding = dict(infilled.encoding)  # the raw output leaves the packing's range too
    return xr.Dataset({"infilled": infilled, "output": output, "mask": flag}, attrs=da.attrs), line


def infill_dataset(
    ds: xr.Dataset,
    model: Any,
    options: InfillOptions | None = None,
    *,
    variables: str | list[str] | None = None,
    mask: Any = None,
) -> xr.Dataset:
    """Infill variables of ``ds`` with ``model`` as ``options`` say.

    See :meth:`xcrai.accessor.CraiDatasetAccessor.infill`, which builds ``options``.
    With ``options.return_output``, each infilled variable ``name`` is joined by
    ``name_output`` (the raw network output) and ``name_flag`` (the coverage flag).

    Parameters
    ----------
    ds : Dataset
    model : str, path or CraiModel
    options : InfillOptions, optional
        Default ``InfillOptions()``.
    variables : str or list of str, optional
        Default: every data variable with latitude and longitude dimensions.
    mask : DataArray or array, optional
        1 (or True) where valid; broadcast against each variable.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> infill_dataset(ds, "m.pth", variables="tas")  # doctest: +SKIP
    """
    options = _check_options(options)
    if variables is None:
        variables = gridded_variables(ds)
        if not variables:
            raise ValueError(
                f"variables: no data variable of the dataset has latitude and longitude "
                f"dimensions (variables: {list(ds.data_vars)})"
            )
    elif isinstance(variables, str):
        variables = [variables]
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"variables: {missing} not in the dataset; it has {list(ds.data_vars)}")
    model = as_model(model)
    out = ds.copy()
    lines = []
    for name in variables:
        filled, line = _infill(
            ds[name], model, mask, options.padding, options.time_context,
            options.return_output, options.engine(),
        )  # fmt: skip
        lines.append(line)
        if options.return_output:  # a Dataset of infilled, output and mask
            out[name] = filled["infilled"]
            out[f"{name}_output"] = filled["output"]
            out[f"{name}_flag"] = filled["mask"]
        else:
            out[name] = filled
    attrs = dict(ds.attrs)
    for line in lines:
        attrs = add_history(attrs, line)
    out.attrs = attrs
    return out


def _has_grid(da: xr.DataArray) -> bool:
    try:
        find_grid(da)
    except ValueError:
        return False
    return True
