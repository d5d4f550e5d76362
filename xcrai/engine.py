"""NumPy fields through a model on a device, in bounded batches.

The engine knows nothing of xarray: it takes arrays shaped ``(series, time, lat, lon)``
with a validity mask and returns the raw network output and where the network reached
valid data. Each batch goes to the device as the raw fields its windows read, each once;
CRAI's inputs (time-context windows, normalisation, NaN -> 0) are built there, the network
runs under ``torch.inference_mode`` and xcrai's own torch settings, and the normalisation
is undone there too. The CPU runs the same code on CPU tensors.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from xcrai.bounds import Bounds, constrain, normalised
from xcrai.model import CraiModel
from xcrai.nn import bytes_per_field as network_bytes
from xcrai.nn import network
from xcrai.nn.pconv import PADDINGS
from xcrai.numerics import PRECISIONS, Numerics, cpu_threads, scoped
from xcrai.tiles import Tile, receptive_halo, tiles
from xcrai.uncertainty import log_variance

T = TypeVar("T")
logger = logging.getLogger("xcrai")

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
    if resolved.type == "cuda" and resolved.index is not None:
        count = torch.cuda.device_count()
        if resolved.index >= count:
            raise ValueError(
                f"device: {device!r} asked for, but this machine has {count} CUDA device(s): "
                f"expected 'cuda' or 'cuda:0' to 'cuda:{count - 1}'"
            )
    return resolved


def bytes_per_field(model: CraiModel, shape: tuple[int, int]) -> int:
    """Rough activation memory of one field through the network, in bytes."""
    return network_bytes(model.config.architecture, shape)


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
    if not network(model.config.architecture).tiles:
        if tile_size is not None:
            raise ValueError(
                f"tile_size: {model.name} is one of CRAI's recurrent or attention networks, "
                "whose memory and attention see the whole field; it cannot run in tiles"
            )
        return None
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


@dataclass(frozen=True)
class EngineOptions:
    """How :func:`run` puts fields through a network: the user's options marked for the
    engine (``EngineOptions(**InfillOptions.engine())``); :func:`predict` takes them as
    keywords.

    Attributes
    ----------
    device : str or torch.device
    batch_size : int, optional
        Fields (or tiles) per forward pass; chosen from memory when omitted.
    tile_size : int, optional
        Run fields in spatial tiles of this many points a side (plus halos wide
        enough that the result equals the untiled one); by default only fields
        too large for the memory budget are tiled.
    precision : {"fp32", "tf32", "bf16", "fp16"}
        Arithmetic of the convolutions: IEEE float32; TF32 on CUDA (float32 on
        the CPU); bfloat16 or float16 under autocast, with valid counts and the
        division by them in float32.
    compile : bool
        Run the network through ``torch.compile`` (fused kernels). Building them
        takes a while at the first batch of each shape, so it pays off on long runs.
    threads : int, optional
        Intra-op CPU threads of the forward passes (the caller's setting by default).
    """

    device: str | torch.device = "auto"
    batch_size: int | None = None
    tile_size: int | None = None
    precision: str = "fp32"
    compile: bool = False
    threads: int | None = None


def predict(
    model: CraiModel,
    fields: np.ndarray,
    valid: np.ndarray,
    *,
    core: tuple[int, int] | None = None,
    report: Callable[[int], object] | None = None,
    sigma: np.ndarray | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`run` with the :class:`EngineOptions` given as keywords (``device=``,
    ``batch_size=``, ...); an unknown one is a TypeError naming it.

    Examples
    --------
    >>> output, reach = predict(model, fields, valid, batch_size=8)  # doctest: +SKIP
    """
    return run(model, fields, valid, EngineOptions(**options), core=core, report=report,
               sigma=sigma)  # fmt: skip


def run(
    model: CraiModel,
    fields: np.ndarray,
    valid: np.ndarray,
    options: EngineOptions,
    *,
    core: tuple[int, int] | None = None,
    report: Callable[[int], object] | None = None,
    sigma: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on every field of ``fields[:, core[0]:core[1]]``.

    Parameters
    ----------
    model : CraiModel
        With a known ``time_context`` and a concrete padding ("zeros" or
        "global").
    fields : ndarray (S, T, H, W), or (S, V, T, H, W) for a model of V input variables
        Values; anything under ``valid == False`` is ignored.
    valid : ndarray of bool, shaped as ``fields``
    core : (start, stop), optional
        Time steps to infill; steps outside serve as time context only.
        Windows are clamped to ``[0, T)``.
    options : EngineOptions
        Device, batch and tile sizes, precision, compilation and CPU threads.
    report : callable, optional
        Called with the number of fields of each batch once it is done (progress bars).
    sigma : ndarray float32 (S, stop - start, H, W), optional
        Filled, for a model with a σ channel (``fit(..., uncertainty=True)``), with the
        network's standard deviation of its output, in the data's units.

    Notes
    -----
    On CUDA and when compiled, batches come in a fixed set of shapes: a short last
    batch is padded with empty fields to the next power of two (at most the batch
    size). cuDNN chooses its algorithm per shape, so a field gives the same numbers
    whichever batch it falls in, and compiled kernels are reused.

    Returns
    -------
    output : ndarray float32 (S, stop - start, H, W)
        Raw network output in the data's units.
    reach : ndarray bool (S, stop - start, H, W)
        False where no window of the network saw valid data.
    """
    device, batch_size, tile_size = options.device, options.batch_size, options.tile_size
    precision, compile, threads = options.precision, options.compile, options.threads
    if fields.ndim == 4:  # one input variable
        fields, valid = fields[:, None], valid[:, None]
    n_series, n_inputs, length, height, width = fields.shape
    if n_inputs != model.config.n_inputs:
        raise ValueError(
            f"fields: the model reads {model.config.n_inputs} input variable(s), got {n_inputs}"
        )
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
    # CRAI's recurrent and attention networks run one field at a time: their convolutions'
    # and activations' rounding changes with the batch's size (the U-Net's does not), and a
    # field must not depend on which others share its batch or dask block
    per_field = network(model.config.architecture).per_field
    fixed_shapes = (compile or dev.type == "cuda") and not per_field
    steps = window_indices(length, past, future, start, stop)  # (Tc, C)
    series_all = np.repeat(np.arange(n_series), stop - start)
    times_all = np.tile(np.arange(stop - start), n_series)
    output = np.empty((n_series, stop - start, height, width), dtype=np.float32)
    reach = np.empty((n_series, stop - start, height, width), dtype=bool)
    tile = choose_tile(model, (height, width), dev, tile_size)
    regions: list[Tile] | None = None  # None: whole fields
    if tile is None:
        size = batch_size or auto_batch_size(model, (height, width), dev)
    else:
        # choose_tile: only networks that tile get here
        regions = list(tiles((height, width), tile, model.config.architecture, padding))
        largest = max(regions, key=lambda r: r.rows.size * r.cols.size)
        size = batch_size or auto_batch_size(model, (largest.rows.size, largest.cols.size), dev)
    layout = (
        "whole fields" if tile is None else f"in {len(regions or ())} tiles of {tile[0]}x{tile[1]}"
    )
    logger.info(
        "%d field(s) on %s in batches of %d%s, %s", len(series_all), dev, size,
        "" if batch_size else " (from the memory budget)", layout,
    )  # fmt: skip
    run = _Pass(
        net, dev, precision, threads, model.config.input_norms(), model.config.output_norm(),
        per_field, model.config.bounds, model.config.sigma_scale,
    )  # fmt: skip
    for first in range(0, len(series_all), size):
        series = series_all[first : first + size]
        times = times_all[first : first + size]
        shape = padded_size(len(series), size) if fixed_shapes else len(series)
        if dev.type == "cpu" and not per_field:  # a lone field (a short last batch, a dask
            # chunk of one) runs beside an empty one: torch's CPU convolution takes another
            # path for one small input, whose rounding differs from a batch's (batch_size=1
            # runs every field that way)
            shape = max(shape, min(size, 2))

        def write(
            out: np.ndarray, hit: np.ndarray, spread: np.ndarray | None,
            series=series, times=times,
        ) -> None:  # fmt: skip
            output[series, times], reach[series, times] = out, hit
            if sigma is not None and spread is not None:
                sigma[series, times] = spread

        run(_Batch(fields, valid, series, steps[times], shape), regions, padding, write)
        if report is not None:
            report(len(series))
    return output, reach


def _float32_pair(pair: tuple[float, float]) -> tuple[float, float]:
    return float(np.float32(pair[0])), float(np.float32(pair[1]))


def padded_size(n: int, size: int) -> int:
    """The batch shape that ``n`` fields are padded to when shapes are fixed: the next
    power of two, at most ``size`` (a 2-field call is not padded to 1,024)."""
    return min(size, 1 << (n - 1).bit_length())


class _Batch:
    """The fields of one batch: the raw time steps its windows read, as one slab per series
    (every input variable's), and where each window's steps lie in the slabs put end to end.

    Windows of consecutive steps overlap, so the slab holds each raw field once (a window of
    P + F + 1 steps costs one field, not P + F + 1), and the network's input is gathered
    from it on the device.
    """

    def __init__(
        self, fields: np.ndarray, valid: np.ndarray, series: np.ndarray, windows: np.ndarray,
        shape: int,
    ) -> None:  # fmt: skip
        self.fields, self.valid, self.shape = fields, valid, shape
        self.parts: list[tuple[int, int, int]] = []  # (series, first step, last step + 1)
        self.index = np.empty_like(windows)  # (N, C) rows of the slab
        offset = 0
        for s in np.unique(series):
            rows = series == s
            lo, hi = int(windows[rows].min()), int(windows[rows].max()) + 1
            self.parts.append((int(s), lo, hi))
            self.index[rows] = windows[rows] - lo + offset
            offset += hi - lo
        self.size = offset

    @property
    def n(self) -> int:
        return len(self.index)

    def slab(self, which: np.ndarray) -> np.ndarray:
        """``which`` (``fields`` or ``valid``, (S, V, T, H, W)) at the slab's steps,
        (V, K, H, W)."""
        chunks = [which[s, :, lo:hi] for s, lo, hi in self.parts]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=1)


class _Pass:
    """Batches through one network on one device, under xcrai's own torch settings.

    Fields go to the device raw; the validity mask, the time-context windows, the
    normalisation, the zero fill of holes and the undoing of the normalisation happen
    there. On CUDA the copies go through page-locked staging buffers kept per device.
    """

    def __init__(
        self, net: torch.nn.Module, device: torch.device, precision: str, threads: int | None,
        inputs: list[tuple[float, float] | None], output: tuple[float, float] | None,
        per_field: bool = False, bounds: Bounds | None = None, sigma_scale: float = 1.0,
    ) -> None:  # fmt: skip
        self.net = net
        self.device = device
        self.numerics = Numerics.inference(precision)
        self.autocast = PRECISIONS[precision]
        self.threads = threads if device.type == "cpu" else None
        # float32 values as Python floats: the arithmetic is float32's, as in NumPy
        self.input_norms = [None if n is None else _float32_pair(n) for n in inputs]
        self.norm = None if output is None else _float32_pair(output)
        self.per_field = per_field
        self.sigma_scale = sigma_scale
        # the bounds in the network's (normalised) units
        self.bounds = None if bounds is None else normalised(bounds, self.norm)

    def __call__(
        self, batch: _Batch, regions: list[Tile] | None, padding: str,
        write: Callable[..., None],
    ) -> None:  # fmt: skip
        """Run ``batch`` (whole, or tile by tile over ``regions``) and hand ``write`` the
        output and reach, (N, H, W) arrays, then the network's σ in data units (None
        without a σ channel)."""

        def run() -> None:
            threads = cpu_threads(self.threads) if self.threads else nullcontext()
            with scoped(self.numerics), threads, torch.inference_mode():
                x, m = self._inputs(batch)
                if regions is None:
                    channels, hit = self._network(x, m, padding)
                else:
                    channels, hit = self._tiled(x, m, regions)
                out = channels[:, 0]
                sigma = None
                if self.bounds is not None:
                    out = constrain(out, self.bounds)
                if self.norm is not None:
                    out = out * self.norm[1] + self.norm[0]
                if channels.shape[1] > 1:  # the log-variance of uncertainty=True
                    scale = self.sigma_scale * (1.0 if self.norm is None else self.norm[1])
                    sigma = torch.exp(0.5 * log_variance(channels[: batch.n, 1])) * scale
                host = self._to_host(out[: batch.n], hit[: batch.n], sigma)
                write(host[0], host[1], host[2])

        on_device(self.device, run)

    def _inputs(self, batch: _Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input and mask (shape, V * C, H, W) on the device, gathered from the
        slab: each input variable's window of C steps in turn (CRAI's channel order)."""
        values = self._to_device(batch.slab(batch.fields), "values", torch.float32)
        valid = self._to_device(batch.slab(batch.valid), "valid", torch.bool)
        rows = torch.from_numpy(batch.index.reshape(-1)).to(self.device)
        n, steps = batch.index.shape
        n_inputs = values.shape[0]
        shape = (batch.shape, n_inputs * steps, *values.shape[2:])
        x = torch.zeros(shape, dtype=torch.float32, device=self.device)
        m = torch.zeros(shape, dtype=torch.bool, device=self.device)  # padding: fully masked
        for v, norm in enumerate(self.input_norms):
            channels = slice(v * steps, (v + 1) * steps)
            x[:n, channels] = (
                values[v].index_select(0, rows).to(torch.float32).view(n, steps, *shape[2:])
            )
            m[:n, channels] = valid[v].index_select(0, rows).view(n, steps, *shape[2:])
            if norm is not None:
                x[:, channels] = (x[:, channels] - norm[0]) / norm[1]
        return torch.where(m, x, 0.0), m

    def _network(
        self, x: torch.Tensor, m: torch.Tensor, padding: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output channels (N, C, H, W) float32 and reach (N, H, W) bool of one forward
        pass."""
        autocast = torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32,
            enabled=self.autocast is not None,
        )  # fmt: skip
        x = x.contiguous(memory_format=torch.channels_last)
        m = m.to(torch.float32).contiguous(memory_format=torch.channels_last)
        with autocast:
            if self.per_field:
                parts = [
                    self.net(x[i : i + 1], m[i : i + 1], padding=padding) for i in range(len(x))
                ]
                out, hit = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            else:
                out, hit = self.net(x, m, padding=padding)
        return out.float(), hit[:, 0] > 0

    def _tiled(
        self, x: torch.Tensor, m: torch.Tensor, regions: list[Tile]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out: torch.Tensor | None = None
        hit = torch.empty((x.shape[0], *x.shape[2:]), dtype=torch.bool, device=x.device)
        for region in regions:
            rows = torch.from_numpy(region.rows).to(x.device)
            cols = torch.from_numpy(region.cols).to(x.device)
            tile_x, tile_m = (t.index_select(2, rows).index_select(3, cols) for t in (x, m))
            tile_out, tile_hit = self._network(tile_x, tile_m, region.padding)
            if out is None:
                shape = (x.shape[0], tile_out.shape[1], *x.shape[2:])
                out = torch.empty(shape, dtype=torch.float32, device=x.device)
            rows_kept, cols_kept = region.core_rows, region.core_cols
            out[:, :, region.out_rows, region.out_cols] = tile_out[:, :, rows_kept, cols_kept]
            hit[:, region.out_rows, region.out_cols] = tile_hit[:, rows_kept, cols_kept]
        assert out is not None  # at least one tile
        return out, hit

    def _to_device(self, array: np.ndarray, name: str, dtype: torch.dtype) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.from_numpy(np.ascontiguousarray(array))
        buffer = staging(self.device, name, array.shape, dtype)
        buffer.numpy()[...] = array  # one copy into page-locked memory (and to float32)
        return buffer.to(self.device, non_blocking=True)

    def _to_host(self, *tensors: torch.Tensor | None) -> list[np.ndarray | None]:
        """The tensors (output, reach, σ) on the host as NumPy arrays (None stays None)."""
        if self.device.type == "cpu":
            return [None if t is None else t.numpy() for t in tensors]
        names = ("output", "reach", "sigma")
        host = [
            None if t is None else staging(self.device, f"{name} out", t.shape, t.dtype)
            for name, t in zip(names, tensors, strict=False)
        ]
        for buffer, tensor in zip(host, tensors, strict=True):
            if buffer is not None and tensor is not None:
                buffer.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return [None if b is None else b.numpy() for b in host]


_staging: dict[tuple[str, str], torch.Tensor] = {}


def staging(
    device: torch.device, name: str, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """A page-locked host buffer of ``shape`` for copies to and from ``device``, kept and
    reused (grown when a larger one is needed): allocating page-locked memory costs more
    than the copy itself. Only use it under the device's lock (:func:`on_device`), and
    let the copies that read or fill it finish before the lock is released."""
    key = (str(device), name)
    numel = math.prod(shape)
    buffer = _staging.get(key)
    if buffer is None or buffer.dtype != dtype or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=dtype, pin_memory=True)
        _staging[key] = buffer
    return buffer[:numel].view(shape)


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
