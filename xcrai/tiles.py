"""Spatial tiles with halos, for fields too large to run through the network whole.

Every output point of the U-Net depends only on inputs within its receptive field,
so a tile extended by a halo at least that wide, and aligned with the stride grid of
the encoder (a multiple of ``2 ** depth``), gives the same values in its interior as
the whole field. Longitude halos wrap around for global padding; at the true edges
of the field (poles, regional borders) the network pads as it would untiled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from xcrai.nn import Architecture


def alignment(arch: Architecture) -> int:
    """Tile origins must be multiples of this (the encoder's total stride)."""
    return 2**arch.depth


def receptive_halo(arch: Architecture) -> int:
    """Halo width (points, a multiple of :func:`alignment`) covering the receptive field."""
    radius = sum((layer.kernel_size // 2) * 2**i for i, layer in enumerate(arch.encoder))
    radius += sum(
        (layer.kernel_size // 2) * 2 ** (arch.depth - 1 - j) for j, layer in enumerate(arch.decoder)
    )
    radius += alignment(arch) - 1  # stride offsets and nearest-neighbour upsampling
    align = alignment(arch)
    return -(-radius // align) * align


@dataclass(frozen=True)
class Tile:
    """Where a tile reads (with halo) and which of its points it writes."""

    rows: np.ndarray  # row indices read, halo included
    cols: np.ndarray  # column indices read (wrapped for global padding)
    core_rows: slice  # rows of the tile's output that are kept
    core_cols: slice
    out_rows: slice  # where they go in the whole field
    out_cols: slice
    padding: str  # padding of the tile's own edges


def tiles(
    shape: tuple[int, int], tile: tuple[int, int], arch: Architecture, padding: str
) -> Iterator[Tile]:
    """Cover a field of ``shape`` with tiles whose cores are at most ``tile`` points.

    Longitude is split only when its size is a multiple of the alignment or the padding
    is "zeros" (a wrapped stride grid must match the untiled one).
    """
    height, width = shape
    align, halo = alignment(arch), receptive_halo(arch)
    tile_h = max(align, tile[0] // align * align)
    tile_w = max(align, tile[1] // align * align)
    split_lon = tile_w < width and (padding == "zeros" or width % align == 0)
    if not split_lon:
        tile_w = width
    for y0 in range(0, height, tile_h):
        y1 = min(height, y0 + tile_h)
        ya, yb = max(0, y0 - halo), min(height, y1 + halo)
        for x0 in range(0, width, tile_w):
            x1 = min(width, x0 + tile_w)
            if not split_lon:
                cols, core_cols, tile_padding = np.arange(width), slice(0, width), padding
            elif padding == "global":
                cols = np.arange(x0 - halo, x1 + halo) % width
                core_cols, tile_padding = slice(halo, halo + x1 - x0), "zeros"
            else:
                xa, xb = max(0, x0 - halo), min(width, x1 + halo)
                cols, core_cols, tile_padding = np.arange(xa, xb), slice(x0 - xa, x1 - xa), "zeros"
            yield Tile(
                rows=np.arange(ya, yb),
                cols=cols,
                core_rows=slice(y0 - ya, y1 - ya),
                core_cols=core_cols,
                out_rows=slice(y0, y1),
                out_cols=slice(x0, x1),
                padding=tile_padding,
            )
