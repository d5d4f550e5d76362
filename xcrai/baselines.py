"""Classical fills without a network: :func:`poisson_fill`, a fast first guess.

The holes of each field are filled with the solution of Laplace's equation (the
5-point stencil on the grid's indices) that takes the observed points as fixed
(Dirichlet) values: every filled point is the mean of its four neighbours. Longitude
wraps around on a global grid; the edges of a regional grid and the poles are
zero-flux (Neumann) boundaries. The sparse system of the hole points is solved
directly (scipy's SuperLU), one field at a time, so the result does not depend on
a tolerance, nor on how a lazy array is chunked in time.
"""

from __future__ import annotations

import datetime as _dt

import dask.array as dsa
import numpy as np
import xarray as xr

from xcrai import __version__
from xcrai.grid import find_grid
from xcrai.infill import add_history, keep_attrs

#: the (latitude, longitude) steps to the four neighbours of the 5-point stencil
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def poisson_fill(da: xr.DataArray) -> xr.DataArray:
    """Fill the holes (NaN) of each field with the solution of Laplace's equation.

    Each missing point becomes the mean of its four grid neighbours, with the observed
    points held fixed: the smoothest surface through the observations (gridfill's
    5-point scheme, measured on the grid's indices, not in kilometres). Longitude is
    cyclic when it covers the globe at uniform spacing; elsewhere (the edges of a
    regional grid, the poles) the boundaries are zero-flux. Each field's system is
    solved directly with ``scipy.sparse.linalg.spsolve``.

    Parameters
    ----------
    da : DataArray
        Floating-point data with latitude and longitude dimensions (found as
        :func:`xcrai.grid.find_grid` finds them), in any order, with any other
        dimensions (time, members, ...). Non-finite values are holes. NumPy or
        dask-backed: lazy input stays lazy (each block holds whole fields), and the
        numbers do not depend on the chunks.

    Returns
    -------
    DataArray
        Same dims, coords, name and dtype; valid points bitwise unchanged; fields
        without any valid point stay NaN. Attrs are kept (unless
        ``xr.set_options(keep_attrs=False)``) and ``history`` gains a line.

    Raises
    ------
    TypeError
        When ``da`` is not a DataArray, or not of a floating-point dtype.
    ValueError
        When latitude or longitude cannot be found.

    Examples
    --------
    >>> import xarray as xr, xcrai
    >>> from xcrai.baselines import poisson_fill
    >>> tas = xr.open_dataset(xcrai.data.hadcrut4_sample()).tas
    >>> bool(poisson_fill(tas).isnull().any())
    False
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(
            f"da: expected an xarray.DataArray, got {type(da).__name__}; "
            "for a Dataset, fill one variable at a time (poisson_fill(ds['tas']))"
        )
    if not np.issubdtype(da.dtype, np.floating):
        raise TypeError(
            f"da: expected floating-point values (holes as NaN), got dtype {da.dtype}; "
            "convert first, e.g. da.astype('float32')"
        )
    grid = find_grid(da, "da")
    spatial = (grid.lat, grid.lon)
    source = da
    if isinstance(da.data, dsa.Array):  # every block must hold whole fields
        source = da.chunk(dict.fromkeys(spatial, -1))
    filled = xr.apply_ufunc(
        _fill_fields, source, kwargs={"periodic": grid.periodic},
        input_core_dims=[list(spatial)], output_core_dims=[list(spatial)],
        dask="parallelized", output_dtypes=[da.dtype], keep_attrs=keep_attrs(),
    ).transpose(*da.dims)  # fmt: skip
    if not keep_attrs():
        return filled
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    longitude = "cyclic longitude" if grid.periodic else "zero-flux longitude edges"
    line = (
        f"{stamp}: xcrai {__version__} filled the holes of {da.name or 'data'} with "
        f"poisson_fill (Laplace's equation, {longitude}, zero-flux latitude edges)"
    )
    return filled.assign_attrs(add_history(da.attrs, line))


def _fill_fields(values: np.ndarray, periodic: bool) -> np.ndarray:
    """Fill every field of ``values`` (shaped (..., lat, lon)) on its own."""
    fields = values.reshape(-1, *values.shape[-2:])
    out = np.empty_like(fields)
    for index, field in enumerate(fields):
        out[index] = fill_field(field, periodic)
    return out.reshape(values.shape)


def fill_field(field: np.ndarray, periodic: bool) -> np.ndarray:
    """One (lat, lon) field with its non-finite points filled by Laplace's equation.

    Deep code: assumes a 2-D floating-point array. The matrix is the graph Laplacian
    of the hole points (each row: the number of neighbours the point has, minus one per
    neighbour that is a hole); observed neighbours go to the right-hand side. A
    neighbour beyond an edge that does not wrap is left out, which is the zero-flux
    condition. As the grid is connected, every group of holes touches an observed
    point unless the field has none, so the system is regular.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    hole = ~np.isfinite(field)
    if not hole.any():
        return field.copy()
    if hole.all():
        return np.full_like(field, np.nan)
    height, width = field.shape
    unknown = np.full(field.shape, -1, dtype=np.int64)
    unknown[hole] = np.arange(int(hole.sum()))
    rows_i, rows_j = np.nonzero(hole)
    rows = unknown[rows_i, rows_j]
    count = rows.size
    diagonal = np.zeros(count)
    rhs = np.zeros(count)
    entries: list[tuple[np.ndarray, np.ndarray]] = []
    known = np.where(hole, 0.0, field.astype(np.float64))
    for step_i, step_j in NEIGHBOURS:
        i, j = rows_i + step_i, rows_j + step_j
        if periodic:
            j %= width
        inside = (i >= 0) & (i < height) & (j >= 0) & (j < width)
        i, j, row = i[inside], j[inside], rows[inside]
        diagonal[row] += 1.0
        neighbour_hole = hole[i, j]
        entries.append((row[neighbour_hole], unknown[i, j][neighbour_hole]))
        np.add.at(rhs, row[~neighbour_hole], known[i, j][~neighbour_hole])
    off_rows = np.concatenate([r for r, _ in entries])
    off_cols = np.concatenate([c for _, c in entries])
    matrix = coo_matrix(
        (
            np.concatenate([diagonal, -np.ones(off_rows.size)]),
            (np.concatenate([np.arange(count), off_rows]), np.concatenate([rows, off_cols])),
        ),
        shape=(count, count),
    ).tocsc()  # duplicates (a neighbour met twice on a 2-wide periodic grid) are summed
    out = field.copy()
    out[hole] = spsolve(matrix, rhs)
    return out


__all__ = ["poisson_fill"]
