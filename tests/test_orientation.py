"""Orientation: every model sees its training orientation, the user gets theirs back.

Latitude, longitude and time are reordered into the orientation the model was trained in
(CRAI's for CRAI checkpoints: latitude south to north, longitude from the first cell east
of 0 degrees), infilled, and put back; non-monotonic coordinates are refused. Also: rotated
grids (CORDEX), and the warning for a model run on another grid than its training grid.
"""

from __future__ import annotations

import dask
import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from reference import raw_state_dict, textbook_unet

import xcrai
from xcrai.model import ModelConfig

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")

REVERSE = slice(None, None, -1)


def _minus_180(da: xr.DataArray) -> xr.DataArray:
    """``da`` on the -180..180 longitude convention, longitude ascending."""
    return da.assign_coords(lon=(da.lon + 180) % 360 - 180).sortby("lon")


def _at_labels_of(got: xr.DataArray, like: xr.DataArray) -> np.ndarray:
    """``got``'s values at ``like``'s (time, lat, lon) labels, in ``like``'s order."""
    labels = {**{d: like[d] for d in like.dims}, "lon": like.lon % 360}
    return got.assign_coords(lon=got.lon % 360).sel(labels).transpose(*like.dims).values


@pytest.fixture(scope="module")
def canonical(hadcrut, demo_model) -> xr.DataArray:
    return hadcrut.tas.crai.infill(demo_model)


def _refuse_to_compute(*args, **kwargs):
    raise AssertionError("something was computed")


# -- orientation is undone exactly ---------------------------------------------------------


@pytest.mark.parametrize("padding", [None, "global"])
def test_descending_longitude_is_global_and_infilled_as_ascending(
    hadcrut, demo_model, canonical, padding
):
    flipped = hadcrut.tas.isel(lon=REVERSE)
    got = flipped.crai.infill(demo_model, padding=padding)
    assert "padding global" in got.attrs["history"].splitlines()[0]
    xr.testing.assert_identical(got.coords.to_dataset(), flipped.coords.to_dataset())
    np.testing.assert_array_equal(got.values, canonical.isel(lon=REVERSE).values)


def test_descending_latitude_with_a_crai_checkpoint(hadcrut, demo_model, canonical):
    got = hadcrut.tas.isel(lat=REVERSE).crai.infill(demo_model)
    np.testing.assert_array_equal(got.values, canonical.isel(lat=REVERSE).values)


def test_minus_180_to_180_longitude_is_rolled_to_crai_origin(hadcrut, demo_model, canonical):
    """-180..180 is a roll by 36 columns, not a multiple of the stride 8: without the roll
    back to CRAI's origin, global padding gives other numbers."""
    shifted = _minus_180(hadcrut.tas)
    got = shifted.crai.infill(demo_model)
    np.testing.assert_array_equal(got.lon.values, shifted.lon.values)
    np.testing.assert_array_equal(_at_labels_of(got, canonical), canonical.values)


def test_descending_time_with_a_time_context_model(hadcrut_series, memory_model):
    forward = hadcrut_series.crai.infill(memory_model, padding="zeros")
    backward = hadcrut_series.isel(time=REVERSE)
    got = backward.crai.infill(memory_model, padding="zeros")
    np.testing.assert_array_equal(got.values, forward.isel(time=REVERSE).values)
    lazy = backward.chunk(time=5).crai.infill(memory_model, padding="zeros")
    assert lazy.chunks[0] == (5, 5, 2)  # the user's chunks, in the user's order
    np.testing.assert_array_equal(lazy.values, got.values)


def test_everything_turned_at_once_stays_lazy_and_keeps_the_users_layout(
    hadcrut, demo_model, canonical
):
    da = _minus_180(hadcrut.tas).isel(lat=REVERSE, time=REVERSE).transpose("lon", "time", "lat")
    lazy = da.chunk(time=1, lon=24)
    with dask.config.set(scheduler=_refuse_to_compute):
        got = lazy.crai.infill(demo_model, return_output=True)
    assert all(isinstance(got[name].data, dask.array.Array) for name in got.data_vars)
    got = got.compute()
    for name in got.data_vars:
        assert got[name].dims == da.dims
        xr.testing.assert_identical(got[name].coords.to_dataset(), da.coords.to_dataset())
    valid = np.isfinite(da.values)
    np.testing.assert_array_equal(got.tas.values[valid], da.values[valid])
    np.testing.assert_array_equal(_at_labels_of(got.tas, canonical), canonical.values)


def test_a_native_model_gets_its_own_training_orientation(hadcrut, demo_model, canonical):
    """A model trained north to south on -180..180 sees its data that way round."""
    trained = {"shape": [72, 72], "lat": [88.75, -88.75], "lon": [-177.5, 177.5],
               "periodic": True, "lat_ascending": False}  # fmt: skip
    config = ModelConfig(
        architecture=demo_model.config.architecture, padding="global", grid=trained
    )
    native = xcrai.CraiModel(config, demo_model.net.state_dict())
    own = _minus_180(hadcrut.tas).isel(lat=REVERSE)  # its training orientation: as it is
    expected = own.crai.infill(native)
    valid = np.isfinite(own.values)
    state = raw_state_dict(xcrai.data.demo_model())
    out, _ = textbook_unet(state, own.values[:, None], valid[:, None], True)
    np.testing.assert_allclose(expected.values, np.where(valid, own.values, out), atol=2e-5)
    for da in (hadcrut.tas, hadcrut.tas.isel(lon=REVERSE)):
        got = da.crai.infill(native)
        np.testing.assert_array_equal(_at_labels_of(got, expected), expected.values)
    # and that orientation is not CRAI's: the same weights give other numbers
    assert not np.array_equal(hadcrut.tas.crai.infill(native).values, canonical.values)


def test_regional_longitude_across_the_dateline_is_contiguous(hadcrut, demo_model):
    crop = hadcrut.tas.isel(lat=slice(9, 62), lon=slice(30, 44))  # 152.5 .. 217.5, regional
    labelled = crop.assign_coords(lon=(crop.lon + 180) % 360 - 180)  # 152.5 .. 177.5, -177.5 ..
    with pytest.warns(UserWarning, match="trained on a 72x72"):
        want = crop.crai.infill(demo_model)
        got = labelled.crai.infill(demo_model)
    assert "padding zeros" in got.attrs["history"].splitlines()[0]
    np.testing.assert_array_equal(got.values, want.values)


@pytest.mark.parametrize("dim, role", [("lat", "latitude"), ("lon", "longitude"), ("time", "time")])
def test_non_monotonic_coordinates_are_refused(hadcrut_series, memory_model, dim, role):
    swapped = hadcrut_series.isel({dim: [1, 0, *range(2, hadcrut_series.sizes[dim])]})
    with pytest.raises(ValueError, match=rf"data: {role} '{dim}' must be strictly"):
        swapped.crai.infill(memory_model)
    with pytest.raises(ValueError, match=rf"positions 1 and 2 .*da\.sortby\('{dim}'\)"):
        swapped.crai.infill(memory_model)


def test_time_in_any_order_without_a_time_context(hadcrut_series, demo_model):
    """Fields infilled one by one do not depend on the order of time: it is left as it is."""
    shuffled = hadcrut_series.isel(time=[3, 0, 11, 5, 1, 2, 4, 6, 7, 8, 9, 10])
    got = shuffled.crai.infill(demo_model)
    expected = hadcrut_series.crai.infill(demo_model)
    np.testing.assert_array_equal(got.values, expected.sel(time=shuffled.time).values)


# -- the property: any orientation, convention, dim order and chunking -----------------------


@pytest.fixture(scope="module")
def series(hadcrut) -> xr.DataArray:
    """4 months from the two real HadCRUT4 fields, rolled (holes move from step to step)."""
    fields = [
        hadcrut.tas.isel(time=i % 2).roll(lon=5 * i, roll_coords=False).drop_vars("time")
        for i in range(4)
    ]
    series = xr.concat(fields, dim="time")
    return series.assign_coords(time=pd.date_range("1900-01-01", periods=4, freq="MS"))


@pytest.fixture(scope="module")
def series_canonical(series, demo_model) -> xr.DataArray:
    return series.crai.infill(demo_model)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lat_descending=st.booleans(),
    lon_descending=st.booleans(),
    time_descending=st.booleans(),
    minus_180=st.booleans(),
    order=st.permutations(("time", "lat", "lon")),
    chunks=st.none() | st.lists(st.integers(1, 4), min_size=1, max_size=4),
)
def test_any_orientation_gives_the_canonical_numbers(
    series, series_canonical, demo_model, lat_descending, lon_descending, time_descending,
    minus_180, order, chunks,
):  # fmt: skip
    da = _minus_180(series) if minus_180 else series
    flips = {"lat": lat_descending, "lon": lon_descending, "time": time_descending}
    da = da.isel({dim: REVERSE for dim, flip in flips.items() if flip}).transpose(*order)
    if chunks is not None:
        sizes = np.cumsum(chunks)
        time_chunks = tuple(np.diff(np.r_[0, sizes[sizes < 4], 4]))
        da = da.chunk({"time": time_chunks})
    got = da.crai.infill(demo_model)
    assert got.dims == da.dims
    np.testing.assert_array_equal(got.lon.values, da.lon.values)
    np.testing.assert_array_equal(_at_labels_of(got, series_canonical), series_canonical.values)


# -- rotated grids and the training grid ---------------------------------------------------


def _rotated(da: xr.DataArray) -> xr.DataArray:
    """``da`` dressed as a CORDEX file: rlat/rlon dimensions, 2-D lat/lon coordinates."""
    da = da.rename(lat="rlat", lon="rlon")
    da["rlat"].attrs = {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"}
    da["rlon"].attrs = {"standard_name": "grid_longitude", "units": "degrees", "axis": "X"}
    rlat, rlon = np.meshgrid(da.rlat.values, da.rlon.values, indexing="ij")
    lat_attrs = {"standard_name": "latitude", "units": "degrees_north"}
    lon_attrs = {"standard_name": "longitude", "units": "degrees_east"}
    return da.assign_coords(
        lat=(("rlat", "rlon"), rlat * 0.9 + 4.0, lat_attrs),
        lon=(("rlat", "rlon"), (rlon + 0.3 * rlat) % 360, lon_attrs),
    )


def test_rotated_grid_is_infilled_on_its_dimension_coordinates(hadcrut, demo_model, canonical):
    rotated = _rotated(hadcrut.tas)
    got = rotated.crai.infill(demo_model)
    xr.testing.assert_identical(got.coords.to_dataset(), rotated.coords.to_dataset())
    np.testing.assert_array_equal(got.values, canonical.values)


def test_a_model_on_another_grid_warns_at_the_callers_line(hadcrut, demo_model):
    fine = hadcrut.tas.reindex(
        lat=np.linspace(-90, 90, 73), lon=np.arange(0, 360, 2.5), method="nearest"
    )
    for model in (demo_model, "crai-20crtasgn72", xcrai.load_model(xcrai.data.demo_model())):
        with pytest.warns(UserWarning, match=r"trained on a 72x72 .*grid; .* is 73x144") as caught:
            fine.crai.infill(model)
        assert [w.filename for w in caught if "72x72" in str(w.message)] == [__file__]
