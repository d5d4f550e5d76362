"""dask.distributed: a real LocalCluster with worker processes on loopback."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        client.wait_for_workers(2, timeout=120)  # a loaded machine starts them slowly
        yield client


@pytest.fixture(scope="module")
def long_series(hadcrut_series):
    series = xr.concat([hadcrut_series] * 4, dim="time")
    series["time"] = np.arange(series.sizes["time"])
    return series


def test_same_numbers_as_without_a_cluster(client, long_series, memory_model):
    eager = long_series.crai.infill(memory_model, padding="zeros", return_output=True)
    lazy = long_series.chunk({"time": 5}).crai.infill(
        memory_model, padding="zeros", return_output=True
    )
    got = client.compute(lazy).result()
    for name in ("tas", "tas_output", "tas_flag"):
        np.testing.assert_array_equal(got[name].values, eager[name].values)


def test_the_model_is_one_key_of_the_graph(long_series, demo_model):
    from xcrai.model import CraiModel

    lazy = long_series.chunk({"time": 3}).crai.infill(demo_model)
    graph = dict(lazy.data.__dask_graph__())
    holders = [key for key, task in graph.items() if _holds_model(task, CraiModel)]
    assert len(holders) == 1, holders  # sent once per worker, not once per task
    assert lazy.data.npartitions == 16


def _holds_model(task, cls) -> bool:
    seen = [task]
    while seen:
        item = seen.pop()
        if isinstance(item, cls):
            return True
        if isinstance(item, (tuple, list)):
            seen.extend(item)
        elif isinstance(item, dict):
            seen.extend(item.values())
        elif hasattr(item, "args") and hasattr(item, "kwargs"):  # dask Task objects
            seen.extend(item.args)
            seen.extend(item.kwargs.values())
        elif hasattr(item, "value") and type(item).__name__ == "DataNode":
            seen.append(item.value)
    return False


def test_a_worker_dying_mid_run_is_replaced(client, long_series, demo_model):
    import os
    import signal
    import time

    series = xr.concat([long_series] * 4, dim="time")  # 192 fields, 96 blocks
    eager = series.crai.infill(demo_model)
    lazy = series.chunk({"time": 2}).crai.infill(demo_model)
    client.wait_for_workers(2, timeout=120)
    future = client.compute(lazy)
    victim = sorted(client.scheduler_info()["workers"])[0]
    deadline = time.monotonic() + 60
    while not _busy(client, victim) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not future.done(), "the run finished before a worker could be killed"
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)  # mid-run: the victim is working on a block
    got = future.result(timeout=120)
    np.testing.assert_array_equal(got.values, eager.values)
    while time.monotonic() < deadline:
        now = set(client.scheduler_info()["workers"])
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and victim not in now  # the nanny started a replacement


def _busy(client, worker: str) -> bool:
    """Whether ``worker`` is running a task of the computation now."""
    return bool(client.processing(workers=[worker])[worker])
