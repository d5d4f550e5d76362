"""What a training run read, as sha256 digests: of each field (chunking-invariant, so that a
resumed run can tell it reads the same data) and of arrays."""

from __future__ import annotations

import hashlib
from typing import Any

import dask.array as dsa
import numpy as np


def field_digests(fields: Any) -> Any:
    """sha256 of every field of (S, T, H, W) ``fields``, as (S, T, 32) bytes (lazy for dask).

    A digest per field does not depend on how dask chunks the data, and slices of it
    describe slices of the data (the training and validation parts).
    """
    if not isinstance(fields, dsa.Array):
        return hash_fields(np.asarray(fields))
    planes = fields.rechunk({2: -1, 3: -1})
    return planes.map_blocks(
        hash_fields, drop_axis=[2, 3], new_axis=2, chunks=(*planes.chunks[:2], (32,)),
        dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8),
    )  # fmt: skip


def hash_fields(block: np.ndarray) -> np.ndarray:
    out = np.empty((*block.shape[:2], 32), np.uint8)
    for index in np.ndindex(*block.shape[:2]):
        digest = hashlib.sha256(np.ascontiguousarray(block[index]).tobytes()).digest()
        out[index] = np.frombuffer(digest, np.uint8)
    return out


def digest(array: Any) -> str:
    """sha256 of an array's bytes (for field digests: a digest of the fields)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
