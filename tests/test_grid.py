"""xcrai.grid: finding latitude, longitude and time; what padding the grid allows."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xcrai.grid import find_grid, orientation, resolve_padding


def _field(lat_name="lat", lon_name="lon", lon=None, lat_attrs=None, lon_attrs=None):
    lon = np.arange(2.5, 360, 5.0) if lon is None else lon
    lat = np.arange(-88.75, 90, 2.5)
    return xr.DataArray(
        np.zeros((2, lat.size, lon.size), dtype=np.float32),
        dims=("t", lat_name, lon_name),
        coords={
            lat_name: (lat_name, lat, lat_attrs or {}),
            lon_name: (lon_name, lon, lon_attrs or {}),
        },
    )


def test_usual_names(hadcrut):
    grid = find_grid(hadcrut.tas)
    assert (grid.lat, grid.lon, grid.time) == ("lat", "lon", "time")
    assert grid.periodic and grid.lat_ascending


def test_cf_attributes_find_unusual_names():
    da = _field(
        "northing", "easting",
        lat_attrs={"standard_name": "latitude", "units": "degrees_north"},
        lon_attrs={"units": "degrees_east"},
    )  # fmt: skip
    da = da.rename(t="when").assign_coords(when=("when", [0, 1], {"axis": "T"}))
    grid = find_grid(da)
    assert (grid.lat, grid.lon, grid.time) == ("northing", "easting", "when")


def test_no_latitude_is_a_clear_error():
    da = xr.DataArray(np.zeros((3, 4)), dims=("a", "b"))
    with pytest.raises(ValueError, match="data: no latitude dimension found"):
        find_grid(da)


def test_curvilinear_grid_without_1d_dimensions_is_refused():
    da = xr.DataArray(np.zeros((3, 4)), dims=("y2", "x2"))
    da = da.assign_coords(lat=(("y2", "x2"), np.zeros((3, 4)), {"standard_name": "latitude"}))
    with pytest.raises(ValueError, match=r"latitude 'lat' is 2-D .*no 1-D latitude dimension"):
        find_grid(da)


def _cordex(axis_attrs: bool = True) -> xr.DataArray:
    """A rotated-pole field as CORDEX writes it: rlat/rlon dims, 2-D lat/lon coordinates."""
    rlat, rlon = np.arange(-23.375, 21.9, 0.44), np.arange(-28.375, 18.2, 0.44)
    y = {
        "standard_name": "grid_latitude",
        "units": "degrees",
        **({"axis": "Y"} if axis_attrs else {}),
    }
    x = {
        "standard_name": "grid_longitude",
        "units": "degrees",
        **({"axis": "X"} if axis_attrs else {}),
    }
    lat2d, lon2d = np.meshgrid(rlat + 50, rlon + 10, indexing="ij")
    return xr.DataArray(
        np.zeros((2, rlat.size, rlon.size), dtype=np.float32),
        dims=("time", "rlat", "rlon"),
        coords={
            "time": [0, 1],
            "rlat": ("rlat", rlat, y),
            "rlon": ("rlon", rlon, x),
            "lat": (
                ("rlat", "rlon"),
                lat2d,
                {"standard_name": "latitude", "units": "degrees_north"},
            ),
            "lon": (
                ("rlat", "rlon"),
                lon2d,
                {"standard_name": "longitude", "units": "degrees_east"},
            ),
        },
    )


@pytest.mark.parametrize("axis_attrs", [True, False])
def test_rotated_grid_uses_its_1d_dimension_coordinates(axis_attrs):
    grid = find_grid(_cordex(axis_attrs))
    assert (grid.lat, grid.lon, grid.time) == ("rlat", "rlon", "time")
    assert not grid.periodic and grid.lat_ascending
    renamed = _cordex(axis_attrs).rename(rlat="y_rot", rlon="x_rot")  # found by the CF attributes
    assert find_grid(renamed).spatial() == ("y_rot", "x_rot")


def test_projected_x_in_metres_is_not_a_longitude_modulo_360():
    da = _field(lon=np.arange(0, 72 * 3605.0, 3605.0), lon_attrs={"units": "m"})
    assert not find_grid(da).periodic
    turn = orientation(da.isel(lon=slice(None, None, -1)), find_grid(da), None)
    np.testing.assert_array_equal(turn.order["lon"], np.arange(72)[::-1])


def test_descending_longitude_covers_360_degrees():
    grid = find_grid(_field(lon=np.arange(357.5, 0, -5.0)))
    assert grid.lon_span == 360 and grid.periodic
    assert resolve_padding("global", grid) == "global"


def test_orientation_of_crai_models():
    """CRAI's: latitude south to north, longitude ascending from the first cell east of 0."""
    canonical = _field()
    assert orientation(canonical, find_grid(canonical), None).order == {}
    turned = _field(lon=np.arange(-177.5, 180, 5.0)).isel(lat=slice(None, None, -1))
    turn = orientation(turned, find_grid(turned), {"shape": [72, 72]})
    np.testing.assert_array_equal(turned.lon.values[turn.order["lon"]] % 360, canonical.lon)
    np.testing.assert_array_equal(turn.apply(turned).lat.values, canonical.lat.values)
    xr.testing.assert_identical(turn.undo(turn.apply(turned)), turned)


def test_orientation_refuses_non_monotonic_and_accepts_the_dateline():
    dateline = _field(lon=np.r_[170.0:180.0:5.0, -180.0:-160.0:5.0])
    assert orientation(dateline, find_grid(dateline), None).order == {}
    lon = np.arange(2.5, 360, 5.0)
    lon[[3, 4]] = lon[[4, 3]]
    with pytest.raises(ValueError, match="data: longitude 'lon' must be strictly increasing"):
        orientation(_field(lon=lon), find_grid(_field(lon=lon)), None)


def test_auto_padding():
    assert resolve_padding("auto", find_grid(_field())) == "global"
    regional = find_grid(_field(lon=np.arange(0, 100, 5.0)))
    assert resolve_padding("auto", regional) == "zeros"
    # -180..180 and 0..360 conventions are both global
    assert find_grid(_field(lon=np.arange(-177.5, 180, 5.0))).periodic


def test_global_padding_needs_uniform_360_degree_longitude():
    irregular = find_grid(_field(lon=np.r_[np.arange(2.5, 300, 5.0), np.arange(300, 360, 2.0)]))
    with pytest.raises(ValueError, match=r"padding: 'global'.*not uniformly spaced"):
        resolve_padding("global", irregular)
    regional = find_grid(_field(lon=np.arange(0, 100, 5.0)))
    with pytest.raises(ValueError, match="covering 100 degrees"):
        resolve_padding("global", regional)
    assert resolve_padding("zeros", irregular) == "zeros"
