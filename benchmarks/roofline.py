"""Where the engine stands on the device's roofline (memory bandwidth and arithmetic).

For the demo model on HadCRUT4 fields at a grid, in the batches ``xcrai.engine.predict``
chooses:

- ``flops_per_field``: floating-point operations of one forward pass, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions; elementwise work is small
  beside them and left out, as that counter does);
- ``bytes_per_field``: bytes every operator of the eager forward pass reads and writes
  (inputs plus outputs of each ATen call, counted with a ``TorchDispatchMode``): the traffic
  to memory when nothing stays in cache between operators;
- the machine's roofs, measured here: ``peak_GBps`` from a large tensor copy (STREAM copy:
  read + write) and ``peak_GFLOPs`` from a large float32 matrix product (or pass
  ``--peak-GBps`` / ``--peak-GFLOPs`` to use a datasheet's figures);
- the engine's measured throughput (as ``benchmarks/throughput.py``), and from it the
  achieved GB/s and GFLOP/s, each as a fraction of its roof, the arithmetic intensity
  (FLOP per byte) against the machine balance (peak FLOP/s over peak bytes/s), and the
  fraction of the attainable ``min(peak_GFLOPs, intensity * peak_GBps)`` reached.

Usage: python benchmarks/roofline.py [--grid 72x72] [--device auto] [--fields N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import xcrai
from xcrai.engine import auto_batch_size, choose_tile, predict, resolve_device
from xcrai.numerics import Numerics, scoped

sys.path.insert(0, str(Path(__file__).parent))
from infill_cli import machine
from throughput import network_once, sample_fields, sync


class ByteCounter(TorchDispatchMode):
    """Sums the bytes each ATen operator reads and writes: every distinct tensor it takes or
    returns (an in-place result is its input, counted once); views and allocations move
    no data and count nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.is_view or func.overloadpacket in (
            torch.ops.aten.empty,
            torch.ops.aten.empty_strided,
        ):
            return out
        tensors = {
            (t.data_ptr(), tuple(t.shape), t.stride()): t.nbytes
            for t in torch.utils._pytree.tree_leaves((args, kwargs, out))
            if isinstance(t, torch.Tensor)
        }
        self.bytes += sum(tensors.values())
        return out


def stream_copy_GBps(device: torch.device, megabytes: int = 1024) -> float:
    """Best of 10 copies of a large float32 tensor; counts one read and one write."""
    a = torch.ones(megabytes * 2**18, device=device)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        b.copy_(a)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * a.nbytes / best / 1e9


def matmul_GFLOPs(device: torch.device, n: int = 4096) -> float:
    """Best of 5 float32 products of two n x n matrices (IEEE: TF32 off, as xcrai's fp32)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    with scoped(Numerics.inference("fp32")):
        for _ in range(5):
            sync(device)
            start = time.perf_counter()
            a @ b
            sync(device)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def network_fields_per_s(
    model: xcrai.CraiModel, fields: np.ndarray, device: torch.device, seconds: float = 2.0
) -> float:
    """The network alone on one batch already on the device (IEEE fp32), repeated for
    about ``seconds``: no preparation, no copies."""
    once = network_once(model, fields, device)
    with scoped(Numerics.inference("fp32")):
        once()  # warm-up
        sync(device)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            once()
            runs += 1
            if runs % 8 == 0:
                sync(device)
        sync(device)
        elapsed = time.perf_counter() - start
    return runs * fields.shape[1] / elapsed


def per_field_counts(model: xcrai.CraiModel, fields: np.ndarray, device: torch.device):
    """FLOPs and bytes of one forward pass, per field, at the batch the engine uses."""
    net = model.replica(device)
    valid = np.isfinite(fields[0])
    x = torch.from_numpy(np.where(valid, fields[0], 0)[:, None]).to(device)
    m = torch.from_numpy(valid[:, None].astype(np.float32)).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    m = m.contiguous(memory_format=torch.channels_last)
    padding = model.config.padding
    with torch.inference_mode():
        with FlopCounterMode(display=False) as flops:
            net(x, m, padding=padding)
        with ByteCounter() as counted:
            net(x, m, padding=padding)
    return flops.get_total_flops() / len(x), counted.bytes / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="72x72")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fields", type=int, default=None)
    parser.add_argument("--peak-GBps", type=float, default=None, help="datasheet bandwidth")
    parser.add_argument("--peak-GFLOPs", type=float, default=None, help="datasheet fp32")
    args = parser.parse_args()
    device = resolve_device(args.device)
    shape = tuple(int(v) for v in args.grid.split("x"))
    model = xcrai.load_model(xcrai.data.demo_model(), padding="global")
    if choose_tile(model, shape, device, None) is not None:
        raise SystemExit(f"--grid {args.grid}: fields are tiled on {device}; pick a smaller grid")
    batch = auto_batch_size(model, shape, device)
    n = args.fields or batch * max(1, int(2e7 // (batch * shape[0] * shape[1])))
    fields = sample_fields(shape, n)
    valid = np.isfinite(fields)
    flops, nbytes = per_field_counts(model, fields[:, :batch], device)
    rate = network_fields_per_s(model, fields[:, :batch], device)
    predict(model, fields[:, :batch], valid[:, :batch], device=device)  # warm-up
    sync(device)
    start = time.perf_counter()
    predict(model, fields, valid, device=device)
    sync(device)
    host_rate = n / (time.perf_counter() - start)
    peak_bw = args.peak_GBps or stream_copy_GBps(device)
    peak_flops = args.peak_GFLOPs or matmul_GFLOPs(device)
    achieved_bw, achieved_flops = rate * nbytes / 1e9, rate * flops / 1e9
    intensity = flops / nbytes
    attainable = min(peak_flops, intensity * peak_bw)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(json.dumps({
        "grid": args.grid, "device": name, "batch": batch, "fields": n,
        "network_fields_per_s": round(rate, 1), "predict_fields_per_s": round(host_rate, 1),
        "predict_share_of_network": round(host_rate / rate, 3),
        "flops_per_field": round(flops), "bytes_per_field": round(nbytes),
        "intensity_flop_per_byte": round(intensity, 2),
        "peak_GBps": round(peak_bw, 1), "peak_GFLOPs": round(peak_flops, 1),
        "machine_balance_flop_per_byte": round(peak_flops / peak_bw, 2),
        "bound": "memory" if intensity * peak_bw < peak_flops else "compute",
        "achieved_GBps": round(achieved_bw, 1), "achieved_GFLOPs": round(achieved_flops, 1),
        "fraction_of_bandwidth": round(achieved_bw / peak_bw, 3),
        "fraction_of_flops": round(achieved_flops / peak_flops, 3),
        "fraction_of_roofline": round(achieved_flops / attainable, 3),
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
