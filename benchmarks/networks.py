"""Seconds per training iteration of every network ``fit`` trains (``fit(network=...)``).

Fitbench's 18 complete 500 hPa height fields (73 x 144) and its HadCRUT4 masks; the attention
network and the channel-infusion U-Net read a second variable derived from the heights
(``zg_smooth``: a 3-point running mean along longitude). Each network is trained twice from
the same seed, for 1 and for 1 + N iterations, at the default sizes (18 filters, depth 3) and
batch (16), without validation fields; the difference over N is the cost of one iteration
(batch drawing, forward, backward, Adam), free of the setup both runs share (a first,
untimed run takes the process's one-time costs).

    python benchmarks/networks.py [--iterations 20] [--threads auto] [--json results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from common import load_masks, machine  # noqa: E402

import xcrai  # noqa: E402

DATA = Path(__file__).parent / "fitbench" / "data" / "zg_train.nc"
#: name: (network, inputs, time context); None inputs: the DataArray zg alone
CASES = {
    "unet": ("unet", None, (0, 0)),
    "unet, 2 inputs (channel infusion)": ("unet", ["zg", "zg_smooth"], (0, 0)),
    "convlstm, time context (2, 2)": ("convlstm", None, (2, 2)),
    "trajgru, time context (2, 2)": ("trajgru", None, (2, 2)),
    "attention, 2 inputs": ("attention", ["zg", "zg_smooth"], (0, 0)),
}


def _data() -> xr.Dataset:
    with xr.open_dataset(DATA) as ds:
        zg = ds.zg.load()
    smooth = (zg.roll(lon=1, roll_coords=False) + zg + zg.roll(lon=-1, roll_coords=False)) / 3
    return xr.Dataset({"zg": zg, "zg_smooth": smooth})


def _seconds(data: xr.Dataset, masks: xr.DataArray, case: tuple, iterations: int,
             threads: int | str) -> float:  # fmt: skip
    network, inputs, steps = case
    options = dict(network=network, time_context=steps, iterations=iterations, progress=False,
                   validation=None, threads=threads, first_guess=None)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if inputs is None:
            data.zg.crai.fit(masks, **options)
        else:
            data.crai.fit(masks, inputs=inputs, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="N (default 20)")
    parser.add_argument("--threads", default="auto", help="CPU threads (default auto)")
    parser.add_argument("--json", type=Path, help="append one JSON line per network")
    parser.add_argument("--only", help="comma-separated networks (default all)")
    args = parser.parse_args()
    threads = args.threads if args.threads == "auto" else int(args.threads)
    data, masks = _data(), load_masks()
    wanted = None if args.only is None else set(args.only.split(","))
    _seconds(data, masks, CASES["unet"], 1, threads)  # the process's one-time costs
    print(f"{machine()}, torch {torch.__version__}")
    print("| network | seconds per iteration (batch 16) |\n| --- | --- |")
    for name, case in CASES.items():
        if wanted is not None and case[0] not in wanted:
            continue
        one = _seconds(data, masks, case, 1, threads)
        more = _seconds(data, masks, case, 1 + args.iterations, threads)
        per = (more - one) / args.iterations
        print(f"| {name} | {per:.3f} |", flush=True)
        if args.json is not None:
            record = {"network": name, "seconds_per_iteration": round(per, 4),
                      "iterations": args.iterations, "batch_size": 16,
                      "machine": machine(), "torch": torch.__version__}  # fmt: skip
            with args.json.open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
