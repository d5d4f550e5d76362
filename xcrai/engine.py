"""NumPy fields through a model on a device, in bounded batches.

The engine knows nothing of xarray: it takes arrays shaped
``(series, time, lat, lon)`` with a validity mask, builds CRAI's inputs
(time-context windows, normalisation, NaN -> 0), runs the network under
``torch.inference_mode`` and returns the raw output and where the network
reached valid data.
"""

from __future__ import annotations

import numpy as np
import torch

from xcrai.model import CraiModel

#: bytes of activations one CPU batch may hold
CPU_BATCH_BYTES = 128 * 2**20
MAX_BATCH = 1024


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; anything else is checked."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
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
    """Fields per forward pass: a quarter of free GPU memory, or 128 MiB on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = CPU_BATCH_BYTES  # small batches stay in cache: faster here
    return int(max(1, min(MAX_BATCH, budget // bytes_per_field(model, shape))))


def window_indices(length: int, past: int, future: int, start: int, stop: int) -> np.ndarray:
    """Indices of steps ``t - past .. t + future`` for t in [start, stop), clamped."""
    offsets = np.arange(-past, future + 1)
    return np.clip(np.arange(start, stop)[:, None] + offsets[None, :], 0, length - 1)


def predict(
    model: CraiModel,
    fields: np.ndarray,
    valid: np.ndarray,
    *,
    core: tuple[int, int] | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
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
        Fields per forward pass; chosen from memory when omitted.

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
    dev = resolve_device(device)
    net = model.replica(dev)
    steps = window_indices(length, past, future, start, stop)  # (Tc, C)
    samples = [(s, t) for s in range(n_series) for t in range(stop - start)]
    output = np.empty((n_series, stop - start, height, width), dtype=np.float32)
    reach = np.empty((n_series, stop - start, height, width), dtype=bool)
    size = batch_size or auto_batch_size(model, (height, width), dev)
    mean, std = model.config.mean, model.config.std
    for first in range(0, len(samples), size):
        batch = samples[first : first + size]
        series = np.array([s for s, _ in batch])
        windows = steps[[t for _, t in batch]]
        x = fields[series[:, None], windows].astype(np.float32, copy=False)
        m = valid[series[:, None], windows]
        if mean is not None:
            x = (x - np.float32(mean)) / np.float32(std)
        x = np.where(m, x, np.float32(0))
        xt = torch.from_numpy(x).to(dev).contiguous(memory_format=torch.channels_last)
        mt = torch.from_numpy(m).to(dev).to(torch.float32)
        mt = mt.contiguous(memory_format=torch.channels_last)
        with model.lock, torch.inference_mode():
            out, hit = net(xt, mt, padding=padding)
        out_np = out[:, 0].float().cpu().numpy()
        if mean is not None:
            out_np = out_np * np.float32(std) + np.float32(mean)
        series_index = series
        time_index = np.array([t for _, t in batch])
        output[series_index, time_index] = out_np
        reach[series_index, time_index] = hit[:, 0].cpu().numpy() > 0
    return output, reach
