"""Run by tests/test_train_distributed.py under torchrun: one data-parallel fit on fitbench."""

import json
import sys
from pathlib import Path

import xarray as xr

import xcrai  # noqa: F401

data = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
train = xr.open_dataset(data / "zg_train.nc").zg.load()
masks = xr.open_dataset(data / "zg_masks.nc").zg.load()
model = train.crai.fit(masks, **json.loads(sys.argv[1]), distributed=True)
import torch.distributed as dist  # noqa: E402

if dist.get_rank() == 0:
    model.save(sys.argv[2])
dist.destroy_process_group()
