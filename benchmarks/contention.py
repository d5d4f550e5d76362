"""``xcrai fit`` and ``xcrai infill`` on a CPU shared with other busy processes.

What it measures
----------------
Shared login nodes are where many users train and infill. This script starts
``--competitors`` CPU-bound processes (a Python busy loop each) and, while they run, times
the whole ``xcrai fit`` command (CRAI's fitbench recipe, ``--iterations`` steps of batch 8)
and the whole ``xcrai infill`` command (``--fields`` HadCRUT4 fields, built as in
``infill_cli.py``), once for each ``--threads`` setting: ``auto`` (xcrai's default: the
cores other processes leave free), the core count (torch's own default), and 1. The
settings take turns, ``--runs`` times, so a slow spell of the machine hits them alike; the
best run of each is reported. ``--competitors 0`` gives the figures of an idle machine.

Each line of output is JSON: the command, threads, competitors, wall time of the whole
process and, for fit, seconds per iteration (wall time / iterations, start-up included).

Usage::

    python benchmarks/contention.py [--competitors 2] [--iterations 40] [--fields 1200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from infill_cli import build_input, in_worker, machine, xcrai_command

FITBENCH = Path(__file__).parent / "fitbench" / "data"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--competitors", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--fields", type=int, default=1200)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    settings = ["auto", str(cores), "1"]
    xcrai = xcrai_command()
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "in.nc"
        model = in_worker(build_input, source, args.fields)
        commands = {
            "fit": lambda threads: [
                *xcrai, "fit", str(FITBENCH / "zg_train.nc"), "--masks",
                str(FITBENCH / "zg_masks.nc"), "-o", f"{work}/m.pth", "--overwrite",
                "--iterations", str(args.iterations), "--batch-size", "8", "--loss", "hole=1",
                "--no-progress", "--threads", threads,
            ],
            "infill": lambda threads: [
                *xcrai, "infill", str(source), "-m", model, "-o", f"{work}/out.nc",
                "--overwrite", "--no-progress", "--threads", threads,
            ],
        }  # fmt: skip
        busy = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.competitors)
        ]
        try:
            time.sleep(1)
            best: dict[tuple[str, str], float] = {}
            for _ in range(args.runs):
                for name, command in commands.items():
                    for threads in settings:
                        wall = timed(command(threads))
                        key = (name, threads)
                        best[key] = min(best.get(key, wall), wall)
        finally:
            for process in busy:
                process.kill()
                process.wait()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for (name, threads), wall in best.items():
        row = {"command": name, "threads": threads, "competitors": args.competitors,
               "wall_s": round(wall, 2), "machine": machine(), "date": stamp}  # fmt: skip
        if name == "fit":
            row["s_per_iteration"] = round(wall / args.iterations, 3)
        else:
            row["fields"] = args.fields
        print(json.dumps(row))


if __name__ == "__main__":
    main()
