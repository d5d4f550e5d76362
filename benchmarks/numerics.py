"""What each precision changes, and what deterministic training costs, on one device.

What it measures
----------------
* ``accuracy``: the bundled HadCRUT4 sample tiled to ``--fields`` fields, infilled with
  CRAI's demo model in fp32 (IEEE) and in each other precision (tf32, bf16, fp16); the
  maximum and RMS difference of the raw output to fp32, in K, against the field's
  standard deviation. On a CPU tf32 is fp32 (TF32 is a CUDA format), so its difference
  is 0 there.
* ``invariance``: fp32 with batch sizes 1, 7 and the automatic one, and through dask in
  time chunks of 5: the largest difference to the automatic batch (0 means bit for bit).
* ``training``: CRAI's fitbench recipe (batch 8, hole loss) for ``--iterations`` steps
  with ``deterministic=True`` and ``False``, iterations per second (best of ``--runs``,
  taking turns), and whether two deterministic runs give the same weights.

Each line of output is JSON, with the device, torch version and date.

Usage::

    python benchmarks/numerics.py [--device cuda] [--fields 600] [--iterations 300]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xcrai
from xcrai.engine import resolve_device

FITBENCH = Path(__file__).parent / "fitbench" / "data"


def describe(device: str) -> dict[str, str]:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        from infill_cli import machine

        name = machine()
    return {"device": name, "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}  # fmt: skip


def series(fields: int) -> xr.DataArray:
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        tas = ds.tas.load()
    tiled = tas.isel(time=np.arange(fields) % tas.sizes["time"])
    rolled = [tiled[i].roll(lon=7 * i, roll_coords=False) for i in range(fields)]
    return xr.concat(rolled, "time").assign_coords(time=np.arange(fields))


def accuracy(data: xr.DataArray, model: xcrai.CraiModel, device: str) -> list[dict]:
    def output(**options: object) -> np.ndarray:
        result = data.crai.infill(model, device=device, return_output=True, **options)
        return result[f"{data.name}_output"].values

    reference = output()
    scale = float(data.std())
    rows = []
    for precision in ("tf32", "bf16", "fp16"):
        difference = output(precision=precision) - reference
        rms = float(np.sqrt(np.mean(difference**2)))
        rows.append({"measure": "accuracy", "precision": precision, "field_std_K": scale,
                     "max_K": float(np.abs(difference).max()), "rms_K": rms})  # fmt: skip
    batch = {size: output(batch_size=size) for size in (1, 7)}
    lazy = data.chunk(time=5).crai.infill(model, device=device, return_output=True)
    batch["dask time chunks of 5"] = lazy[f"{data.name}_output"].values
    for name, values in batch.items():
        variant = f"batch {name}" if isinstance(name, int) else name
        difference = float(np.abs(values - reference).max())
        rows.append({"measure": "invariance", "variant": variant, "max_difference_K": difference})
    return rows


def training(device: str, iterations: int, runs: int) -> list[dict]:
    with (
        xr.open_dataset(FITBENCH / "zg_train.nc") as a,
        xr.open_dataset(FITBENCH / "zg_masks.nc") as b,
    ):
        train, masks = a.zg.load(), b.zg.load()
    options = dict(iterations=iterations, batch_size=8, loss={"hole": 1}, progress=False,
                   device=device, validation=None)  # fmt: skip
    best: dict[bool, float] = {}
    weights: dict[bool, list] = {True: [], False: []}
    for _ in range(runs):
        for deterministic in (True, False):
            start = time.perf_counter()
            model = train.crai.fit(masks, deterministic=deterministic, **options)
            rate = iterations / (time.perf_counter() - start)
            best[deterministic] = max(best.get(deterministic, 0.0), rate)
            weights[deterministic].append(model.net.state_dict())

    def repeats(states: list) -> bool:
        return len(states) > 1 and all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    return [{"measure": "training", "deterministic": d, "iterations_per_s": round(best[d], 2),
             "weights_repeat": repeats(weights[d])} for d in (True, False)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fields", type=int, default=600)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    warnings.simplefilter("ignore", xcrai.UnreachableWarning)
    model = xcrai.load_model(xcrai.data.demo_model(), padding="global")
    rows = accuracy(series(args.fields), model, device)
    rows += training(device, args.iterations, args.runs)
    for row in rows:
        print(json.dumps({**row, **describe(device)}))


if __name__ == "__main__":
    main()
