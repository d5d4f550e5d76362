"""Finding latitude, longitude and time in xarray objects, and what the grid allows.

Detection follows CF (via cf-xarray: standard_name, units, axis), then the usual
names. Detection rules are data (:data:`USUAL_NAMES`), not branches.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    steps = np.diff(values.astype(np.float64)) % 360.0
    step = steps[0]
    if step == 0 or not np.allclose(steps, step, rtol=1e-4, atol=1e-6):
        return False, None
    return True, float(step * values.size)


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
    if lon in da.coords:
        uniform, span = _uniform_span(np.asarray(da[lon].values))
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
