"""Finding latitude, longitude and time in xarray objects, what the grid allows, and the
reordering (:func:`orientation`) that brings data into a model's training orientation.

Detection follows CF (via cf-xarray: standard_name, units, axis), then the usual
names. Detection rules are data (:data:`USUAL_NAMES`), not branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cf_xarray  # noqa: F401  (registers .cf)
import numpy as np
import xarray as xr

#: names tried after CF detection, in order
USUAL_NAMES: dict[str, tuple[str, ...]] = {
    "latitude": ("lat", "latitude", "nav_lat", "y", "rlat"),
    "longitude": ("lon", "longitude", "nav_lon", "x", "rlon"),
    "time": ("time", "t", "valid_time"),
}
#: cf-xarray keys tried for each role (coordinate criteria, then axes)
CF_KEYS: dict[str, tuple[str, ...]] = {
    "latitude": ("latitude", "Y"),
    "longitude": ("longitude", "X"),
    "time": ("time", "T"),
}
#: where CRAI's models start their longitude: at the first cell east of 0 degrees (0..360),
#: the orientation of the HadCRUT4 grid that CRAI's reference cases use
CRAI_LON_ORIGIN = 0.0
#: longitudes closer than this (degrees) are the same meridian
LON_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Grid:
    """Where the grid lives in a DataArray and what its longitude allows.

    Attributes
    ----------
    lat, lon : str
        Dimension names.
    time : str or None
        Time dimension name, if any.
    lon_uniform : bool
        Longitude is known and uniformly spaced.
    lon_span : float or None
        Degrees covered by the longitude cells (n * spacing) when uniform.
    lat_ascending : bool or None
        Whether latitude increases along its dimension (None if unknown).
    """

    lat: str
    lon: str
    time: str | None
    lon_uniform: bool
    lon_span: float | None
    lat_ascending: bool | None

    @property
    def periodic(self) -> bool:
        """Longitude covers the globe at uniform spacing."""
        return self.lon_uniform and self.lon_span is not None and abs(self.lon_span - 360) < 1e-3

    def spatial(self) -> tuple[str, str]:
        return self.lat, self.lon


def _cf_names(obj: xr.DataArray, role: str) -> list[str]:
    names: list[str] = []
    for key in CF_KEYS[role]:
        for source in (obj.cf.coordinates, obj.cf.axes):
            names.extend(source.get(key, []))
    return names


def find_dim(obj: xr.DataArray, role: str) -> str | None:
    """The dimension of ``obj`` playing ``role`` ("latitude", "longitude", "time").

    Only 1-D coordinates name a dimension: on a rotated or curvilinear grid (CORDEX's
    ``rlat``/``rlon`` with 2-D ``lat``/``lon``) the 2-D coordinates are skipped and the
    dimension coordinates (axis Y/X, standard_name grid_latitude/grid_longitude) are used.

    Raises
    ------
    ValueError
        When the only candidates for latitude or longitude are 2-D coordinates.
    """
    candidates = _cf_names(obj, role) + [
        n for n in USUAL_NAMES[role] if n in obj.coords or n in obj.dims
    ]
    curvilinear = []
    for name in candidates:
        if name in obj.dims:
            return name
        coord = obj.coords.get(name)
        if coord is not None and coord.ndim == 1 and coord.dims[0] in obj.dims:
            return coord.dims[0]
        if coord is not None and coord.ndim > 1:
            curvilinear.append((name, coord.ndim))
    if curvilinear and role != "time":
        name, ndim = curvilinear[0]
        raise ValueError(
            f"data: {role} {name!r} is {ndim}-D (a curvilinear grid) and no 1-D {role} "
            f"dimension was found in dims {tuple(obj.dims)}; xcrai needs 1-D latitude and "
            "longitude dimensions (e.g. rlat/rlon with axis Y/X): regrid first (e.g. with xESMF)"
        )
    return None


def _uniform_span(values: np.ndarray) -> tuple[bool, float | None]:
    if values.size < 2 or not np.issubdtype(values.dtype, np.number):
        return False, None
    differences = np.diff(values.astype(np.float64))
    steps = differences % 360.0
    if steps[0] > 180:  # descending longitude: measure the steps the other way round
        steps = -differences % 360.0
    step = steps[0]
    if step == 0 or not np.allclose(steps, step, rtol=1e-4, atol=1e-6):
        return False, None
    return True, float(step * values.size)


def _angular(coord: xr.DataArray) -> bool:
    """Whether a longitude coordinate is in degrees (projected x in metres is not)."""
    units = coord.attrs.get("units")
    return units is None or str(units).lower().startswith("degree")


def _check_latitudes(values: np.ndarray, name: str, argument: str) -> None:
    """Latitudes in degrees lie in [-90, 90]: others are a mislabelled coordinate (a
    colatitude, radians, a projected y) that would put the data elsewhere on the globe."""
    bad = ~np.isfinite(values) | (np.abs(values) > 90 + 1e-6)
    if bad.any():
        raise ValueError(
            f"{argument}: latitude {name!r} holds {int(bad.sum())} value(s) outside "
            f"[-90, 90] degrees (e.g. {float(values[bad][0])!r}); give latitudes in degrees "
            "north, or name the right coordinate"
        )


def find_grid(da: xr.DataArray, argument: str = "data") -> Grid:
    """Locate latitude, longitude and time in ``da``.

    Raises
    ------
    ValueError
        When latitude or longitude cannot be found, naming what was looked for.
    """
    lat, lon = find_dim(da, "latitude"), find_dim(da, "longitude")
    if lat is None or lon is None or lat == lon:
        missing = "latitude" if lat is None else "longitude"
        raise ValueError(
            f"{argument}: no {missing} dimension found in {da.name or 'the data'!r} with dims "
            f"{tuple(da.dims)}; expected a coordinate with standard_name or units of "
            f"{missing} (e.g. degrees_north/degrees_east), axis Y/X, or a dimension named "
            f"one of {USUAL_NAMES[missing]}"
        )
    time = find_dim(da, "time")
    uniform, span = (False, None)
    if lon in da.coords and _angular(da[lon]):
        uniform, span = _uniform_span(np.asarray(da[lon].values))
    if lat in da.coords and np.issubdtype(da[lat].dtype, np.number) and _angular(da[lat]):
        _check_latitudes(np.asarray(da[lat].values, dtype=np.float64), lat, argument)
    ascending = None
    if lat in da.coords and da.sizes[lat] > 1:
        lat_values = np.asarray(da[lat].values, dtype=np.float64)
        ascending = bool(lat_values[-1] > lat_values[0])
    return Grid(lat, lon, time if time not in (lat, lon) else None, uniform, span, ascending)


def resolve_padding(padding: str, grid: Grid) -> str:
    """Turn "auto" into "global" or "zeros"; check that "global" suits the grid."""
    if padding == "auto":
        return "global" if grid.periodic else "zeros"
    if padding == "global" and not grid.periodic:
        if not grid.lon_uniform:
            found = "not uniformly spaced (or has no coordinate values)"
        else:
            found = f"uniform but covering {grid.lon_span:g} degrees"
        raise ValueError(
            f"padding: 'global' wraps longitude around the globe, which needs a uniformly "
            f"spaced longitude covering 360 degrees; longitude {grid.lon!r} is {found}. "
            "Use padding='zeros' for regional or irregular grids."
        )
    return padding


def describe(da: xr.DataArray, grid: Grid) -> dict[str, Any]:
    """A plain description of ``da``'s grid, stored in model checkpoints."""

    def ends(name: str) -> list[float] | None:
        if name not in da.coords:
            return None
        values = np.asarray(da[name].values, dtype=np.float64)
        return [float(values[0]), float(values[-1])]

    return {
        "shape": [int(da.sizes[grid.lat]), int(da.sizes[grid.lon])],
        "lat": ends(grid.lat),
        "lon": ends(grid.lon),
        "periodic": grid.periodic,
    }


@dataclass(frozen=True, eq=False)
class Orientation:
    """How to reorder an array into the orientation a model was trained in, and back.

    Attributes
    ----------
    order : dict
        For each dimension that needs reordering, the positions (in the user's array) that
        become positions 0, 1, ... of the model's orientation. Dimensions not named stay.
    """

    order: dict[str, np.ndarray] = field(default_factory=dict)

    def apply(self, obj: xr.DataArray) -> xr.DataArray:
        """``obj`` in the model's orientation."""
        return _take(obj, self.order)

    def undo(self, obj: xr.DataArray) -> xr.DataArray:
        """``obj`` (in the model's orientation) back in the user's."""
        return _take(obj, {dim: np.argsort(index) for dim, index in self.order.items()})


def _take(obj: xr.DataArray, order: dict[str, np.ndarray]) -> xr.DataArray:
    indexers: dict[str, Any] = {}
    for dim, index in order.items():
        if dim not in obj.dims:
            continue
        if np.array_equal(index, np.arange(index.size)[::-1]):
            indexers[dim] = slice(None, None, -1)  # a view, and dask keeps the chunks
            continue
        if obj.chunks is not None:  # one chunk along a permuted dim: no fragmented graph
            obj = obj.chunk({dim: -1})
        indexers[dim] = index
    return obj.isel(indexers)


def orientation(
    da: xr.DataArray, grid: Grid, trained: dict[str, Any] | None, time_windows: bool = True
) -> Orientation:
    """The reordering that brings ``da`` into the orientation of a model's training grid.

    Time ascending (for models with a time context); latitude as the model was trained
    (``trained["lat_ascending"]``, or the direction of ``trained["lat"]``); longitude
    ascending and, on a global grid, rolled to start at the model's first longitude
    (``trained["lon"][0]`` of a periodic training grid). Where ``trained`` does not say
    (CRAI checkpoints), CRAI's orientation: latitude south to north, longitude from the
    first cell east of 0 degrees.

    Parameters
    ----------
    da : DataArray
    grid : Grid
        ``find_grid(da)``.
    trained : dict or None
        The model's training grid (``ModelConfig.grid``).
    time_windows : bool
        Whether the model stacks neighbouring time steps (a time context other than
        (0, 0)); only then does the order of time matter, and is time sorted (or refused
        when not monotonic). Without, fields are independent and stay in any order.

    Returns
    -------
    Orientation

    Raises
    ------
    ValueError
        When latitude, longitude (modulo 360 degrees) or, with ``time_windows``, time is
        not strictly monotonic.

    Examples
    --------
    >>> flip = orientation(da, find_grid(da), model.config.grid)  # doctest: +SKIP
    >>> flip.undo(run(flip.apply(da)))  # doctest: +SKIP
    """
    trained = trained or {}
    order = {
        grid.lat: _monotonic_order(da, grid.lat, "latitude", _lat_ascending(trained)),
        grid.lon: _longitude_order(da, grid, trained),
    }
    if grid.time is not None and time_windows:
        order[grid.time] = _monotonic_order(da, grid.time, "time", True)
    return Orientation({dim: index for dim, index in order.items() if index is not None})


def _lat_ascending(trained: dict[str, Any]) -> bool:
    if trained.get("lat_ascending") is not None:
        return bool(trained["lat_ascending"])
    ends = trained.get("lat")
    if ends and ends[0] != ends[1]:
        return bool(ends[1] > ends[0])
    return True  # CRAI's: south to north


def _lon_origin(trained: dict[str, Any]) -> float:
    if trained.get("periodic") and trained.get("lon"):
        return float(trained["lon"][0])
    return CRAI_LON_ORIGIN


def _monotonic_order(da: xr.DataArray, dim: str, role: str, ascending: bool) -> np.ndarray | None:
    """Reversed positions when ``dim`` runs against ``ascending``; None when it runs along."""
    if dim not in da.coords or da.sizes[dim] < 2:
        return None
    index = da.get_index(dim)
    if index.is_unique and index.is_monotonic_increasing:
        increasing = True
    elif index.is_unique and index.is_monotonic_decreasing:
        increasing = False
    else:
        values = np.asarray(index)
        up, down = values[1:] > values[:-1], values[1:] < values[:-1]
        raise _not_monotonic(role, dim, values, up if up[0] else down)
    return None if increasing == ascending else np.arange(da.sizes[dim])[::-1]


def _longitude_order(da: xr.DataArray, grid: Grid, trained: dict[str, Any]) -> np.ndarray | None:
    """Positions of longitude ascending (modulo 360) and, when global, from the origin."""
    dim = grid.lon
    if dim not in da.coords or da.sizes[dim] < 2:
        return None
    if not _angular(da[dim]):
        return _monotonic_order(da, dim, "longitude", True)
    values = np.asarray(da[dim].values, dtype=np.float64)
    positions = np.arange(values.size)
    if _increasing_modulo_360(-values):
        positions = positions[::-1]
    elif not _increasing_modulo_360(values):
        up, down = _east_steps(values), _east_steps(-values)
        raise _not_monotonic("longitude", dim, values, up if up[0] else down)
    if grid.periodic:
        east = (values[positions] - _lon_origin(trained) + LON_TOLERANCE) % 360.0
        positions = np.roll(positions, -int(np.argmin(east)))
    return None if np.array_equal(positions, np.arange(values.size)) else positions


def _east_steps(values: np.ndarray) -> np.ndarray:
    """Whether each step goes east by less than half the globe."""
    steps = np.diff(values) % 360.0
    return (steps > 0) & (steps < 180)


def _increasing_modulo_360(values: np.ndarray) -> bool:
    """Strictly increasing, or contiguous when read modulo 360 (170, 175, -180, -175)."""
    if np.all(np.diff(values) > 0):
        return True
    return bool(_east_steps(values).all() and (np.diff(values) % 360.0).sum() < 360)


def _not_monotonic(role: str, dim: str, values: np.ndarray, forward: np.ndarray) -> ValueError:
    """The error for a coordinate whose steps ``forward`` (True: in the direction of the
    first step) are not all True."""
    broken = int(np.argmin(forward))
    how = " (modulo 360 degrees)" if role == "longitude" else ""
    return ValueError(
        f"data: {role} {dim!r} must be strictly increasing or decreasing{how}; found "
        f"{values[broken]} then {values[broken + 1]} at positions {broken} and {broken + 1} "
        f"(first values: {', '.join(map(str, values[:4]))}); sort it first, e.g. da.sortby({dim!r})"
    )


def aligned(other: xr.DataArray, da: xr.DataArray, refusal: str) -> xr.DataArray:
    """``other`` aligned on ``da``'s coordinates along the dimensions they share: reordered
    by its labels where they are ``da``'s in another order (latitude north to south, say,
    as :func:`xcrai.fit.on_data_grid` flips masks); a ValueError saying ``refusal`` (which
    names the argument) where the coordinates differ."""
    other = _reordered_like(other, da)
    try:
        other, _ = xr.align(other, da, join="exact")
    except ValueError:
        differ = [
            str(d) for d in other.dims
            if d in da.dims and d in other.coords and d in da.coords
            and not other.indexes[d].equals(da.indexes[d])
        ]  # fmt: skip
        named = f" (differing: {', '.join(differ)})" if differ else ""
        raise ValueError(refusal + named) from None
    return other


def _reordered_like(other: xr.DataArray, da: xr.DataArray) -> xr.DataArray:
    """``other`` with each shared dimension whose labels are exactly ``da``'s, in another
    order, put in ``da``'s order (a selection by label: its values follow their labels)."""
    order: dict[Any, np.ndarray] = {}
    for dim in other.dims:
        if dim not in da.dims or dim not in other.indexes or dim not in da.indexes:
            continue
        mine, theirs = other.indexes[dim], da.indexes[dim]
        if mine.equals(theirs) or len(mine) != len(theirs) or not mine.is_unique:
            continue
        positions = mine.get_indexer(theirs)
        if (positions >= 0).all():
            order[dim] = positions
    return other.isel(order) if order else other
