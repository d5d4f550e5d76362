"""Steady masks: the points of a grid that are never valid (land in an SST field).

``fit`` stores them in the model (:attr:`xcrai.model.ModelConfig.steady_mask`, in the
training orientation); ``infill`` leaves them NaN and flags them ``FLAG_STEADY``. Users
pass their own as ``steady_mask=``, a (lat, lon) DataArray on the data's grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from xcrai.grid import Grid, aligned


def check_steady_mask(steady_mask: Any, da: xr.DataArray, grid: Grid) -> xr.DataArray:
    """``steady_mask`` as a boolean (lat, lon) DataArray on ``da``'s grid, loaded.

    Parameters
    ----------
    steady_mask : DataArray
        True (or 1) where a point is never valid, False (or 0) elsewhere; its dimensions
        are the data's latitude and longitude, with the data's coordinates (in any
        order: it is aligned by its labels).
    da : DataArray
        The data it belongs to.
    grid : Grid
        ``find_grid(da)``.

    Returns
    -------
    DataArray
        bool, dims ``(grid.lat, grid.lon)``, with ``da``'s coordinates on them.

    Examples
    --------
    >>> land = check_steady_mask(sftlf > 50, ds.tos, find_grid(ds.tos))  # doctest: +SKIP
    """
    if not isinstance(steady_mask, xr.DataArray):
        raise TypeError(
            "steady_mask: expected an xarray.DataArray on the data's (lat, lon) grid, True "
            f"where a point is never valid; got {type(steady_mask).__name__}"
        )
    if steady_mask.dtype != bool and not np.issubdtype(steady_mask.dtype, np.number):
        raise TypeError(f"steady_mask: expected bool or 0/1 values, got dtype {steady_mask.dtype}")
    spatial = (grid.lat, grid.lon)
    if set(steady_mask.dims) != set(spatial):
        raise ValueError(
            f"steady_mask: expected the data's latitude and longitude dims {spatial}, got "
            f"{tuple(steady_mask.dims)}; select or drop the others (e.g. mask.isel(time=0))"
        )
    wrong = {d: (steady_mask.sizes[d], da.sizes[d]) for d in spatial
             if steady_mask.sizes[d] != da.sizes[d]}  # fmt: skip
    if wrong:
        raise ValueError(
            f"steady_mask: sizes (steady_mask, data) differ along {wrong}; regrid the mask "
            "to the data's grid (e.g. nearest neighbour)"
        )
    steady_mask = aligned(
        steady_mask, da, "steady_mask: its latitude or longitude coordinates differ from the "
        "data's (a mask is aligned by its labels); put it on the data's grid, e.g. "
        "steady_mask.reindex_like(data, method='nearest')",
    )  # fmt: skip
    values = np.asarray(steady_mask.transpose(*spatial).values)
    if values.dtype != bool:
        found = np.unique(values)
        if not np.isin(found, [0, 1]).all():
            raise ValueError(
                f"steady_mask: expected bool or 0/1 values (1 = never valid), found {found[:6]}"
            )
        values = values == 1
    if values.all():
        raise ValueError("steady_mask: every point is marked never valid; nothing is left")
    coords = {d: da[d] for d in spatial if d in da.coords}
    return xr.DataArray(values, dims=spatial, coords=coords)
