"""xcrai.baselines: poisson_fill against a relaxation written here, on real HadCRUT4 holes;
climatology_fill and eof_fill against records whose answer is known, made from fitbench."""

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


@pytest.fixture(scope="module")
def fitbench():
    """fitbench's 500 hPa height anomalies (18 fields, m) and its HadCRUT4 masks."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fitbench_data import open_zg

    return open_zg("zg_train.nc"), open_zg("zg_masks.nc")


def _hidden(record: xr.DataArray, masks: xr.DataArray) -> xr.DataArray:
    """``record`` with field t hidden outside mask ``t % len(masks)`` (NaN)."""
    keep = masks.values[np.arange(record.sizes["time"]) % masks.sizes["time"]] == 1
    return record.where(xr.DataArray(keep, dims=record.dims))


def test_climatology_fill_reproduces_a_monthly_cycle(fitbench):
    """A record that is exactly a monthly cycle (fitbench's first 12 fields as the 12
    months, three years) is reproduced exactly at every hidden point of the next year."""
    from xcrai.baselines import climatology_fill

    zg, masks = fitbench
    cycle = zg.isel(time=slice(0, 12)).values.astype(np.float64)
    times = xr.date_range("1990-01-01", periods=48, freq="MS")
    record = xr.DataArray(np.concatenate([cycle] * 4), dims=zg.dims,
                          coords={"time": times, "lat": zg.lat, "lon": zg.lon})  # fmt: skip
    training, later = record.isel(time=slice(0, 36)), record.isel(time=slice(36, None))
    test = _hidden(later, masks)
    filled = climatology_fill(test, training)
    holes = np.isnan(test.values)
    assert holes.sum() > 50_000
    np.testing.assert_allclose(filled.values[holes], later.values[holes], rtol=1e-12)
    np.testing.assert_array_equal(filled.values[~holes], test.values[~holes])
    assert "by calendar month" in filled.attrs["history"]
    # without dates (or months) to go by: the mean of every training field
    plain = climatology_fill(test.drop_vars("time"), training.drop_vars("time"))
    expected = np.broadcast_to(cycle.mean(axis=0), test.shape)
    np.testing.assert_allclose(plain.values[holes], expected[holes], rtol=1e-12)
    assert "the mean of every field" in plain.attrs["history"]


def test_climatology_fill_falls_back_where_a_month_was_never_observed(fitbench):
    """A point never observed in January takes its mean over every training field."""
    from xcrai.baselines import climatology_fill

    zg, _ = fitbench
    times = xr.date_range("1990-01-01", periods=24, freq="MS")
    training = zg.isel(time=np.arange(24) % 18).assign_coords(time=times).copy()
    training[{"time": [0, 12], "lat": 5, "lon": 7}] = np.nan
    test = training.isel(time=[0]).copy()
    test[{"lat": 5, "lon": 7}] = np.nan
    filled = climatology_fill(test, training)
    expected = float(training.isel(lat=5, lon=7).mean(skipna=True))
    assert float(filled.isel(time=0, lat=5, lon=7)) == pytest.approx(expected, rel=1e-6)


def test_eof_fill_reconstructs_fields_of_two_eofs_from_their_observed_points(fitbench):
    """Fields that are exactly a mean plus a sum of 2 patterns (two fitbench anomalies)
    are reconstructed at every hidden point from about a quarter of their points, and the
    cross-validation chooses k = 2."""
    from xcrai.baselines import Eofs, choose_eof_count, eof_fill

    zg, masks = fitbench
    mean, a, b = (zg.values[i].astype(np.float64) for i in (0, 1, 2))
    weights = np.random.default_rng(0).normal(size=(20, 2)) * [3.0, 1.0]
    fields = mean + weights[:, :1, None] * a + weights[:, 1:, None] * b
    record = xr.DataArray(fields, dims=zg.dims, coords={"lat": zg.lat, "lon": zg.lon})
    training, later = record.isel(time=slice(0, 16)), record.isel(time=slice(16, None))
    test = _hidden(later, masks)
    holes = np.isnan(test.values)
    flat = training.values.reshape(16, -1)
    observed = masks.values.reshape(len(masks), -1) == 1
    k, errors = choose_eof_count(flat, observed)
    assert k == 2 and len(Eofs.of(flat).patterns) == 2
    assert errors[2] < 1e-12 * errors[0]
    filled = eof_fill(test, training, masks)
    np.testing.assert_allclose(filled.values[holes], later.values[holes], rtol=1e-8, atol=1e-6)
    np.testing.assert_array_equal(filled.values[~holes], test.values[~holes])
    assert "2 EOF(s)" in filled.attrs["history"]
    one = eof_fill(test, training, masks, k=1)  # one pattern cannot do it
    assert np.abs(one.values[holes] - later.values[holes]).max() > 1.0
