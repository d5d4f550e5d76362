"""Laplace's equation on a latitude-longitude grid: the holes of a field filled with the
smoothest surface through its known points (the 5-point stencil on the grid's indices).

NumPy and SciPy only: :func:`xcrai.baselines.poisson_fill` (the classical fill) and
infill's points beyond the network's reach both use it.
"""

from __future__ import annotations

import numpy as np

#: the (latitude, longitude) steps to the four neighbours of the 5-point stencil
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


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


def fill_where(values: np.ndarray, where: np.ndarray, periodic: bool) -> np.ndarray:
    """``values`` (shaped (..., lat, lon)) with the points ``where`` is True replaced by
    Laplace's equation solved from every other finite point of their field.

    Only fields with such points are solved; other non-finite points (NaN that is
    meant to stay, e.g. a steady mask) are unknowns of the same system, so they
    neither hold the fill up nor leak into it, and stay as they were.
    """
    fields = values.reshape(-1, *values.shape[-2:])
    targets = np.broadcast_to(where, values.shape).reshape(fields.shape)
    out = fields.copy()
    for index in np.flatnonzero(targets.any(axis=(-2, -1))):
        target = targets[index]
        solved = fill_field(np.where(target, np.nan, fields[index]), periodic)
        out[index][target] = solved[target]
    return out.reshape(values.shape)
