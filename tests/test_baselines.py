"""xcrai.baselines.poisson_fill against a relaxation written here, on real HadCRUT4 holes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xcrai
from xcrai.baselines import poisson_fill


@pytest.fixture(scope="module")
def tas() -> xr.DataArray:
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        return ds.tas.load()


def relax(field: np.ndarray, periodic: bool, tolerance: float = 1e-12) -> np.ndarray:
    """Laplace's equation on the holes by red-black successive over-relaxation: each
    hole point moves towards the mean of its four neighbours, edges mirrored (zero
    flux) except a periodic longitude, which wraps; until the largest step is below
    ``tolerance`` times the field's standard deviation."""
    hole = np.isnan(field)
    out = np.where(hole, np.nanmean(field), field).astype(np.float64)
    height, width = field.shape
    parity = np.add.outer(np.arange(height), np.arange(width)) % 2
    omega = 2 / (1 + np.sin(np.pi / max(height, width)))
    scale = np.nanstd(field)
    for _ in range(200_000):
        largest = 0.0
        for colour in (0, 1):
            padded = np.pad(out, ((1, 1), (0, 0)), mode="edge")
            padded = np.pad(padded, ((0, 0), (1, 1)), mode="wrap" if periodic else "edge")
            mean = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
            update = hole & (parity == colour)
            step = omega * (mean - out)[update]
            out[update] += step
            largest = max(largest, float(np.abs(step).max(initial=0)))
        if largest < tolerance * scale:
            return out
    raise AssertionError("the relaxation did not converge")


@pytest.mark.parametrize("region", ["global", "regional"])
def test_matches_a_converged_relaxation(tas, region):
    data = tas if region == "global" else tas.isel(lat=slice(40, 60), lon=slice(5, 35))
    assert xcrai.grid.find_grid(data).periodic == (region == "global")
    filled = poisson_fill(data)
    for index in range(data.sizes["time"]):
        field = data.isel(time=index).values
        assert np.isnan(field).any() and np.isfinite(field).any()
        expected = relax(field, periodic=region == "global")
        error = np.abs(filled.isel(time=index).values - expected).max()
        assert error <= 1e-5 * np.nanstd(field)


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 2}, {"time": 1, "lat": 10, "lon": 30}])
def test_lazy_equals_eager_bitwise(tas, chunks):
    data = xr.concat([tas, tas.isel(lon=slice(None, None, -1)).values * 0.5 + tas], "time")
    eager = poisson_fill(data)
    lazy = poisson_fill(data.chunk(chunks))
    assert lazy.chunks is not None  # still lazy
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_valid_points_unchanged_any_dim_order(tas):
    transposed = tas.transpose("lon", "time", "lat")
    filled = poisson_fill(transposed)
    assert filled.dims == transposed.dims and filled.dtype == tas.dtype
    valid = np.isfinite(transposed.values)
    np.testing.assert_array_equal(filled.values[valid], transposed.values[valid])
    assert not filled.isnull().any()
    expected = poisson_fill(tas)
    xr.testing.assert_identical(filled.transpose(*tas.dims), expected.assign_attrs(filled.attrs))
    assert filled.attrs["units"] == tas.attrs["units"]
    assert "poisson_fill" in filled.attrs["history"].splitlines()[0]
    with_history = poisson_fill(tas.assign_attrs(history="made by hand"))
    assert with_history.attrs["history"].endswith("\nmade by hand")
    with xr.set_options(keep_attrs=False):
        assert poisson_fill(tas).attrs == {}


def test_empty_fields_stay_nan_and_complete_fields_stay(tas):
    data = tas.copy()
    data[0] = np.nan
    data[1] = 1.5
    filled = poisson_fill(data)
    assert filled[0].isnull().all()
    assert (filled[1] == 1.5).all()


def test_cyclic_longitude_rolls_with_the_input(tas):
    filled = poisson_fill(tas)
    for shift in (1, 17, 36):
        rolled = poisson_fill(tas.roll(lon=shift, roll_coords=True))
        np.testing.assert_allclose(
            rolled.values, filled.roll(lon=shift, roll_coords=True).values, rtol=0, atol=1e-5
        )


def test_bad_input_is_refused(tas):
    with pytest.raises(TypeError, match=r"da: expected an xarray\.DataArray"):
        poisson_fill(tas.to_dataset())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="da: expected floating-point"):
        poisson_fill(tas.fillna(0).astype(int))
    with pytest.raises(ValueError, match="da: no latitude"):
        poisson_fill(xr.DataArray(np.zeros((3, 4)), dims=("a", "b")))
