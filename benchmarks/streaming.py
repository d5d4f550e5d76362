"""Streaming: infill a lazily generated dataset to netCDF; peak memory vs dataset size.

The dataset (N fields of H x W, default ERA5's 721 x 1440) is generated block by block by
dask from the bundled HadCRUT4 months, resampled to the grid and rolled in longitude from
step to step, holes included; it never exists whole in memory. ``.crai.infill`` with the
demo model streams it to a netCDF file. The script prints throughput and peak RSS; run it
for two sizes to see that peak memory is set by the chunk and batch sizes, not by N.

``--store zarr`` writes ``.to_zarr(...)`` instead of ``.to_netcdf(...)``. ``--workers N``
runs dask's threaded scheduler with N threads (default: one per core); ``--memory SIZE``
lets :func:`xcrai.streaming.memory_budget` choose them from a memory budget instead.

Usage: python benchmarks/streaming.py --fields 60 [--grid 721x1440] [--time-chunk 4]
                                      [--store netcdf|zarr] [--workers N | --memory 1GB]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

import xcrai
from xcrai.streaming import memory_budget


def lazy_dataset(n: int, shape: tuple[int, int], chunk: int) -> xr.DataArray:
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        base = ds.tas.values
    rows = np.arange(shape[0]) * base.shape[1] // shape[0]
    cols = np.arange(shape[1]) * base.shape[2] // shape[1]
    grid = base[:, rows][:, :, cols].astype(np.float32)

    def block(block_info=None):
        start, stop = block_info[None]["array-location"][0]
        return np.stack([np.roll(grid[t % 2], 7 * t, axis=-1) for t in range(start, stop)])

    data = dsa.map_blocks(
        block, chunks=((chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ()),
                       (shape[0],), (shape[1],)), dtype=np.float32,
    )  # fmt: skip
    lat = np.linspace(-90, 90, shape[0])
    lon = np.arange(shape[1]) * 360.0 / shape[1]
    return xr.DataArray(
        data, dims=("time", "lat", "lon"), name="t2m",
        coords={"time": np.arange(n), "lat": lat, "lon": lon}, attrs={"units": "K"},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fields", type=int, required=True)
    parser.add_argument("--grid", default="721x1440")
    parser.add_argument("--time-chunk", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--store", choices=["netcdf", "zarr"], default="netcdf")
    parser.add_argument("--workers", type=int, default=None, help="dask threads")
    parser.add_argument("--memory", default=None, help="memory budget, e.g. 1GB")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.grid.split("x"))
    da = lazy_dataset(args.fields, shape, args.time_chunk)
    model = xcrai.load_model(xcrai.data.demo_model())
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / ("out.zarr" if args.store == "zarr" else "out.nc")
        if args.memory:
            threads = memory_budget(args.memory, da)
        else:
            threads = dask.config.set(scheduler="threads", num_workers=args.workers)
        start = time.perf_counter()
        with threads as workers:
            filled = da.crai.infill(model, device=args.device)
            if args.store == "zarr":
                filled.to_dataset().to_zarr(out)
            else:
                filled.to_netcdf(out)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*")) if out.is_dir() else out.stat().st_size
    print(json.dumps({
        "fields": args.fields, "grid": args.grid, "time_chunk": args.time_chunk,
        "store": args.store, "memory": args.memory,
        "workers": workers if args.memory else args.workers or "one per core",
        "seconds": round(seconds, 1), "fields_per_s": round(args.fields / seconds, 2),
        "dataset_MB": round(args.fields * shape[0] * shape[1] * 4 / 2**20),
        "output_MB": round(size / 2**20),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
