"""Infill throughput of the engine, in fields per second, against a naive baseline.

xcrai: ``xcrai.engine.predict`` with the demo model (CRAI's 20crtasgn72, global padding),
batched, channels-last, box-sum mask convolution, tiled where a field exceeds the memory
budget. Baseline, in the same run: the textbook partial convolution (full ``Cout x Cin``
mask convolution, explicit padding, NCHW), one field per call.

Like is compared with like: ``xcrai_fields_per_s`` and ``baseline_fields_per_s`` run from
host arrays to host arrays (the baseline prepares its input on the host, copies each field
to the device and its output back, as ``predict`` must), and ``xcrai_net_fields_per_s``
and ``baseline_net_fields_per_s`` run the networks alone on data already on the device
(xcrai at the engine's batch size). On a CPU the copies cost nothing, on a GPU they can
decide the figure.

Fields are the bundled HadCRUT4 months (72 x 72) or, for larger grids, those months
resampled (nearest neighbour) to the grid, holes included.

Each figure is the best of ``--repeats`` timed passes after a warm-up pass; the contenders
of a comparison take turns, so that a slow spell of a shared machine hits them alike.

``--compile MODE`` adds, at one batch of the engine's size, the network alone (no host
copies) in eager mode against ``torch.compile(net, mode=MODE)``; on CUDA, MODE
"reduce-overhead" captures CUDA graphs.

Usage: python benchmarks/throughput.py [--grid 72x72 --grid 721x1440] [--device auto]
                                       [--fields N] [--baseline-fields N] [--repeats 3]
                                       [--precision fp32|bf16|fp16]
                                       [--compile default|reduce-overhead|max-autotune]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

import xcrai
from xcrai.engine import auto_batch_size, choose_tile, predict, resolve_device
from xcrai.numerics import PRECISIONS, Numerics, scoped

sys.path.insert(0, str(Path(__file__).parent))
from infill_cli import machine


def sample_fields(shape: tuple[int, int], n: int) -> np.ndarray:
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        base = ds.tas.values
    rows = np.arange(shape[0]) * base.shape[1] // shape[0]
    cols = np.arange(shape[1]) * base.shape[2] // shape[1]
    grid = base[:, rows][:, :, cols]
    return np.stack([np.roll(grid[i % 2], 3 * i, axis=-1) for i in range(n)])[None]


def textbook_forward(state: dict, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The naive partial-conv U-Net: full mask convolutions, per-channel masks."""

    def layer(prefix, h, mask, stride, act):
        weight = state[f"{prefix}.input_conv.weight"]
        p = weight.shape[-1] // 2
        pad = lambda t: F.pad(F.pad(t, (p, p, 0, 0), mode="circular"), (0, 0, p, p))  # noqa: E731
        raw = F.conv2d(pad(h * mask), weight, stride=stride)
        msum = F.conv2d(pad(mask), torch.ones_like(weight), stride=stride)
        holes = msum == 0
        out = raw / msum.masked_fill(holes, 1.0)
        if f"{prefix}.input_conv.bias" in state:
            out = out + state[f"{prefix}.input_conv.bias"].view(1, -1, 1, 1)
        out = out.masked_fill(holes, 0.0)
        if f"{prefix}.bn.weight" in state:
            out = F.batch_norm(out, state[f"{prefix}.bn.running_mean"],
                               state[f"{prefix}.bn.running_var"], state[f"{prefix}.bn.weight"],
                               state[f"{prefix}.bn.bias"], False, 0.0, 1e-5)  # fmt: skip
        out = F.relu(out) if act == "relu" else F.leaky_relu(out, 0.01) if act == "leaky" else out
        return out, (~holes).to(out.dtype)

    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("encoder."))
    skips, h, mask = [(x, m)], x, m
    for i in range(depth):
        h, mask = layer(f"encoder.{i}.partial_conv", h, mask, 2, "relu")
        skips.append((h, mask))
    skips.pop()
    for j in range(depth):
        sh, sm = skips.pop()
        size = sh.shape[-2:]
        h = torch.cat([F.interpolate(h, size=size, mode="nearest"), sh], 1)
        mask = torch.cat([F.interpolate(mask, size=size, mode="nearest"), sm], 1)
        h, mask = layer(f"decoder.{j}.partial_conv", h, mask, 1,
                        "none" if j == depth - 1 else "leaky")  # fmt: skip
    return h


def best_rates(contenders: dict[str, tuple], repeats: int, device: torch.device) -> dict:
    """Items per second of each ``name: (func, count)``, best of ``repeats`` passes.

    The contenders take turns (one pass of each per round) after one warm-up pass each
    (allocations, cuDNN autotuning, compilation), so that a slow spell of a shared machine
    hits them alike and their ratio holds.
    """
    for func, _ in contenders.values():
        func()
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, (func, _) in contenders.items():
            sync(device)
            start = time.perf_counter()
            func()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: count / best[name] for name, (_, count) in contenders.items()}


def network_once(
    model: xcrai.CraiModel, fields: np.ndarray, device: torch.device, precision: str = "fp32"
):
    """A function that runs the network once on one batch already on the device."""
    net = model.replica(device)
    valid = np.isfinite(fields[0])
    x = torch.from_numpy(np.where(valid, fields[0], 0)[:, None]).to(device)
    m = torch.from_numpy(valid[:, None].astype(np.float32)).to(device)
    x, m = (t.contiguous(memory_format=torch.channels_last) for t in (x, m))
    dtype = PRECISIONS[precision]

    def once() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            net(x, m, padding=model.config.padding)

    return once


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compiled_against_eager(model, fields, valid, device, mode: str, repeats: int) -> dict:
    """The network alone on one batch: eager against ``torch.compile``, fields/s."""
    batch = auto_batch_size(model, fields.shape[-2:], device)
    net = model.replica(device)
    x = torch.from_numpy(np.where(valid, fields, 0)[0, :batch, None]).to(device)
    m = torch.from_numpy(valid[0, :batch, None].astype(np.float32)).to(device)
    x, m = (t.contiguous(memory_format=torch.channels_last) for t in (x, m))
    compiled = torch.compile(net, mode=mode, dynamic=False)
    padding = model.config.padding
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(x, m, padding=padding)
        compile_s = time.perf_counter() - start
        rates = best_rates({
            "eager": (lambda: net(x, m, padding=padding), len(x)),
            "compiled": (lambda: compiled(x, m, padding=padding), len(x)),
        }, repeats, device)  # fmt: skip
        eager, fast = rates["eager"], rates["compiled"]
        difference = (compiled(x, m, padding=padding)[0] - net(x, m, padding=padding)[0]).abs()
    return {
        "compile_mode": mode, "net_batch": len(x), "net_eager_fields_per_s": round(eager, 1),
        "net_compiled_fields_per_s": round(fast, 1), "compile_speedup": round(fast / eager, 2),
        "compile_s": round(compile_s, 1), "compiled_max_abs_diff": float(difference.max()),
    }  # fmt: skip


def one_by_one(state: dict, x: torch.Tensor, m: torch.Tensor) -> None:
    """The baseline's way: one field per call."""
    for i in range(len(x)):
        textbook_forward(state, x[i : i + 1], m[i : i + 1])


def one_by_one_from_host(state: dict, fields: np.ndarray, device: torch.device) -> np.ndarray:
    """The baseline from host arrays to host arrays: each field prepared on the host,
    copied to the device, and its output copied back."""
    out = np.empty(fields.shape, np.float32)
    for i, field in enumerate(fields):
        valid = np.isfinite(field)
        x = torch.from_numpy(np.where(valid, field, 0)[None, None]).to(device)
        m = torch.from_numpy(valid[None, None].astype(np.float32)).to(device)
        out[i] = textbook_forward(state, x, m)[0, 0].cpu().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", action="append", default=None, help="HxW, repeatable")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fields", type=int, default=None, help="fields for xcrai")
    parser.add_argument("--baseline-fields", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    parser.add_argument("--compile", default=None, help="also time torch.compile in this mode")
    args = parser.parse_args()
    device = resolve_device(args.device)
    model = xcrai.load_model(xcrai.data.demo_model(), padding="global")
    state = {k: v.to(device) for k, v in model.net.state_dict().items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    for text in args.grid or ["72x72", "721x1440"]:
        shape = tuple(int(v) for v in text.split("x"))
        points = shape[0] * shape[1]
        n = args.fields or max(16, int(2e7 // points) * (20 if device.type == "cuda" else 1))
        fields = sample_fields(shape, n)
        valid = np.isfinite(fields)
        run = partial(predict, model, fields, valid, device=device, precision=args.precision)
        nb = args.baseline_fields or max(2, n // 20)
        x = torch.from_numpy(np.where(valid, fields, 0)[0, :nb, None]).to(device)
        m = torch.from_numpy(valid[0, :nb, None].astype(np.float32)).to(device)

        def baseline(x=x, m=m) -> None:
            with torch.inference_mode():
                one_by_one(state, x, m)

        def baseline_from_host(host=fields[0, :nb]) -> None:
            with torch.inference_mode():
                one_by_one_from_host(state, host, device)

        tiled = choose_tile(model, shape, device, None) is not None
        contenders = {"xcrai": (run, n), "baseline": (baseline_from_host, nb),
                      "baseline_net": (baseline, nb)}  # fmt: skip
        if not tiled:
            batch = auto_batch_size(model, shape, device)
            net = partial(network_once, model, fields[:, :batch], device, args.precision)
            contenders["xcrai_net"] = (net(), min(batch, n))
        with scoped(Numerics.inference(args.precision)):  # the baseline at xcrai's arithmetic
            rates = best_rates(contenders, args.repeats, device)
        fast, naive = rates["xcrai"], rates["baseline"]
        result = {
            "grid": text, "device": name, "fields": n, "tiled": tiled,
            "xcrai_fields_per_s": round(fast, 2), "baseline_fields": nb,
            "baseline_fields_per_s": round(naive, 2), "speedup": round(fast / naive, 1),
            "baseline_net_fields_per_s": round(rates["baseline_net"], 2),
            "precision": args.precision, "repeats": args.repeats, "torch": torch.__version__,
        }  # fmt: skip
        if "xcrai_net" in rates:
            result["xcrai_net_fields_per_s"] = round(rates["xcrai_net"], 2)
            result["net_speedup"] = round(rates["xcrai_net"] / rates["baseline_net"], 1)
            result["predict_share_of_network"] = round(fast / rates["xcrai_net"], 3)
        if args.compile:
            result |= compiled_against_eager(model, fields, valid, device, args.compile,
                                             args.repeats)  # fmt: skip
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
