"""xcrai.numerics: torch's process-wide switches are set only inside xcrai's passes and put
back as the user left them; batch shapes; CPU threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from xcrai.engine import padded_size
from xcrai.numerics import Numerics, choose_threads, scoped

FITBENCH = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def _switches() -> dict[str, object]:
    backends = torch.backends
    return {
        "conv": backends.cudnn.conv.fp32_precision,
        "matmul": backends.cuda.matmul.fp32_precision,
        "benchmark": backends.cudnn.benchmark,
        "cudnn_deterministic": backends.cudnn.deterministic,
        "algorithms": torch.are_deterministic_algorithms_enabled(),
    }


@pytest.fixture
def users_settings():
    """A user's own, non-default choices, made with torch's legacy flags; restored after."""
    backends = torch.backends
    before = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32, backends.cudnn.benchmark)
    backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = False, True
    backends.cudnn.benchmark = True
    yield {"cudnn.allow_tf32": False, "matmul.allow_tf32": True, "benchmark": True}
    backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = before[:2]
    backends.cudnn.benchmark = before[2]


def _legacy() -> dict[str, bool]:
    backends = torch.backends
    return {
        "cudnn.allow_tf32": backends.cudnn.allow_tf32,
        "matmul.allow_tf32": backends.cuda.matmul.allow_tf32,
        "benchmark": backends.cudnn.benchmark,
    }


@pytest.fixture
def inside():
    """The switches seen inside every forward pass of any module while the test runs."""
    seen: list[dict[str, object]] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda *_: seen.append(_switches())
    )
    yield seen
    hook.remove()


@pytest.mark.parametrize(
    ("precision", "conv", "benchmark"),
    [("fp32", "ieee", False), ("tf32", "tf32", False), ("bf16", "ieee", True)],
)
def test_infill_sets_its_switches_inside_and_restores_the_users(
    hadcrut_series, demo_model, users_settings, inside, precision, conv, benchmark
):
    """Eagerly and from dask's threads: inside the pass IEEE fp32 (or TF32 when asked) and
    a fixed cuDNN algorithm for fp32; afterwards exactly what the user had set."""
    hadcrut_series.crai.infill(demo_model, precision=precision)
    hadcrut_series.chunk(time=3).crai.infill(demo_model, precision=precision).compute()
    assert inside, "no forward pass was seen"
    expected = {"conv": conv, "matmul": conv, "benchmark": precision != "fp32",
                "cudnn_deterministic": precision == "fp32"}  # fmt: skip
    for seen in inside:
        assert {k: seen[k] for k in expected} == expected
    assert _legacy() == users_settings


def test_fit_sets_its_switches_inside_and_restores_the_users(users_settings, inside):
    """Also the user's random state, thread count and deterministic mode."""
    with (
        xr.open_dataset(FITBENCH / "zg_train.nc") as a,
        xr.open_dataset(FITBENCH / "zg_masks.nc") as b,
    ):
        train, masks = a.zg.load(), b.zg.load()
    torch.use_deterministic_algorithms(True, warn_only=True)
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    expected_draw = torch.rand(3)
    torch.manual_seed(1234)
    try:
        train.crai.fit(masks, iterations=3, batch_size=2, progress=False,
                       architecture={"n_filters": 4, "depth": 2}, threads=1)  # fmt: skip
        assert torch.equal(torch.rand(3), expected_draw)  # fit drew from its own generator
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.get_num_threads() == threads
    assert inside and all(s["conv"] == "ieee" and s["benchmark"] is False for s in inside)
    assert _legacy() == users_settings


def test_passes_with_other_switches_wait_for_each_other():
    """The switches are process-wide: a pass that needs other settings waits until the
    passes using the current ones have ended, and finds its own settings in force."""
    first, second = Numerics.inference("fp32"), Numerics.inference("tf32")
    before = _switches()
    events: list[str] = []
    entered = threading.Event()

    def other() -> None:
        entered.wait()
        with scoped(second):
            events.append(f"second in, conv {torch.backends.cudnn.conv.fp32_precision}")
        events.append("second out")

    thread = threading.Thread(target=other)
    thread.start()
    with scoped(first):
        entered.set()
        time.sleep(0.2)  # the other thread is waiting now
        with scoped(first):  # the same settings share the scope
            events.append(f"first in, conv {torch.backends.cudnn.conv.fp32_precision}")
    thread.join(5)
    assert events == ["first in, conv ieee", "second in, conv tf32", "second out"]
    assert _switches() == before


def test_fixed_batch_shapes():
    """A short batch is padded to the next power of two, never past the batch size."""
    assert [padded_size(n, 1024) for n in (1, 2, 3, 37, 600, 1024)] == [1, 2, 4, 64, 1024, 1024]
    assert [padded_size(n, 7) for n in (1, 3, 5, 7)] == [1, 4, 7, 7]


def test_results_do_not_depend_on_the_thread_count(hadcrut_series, demo_model):
    one = hadcrut_series.crai.infill(demo_model, threads=1)
    two = hadcrut_series.crai.infill(demo_model, threads=2)
    np.testing.assert_array_equal(one.values, two.values)


def test_threads_argument():
    assert choose_threads(3) == 3
    assert 1 <= choose_threads("auto") <= torch.get_num_threads()
    for bad in (0, -1, True, "many", 1.5):
        with pytest.raises(ValueError, match="threads: expected 'auto' or an integer >= 1"):
            choose_threads(bad)


def test_auto_threads_leave_the_cores_busy_processes_use():
    """Two CPU-bound processes (real ones) on this machine's cores: "auto" takes fewer
    threads than an idle machine gives."""
    import os
    import subprocess
    import sys

    cores = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        from xcrai.numerics import free_cores

        assert free_cores() == 1
    finally:
        for process in busy:
            process.kill()
            process.wait()


@pytest.mark.cuda
def test_cuda_fp32_is_ieee_and_tf32_is_not(hadcrut, demo_model):
    """On CUDA, fp32 matches the CPU as closely as CRAI parity (1e-5 K); TF32 is asked for
    explicitly and differs more."""
    cpu = hadcrut.tas.crai.infill(demo_model, device="cpu", return_output=True).tas_output.values
    fp32 = hadcrut.tas.crai.infill(demo_model, device="cuda", return_output=True).tas_output.values
    tf32 = hadcrut.tas.crai.infill(
        demo_model, device="cuda", return_output=True, precision="tf32"
    ).tas_output.values
    assert np.abs(fp32 - cpu).max() < 1e-5
    assert np.abs(tf32 - cpu).max() > np.abs(fp32 - cpu).max()


@pytest.mark.cuda
def test_cuda_training_repeats_bit_for_bit():
    with (
        xr.open_dataset(FITBENCH / "zg_train.nc") as a,
        xr.open_dataset(FITBENCH / "zg_masks.nc") as b,
    ):
        train, masks = a.zg.load(), b.zg.load()
    options = dict(iterations=20, batch_size=4, progress=False, device="cuda",
                   architecture={"n_filters": 8, "depth": 3})  # fmt: skip
    one, two = (train.crai.fit(masks, **options).net.state_dict() for _ in range(2))
    assert all(torch.equal(one[k], two[k]) for k in one)
