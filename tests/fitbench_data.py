"""The shipped fitbench data (benchmarks/fitbench/data: 500 hPa heights, HadCRUT4 masks),
as the training tests read it."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

FITBENCH = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"


def open_zg(name: str) -> xr.DataArray:
    """Variable ``zg`` of fitbench's file ``name``, loaded (the file closed again)."""
    with xr.open_dataset(FITBENCH / name) as ds:
        return ds.zg.load()
