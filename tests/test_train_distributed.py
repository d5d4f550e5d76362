"""torch.distributed training: 2 processes (gloo, CPU) equal 1 process with the same batch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcrai

HERE = Path(__file__).parent
OPTIONS = dict(validation=0.2, iterations=8, batch_size=4, lr=1e-3, log_every=2, seed=1,
               architecture={"n_filters": 4, "depth": 3}, progress=False, device="cpu")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "ddp.pth"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        str(HERE / "ddp_fit.py"), json.dumps(OPTIONS), str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = xcrai.load_model(out)

    data = HERE.parent / "benchmarks" / "fitbench" / "data"
    with xr.open_dataset(data / "zg_train.nc") as a, xr.open_dataset(data / "zg_masks.nc") as b:
        single = a.zg.load().crai.fit(b.zg.load(), **OPTIONS)
    for name in ("train_loss", "val_loss", "val_hole_rmse"):
        np.testing.assert_allclose(
            distributed.history[name].values, single.history[name].values, rtol=1e-4
        )
    for key, value in single.net.state_dict().items():
        other = distributed.net.state_dict()[key]
        if value.dtype.is_floating_point:
            torch.testing.assert_close(other, value, rtol=1e-3, atol=1e-5)


def test_distributed_needs_torchrun():
    data = HERE.parent / "benchmarks" / "fitbench" / "data"
    with xr.open_dataset(data / "zg_train.nc") as a, xr.open_dataset(data / "zg_masks.nc") as b:
        with pytest.raises(ValueError, match="distributed: expected to run under torchrun"):
            a.zg.crai.fit(b.zg, distributed=True, iterations=1, batch_size=1)
