"""How xcrai's own forward and backward passes compute: precision, algorithms, threads.

PyTorch keeps these as process-wide switches (TF32, cuDNN autotuning, deterministic
algorithms). xcrai sets them only around its own passes, with :func:`scoped`, and puts
back what it found, so a user's settings for their own work are never changed.

IEEE float32 is the default everywhere: on CUDA, cuDNN would otherwise run float32
convolutions in TF32 (10-bit mantissa), which moved CRAI-parity results by 0.02 K on an
H100. ``precision="tf32"`` asks for it explicitly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from xcrai.choices import (
    PRECISION_CHOICES,
    check_threads,
)

#: the precisions of a forward pass (:data:`xcrai.choices.PRECISION_CHOICES`) and the autocast
#: dtype of each (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = dict(
    zip(PRECISION_CHOICES, (None, None, torch.bfloat16, torch.float16), strict=True)
)
#: what cuBLAS needs for reproducible results (read when CUDA creates its handles)
CUBLAS_WORKSPACE = ":4096:8"


@dataclass(frozen=True)
class Numerics:
    """The process-wide torch switches one of xcrai's passes runs under.

    Attributes
    ----------
    fp32 : {"ieee", "tf32"}
        Arithmetic of float32 convolutions and matrix products on CUDA.
    benchmark : bool
        cuDNN autotuning: it times candidate algorithms per shape and keeps the
        fastest, so the choice (and the last bits of the result) can differ between
        runs. Without it, cuDNN's choice is fixed per shape and deterministic
        (``cudnn.deterministic``).
    algorithms : bool
        Only deterministic algorithms (``torch.use_deterministic_algorithms``): needed
        on CUDA for training that repeats bit for bit, since the backward pass of a
        convolution otherwise adds in any order. (PyTorch's CPU kernels are
        deterministic already.)
    """

    fp32: str = "ieee"
    benchmark: bool = False
    algorithms: bool = False

    @classmethod
    def inference(cls, precision: str) -> Numerics:
        """fp32: IEEE arithmetic and a fixed choice of algorithm per shape (the same
        numbers for any batch, chunk or run); the reduced precisions autotune for speed."""
        return cls(fp32="tf32" if precision == "tf32" else "ieee", benchmark=precision != "fp32")

    @classmethod
    def training(cls, precision: str, deterministic: bool, device: torch.device) -> Numerics:
        fp32 = "tf32" if precision == "tf32" else "ieee"
        return cls(fp32, benchmark=not deterministic,
                   algorithms=deterministic and device.type == "cuda")  # fmt: skip


@dataclass(frozen=True)
class _Saved:
    conv: str
    matmul: str
    benchmark: bool
    cudnn_deterministic: bool
    algorithms: bool
    warn_only: bool
    fill_memory: bool


def _read() -> _Saved:
    backends = torch.backends
    return _Saved(
        conv=backends.cudnn.conv.fp32_precision,  # type: ignore[attr-defined]
        matmul=backends.cuda.matmul.fp32_precision,
        benchmark=backends.cudnn.benchmark,
        cudnn_deterministic=backends.cudnn.deterministic,
        algorithms=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        fill_memory=torch.utils.deterministic.fill_uninitialized_memory,  # type: ignore[attr-defined]
    )


def _write(saved: _Saved) -> None:
    backends = torch.backends
    # the fp32_precision strings, not the legacy allow_tf32 flags: reading or writing those
    # raises once a user has used the newer API, and the strings round-trip either one
    backends.cudnn.conv.fp32_precision = saved.conv  # type: ignore[attr-defined]
    backends.cuda.matmul.fp32_precision = saved.matmul
    backends.cudnn.benchmark = saved.benchmark
    backends.cudnn.deterministic = saved.cudnn_deterministic
    now = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
    if now != (saved.algorithms, saved.warn_only):  # the call costs about 0.5 ms
        torch.use_deterministic_algorithms(saved.algorithms, warn_only=saved.warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = saved.fill_memory  # type: ignore[attr-defined]


def _wanted(numerics: Numerics, found: _Saved) -> _Saved:
    keep = not numerics.algorithms  # leave a user's own deterministic mode as it is
    return _Saved(
        conv=numerics.fp32,
        matmul=numerics.fp32,
        benchmark=numerics.benchmark,
        cudnn_deterministic=not numerics.benchmark,
        algorithms=found.algorithms if keep else True,
        warn_only=found.warn_only if keep else False,
        # xcrai reads no memory it has not written; filling every new tensor with NaN
        # (the default in deterministic mode) would only cost time
        fill_memory=found.fill_memory if keep else False,
    )


class _Scope:
    """Who holds the switches: passes with the same :class:`Numerics` share them, a pass
    that needs others waits until the last of those has finished and restored them."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.active: Numerics | None = None
        self.users = 0
        self.saved: _Saved | None = None

    def enter(self, numerics: Numerics) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.users == 0 or self.active == numerics)
            if self.users == 0:
                self.saved = _read()
                _write(_wanted(numerics, self.saved))
                self.active = numerics
            self.users += 1

    def exit(self) -> None:
        with self.condition:
            self.users -= 1
            if self.users == 0:
                assert self.saved is not None
                _write(self.saved)
                self.active = self.saved = None
                self.condition.notify_all()


_scope = _Scope()


@contextmanager
def scoped(numerics: Numerics) -> Iterator[None]:
    """Run the block under ``numerics`` and restore the switches as they were.

    The switches are process-wide, so concurrent blocks (dask threads, several devices)
    that ask for the same settings run together, and one that asks for others waits.
    Do not nest blocks with different settings on one thread.

    Examples
    --------
    >>> with scoped(Numerics.inference("fp32")):  # doctest: +SKIP
    ...     out, reach = net(x, m, padding="global")
    """
    if numerics.algorithms:
        # cuBLAS reads this when it creates a handle; without it, deterministic mode
        # refuses matrix products on CUDA. It changes nothing else, so it is set once.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    _scope.enter(numerics)
    try:
        yield
    finally:
        _scope.exit()


def _runnable_elsewhere() -> int | None:
    """Tasks that want a core right now, other than this process's threads (Linux)."""
    try:
        with open("/proc/loadavg") as f:  # 4th field: runnable/total tasks, right now
            runnable = int(f.read().split()[3].split("/")[0])
        mine = 0
        for task in os.scandir("/proc/self/task"):  # e.g. our own spinning OpenMP threads
            try:
                with open(os.path.join(task.path, "stat")) as f:
                    mine += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread has ended
                continue
    except (OSError, ValueError, IndexError):
        return None
    return max(0, runnable - max(mine, 1))


def free_cores(samples: int = 5, interval: float = 0.01) -> int:
    """Cores this process may use that other processes are not busy with.

    The fewest tasks seen runnable over a few samples count as busy: a process that
    computes persistently is runnable in every sample, a passing one is not.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    seen = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        count = _runnable_elsewhere()
        if count is None:  # no /proc: the one-minute load average, less this process
            count = round(os.getloadavg()[0]) - 1 if hasattr(os, "getloadavg") else 0
        seen.append(count)
    return max(1, cores - max(0, min(seen)))


def choose_threads(threads: int | str | None, samples: int = 5) -> int:
    """Intra-op CPU threads for a pass: ``threads`` when given; for "auto" (or None), the
    cores that are free now, never more than torch's own setting.

    On a shared machine a thread that waits for a descheduled sibling wastes its slice:
    with two other CPU-bound processes on 2 cores, training on 2 threads ran several
    times slower than on 1 (benchmarks/contention.py).
    """
    if threads is None or threads == "auto":
        return max(1, min(torch.get_num_threads(), free_cores(samples)))
    return int(check_threads(threads))


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the caller's count."""
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
