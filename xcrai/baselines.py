"""Classical fills without a network: :func:`poisson_fill`, a fast first guess, and two
that learn from training fields, :func:`climatology_fill` and :func:`eof_fill`.

Poisson: the holes of each field are filled with the solution of Laplace's equation (the
5-point stencil on the grid's indices) that takes the observed points as fixed
(Dirichlet) values: every filled point is the mean of its four neighbours. Longitude
wraps around on a global grid; the edges of a regional grid and the poles are
zero-flux (Neumann) boundaries. The sparse system of the hole points is solved
directly (scipy's SuperLU), one field at a time, so the result does not depend on
a tolerance, nor on how a lazy array is chunked in time.

Climatology: each hole takes the training fields' mean at that point for the field's
calendar month (when both time axes are datetime-like and the training fields cover
every month), else their mean over all fields.

EOF reconstruction: each field is fitted, by least squares on its observed points, with
the training mean plus the first k EOFs of the training fields' anomalies; k is chosen
by cross-validation on the training fields (:func:`choose_eof_count`).

``fit`` scores all three on its validation fields (:mod:`xcrai.skill`).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from xcrai._version import __version__
from xcrai.attrs import add_history, keep_attrs
from xcrai.grid import Grid, find_grid
from xcrai.laplace import fill_where


def laplace_fill(
    da: xr.DataArray, where: xr.DataArray, grid: Grid, keep_attrs: bool = True
) -> xr.DataArray:
    """``da`` with the points ``where`` is True filled by Laplace's equation from the other
    finite points of their field (:func:`xcrai.laplace.fill_where`), field by field: lazy
    input stays lazy (in blocks of whole fields) and the numbers do not depend on its
    chunks."""
    spatial = [grid.lat, grid.lon]
    source, where = da, where.transpose(*da.dims)
    if isinstance(da.data, dsa.Array):  # each block must hold whole fields
        source = da.chunk(dict.fromkeys(spatial, -1))
        where = where.chunk(source.chunksizes)
    return xr.apply_ufunc(
        fill_where, source, where, kwargs={"periodic": grid.periodic},
        input_core_dims=[spatial, spatial], output_core_dims=[spatial],
        dask="parallelized", output_dtypes=[da.dtype], keep_attrs=keep_attrs,
    ).transpose(*da.dims)  # fmt: skip


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
    holes = ~xr.apply_ufunc(np.isfinite, da, dask="allowed")
    filled = laplace_fill(da, holes, grid, keep_attrs=keep_attrs())
    if not keep_attrs():
        return filled
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    longitude = "cyclic longitude" if grid.periodic else "zero-flux longitude edges"
    line = (
        f"{stamp}: xcrai {__version__} filled the holes of {da.name or 'data'} with "
        f"poisson_fill (Laplace's equation, {longitude}, zero-flux latitude edges)"
    )
    return filled.assign_attrs(add_history(da.attrs, line))


#: the most EOFs an EOF reconstruction uses (and cross-validation tries)
MAX_EOFS = 50
#: the most training fields the EOFs are computed from (evenly spaced through the record
#: when there are more): their SVD costs fields² x points
MAX_EOF_FIELDS = 200
#: folds of the cross-validation that chooses the number of EOFs
EOF_FOLDS = 5


def calendar_months(times: Any) -> np.ndarray | None:
    """The calendar month (1-12) of each of ``times`` (datetime64 or cftime), or None when
    they are not datetime-like."""
    values = np.asarray(times)
    if values.ndim != 1 or not values.size:
        return None
    try:
        return np.asarray(xr.DataArray(values).dt.month.values, dtype=np.int64)
    except (TypeError, AttributeError):
        return None


def climatology(training: Any, months: np.ndarray | None) -> np.ndarray:
    """The training fields' mean at every point, by calendar month where that is possible.

    Parameters
    ----------
    training : array (N, H, W), NumPy or dask
        Training fields; NaN where not observed (nan-aware means).
    months : ndarray of int (N,) or None
        Each field's calendar month.

    Returns
    -------
    ndarray float64 (12, H, W) or (1, H, W)
        Month m's mean at index m - 1 when ``months`` covers all twelve, else the mean of
        every field. A point never observed in a month takes its mean over every field; a
        point never observed at all, the mean of every observed value.
    """
    xp = dsa if isinstance(training, dsa.Array) else np
    values = training.astype(np.float64)
    monthly = months is not None and set(np.unique(months)) >= set(range(1, 13))
    with warnings.catch_warnings():  # points never observed: NaN, filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        overall = xp.nanmean(values, axis=0)
        parts = [overall]
        if monthly:
            parts = [xp.nanmean(values[np.flatnonzero(months == m)], axis=0) for m in range(1, 13)]
        if xp is dsa:
            parts, overall = dsa.compute(parts, overall)
        means = np.stack([np.asarray(p) for p in parts])
        overall = np.asarray(overall)
        means = np.where(np.isfinite(means), means, overall)
        if not np.isfinite(overall).any():
            return means
        return np.where(np.isfinite(means), means, np.nanmean(overall))


def climatology_guess(means: np.ndarray, months: np.ndarray | None, count: int) -> np.ndarray:
    """(count, H, W): the climatology of each of ``count`` fields from
    :func:`climatology`'s ``means``, by ``months`` when the means are monthly."""
    if len(means) == 12 and months is not None:
        return means[np.asarray(months) - 1]
    return np.broadcast_to(means[:1], (count, *means.shape[1:]))


def climatology_fill(da: xr.DataArray, training: xr.DataArray) -> xr.DataArray:
    """Fill the holes (NaN) of each field with the climatology of ``training``.

    A hole takes the training fields' mean at its point for the field's calendar month
    when the time coordinates of both are datetime-like (NumPy or cftime) and the
    training fields cover all twelve months; otherwise the mean of every training
    field. The means are nan-aware, point by point; a point never observed in a month
    falls back to its mean over every training field, and one never observed at all to
    the mean of every observed value.

    Parameters
    ----------
    da : DataArray
        Fields to fill, with latitude and longitude dimensions and optionally time (and
        other dimensions, filled alike). Loaded into memory.
    training : DataArray
        Training fields on the same grid (same latitude and longitude sizes, in the same
        order), with a time dimension; other dimensions are more samples.

    Returns
    -------
    DataArray
        ``da`` with its holes filled; observed values unchanged. ``history`` gains a line.

    Examples
    --------
    >>> filled = climatology_fill(test.zg, train.zg)  # doctest: +SKIP
    """
    grid, samples, months = _check_pair(da, training)
    targets = None
    if grid.time is not None and grid.time in da.coords:
        targets = calendar_months(da[grid.time].values)
    means = climatology(samples, None if targets is None else months)  # months on both sides
    if grid.time is not None:
        guess = climatology_guess(means, targets, da.sizes[grid.time])
        dims: tuple[Any, ...] = (grid.time, grid.lat, grid.lon)
    else:
        guess, dims = climatology_guess(means, None, 1)[0], (grid.lat, grid.lon)
    how = "by calendar month" if len(means) == 12 else "the mean of every field"
    return _filled(da, xr.DataArray(guess, dims=dims), f"climatology_fill ({how})")


@dataclass(frozen=True)
class Eofs:
    """Empirical orthogonal functions of training fields, flattened to their points.

    Attributes
    ----------
    mean : ndarray (P,)
        The training fields' mean.
    patterns : ndarray (K, P)
        The EOFs (orthonormal rows: right singular vectors of the anomalies), in order
        of the variance they explain; at most :data:`MAX_EOFS`, and only those of a
        singular value above 1e-10 of the first.
    """

    mean: np.ndarray
    patterns: np.ndarray

    @classmethod
    def of(cls, samples: np.ndarray) -> Eofs:
        """The EOFs of complete (N, P) ``samples``, in float64."""
        values = np.asarray(samples, np.float64)
        mean = values.mean(axis=0)
        if len(values) < 2:
            return cls(mean, np.zeros((0, values.shape[1])))
        _, singular, vt = np.linalg.svd(values - mean, full_matrices=False)
        keep = singular > singular[0] * 1e-10 if singular[0] > 0 else singular > 0
        return cls(mean, vt[keep][:MAX_EOFS])

    def reconstructions(self, values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(K + 1, P): ``values`` (P,) reconstructed from their ``observed`` points with
        the mean plus the first k EOFs, for k = 0 .. K (least squares through one QR
        factorisation; k at which the EOFs are degenerate on the observed points: NaN)."""
        from scipy.linalg import solve_triangular

        count = min(len(self.patterns), int(observed.sum()))
        out = np.full((count + 1, values.size), np.nan)
        out[0] = self.mean
        if not count:
            return out
        basis = self.patterns[:count, observed].T
        q, r = np.linalg.qr(basis)
        z = q.T @ (values[observed] - self.mean[observed])
        diagonal = np.abs(np.diag(r))
        for k in range(1, count + 1):
            if diagonal[k - 1] <= 1e-10 * diagonal[0]:
                break
            coefficients = solve_triangular(r[:k, :k], z[:k])
            out[k] = self.mean + coefficients @ self.patterns[:k]
        return out

    def fill(self, values: np.ndarray, observed: np.ndarray, k: int) -> np.ndarray:
        """``values`` (P,) with the points not ``observed`` reconstructed from the mean and
        the first k EOFs fitted to the observed ones (fewer where the field has fewer
        observed points, or the EOFs are degenerate there)."""
        tries = self.reconstructions(values, observed)[: k + 1]
        usable = np.flatnonzero(np.isfinite(tries).all(axis=1))
        return np.where(observed, values, tries[usable[-1]])


def choose_eof_count(
    samples: np.ndarray, observed: np.ndarray, folds: int = EOF_FOLDS
) -> tuple[int, np.ndarray]:
    """The number of EOFs k that reconstructs held-out training fields best.

    Sample i is in fold ``i % folds`` (interleaved, so that each fold spans the record);
    the samples of each fold are hidden by their coverage pattern ``observed[i %
    len(observed)]`` and reconstructed (:meth:`Eofs.reconstructions`) from the EOFs of
    the other folds, for every k from 0 (the mean alone) to the most the folds allow. k
    is the one of the smallest sum of squared errors at the hidden points, pooled over
    every fold.

    Parameters
    ----------
    samples : ndarray (N, P)
        Complete training fields, flattened.
    observed : ndarray of bool (M, P)
        Coverage patterns, True where observed.
    folds : int

    Returns
    -------
    k : int
    errors : ndarray (K + 1,)
        The pooled sum of squared errors for each k (inf where some fold could not try it).
    """
    count = len(samples)
    folds = max(2, min(folds, count))
    fold_of = np.arange(count) % folds
    per_fold = []
    for fold in range(folds):
        eofs = Eofs.of(samples[fold_of != fold])
        errors = np.zeros(len(eofs.patterns) + 1)
        for i in np.flatnonzero(fold_of == fold):
            seen = observed[i % len(observed)]
            tries = eofs.reconstructions(samples[i], seen)
            squared = ((tries[:, ~seen] - samples[i, ~seen]) ** 2).sum(axis=1)
            errors[: len(tries)] += squared
            errors[len(tries) :] = np.inf
        per_fold.append(np.where(np.isnan(errors), np.inf, errors))
    shortest = min(len(e) for e in per_fold)
    pooled = np.sum([e[:shortest] for e in per_fold], axis=0)
    return int(np.argmin(pooled)), pooled


def eof_fill(
    da: xr.DataArray,
    training: xr.DataArray,
    masks: xr.DataArray | None = None,
    *,
    k: int | None = None,
) -> xr.DataArray:
    """Fill the holes (NaN) of each field by an EOF reconstruction from ``training``.

    Each field is fitted, by least squares on its observed points, with the training
    mean plus the first k EOFs (empirical orthogonal functions: the principal patterns
    of the training fields' anomalies, from an SVD), and its holes take the fitted
    values. Points are equal-weighted (no area weighting). Without ``k`` it is chosen
    by cross-validation on the training fields (:func:`choose_eof_count`): in 5
    interleaved folds, each training field is hidden by a coverage pattern (``masks``,
    else the observed points of ``da``'s fields in turn) and reconstructed from the
    EOFs of the other folds; the k of the smallest pooled error at the hidden points
    wins, from 0 (the training mean) to at most :data:`MAX_EOFS`. The EOFs come from at
    most :data:`MAX_EOF_FIELDS` training fields (evenly spaced through the record).

    Parameters
    ----------
    da : DataArray
        Fields to fill (latitude, longitude, any other dimensions). Loaded into memory.
    training : DataArray
        Training fields on the same grid, with a time dimension (other dimensions are
        more samples). A point NaN in every training field is never reconstructed (it
        stays NaN where ``da`` has a hole there); scattered NaNs take the point's mean.
    masks : DataArray, optional
        Coverage patterns on the same grid for the cross-validation, True (or 1) where
        observed; by default the observed points of ``da``'s fields.
    k : int, optional
        The number of EOFs, instead of the cross-validation's choice.

    Returns
    -------
    DataArray
        ``da`` with its holes filled; observed values unchanged. ``history`` gains a
        line that names k.

    Examples
    --------
    >>> filled = eof_fill(test.zg, train.zg, masks.zg)  # doctest: +SKIP
    """
    grid, fields, _ = _check_pair(da, training)
    samples, points = eof_samples(np.asarray(fields))
    values = np.asarray(da.transpose(..., grid.lat, grid.lon).values, np.float64)
    flat = values.reshape(-1, values.shape[-2] * values.shape[-1])
    if masks is None:
        observed = np.isfinite(flat)
    else:
        mgrid = find_grid(masks, "masks")
        m = np.asarray(masks.transpose(..., mgrid.lat, mgrid.lon).values)
        observed = (
            (m.reshape(-1, flat.shape[1]) == 1) if m.dtype != bool else m.reshape(-1, flat.shape[1])
        )
    if k is None:
        k, _ = choose_eof_count(samples, observed[:, points])
    eofs = Eofs.of(samples)
    out = flat.copy()
    for index, field in enumerate(flat):
        seen = np.isfinite(field[points])
        if seen.any():
            out[index, points] = eofs.fill(np.where(seen, field[points], 0.0), seen, k)
    guess = xr.DataArray(out.reshape(values.shape), dims=da.transpose(..., grid.lat, grid.lon).dims)
    return _filled(da, guess, f"eof_fill (the mean and {k} EOF(s) of the training fields)")


def eof_samples(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(at most :data:`MAX_EOF_FIELDS` flattened fields of ``fields`` (N, H, W), evenly
    spaced, at the points observed in some field, scattered NaNs set to the point's
    mean; the flat indices of those points)."""
    flat = fields.reshape(len(fields), -1).astype(np.float64)
    if len(flat) > MAX_EOF_FIELDS:
        flat = flat[np.linspace(0, len(flat) - 1, MAX_EOF_FIELDS).round().astype(int)]
    finite = np.isfinite(flat)
    points = np.flatnonzero(finite.any(axis=0))
    flat, finite = flat[:, points], finite[:, points]
    if not finite.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            flat = np.where(finite, flat, np.nanmean(flat, axis=0))
    return flat, points


def _check_pair(da: xr.DataArray, training: xr.DataArray) -> tuple[Any, np.ndarray, Any]:
    """``da``'s grid, ``training``'s fields as (N, H, W) and their calendar months (None
    when not datetime-like), after checking both."""
    for name, array in (("da", da), ("training", training)):
        if not isinstance(array, xr.DataArray):
            raise TypeError(f"{name}: expected an xarray.DataArray, got {type(array).__name__}")
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{name}: expected floating-point values, got dtype {array.dtype}")
    grid, tgrid = find_grid(da, "da"), find_grid(training, "training")
    if tgrid.time is None:
        raise ValueError(f"training: expected a time dimension, dims {tuple(training.dims)}")
    shape = (da.sizes[grid.lat], da.sizes[grid.lon])
    tshape = (training.sizes[tgrid.lat], training.sizes[tgrid.lon])
    if shape != tshape:
        raise ValueError(f"training: on another grid than da: {tshape} points, da's {shape}")
    ordered = training.transpose(..., tgrid.time, tgrid.lat, tgrid.lon)
    fields = np.asarray(ordered.values).reshape(-1, *shape)
    months = None
    if tgrid.time in training.coords:
        found = calendar_months(training[tgrid.time].values)
        if found is not None:
            months = np.tile(found, len(fields) // training.sizes[tgrid.time])
    return grid, fields, months


def _filled(da: xr.DataArray, guess: xr.DataArray, how: str) -> xr.DataArray:
    """``da`` with its non-finite points taken from ``guess`` (broadcast by dimension
    names), in ``da``'s dtype and layout, with a history line naming ``how``."""
    filled = da.where(np.isfinite(da), guess.astype(da.dtype)).transpose(*da.dims)
    filled.name = da.name
    if not keep_attrs():
        filled.attrs = {}
        return filled
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp}: xcrai {__version__} filled the holes of {da.name or 'data'} with {how}"
    filled.attrs = add_history(da.attrs, line)
    return filled


__all__ = ["climatology_fill", "eof_fill", "poisson_fill"]
