"""The .crai accessor's boundary: registration and clear errors on bad input."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import DATA

import xcrai


def test_import_registers_the_accessor(hadcrut):
    assert hasattr(hadcrut.tas, "crai") and hasattr(hadcrut, "crai")
    assert isinstance(hadcrut.tas.crai, xcrai.accessor.CraiDataArrayAccessor)


def test_no_latitude_longitude(demo_model):
    da = xr.DataArray(np.zeros((2, 8, 8), dtype=np.float32), dims=("time", "a", "b"))
    with pytest.raises(ValueError, match="data: no latitude dimension found"):
        da.crai.infill(demo_model)


def test_non_uniform_longitude_with_global_padding(hadcrut, demo_model):
    lon = hadcrut.lon.values.copy()
    lon[10:] += 1.0
    da = hadcrut.tas.assign_coords(lon=lon)
    with pytest.raises(ValueError, match=r"padding: 'global'.*not uniformly spaced"):
        da.crai.infill(demo_model, padding="global")


def test_mask_that_does_not_broadcast(hadcrut, demo_model):
    mask = xr.DataArray(np.ones((72, 36), bool), dims=("lat", "lon"))
    with pytest.raises(ValueError, match="mask: does not broadcast"):
        hadcrut.tas.crai.infill(demo_model, mask=mask)
    with pytest.raises(ValueError, match="mask: does not broadcast"):
        hadcrut.tas.crai.infill(demo_model, mask=mask.rename(lon="station"))
    with pytest.raises(ValueError, match="mask: expected a DataArray broadcastable"):
        hadcrut.tas.crai.infill(demo_model, mask=np.ones((72, 72)))
    with pytest.raises(TypeError, match="mask: a dict of masks by variable is for models of"):
        hadcrut.tas.crai.infill(demo_model, mask={"tas": np.ones(hadcrut.tas.shape)})
    ones = xr.ones_like(hadcrut.tas.isel(time=0, drop=True), dtype=bool)
    shifted = ones.assign_coords(lat=ones.lat + 1.0)  # another grid: refused, not aligned
    with pytest.raises(ValueError, match=r"mask: its coordinates differ .* \(differing: lat\)"):
        hadcrut.tas.crai.infill(demo_model, mask=shifted)


def test_mask_with_values_other_than_0_and_1(hadcrut, demo_model):
    mask = xr.ones_like(hadcrut.tas.isel(time=0, drop=True)) * 2
    with pytest.raises(ValueError, match="mask: expected bool or 0/1 values"):
        hadcrut.tas.crai.infill(demo_model, mask=mask)
    with pytest.raises(TypeError, match="mask: expected bool or 0/1"):
        hadcrut.tas.crai.infill(demo_model, mask=mask.astype(str))


def test_lazy_mask_with_values_other_than_0_and_1_fails_when_computed(hadcrut, demo_model):
    """A dask mask is checked as strictly as a NumPy one, when it is computed."""
    mask = (np.isfinite(hadcrut.tas) * 0.5).chunk(time=1)
    message = r"mask: expected bool or 0/1 values \(1 = valid\), found \[0\.\s+0\.5\]"
    with pytest.raises(ValueError, match=message):
        hadcrut.tas.crai.infill(demo_model, mask=mask.values)  # the NumPy mask's message
    with dask.config.set(scheduler=_refuse_to_compute):
        lazy = hadcrut.tas.chunk(time=1).crai.infill(demo_model, mask=mask)
    with pytest.raises(ValueError, match=message):
        lazy.compute()
    with pytest.raises(ValueError, match=message):  # NumPy data: computed at once
        hadcrut.tas.crai.infill(demo_model, mask=mask)
    good = hadcrut.tas.chunk(time=1).crai.infill(demo_model, mask=(mask * 2).astype("int8"))
    expected = hadcrut.tas.crai.infill(demo_model, mask=(mask * 2).values.astype("int8"))
    np.testing.assert_array_equal(good.values, expected.values)


def _refuse_to_compute(*args, **kwargs):
    raise AssertionError("something was computed")


def test_time_context_model_without_time_context(hadcrut):
    window = r"time_context: the model reads a window of P \+ F \+ 1 = 5 time steps"
    with pytest.raises(ValueError, match=window):
        hadcrut.tas.crai.infill(DATA / "channel-memory.inp.pth")
    with pytest.raises(ValueError, match=r"time_context: the model reads 5 time step\(s\)"):
        hadcrut.tas.crai.infill(DATA / "channel-memory.inp.pth", time_context=(1, 1))


def test_time_context_needs_a_time_dimension(hadcrut, memory_model):
    with pytest.raises(ValueError, match=r"time_context: .* needs a time dimension"):
        hadcrut.tas.isel(time=0).crai.infill(memory_model)


def test_model_path_that_does_not_exist(hadcrut, tmp_path):
    with pytest.raises(FileNotFoundError, match="model: no checkpoint file"):
        hadcrut.tas.crai.infill(tmp_path / "missing.pth")


def test_model_of_the_wrong_type(hadcrut):
    with pytest.raises(TypeError, match="model: expected a path to a checkpoint or a CraiModel"):
        hadcrut.tas.crai.infill(3.5)


def test_bad_options(hadcrut, demo_model):
    with pytest.raises(ValueError, match="padding: expected one of"):
        hadcrut.tas.crai.infill(demo_model, padding="circular")
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        hadcrut.tas.crai.infill(demo_model, batch_size=0)
    with pytest.raises(ValueError, match="device: "):
        hadcrut.tas.crai.infill(demo_model, device="tpu")
    with pytest.raises(TypeError, match="data: expected a floating-point"):
        hadcrut.tas.astype(str).crai.infill(demo_model)


def test_dataset_variables(hadcrut, demo_model):
    with pytest.raises(ValueError, match=r"variables: \['pr'\] not in the dataset"):
        hadcrut.crai.infill(demo_model, variables=["pr"])
    with pytest.raises(ValueError, match="variables: no data variable"):
        xr.Dataset({"n": ("x", [1, 2])}).crai.infill(demo_model)
    with pytest.raises(ValueError, match="variables: an empty list infills nothing"):
        hadcrut.crai.infill(demo_model, variables=[])
    twice = hadcrut.crai.infill(demo_model, variables=["tas", "tas"])  # infilled once
    xr.testing.assert_equal(twice, hadcrut.crai.infill(demo_model, variables=["tas"]))
    assert twice.attrs["history"].count("infilled tas") == 1
