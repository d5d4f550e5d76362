"""Shared fixtures: the shipped real data and models, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

import xcrai

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def hadcrut() -> xr.Dataset:
    """HadCRUT4 sample: 2 months, 72x72, real holes as NaN."""
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        return ds.load()


@pytest.fixture(scope="session")
def hadcrut_series(hadcrut: xr.Dataset) -> xr.DataArray:
    """A 12-month series built from the two real HadCRUT4 fields: each month is one of the
    two fields rolled in longitude, so holes and values differ from step to step."""
    import numpy as np
    import pandas as pd

    fields = []
    for i in range(12):
        field = hadcrut.tas.isel(time=i % 2).roll(lon=7 * i, roll_coords=False)
        fields.append(field.drop_vars("time"))
    series = xr.concat(fields, dim="time")
    series["time"] = pd.date_range("1900-01-01", periods=12, freq="MS")
    series.attrs = dict(hadcrut.tas.attrs)
    assert np.isnan(series.values).any()
    return series


@pytest.fixture(scope="session")
def demo_model() -> xcrai.CraiModel:
    return xcrai.load_model(xcrai.data.demo_model())


@pytest.fixture(scope="session")
def minimum_model() -> xcrai.CraiModel:
    return xcrai.load_model(DATA / "minimum-1.inp.pth")


@pytest.fixture(scope="session")
def memory_model() -> xcrai.CraiModel:
    return xcrai.load_model(DATA / "channel-memory.inp.pth", time_context=(3, 1))
