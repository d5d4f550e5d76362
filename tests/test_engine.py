"""xcrai.engine: devices, batch sizes, reduced precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from xcrai.engine import auto_batch_size, bytes_per_field, predict, resolve_device

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def test_auto_device_is_the_cpu_without_cuda():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: "):
        resolve_device("quantum")


def test_a_cuda_device_that_is_not_there_is_refused_by_name():
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any without CUDA
    with pytest.raises(ValueError, match=f"device: '{missing}' asked for"):
        resolve_device(missing)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_batches_are_bounded_by_memory(demo_model):
    small = auto_batch_size(demo_model, (72, 72), torch.device("cpu"))
    large = auto_batch_size(demo_model, (721, 1440), torch.device("cpu"))
    assert small > 1 and large == 1
    assert bytes_per_field(demo_model, (721, 1440)) > 100 * bytes_per_field(demo_model, (72, 72))


def test_results_do_not_depend_on_the_batch_size(hadcrut_series, demo_model):
    fields = hadcrut_series.values[None]
    valid = np.isfinite(fields)
    a, _ = predict(demo_model.with_options(padding="global"), fields, valid, batch_size=12)
    b, _ = predict(demo_model.with_options(padding="global"), fields, valid, batch_size=5)
    np.testing.assert_array_equal(a, b)


def test_a_lone_field_gives_what_it_gives_in_a_batch(hadcrut, demo_model):
    """On small inputs torch's CPU convolution takes another path for a batch of one,
    whose rounding differs: a short last batch of one field (6 fields in batches of 5), or
    a dask chunk of one, in tiles of 8x8, still gives the numbers of batches of 2."""
    fields = xr.concat([hadcrut.tas] * 3, "time")
    options = dict(tile_size=8, threads=1)
    pairs = fields.crai.infill(demo_model, batch_size=2, **options).values
    np.testing.assert_array_equal(
        fields.crai.infill(demo_model, batch_size=5, **options).values, pairs
    )
    np.testing.assert_array_equal(
        fields.chunk(time=1).crai.infill(demo_model, **options).values, pairs
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_close_to_fp32(hadcrut, demo_model, precision):
    full = hadcrut.tas.crai.infill(demo_model, return_output=True)
    reduced = hadcrut.tas.crai.infill(demo_model, return_output=True, precision=precision)
    difference = np.abs(reduced.tas_output.values - full.tas_output.values)
    assert 0 < difference.max() < 0.5  # K; measured figures are in the README
    np.testing.assert_array_equal(reduced.tas_flag.values, full.tas_flag.values)
    valid = np.isfinite(hadcrut.tas.values)
    np.testing.assert_array_equal(reduced.tas.values[valid], hadcrut.tas.values[valid])


def test_unknown_precision(hadcrut, demo_model):
    with pytest.raises(ValueError, match="precision: expected one of"):
        hadcrut.tas.crai.infill(demo_model, precision="fp8")


def test_compiled_network_gives_the_eager_result(hadcrut_series, demo_model):
    """torch.compile, with the last batch padded to a fixed shape (12 fields in batches of
    7: the last 5 are padded to 7), equals the eager network."""
    model = demo_model.with_options(padding="global")
    eager = hadcrut_series.crai.infill(model, return_output=True, batch_size=7)
    fast = hadcrut_series.crai.infill(model, return_output=True, batch_size=7, compile=True)
    scale = 1e-4 * float(hadcrut_series.std())
    np.testing.assert_allclose(fast.tas_output.values, eager.tas_output.values, rtol=0, atol=scale)
    np.testing.assert_array_equal(fast.tas_flag.values, eager.tas_flag.values)


@pytest.mark.slow
def test_compiled_network_in_tiles_gives_the_eager_result(hadcrut, demo_model):
    """Tiles of several shapes through the compiled network (recompiles: about 30 s)."""
    eager = hadcrut.tas.crai.infill(demo_model, return_output=True)
    tiled = hadcrut.tas.crai.infill(demo_model, return_output=True, tile_size=40, compile=True)
    scale = 1e-4 * float(hadcrut.tas.std())
    np.testing.assert_allclose(tiled.tas_output.values, eager.tas_output.values, rtol=0, atol=scale)


def test_compile_takes_a_bool(hadcrut, demo_model):
    with pytest.raises(TypeError, match="compile: expected True or False"):
        hadcrut.tas.crai.infill(demo_model, compile="yes")


def test_forward_passes_from_dask_threads_run_on_one_device_thread(hadcrut_series, demo_model):
    """Blocks computed by several dask threads queue their forward passes on one thread per
    device (one OpenMP team on the CPU), and give the eager result, which runs on the
    calling (main) thread."""
    import threading

    import dask

    seen: set[str] = set()
    replica = demo_model.replica(torch.device("cpu"))
    hook = replica.register_forward_pre_hook(lambda *_: seen.add(threading.current_thread().name))
    try:
        eager = hadcrut_series.crai.infill(demo_model, device="cpu")
        assert seen == {threading.main_thread().name}
        seen.clear()
        lazy = hadcrut_series.chunk(time=2).crai.infill(demo_model, device="cpu")
        with dask.config.set(scheduler="threads", num_workers=4):
            lazy = lazy.compute()
    finally:
        hook.remove()
    assert seen == {"xcrai-cpu_0"}  # ThreadPoolExecutor names its thread prefix_0
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_predict_needs_a_resolved_padding(hadcrut_series, demo_model):
    """'auto' is resolved from the grid by the accessor; predict has no grid and refuses it
    (the network used to treat any padding but 'global' as 'zeros')."""
    fields = hadcrut_series.values[None, :2]
    with pytest.raises(ValueError, match="model: its padding is 'auto'"):
        predict(demo_model, fields, np.isfinite(fields))
    net = demo_model.replica(torch.device("cpu"))
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="padding: expected 'zeros' or 'global', got 'auto'"):
        net(x, torch.ones_like(x), padding="auto")


def test_a_batch_sends_each_raw_field_once():
    """Windows of consecutive steps overlap: the slab that goes to the device holds each
    raw field once, and the windows are gathered from it there (here time context (3, 1),
    steps 2..7 of series 0 and 0..1 of series 1: 8 + 3 raw fields, not 8 windows of 5)."""
    from xcrai.engine import _Batch, window_indices

    fields = np.arange(2 * 10 * 2 * 3, dtype=np.float32).reshape(2, 10, 2, 3)
    steps = window_indices(10, 3, 1, 0, 10)
    series, times = np.array([0] * 6 + [1] * 2), np.array([2, 3, 4, 5, 6, 7, 0, 1])
    fields = np.stack([fields, -fields], axis=1)  # two input variables
    batch = _Batch(fields, np.isfinite(fields), series, steps[times], shape=8)
    slab = batch.slab(fields)
    assert batch.size == slab.shape[1] == 9 + 3
    for v in range(2):
        expected = fields[series[:, None], v, steps[times]]
        np.testing.assert_array_equal(slab[v][batch.index], expected)


@pytest.mark.cuda
def test_cuda_staging_buffers_are_reused(hadcrut_series, demo_model):
    """Page-locked buffers are made once per device and reused by later batches and calls;
    the result equals the CPU's as closely as either matches CRAI."""
    from xcrai.engine import _staging

    cpu = hadcrut_series.crai.infill(demo_model, device="cpu", batch_size=4)
    first = hadcrut_series.crai.infill(demo_model, device="cuda", batch_size=4)
    buffers = {key: t.data_ptr() for key, t in _staging.items()}
    again = hadcrut_series.crai.infill(demo_model, device="cuda", batch_size=4)
    assert buffers and {key: t.data_ptr() for key, t in _staging.items()} == buffers
    assert all(t.is_pinned() for t in _staging.values())
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_allclose(first.values, cpu.values, rtol=0, atol=1e-5)
