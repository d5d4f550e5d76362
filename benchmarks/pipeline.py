"""netCDF-to-netCDF: the whole infill pipeline against reading and writing alone.

Writes an input file of N fields (the bundled HadCRUT4 months resampled to the grid and
rolled in longitude from step to step, holes as NaN, float32, one netCDF chunk per field),
then times, in this process:

- ``io``: what reading and writing alone take: ``xr.open_dataset`` with the chunks that
  ``xcrai infill`` uses, straight to ``to_netcdf`` (the same dask scheduler and writer);
- ``compute``: the network alone, ``xcrai.engine.predict`` on the fields already in memory;
- ``pipeline``: ``xcrai.cli.infill_file``, the function behind ``xcrai infill``.

taking turns (one of each per round, so that a slow spell of a shared machine hits all
three alike). It prints, best of ``--runs``, fields per second of each, ``pipeline / io``
(the target on a GPU is at least 0.8) and ``overlap``: the pipeline's time against running
I/O and compute one after the other (1.0 = no overlap, 0.5 = one hides the other entirely).
Imports, the model and the page cache are warm; a first, untimed run of each warms them up.

Usage: python benchmarks/pipeline.py --fields 2000 [--grid 72x72] [--device auto] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xcrai
from xcrai.cli import _chunks, infill_file
from xcrai.engine import predict, resolve_device
from xcrai.options import InfillOptions

sys.path.insert(0, str(Path(__file__).parent))
from infill_cli import machine
from streaming import lazy_dataset
from throughput import best_rates


def write_input(path: Path, fields: int, shape: tuple[int, int]) -> None:
    """The benchmark's input file, written block by block (never whole in memory)."""
    da = lazy_dataset(fields, shape, chunk=max(1, int(2**26 // (4 * shape[0] * shape[1]))))
    encoding = {"chunksizes": (1, *shape), "_FillValue": np.float32(np.nan)}
    da.to_dataset().to_netcdf(path, encoding={da.name: encoding})


def copy_file(source: Path, target: Path) -> None:
    """Read and write alone: the same chunks and writer as ``xcrai infill``, no network."""
    with xr.open_dataset(source, chunks={}) as probe:
        chunks = _chunks(probe, None, None)
    with xr.open_dataset(source, chunks=chunks) as ds:
        ds.to_netcdf(target)


def compute_only(model: xcrai.CraiModel, source: Path, device: torch.device):
    """The network alone on the fields in memory; returns a function to time."""
    with xr.open_dataset(source) as ds:
        values = ds.t2m.values[None]
    # predict returns host arrays, and best_rates syncs the device around each pass
    return partial(predict, model, values, np.isfinite(values), device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fields", type=int, required=True)
    parser.add_argument("--grid", default="72x72")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the files")
    args = parser.parse_args()
    # some HadCRUT4 holes lie beyond the network's reach (see README); expected here
    warnings.simplefilter("ignore", xcrai.UnreachableWarning)
    shape = tuple(int(v) for v in args.grid.split("x"))
    device = resolve_device(args.device)
    # the grid is global, so `xcrai infill` resolves padding "auto" to "global"; so does this
    model = xcrai.load_model(xcrai.data.demo_model(), padding="global")
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        source, target = Path(folder) / "in.nc", Path(folder) / "out.nc"
        write_input(source, args.fields, shape)

        def io() -> None:
            target.unlink(missing_ok=True)
            copy_file(source, target)

        def pipeline() -> None:
            target.unlink(missing_ok=True)
            infill_file(source, model, target, InfillOptions(device=str(device), progress=False))

        compute = compute_only(model, source, device)
        rates = best_rates({
            "io": (io, args.fields), "compute": (compute, args.fields),
            "pipeline": (pipeline, args.fields),
        }, args.runs, device)  # fmt: skip
        seconds = {name: args.fields / rate for name, rate in rates.items()}
        with xr.open_dataset(target) as out:
            assert out.t2m.shape == (args.fields, *shape)
            assert not np.isnan(out.t2m.values).any(), "NaN left in the output"
        size = source.stat().st_size
    rate = {name: round(args.fields / s, 1) for name, s in seconds.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(json.dumps({
        "fields": args.fields, "grid": args.grid, "device": name,
        "input_MB": round(size / 2**20, 1),
        **{f"{k}_fields_per_s": v for k, v in rate.items()},
        "pipeline_over_io": round(seconds["io"] / seconds["pipeline"], 2),
        "overlap": round(seconds["pipeline"] / (seconds["io"] + seconds["compute"]), 2),
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
