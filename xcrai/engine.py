"""NumPy fields through a model on a device, in bounded batches.

The engine knows nothing of xarray: it takes arrays shaped
``(series, time, lat, lon)`` with a validity mask, builds CRAI's inputs
(time-context windows, normalisation, NaN -> 0), runs the network under
``torch.inference_mode`` and returns the raw output and where the network
reached valid data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from xcrai.model import CraiModel
from xcrai.nn.pconv import PADDINGS
from xcrai.tiles import receptive_halo, tiles

T = TypeVar("T")

#: arithmetic of the forward pass: float32, or autocast to bfloat16 / float16
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: bytes of activations one CPU batch may hold
CPU_BATCH_BYTES = 128 * 2**20
MAX_BATCH = 1024


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; anything else is checked.

    Only the CPU and CUDA devices are accepted: xcrai's engine (pinned transfers,
    streams, memory queries) is written and tested for those, so ``"mps"``, ``"meta"``
    and others are refused here rather than failing part-way.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but CUDA is not available here")
    return resolved


def bytes_per_field(model: CraiModel, shape: tuple[int, int]) -> int:
    """Rough activation memory of one field through the network, in bytes."""
    arch = model.config.architecture
    h, w = shape
    total = 2 * arch.in_channels * h * w
    size = [(h, w)]
    for layer in arch.encoder:
        hh, ww = size[-1]
        size.append(((hh + 1) // 2, (ww + 1) // 2))
        total += 3 * layer.out_channels * size[-1][0] * size[-1][1]
    for layer, (hh, ww) in zip(arch.decoder, reversed(size[:-1]), strict=True):
        total += 3 * (layer.in_channels + layer.out_channels) * hh * ww
    return 4 * total


def auto_batch_size(model: CraiModel, shape: tuple[int, int], device: torch.device) -> int:
    """Fields per forward pass: a quarter of free GPU memory, or 128 MiB on the CPU
    (small batches stay in cache, which is faster there)."""
    return int(max(1, min(MAX_BATCH, _budget(device) // bytes_per_field(model, shape))))


def window_indices(length: int, past: int, future: int, start: int, stop: int) -> np.ndarray:
    """Indices of steps ``t - past .. t + future`` for t in [start, stop), clamped."""
    offsets = np.arange(-past, future + 1)
    return np.clip(np.arange(start, stop)[:, None] + offsets[None, :], 0, length - 1)


def choose_tile(
    model: CraiModel, shape: tuple[int, int], device: torch.device, tile_size: int | None
) -> tuple[int, int] | None:
    """Core size of spatial tiles, or None when whole fields fit the memory budget."""
    if tile_size is not None:
        return (tile_size, tile_size)
    if bytes_per_field(model, shape) <= _budget(device):
        return None
    halo = receptive_halo(model.config.architecture)
    per_point = bytes_per_field(model, (64, 64)) / 64**2
    side = int((_budget(device) / per_point) ** 0.5) - 2 * halo
    return (max(side, halo), max(side, halo))


def _budget(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return CPU_BATCH_BYTES


def predict(
    model: CraiModel,
    fields: np.ndarray,
    valid: np.ndarray,
    *,
    core: tuple[int, int] | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    tile_size: int | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on every field of ``fields[:, core[0]:core[1]]``.

    Parameters
    ----------
    model : CraiModel
        With a known ``time_context`` and a concrete padding ("zeros" or
        "global").
    fields : ndarray (S, T, H, W)
        Values; anything under ``valid == False`` is ignored.
    valid : ndarray of bool (S, T, H, W)
    core : (start, stop), optional
        Time steps to infill; steps outside serve as time context only.
        Windows are clamped to ``[0, T)``.
    device : str or torch.device
    batch_size : int, optional
        Fields (or tiles) per forward pass; chosen from memory when omitted.
    tile_size : int, optional
        Run fields in spatial tiles of this many points a side (plus halos wide
        enough that the result equals the untiled one); by default only fields
        too large for the memory budget are tiled.
    precision : {"fp32", "bf16", "fp16"}
        Arithmetic of the convolutions (autocast); valid counts and the division
        by them stay in float32.
    compile : bool
        Run the network through ``torch.compile`` (fused kernels). Building them
        takes seconds to a minute at the first batch of each shape, so it pays off
        on long runs; the last, partial batch is padded to the full size so that
        it reuses the kernels.

    Returns
    -------
    output : ndarray float32 (S, stop - start, H, W)
        Raw network output in the data's units.
    reach : ndarray bool (S, stop - start, H, W)
        False where no window of the network saw valid data.
    """
    n_series, length, height, width = fields.shape
    start, stop = core if core is not None else (0, length)
    past, future = model.config.time_context or (0, 0)
    padding = model.config.padding
    if padding not in PADDINGS:
        raise ValueError(
            f"model: its padding is {padding!r}; predict needs 'zeros' or 'global' (the "
            "accessor resolves 'auto' from the grid), e.g. model.with_options(padding='global')"
        )
    dev = resolve_device(device)
    net = model.replica(dev, compiled=compile)
    steps = window_indices(length, past, future, start, stop)  # (Tc, C)
    series_all = np.repeat(np.arange(n_series), stop - start)
    times_all = np.tile(np.arange(stop - start), n_series)
    output = np.empty((n_series, stop - start, height, width), dtype=np.float32)
    reach = np.empty((n_series, stop - start, height, width), dtype=bool)
    tile = choose_tile(model, (height, width), dev, tile_size)
    if tile is None:
        regions = [None]
        size = batch_size or auto_batch_size(model, (height, width), dev)
    else:
        regions = list(tiles((height, width), tile, model.config.architecture, padding))
        largest = max(regions, key=lambda r: r.rows.size * r.cols.size)
        size = batch_size or auto_batch_size(model, (largest.rows.size, largest.cols.size), dev)
    mean, std = model.config.mean, model.config.std
    for first in range(0, len(series_all), size):
        series = series_all[first : first + size]
        times = times_all[first : first + size]
        windows = steps[times]
        x = fields[series[:, None], windows].astype(np.float32, copy=False)
        m = valid[series[:, None], windows]
        if mean is not None:
            x = (x - np.float32(mean)) / np.float32(std)
        x = np.where(m, x, np.float32(0))
        if compile and len(x) < size:  # same shape as the other batches: no new kernels
            x, m = _pad_batch(x, size), _pad_batch(m, size)
        for region in regions:
            if region is None:
                out, hit = _forward(model, net, x, m, padding, dev, precision)
                output[series, times], reach[series, times] = out[: len(series)], hit[: len(series)]
                continue
            part = np.ix_(np.arange(len(x)), np.arange(x.shape[1]), region.rows, region.cols)
            out, hit = _forward(model, net, x[part], m[part], region.padding, dev, precision)
            keep = (slice(None), region.core_rows, region.core_cols)
            output[series, times, region.out_rows, region.out_cols] = out[keep][: len(series)]
            reach[series, times, region.out_rows, region.out_cols] = hit[keep][: len(series)]
    if mean is not None:
        output = output * np.float32(std) + np.float32(mean)
    return output, reach


def _pad_batch(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` with zero fields appended up to ``size`` (fully masked: they change nothing)."""
    return np.concatenate([a, np.zeros((size - len(a), *a.shape[1:]), a.dtype)])


def _forward(
    model: CraiModel,
    net: torch.nn.Module,
    x: np.ndarray,
    m: np.ndarray,
    padding: str,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass: (N, C, H, W) arrays in, output and reach (N, H, W) out."""
    xt, mt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(m))
    if device.type == "cuda":  # page-locked buffers: asynchronous host-to-device copies
        xt, mt = xt.pin_memory(), mt.pin_memory()
    xt = xt.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    mt = mt.to(device, non_blocking=True).to(torch.float32)
    mt = mt.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(
        device.type, dtype=PRECISIONS[precision] or torch.float32, enabled=precision != "fp32"
    )

    def run() -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), autocast:
            out, hit = net(xt, mt, padding=padding)
        return out[:, 0].float().cpu().numpy(), hit[:, 0].cpu().numpy() > 0

    return on_device(device, run)


_threads: dict[str, ThreadPoolExecutor] = {}
_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def on_device(device: torch.device, func: Callable[[], T]) -> T:
    """Run ``func`` (a forward pass) on ``device``, one at a time per device and process.

    Called from the main thread, it runs there; called from other threads (dask's
    workers), it runs on one thread kept for the device. So every forward pass of a process
    runs on at most two threads, not on each of dask's: on the CPU each calling thread
    starts its own OpenMP team, and the idle threads of one team spin on the cores the
    others need (netCDF-to-netCDF on 2 cores ran at about 0.7x the speed of the network
    alone), while the main thread's team is the one a user's own torch work (and ``fit``)
    uses too.
    """
    key = str(device)
    on_main = threading.current_thread() is threading.main_thread()
    with _registry_lock:
        lock = _locks.setdefault(key, threading.Lock())
        if not on_main and key not in _threads:
            _threads[key] = ThreadPoolExecutor(1, thread_name_prefix=f"xcrai-{key}")
        worker = None if on_main else _threads[key]

    def locked() -> T:
        with lock:
            return func()

    return locked() if worker is None else worker.submit(locked).result()


def _forget_threads() -> None:  # a forked child has none of its parent's threads
    global _registry_lock
    _threads.clear()
    _locks.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_threads)
