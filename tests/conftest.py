"""Shared fixtures: the shipped real data and models, loaded once.

The device-dependent tests run on whatever ``device="auto"`` finds. ``XCRAI_TEST_DEVICE``
chooses: ``cuda`` insists on a GPU (and fails without one), ``cpu`` hides the GPUs from
torch, so the same suite checks either device. Tests marked ``cuda`` need a GPU and are
skipped without one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xarray as xr

import xcrai

DATA = Path(__file__).parent / "data"
TEST_DEVICE = os.environ.get("XCRAI_TEST_DEVICE", "auto")
if TEST_DEVICE == "cpu":  # before torch looks for GPUs
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_configure(config: pytest.Config) -> None:
    import torch

    if TEST_DEVICE not in ("auto", "cpu", "cuda"):
        raise pytest.UsageError(f"XCRAI_TEST_DEVICE: expected auto, cpu or cuda, got "
                                f"{TEST_DEVICE!r}")  # fmt: skip
    if TEST_DEVICE == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("XCRAI_TEST_DEVICE=cuda, but torch finds no CUDA device")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> str:
    """The device the device-dependent tests run on ("cuda" or "cpu")."""
    from xcrai.engine import resolve_device

    return resolve_device("auto").type


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
