"""Pieces the benchmarks share: scores on hidden points, the masks, the machine's name."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import erf

MASKS = Path(__file__).parent / "fitbench" / "data" / "zg_masks.nc"
#: fitbench's masks that hide test fields (cycled); the rest are training masks
TEST_MASKS = 20


def load_masks() -> xr.DataArray:
    """fitbench's 60 HadCRUT4-derived masks (1 observed) on its 73 x 144 grid."""
    with xr.open_dataset(MASKS) as ds:
        return ds.zg.load()


def as_dataarray(fields: np.ndarray, lat: np.ndarray, lon: np.ndarray, name: str = "grf",
                 freq: str = "D") -> xr.DataArray:  # fmt: skip
    """Fields (time, lat, lon) as a float32 DataArray with a time axis from 2000-01."""
    time_axis = pd.date_range("2000-01-01", periods=len(fields), freq=freq)
    return xr.DataArray(fields.astype(np.float32), dims=("time", "lat", "lon"), name=name,
                        coords={"time": time_axis, "lat": lat, "lon": lon})  # fmt: skip


def gaussian_crps(mean: np.ndarray, sd: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CRPS of N(mean, sd^2) against ``truth`` (|error| where sd is 0)."""
    error = truth - mean
    safe = np.where(sd > 0, sd, 1.0)
    z = error / safe
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
    crps = safe * (z * (2 * cdf - 1) + 2 * pdf - 1 / np.sqrt(np.pi))
    return np.where(sd > 0, crps, np.abs(error))


def scores(filled: np.ndarray, truth: np.ndarray, hidden: np.ndarray, weight: np.ndarray,
           sd: np.ndarray | None = None) -> dict:  # fmt: skip
    """Pooled scores over the hidden points of the first len(filled) fields."""
    count = len(filled)
    hidden, truth = hidden[:count], truth[:count]
    error = (filled.astype(np.float64) - truth)[hidden]
    w = np.broadcast_to(weight, hidden.shape)[hidden]
    record = {"fields": count, "points": int(hidden.sum()),
              "rmse": float(np.sqrt(np.mean(error**2))),
              "rmse_area": float(np.sqrt(np.sum(w * error**2) / np.sum(w)))}  # fmt: skip
    if sd is not None:
        s = sd[:count][hidden]
        record["within_1sd"] = float(np.mean(np.abs(error) <= s))
        record["within_2sd"] = float(np.mean(np.abs(error) <= 2 * s))
        record["crps"] = float(np.mean(gaussian_crps(np.zeros_like(error), s, error)))
    return record


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()




def machine() -> str:
    """The processor and the cores this process may use, for the results."""
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores"


def write_results(records: list[dict], json_path: Path | None, markdown_path: Path | None,
                  table: str) -> None:  # fmt: skip
    """The records as JSON lines and the markdown ``table``, where paths are given."""
    if json_path:
        json_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    if markdown_path:
        markdown_path.write_text(table)


def first_guesses(text: str) -> list[str | None]:
    """``--first-guess none,eof`` -> [None, "eof"]: the ``first_guess`` of each xcrai run."""
    from xcrai.options import parse_first_guess

    return [parse_first_guess(part) for part in text.split(",")]


def fit_changes(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items (VALUE as JSON, else a plain string) -> fit's keywords."""
    changes = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value  # a plain string, e.g. lr_schedule=constant
    return changes
