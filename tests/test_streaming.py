"""xcrai.streaming: a memory budget caps the dask chunks in flight."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from xcrai.streaming import chunks_in_flight, largest_chunk, memory_budget, parse_size

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def test_sizes():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size(" 512 MiB ") == 512 * 2**20 and parse_size(4096) == 4096
    for bad in ("", "lots", "-1GB", "2 parsecs", 0, True):
        with pytest.raises(ValueError, match="memory: expected a size such as '2GB'"):
            parse_size(bad)


def test_threads_from_the_budget():
    """Each chunk in flight holds about 4x its input; at least one thread, one per core."""
    assert chunks_in_flight(2**30, 66 * 2**20, cores=16) == 3  # 16 ERA5 fields a chunk
    assert chunks_in_flight(2**30, 8 * 2**20, cores=16) == 16
    assert chunks_in_flight(2**20, 66 * 2**20, cores=16) == 1


def test_the_budget_caps_the_threads_dask_runs_chunks_on(hadcrut_series, demo_model):
    """A lazy infill computed under a budget for two chunks runs them on at most two
    threads, and gives the same numbers."""
    lazy = hadcrut_series.chunk(time=1)
    chunk = largest_chunk(lazy)
    assert chunk == 72 * 72 * 4
    seen: set[int] = set()

    def note(block):
        seen.add(threading.get_ident())
        return block

    meta = np.empty((0, 0, 0), lazy.dtype)  # else dask calls `note` once to find it out
    traced = lazy.copy(data=lazy.data.map_blocks(note, dtype=lazy.dtype, meta=meta))
    with memory_budget(2 * 4 * chunk, lazy) as threads:
        assert threads == min(2, chunks_in_flight(10**12, chunk))
        filled = traced.crai.infill(demo_model).compute()
    assert 1 <= len(seen) <= threads
    np.testing.assert_array_equal(filled.values, hadcrut_series.crai.infill(demo_model).values)
