"""Missing values that nobody decoded: fill values and valid ranges still in the data.

xarray decodes CF's missing values when it opens a file: the points holding the
``_FillValue`` or ``missing_value`` become NaN and those attributes move to
``.encoding``. Data opened with ``mask_and_scale=False`` (or ``decode_cf=False``), or
built by hand, still hold them, and declare them in ``.attrs``; a network would take
-1e30 or -999 for an observation. CF's ``valid_range`` (or ``valid_min``/``valid_max``),
which xarray never applies, marks values outside it as missing too.

xcrai's choice: such points are **missing** (holes, infilled like NaN), with one
warning per variable that says how many there were (input in memory) or that they are
treated so (lazy input). Values still packed (``scale_factor``/``add_offset`` in
``.attrs``: not applied) are refused, with advice to decode, because the network would
see packed integers, not physical values.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from xcrai.callsite import user_stacklevel

#: attributes of CF packing; in ``.attrs`` they mean the values are still packed
PACKING_ATTRS = ("scale_factor", "add_offset")
#: attributes that declare the values standing for "no data"
FILL_ATTRS = ("_FillValue", "missing_value")

DECODE_ADVICE = (
    "decode the data first: xr.decode_cf(ds), or open the file without "
    "mask_and_scale=False / decode_cf=False"
)


def missing_as_nan(da: xr.DataArray, argument: str = "data") -> xr.DataArray:
    """``da`` with the points that hold a declared missing value set to NaN.

    A point is missing when it equals a ``_FillValue`` or ``missing_value`` of ``da``'s
    ``attrs`` or ``encoding`` (compared in ``da``'s dtype; NaN fills are already NaN), or
    lies outside ``valid_range`` / ``valid_min`` / ``valid_max`` (in ``attrs``; in packed
    units when ``encoding`` says the file was packed, as CF defines them). Fill values in
    ``attrs`` (the data was not decoded) give one UserWarning at the caller's line, with
    the number of points for input in memory; so do any points outside the valid range or
    holding an encoding's fill value in memory. Lazy input stays lazy. Data without any
    such declaration is returned as it is (the same object).

    Parameters
    ----------
    da : DataArray
        The data, as given to ``infill`` or ``fit``.
    argument : str
        The argument that gave it, for the messages.

    Returns
    -------
    DataArray
        ``da``, or ``da`` with its missing points NaN (floating point; integer data
        becomes float32). Attrs and encoding are kept.

    Raises
    ------
    ValueError
        When ``attrs`` hold ``scale_factor`` or ``add_offset``: packed values not yet
        decoded.

    Examples
    --------
    >>> raw = xr.open_dataset(path, mask_and_scale=False).tas  # doctest: +SKIP
    >>> missing_as_nan(raw).isnull().sum()  # doctest: +SKIP
    UserWarning: data: 'tas' holds 7532 point(s) of the _FillValue -1e+30 of its attrs ...
    """
    name = argument if da.name is None else f"{da.name!r}"
    packed = {key: da.attrs[key] for key in PACKING_ATTRS if key in da.attrs}
    if packed:
        said = ", ".join(f"{key}={value!r}" for key, value in packed.items())
        raise ValueError(
            f"{argument}: {name} holds packed values ({said} in its attrs, not applied); "
            f"{DECODE_ADVICE}"
        )
    if not (np.issubdtype(da.dtype, np.number) and not np.issubdtype(da.dtype, np.complexfloating)):
        return da
    undecoded = _fills(da.attrs, da.dtype)
    fills = sorted({*undecoded, *_fills(da.encoding, da.dtype)})
    low, high = _valid_range(da.attrs, da.encoding)
    if not fills and low is None and high is None:
        return da
    missing = _missing(da, fills, low, high)
    lazy = isinstance(missing.data, dsa.Array)
    count = None if lazy else int(missing.sum())
    if undecoded or count:
        _warn(argument, name, undecoded, fills, low, high, count)
    if count == 0:
        return da
    values = da if np.issubdtype(da.dtype, np.floating) else da.astype(np.float32)
    result = values.where(~missing)
    result.attrs, result.encoding = dict(da.attrs), dict(da.encoding)
    return result


def _fills(declared: Mapping[Hashable, Any], dtype: np.dtype) -> list[Any]:
    """The finite fill values that ``declared`` (attrs or encoding) holds, in ``dtype``."""
    values = []
    for key in FILL_ATTRS:
        if key not in declared or declared[key] is None:
            continue
        for value in np.atleast_1d(np.asarray(declared[key])).ravel():
            try:
                cast = np.asarray(value).astype(dtype)
            except (TypeError, ValueError, OverflowError):
                continue
            if np.issubdtype(dtype, np.floating) and not np.isfinite(cast):
                continue  # NaN: already NaN; inf: refused elsewhere as not finite
            if cast != value and not np.issubdtype(dtype, np.floating):
                continue  # an integer dtype cannot hold it: no point equals it
            values.append(cast.item())
    return values


def _valid_range(
    attrs: Mapping[Hashable, Any], encoding: Mapping[Hashable, Any]
) -> tuple[float | None, float | None]:
    """CF's valid range of the values, in the data's units (None: unbounded)."""
    low = high = None
    if "valid_range" in attrs:
        pair = np.asarray(attrs["valid_range"], dtype=float).ravel()
        if pair.size == 2:
            low, high = float(pair[0]), float(pair[1])
    if "valid_min" in attrs:
        low = float(np.asarray(attrs["valid_min"], dtype=float).ravel()[0])
    if "valid_max" in attrs:
        high = float(np.asarray(attrs["valid_max"], dtype=float).ravel()[0])
    scale = float(encoding.get("scale_factor", 1.0))
    offset = float(encoding.get("add_offset", 0.0))
    bounds = [None if b is None else b * scale + offset for b in (low, high)]
    if scale < 0:  # a negative scale turns the range around
        bounds.reverse()
    return bounds[0], bounds[1]


def _missing(
    da: xr.DataArray, fills: list[Any], low: float | None, high: float | None
) -> xr.DataArray:
    """Boolean DataArray like ``da``: True where a value is a fill or outside the range."""
    missing = xr.zeros_like(da, dtype=bool)
    for fill in fills:
        missing = missing | (da == fill)
    if low is not None:
        missing = missing | (da < low)
    if high is not None:
        missing = missing | (da > high)
    return missing


def _warn(
    argument: str,
    name: str,
    undecoded: list[Any],
    fills: list[Any],
    low: float | None,
    high: float | None,
    count: int | None,
) -> None:
    what = []
    if fills:
        source = "its attrs" if undecoded else "its encoding"
        what.append(f"the fill value(s) {', '.join(f'{f:g}' for f in fills)} of {source}")
    if low is not None or high is not None:
        what.append(f"values outside its valid range [{low}, {high}]")
    points = "points holding" if count is None else f"{count} point(s) holding"
    warnings.warn(
        f"{argument}: {name} has {points} {' or '.join(what)}; they are treated as missing "
        f"(holes){'; ' + DECODE_ADVICE if undecoded else ''}",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


__all__ = ["missing_as_nan"]
