"""The shipped fitbench data (benchmarks/fitbench/data: 500 hPa heights, HadCRUT4 masks),
as the training tests read it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import xarray as xr

FITBENCH = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"


def open_zg(name: str) -> xr.DataArray:
    """Variable ``zg`` of fitbench's file ``name``, loaded (the file closed again)."""
    with xr.open_dataset(FITBENCH / name) as ds:
        return ds.zg.load()


def smoothed(zg: xr.DataArray) -> xr.DataArray:
    """``zg_smooth``: a 3-point running mean of ``zg`` along longitude (periodic), its attrs
    kept: a second variable derived from the heights, for models of several inputs."""
    smooth = (zg.roll(lon=1, roll_coords=False) + zg + zg.roll(lon=-1, roll_coords=False)) / 3
    smooth.attrs = dict(zg.attrs)
    return smooth.rename("zg_smooth")


def kill_fit_after_a_checkpoint(folder: Path, iterations: int, *extra: str) -> int:
    """Start ``xcrai fit`` on fitbench (a real process: tiny network, one thread,
    checkpoints every 5 iterations into ``folder``), SIGKILL it once its first checkpoint
    is there, and return the iterations that checkpoint holds (0 < done < iterations)."""
    args = [sys.executable, "-m", "xcrai.cli", "fit", str(FITBENCH / "zg_train.nc"), "--masks",
            str(FITBENCH / "zg_masks.nc"), "-o", str(folder / "never.pth"), "--validation",
            "0", "--iterations", str(iterations), "--checkpoint-every", "5",
            "--checkpoint-dir", str(folder), "--batch-size", "4", "--n-filters", "4",
            "--depth", "2", "--threads", "1", "--no-progress", *extra]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = folder / "checkpoint.pth"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    assert checkpoint.exists(), stderr.decode()
    done = torch.load(checkpoint, weights_only=True)["iteration"]
    assert 0 < done < iterations  # killed mid-way
    assert not (folder / "never.pth").exists()
    return int(done)
