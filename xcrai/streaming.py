"""A memory budget for streaming: how many dask chunks may be in flight at once.

Peak host memory when a lazy record is infilled to disk is set by the chunks in flight
times what each one holds while it is read, infilled and written (the input, its
validity, the network's output and reach, the merged result: about
:data:`WORKING_SET` times the chunk's input), plus what does not depend on the record
(libraries, the model, one batch). Dask's threaded scheduler runs one chunk per core, so
on a 16-core GPU machine with chunks of 16 ERA5 fields that was 6.5 GB. The budget caps
the threads instead.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
import dask.array as dsa

logger = logging.getLogger("xcrai")

#: bytes held per chunk in flight, as a multiple of its input's bytes (measured on the CPU
#: at 721 x 1440: 3.4; the rest is margin)
WORKING_SET = 4
#: the default budget of ``xcrai infill --memory``
DEFAULT_BUDGET = "1GiB"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(size: str | int, argument: str = "memory") -> int:
    """Bytes from ``"2GB"``, ``"512MiB"``, ``"1e9"`` or an int.

    Examples
    --------
    >>> parse_size("1.5GiB")
    1610612736
    """
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = re.fullmatch(r"\s*((?:\d+\.?\d*|\.\d+)(?:e\d+)?)\s*([a-zA-Z]*)\s*", str(size))
    unit = match[2].lower() if match else None
    number = float(match[1]) * _UNITS[unit] if match and unit in _UNITS else 0.0
    if not 1 <= number < 2**63:  # at least a byte, and a size a machine can have
        raise ValueError(
            f"{argument}: expected a size such as '2GB' or '512MiB' (units {sorted(_UNITS)}), "
            f"got {size!r}"
        )
    return int(number)


def chunks_in_flight(budget: int, chunk_bytes: int, cores: int | None = None) -> int:
    """Dask threads that keep ``chunk_bytes`` chunks within ``budget``: at least one, at
    most one per core."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(cores, budget // max(1, WORKING_SET * chunk_bytes)))


def largest_chunk(*arrays: Any) -> int:
    """Bytes of the largest chunk among dask-backed ``arrays`` (DataArrays or dask
    arrays; others count nothing)."""
    largest = 0
    for array in arrays:
        data = getattr(array, "data", array)
        if isinstance(data, dsa.Array):
            largest = max(largest, math.prod(max(c) for c in data.chunks) * data.dtype.itemsize)
    return largest


@contextmanager
def memory_budget(budget: str | int, *arrays: Any) -> Iterator[int]:
    """Compute dask work inside the block with no more chunks of ``arrays`` in flight
    than ``budget`` allows (dask's threaded scheduler; a ``distributed`` cluster sets its
    own workers' memory limits). Yields the number of threads.

    Examples
    --------
    >>> filled = ds.t2m.chunk(time=16).crai.infill(model)  # doctest: +SKIP
    >>> with xcrai.streaming.memory_budget("2GB", ds.t2m.chunk(time=16)):  # doctest: +SKIP
    ...     filled.to_netcdf("t2m_filled.nc")
    """
    limit = parse_size(budget)
    threads = chunks_in_flight(limit, largest_chunk(*arrays))
    logger.info("memory budget %s: %d dask thread(s) in flight", budget, threads)
    with dask.config.set(scheduler="threads", num_workers=threads):
        yield threads
