"""Benchmark the whole ``xcrai infill`` command on N HadCRUT4 fields (72x72, CPU).

What it measures
----------------
The bundled HadCRUT4 sample (2 months with real holes) is tiled along time into a netCDF
file with N monthly fields. ``xcrai infill INPUT -m <demo model> -o OUTPUT --no-progress``
is then run as a separate process, exactly as a user would run it, and the script reports:

* ``wall_s``: wall time of the whole process (Python start-up, imports, model loading,
  reading, the network, writing), measured with ``time.perf_counter`` around it;
* ``fields_per_s``: N / wall_s;
* ``peak_rss_MB``: peak resident set size of the process, from ``/usr/bin/time -v``
  ("Maximum resident set size") or, without it, from ``os.wait4``'s rusage.

The output is checked: same shape as the input and no NaN left in ``tas``. Building the
input and checking the output run in a separate worker process, so this script itself stays
small: on Linux a child's ``ru_maxrss`` also counts its parent's peak RSS at fork/exec
(Python's ``subprocess`` uses vfork), which would otherwise inflate the wait4 figure.

Targets, on a 2-core CPU
------------------------
* 1,200 fields in at most 7 s for the whole process, with at most 1 GB peak RSS
  (CRAI takes 21 s and 5.0 GB for the same work);
* 12,000 fields still within 1 GB peak RSS (memory must not grow with the number of fields).

Usage::

    python benchmarks/infill_cli.py --fields 1200 [--runs 3] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: per-field chunking of the bundled sample, kept for the tiled input
FIELD_CHUNKS = (1, 72, 72)


@dataclass
class Result:
    """One timed run of ``xcrai infill``."""

    fields: int
    options: str
    wall_s: float
    fields_per_s: float
    peak_rss_MB: float
    machine: str
    date: str
    input_MB: float
    output_MB: float
    rss_source: str


def machine() -> str:
    """CPU model and usable core count, e.g. ``"Intel(R) Xeon(R) Processor, 2 cores"``."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def build_input(path: Path, fields: int) -> str:
    """Tile the bundled HadCRUT4 sample along time into ``fields`` monthly steps at ``path``.

    Returns the path of the demo model. Runs in the worker process (heavy imports).
    """
    import numpy as np
    import pandas as pd
    import xarray as xr

    import xcrai

    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as sample:
        sample = sample.load()
    tas = sample["tas"]
    tiled = sample.isel(time=np.arange(fields) % sample.sizes["time"])
    # unit="s": 12,000 months from 1850 run past the datetime64[ns] limit (2262)
    times = pd.date_range("1850-01-01", periods=fields, freq="MS", unit="s")
    tiled = tiled.assign_coords(time=("time", times, sample["time"].attrs))
    encoding = {
        "tas": {
            "dtype": "float32",
            "_FillValue": tas.encoding.get("_FillValue", np.float32(1e20)),
            "chunksizes": FIELD_CHUNKS,
        },
        "time": {"units": "days since 1850-01-01", "calendar": "standard", "dtype": "float64"},
    }
    if "missing_value" in tas.encoding:
        encoding["tas"]["missing_value"] = tas.encoding["missing_value"]
    for name in tiled.variables:
        tiled[name].encoding = {}
    tiled.to_netcdf(path, encoding=encoding, unlimited_dims=["time"])
    return str(xcrai.data.demo_model())


def in_worker(func: Callable[..., T], *args: object) -> T:
    """Run ``func(*args)`` in a fresh spawned (not forked) process, which exits afterwards.

    This keeps the heavy imports and data out of this process, so that it stays small.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as worker:
        return worker.submit(func, *args).result()


def xcrai_command() -> list[str]:
    """The ``xcrai`` entry point of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "xcrai"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("xcrai")
    if found:
        return [found]
    return [sys.executable, "-m", "xcrai.cli"]


def run_timed(command: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``command``; return wall seconds, peak RSS in MB and where the RSS came from."""
    gnu_time = Path("/usr/bin/time")
    use_time = gnu_time.is_file() and os.access(gnu_time, os.X_OK)
    if use_time:
        command = [str(gnu_time), "-v", *command]
    with log.open("w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if process.returncode != 0:
        sys.stderr.write(text)
        raise SystemExit(f"command failed with exit status {process.returncode}: {command}")
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
        if match:
            return wall, int(match.group(1)) / 1024, "/usr/bin/time -v"
    # ru_maxrss of the direct child, kB on Linux (with /usr/bin/time it is time's own); it
    # includes this process's own peak at the fork, hence the light parent (see docstring)
    return wall, usage.ru_maxrss / 1024, "wait4 rusage"


def check_output(input_path: Path, output_path: Path) -> None:
    """Fail unless ``tas`` in the output has the input's shape and no NaN (in the worker)."""
    import numpy as np
    import xarray as xr

    plain = {"decode_times": False}  # only tas matters; spares cftime warnings past 2262
    with (
        xr.open_dataset(input_path, **plain) as before,
        xr.open_dataset(output_path, **plain) as after,
    ):
        if after["tas"].shape != before["tas"].shape:
            raise RuntimeError(f"output shape {after['tas'].shape} != input {before['tas'].shape}")
        left = int(np.isnan(after["tas"].values).sum())
        if left:
            raise RuntimeError(f"output still has {left} NaN in tas")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fields", type=int, required=True, help="time steps in the input")
    parser.add_argument("--runs", type=int, default=1, help="timed runs on the same input")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for input/output")
    parser.add_argument("--keep", action="store_true", help="keep the input and output files")
    parser.add_argument(
        "--options", default="", help='extra options of xcrai infill, e.g. "--compile"'
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="append JSON lines here instead of stdout"
    )
    args = parser.parse_args(argv)
    if args.fields < 1 or args.runs < 1:
        parser.error("--fields and --runs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="xcrai-bench-"))
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    input_path = workdir / f"hadcrut4_x{args.fields}.nc"
    output_path = workdir / f"hadcrut4_x{args.fields}_infilled.nc"
    log = workdir / f"hadcrut4_x{args.fields}.log"
    try:
        model = in_worker(build_input, input_path, args.fields)
        command = [
            *xcrai_command(), "infill", str(input_path), "-m", model,
            "-o", str(output_path), "--no-progress", *args.options.split(),
        ]  # fmt: skip
        where = machine()
        for _ in range(args.runs):
            output_path.unlink(missing_ok=True)
            wall, rss, rss_source = run_timed(command, log)
            in_worker(check_output, input_path, output_path)
            result = Result(
                fields=args.fields,
                options=args.options,
                wall_s=round(wall, 3),
                fields_per_s=round(args.fields / wall, 1),
                peak_rss_MB=round(rss, 1),
                machine=where,
                date=datetime.now(timezone.utc).date().isoformat(),
                input_MB=round(input_path.stat().st_size / 1e6, 1),
                output_MB=round(output_path.stat().st_size / 1e6, 1),
                rss_source=rss_source,
            )
            print(
                f"fields={result.fields} wall_s={result.wall_s:.2f} "
                f"fields_per_s={result.fields_per_s:.1f} peak_rss_MB={result.peak_rss_MB:.0f} "
                f'machine="{result.machine}"',
                flush=True,
            )
            line = json.dumps(asdict(result))
            if args.json is None:
                print(line, flush=True)
            else:
                with args.json.open("a") as out:
                    out.write(line + "\n")
    finally:
        if not args.keep:
            for path in (input_path, output_path, log):
                path.unlink(missing_ok=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
