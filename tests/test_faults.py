"""Nothing lost, nothing silently wrong: packed data, signals, full disks, unwritable folders,
bad models and bad options, with real files and real processes.

Every fault leaves the output folder as it was: same names, bytes, times and modes.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xcrai
from xcrai.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")

FITBENCH = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
MODEL = "crai-20crtasgn72"


# --- helpers -------------------------------------------------------------------------------


def _listing(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry of ``folder`` (hidden ones too): content hash, mtime and mode."""
    listing = {}
    for path in folder.iterdir():
        info = path.lstat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        listing[path.name] = (content, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return listing


@contextmanager
def unchanged(folder: Path) -> Iterator[None]:
    """Assert that nothing in ``folder`` is created, changed or removed by the block."""
    before = _listing(folder)
    yield
    assert _listing(folder) == before


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a terminal would deliver them, even when the test
    runner was started with them ignored (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _xcrai(*args: str, warnings: str = "ignore::UserWarning") -> list[str]:
    return [sys.executable, "-W", warnings, "-m", "xcrai.cli", *map(str, args)]


def _run(
    *args: str, warnings: str = "ignore::UserWarning", **kwargs
) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run(
        _xcrai(*args, warnings=warnings), capture_output=True, text=True, **kwargs
    )


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("xcrai ")
    for fragment in fragments:
        assert fragment in result.stderr


def _without_root_override() -> list[str]:
    """A command prefix under which folder permissions apply: root ignores them, unless its
    capability to override them is dropped (setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "in.nc"
    shutil.copy(xcrai.data.hadcrut4_sample(), path)
    return path


@pytest.fixture
def fit_files(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the fitbench training fields and masks (tests may try to overwrite them)."""
    data, masks = tmp_path / "zg_train.nc", tmp_path / "zg_masks.nc"
    shutil.copy(FITBENCH / "zg_train.nc", data)
    shutil.copy(FITBENCH / "zg_masks.nc", masks)
    return data, masks


@pytest.fixture(scope="module")
def long_input(tmp_path_factory) -> Path:
    """3,000 HadCRUT4-derived 72x72 fields: an infill that runs for a few seconds on a CPU."""
    with xr.open_dataset(xcrai.data.hadcrut4_sample()) as ds:
        tas = ds.tas.load()
    n = 3000
    fields = np.stack([np.roll(tas.values[i % 2], 7 * (i // 2), axis=-1) for i in range(n)])
    long = xr.Dataset(
        {"tas": (("time", "lat", "lon"), fields, tas.attrs)},
        coords={"time": pd.date_range("1900-01-01", periods=n), "lat": tas.lat, "lon": tas.lon},
    )
    path = tmp_path_factory.mktemp("long") / "long.nc"
    long.to_netcdf(path)
    return path


# --- 1. packed input is written as float32 -------------------------------------------------


def _pack(source: Path, target: Path, dtype: str, how: str = "packed") -> None:
    """Store ``source``'s tas as ``dtype``: "packed" with scale and offset from its own range,
    as ERA5 files are, or "stored" as rounded integers with a fill value."""
    with xr.open_dataset(source) as ds:
        ds = ds.load()
    lo, hi = float(ds.tas.min()), float(ds.tas.max())
    levels = np.iinfo(dtype).max - np.iinfo(dtype).min - 1  # one value left for _FillValue
    packing = {
        "scale_factor": np.float32((hi - lo) / levels),
        "add_offset": np.float32(lo + hi) / 2,
    }
    if how == "stored":
        ds["tas"] = ds.tas.round()
        packing = {}
    ds.tas.encoding = {"dtype": dtype, "_FillValue": np.iinfo(dtype).min, "zlib": True, **packing}
    ds.to_netcdf(target)


@pytest.mark.parametrize(("dtype", "how"), [("int16", "packed"), ("int8", "packed"),
                                            ("int16", "stored")])  # fmt: skip
def test_integer_input_is_written_as_float32(tmp_path, dtype, how):
    packed, out = tmp_path / "p.nc", tmp_path / "o.nc"
    _pack(xcrai.data.hadcrut4_sample(), packed, dtype, how)
    note = f"written as float32 (input was {how} as {dtype})"
    before = _listing(tmp_path)
    result = _run("infill", packed, "-m", MODEL, "-o", out, "--no-progress", warnings="default")
    assert result.returncode == 0, result.stderr
    assert note in result.stderr  # the warning
    assert _listing(tmp_path) == {**before, "o.nc": _listing(tmp_path)["o.nc"]}
    with xr.open_dataset(packed) as p:
        unpacked = p.tas.load()
    with pytest.warns(UserWarning, match="written as float32"):
        expected = unpacked.crai.infill(MODEL)
    with xr.open_dataset(out) as o:
        written = o.tas.load()
        assert o.tas.encoding["dtype"] == np.float32
        assert "scale_factor" not in o.tas.encoding and "add_offset" not in o.tas.encoding
        history = o.attrs["history"].split("\n")[0]
    assert note in history
    valid = np.isfinite(unpacked.values)
    holes, lo, hi = expected.values[~valid], unpacked.min().item(), unpacked.max().item()
    assert (holes < lo).any() or (holes > hi).any(), "the infill must leave the packed range"
    packing = hi - lo
    np.testing.assert_allclose(
        written.values[valid], unpacked.values[valid], rtol=0, atol=packing * 2e-7
    )
    np.testing.assert_array_equal(written.values[~valid], holes)


def test_packed_dataarray_warns_once_at_the_callers_line(tmp_path):
    packed = tmp_path / "p.nc"
    _pack(xcrai.data.hadcrut4_sample(), packed, "int16")
    with xr.open_dataset(packed) as p:
        da = p.tas.load()
    with pytest.warns(UserWarning) as record:
        result = da.crai.infill(MODEL, return_output=True)
    packing = [w for w in record if "written as float32" in str(w.message)]
    assert len(packing) == 1 and packing[0].filename == __file__
    assert "tas: written as float32 (input was packed as int16)" in str(packing[0].message)
    for name in ("tas", "tas_output"):
        assert result[name].encoding["dtype"] == np.float32
        assert "scale_factor" not in result[name].encoding
        assert result[name].encoding["zlib"]  # compression settings kept
    result.to_netcdf(tmp_path / "o.nc")
    with xr.open_dataset(tmp_path / "o.nc") as o:
        np.testing.assert_array_equal(o.tas_output.values, result.tas_output.values)


# --- 2. fit never overwrites its inputs ----------------------------------------------------


@pytest.mark.parametrize("role", ["data", "masks"])
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_fit_refuses_to_overwrite_its_inputs(fit_files, tmp_path, capsys, role, how):
    data, masks = fit_files
    target = data if role == "data" else masks
    output = {"same": target, "symlink": tmp_path / "link.nc", "hardlink": tmp_path / "hard.nc"}
    output = output[how]
    if how == "symlink":
        output.symlink_to(target)
    elif how == "hardlink":
        os.link(target, output)
    with unchanged(tmp_path):
        code = main(["fit", str(data), "--masks", str(masks), "-o", str(output), "--overwrite",
                     "--iterations", "1", "--batch-size", "4", "--no-progress"])  # fmt: skip
    assert code == 2
    assert f"is the {role} file" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_infill_refuses_links_to_its_input(sample, tmp_path, capsys, how):
    link = tmp_path / "link.nc"
    link.symlink_to(sample) if how == "symlink" else os.link(sample, link)
    with unchanged(tmp_path):
        assert main(["infill", str(sample), "-m", MODEL, "-o", str(link), "--overwrite"]) == 2
    assert "is the input file" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["same path", "symlink"])
def test_infill_refuses_to_overwrite_its_model(sample, tmp_path, capsys, how):
    model = tmp_path / "model.pth"
    shutil.copy(xcrai.data.demo_model(), model)
    given = model
    if how == "symlink":
        given = tmp_path / "link.pth"
        given.symlink_to(model)
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", str(given), "-o", str(model), "--overwrite"])
    assert code == 2
    assert f"output: {str(model)!r} is the model file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--tile-size", "0", "argument --tile-size"),
        ("--batch-size", "0", "argument --batch-size"),
        ("--memory", "1e400", "memory: expected a size"),
        ("--memory", "1.2.3", "memory: expected a size"),
        ("--memory", "0.5", "memory: expected a size"),
    ],
)
def test_bad_option_values_are_one_line_errors(sample, tmp_path, option, value, said):
    with unchanged(tmp_path):
        result = _run("infill", sample, "-m", MODEL, "-o", tmp_path / "out.nc", option, value)
    _one_line_error(result, said)


# --- 6. outputs are checked before any work ------------------------------------------------


def test_infill_output_that_is_a_folder(sample, tmp_path, capsys):
    (tmp_path / "out.nc").mkdir()
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", MODEL, "-o", str(tmp_path / "out.nc"),
                     "--overwrite", "--no-progress"])  # fmt: skip
    assert code == 2
    assert "output: " in (err := capsys.readouterr().err) and "is a folder" in err


def test_fit_output_that_is_a_folder_fails_before_training(fit_files, tmp_path):
    data, masks = fit_files
    (tmp_path / "model.pth").mkdir()
    with unchanged(tmp_path):  # 100,000 iterations would run past the timeout
        result = _run("fit", data, "--masks", masks, "-o", tmp_path / "model.pth", "--overwrite",
                      "--iterations", "100000", "--no-progress", timeout=60)  # fmt: skip
    _one_line_error(result, "output: ", "is a folder")


def test_read_only_output_folder_fails_before_infilling(sample, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    command = [*_without_root_override(), *_xcrai("infill", sample, "-m", MODEL, "-o",
                                                  folder / "out.nc", "--no-progress")]  # fmt: skip
    with unchanged(tmp_path), unchanged(folder):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    _one_line_error(result, f"output: cannot create files in folder {str(folder)!r}")


def test_read_only_checkpoint_dir_fails_before_training(fit_files, tmp_path):
    data, masks = fit_files
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    folder.chmod(0o555)
    command = [*_without_root_override(), *_xcrai(
        "fit", data, "--masks", masks, "-o", tmp_path / "model.pth", "--iterations", "100000",
        "--checkpoint-dir", folder, "--checkpoint-every", "1", "--no-progress",
    )]  # fmt: skip
    with unchanged(tmp_path), unchanged(folder):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    _one_line_error(result, f"checkpoint_dir: cannot create files in folder {str(folder)!r}")


@pytest.mark.parametrize(
    ("output", "extra", "said"),
    [
        ("run/checkpoint.pth", ["--resume", "run"], "is the resume file"),
        ("run/checkpoint.pth", [], "is the checkpoint_dir file"),
        ("new", [], "is a folder the run keeps its checkpoints in"),
        ("run/member-1", ["--ensemble", "2"], "is a folder the run keeps its checkpoints in"),
        ("new", ["--ensemble", "2"], "is a folder the run keeps its checkpoints in"),
        ("up", ["--checkpoint-dir", "up/down"], "is a folder the run keeps its checkpoints in"),
    ],
)
def test_fit_output_onto_the_runs_checkpoints_fails_before_training(
    fit_files, tmp_path, output, extra, said
):
    """The output can be neither the checkpoint resumed or written nor a folder the run
    keeps them in: refused before training, the earlier run's checkpoint untouched."""
    data, masks = fit_files
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pth").write_bytes(b"an earlier run's checkpoint")
    folder = output if output in ("new", "up") else "run"
    extra = [str(tmp_path / e) if e in ("run", "up/down") else e for e in extra]
    with unchanged(tmp_path), unchanged(tmp_path / "run"):  # 100,000 iterations: a timeout
        result = _run("fit", data, "--masks", masks, "-o", tmp_path / output, "--overwrite",
                      "--checkpoint-dir", tmp_path / folder, *extra, "--iterations", "100000",
                      "--no-progress", timeout=60)  # fmt: skip
    _one_line_error(result, f"output: {str(tmp_path / output)!r} {said}")


# --- 7. signals and temporary files --------------------------------------------------------


def _size(path: Path) -> int:
    """The size of ``path``, 0 once it is gone (a temporary file renamed between the glob
    that found it and this stat)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _start_and_signal(long_input: Path, out: Path, signum: int) -> subprocess.Popen:
    """Start ``xcrai infill``, send ``signum`` once it is writing its temporary file."""
    process = subprocess.Popen(
        _xcrai("infill", long_input, "-m", MODEL, "-o", out, "--device", "cpu", "--no-progress"),
        stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not [p for p in out.parent.glob(f".{out.name}.*.tmp") if _size(p) > 0]:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # into the computation
    assert process.poll() is None, "the infill ended before the signal; make the input longer"
    process.send_signal(signum)
    process.wait(timeout=60)
    return process


@pytest.mark.parametrize(
    ("signum", "status", "message"),
    [(signal.SIGTERM, 143, "xcrai infill: terminated"),
     (signal.SIGINT, 130, "xcrai infill: interrupted")],
)  # fmt: skip
def test_sigterm_and_sigint_remove_the_temporary_file(
    long_input, tmp_path, signum, status, message
):
    out = tmp_path / "out.nc"
    with unchanged(tmp_path):
        process = _start_and_signal(long_input, out, signum)
    assert process.returncode == status
    assert process.stderr.read() == f"{message}\n"  # one line, no traceback


def test_sigkill_leaves_a_temporary_file_that_the_next_run_removes(long_input, sample, tmp_path):
    out = tmp_path / "out.nc"
    process = _start_and_signal(long_input, out, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".out.nc.xcrai-{process.pid}-")
    result = _run("infill", sample, "-m", MODEL, "-o", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _temps(tmp_path) == [] and out.is_file()


def test_only_stale_temporary_files_of_xcrai_are_removed(sample, tmp_path):
    out = tmp_path / "out.nc"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".out.nc.xcrai-{int(gone.stdout)}-0123abcd.tmp"
    live = tmp_path / f".out.nc.xcrai-{os.getpid()}-0123abcd.tmp"  # this test's process
    others = [tmp_path / ".out.nc.other.tmp", tmp_path / f".in.nc.xcrai-{int(gone.stdout)}-ab.tmp",
              tmp_path / f".out.nc.xcrai-{int(gone.stdout)}-notatoken.tmp"]  # fmt: skip
    for path in (stale, live, *others):
        path.write_text("x")
    result = _run("infill", sample, "-m", MODEL, "-o", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert live.read_text() == "x" and all(p.read_text() == "x" for p in others)


# --- 7b. outputs that appear while a run works; checkpoint folders held by one run ---------


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 90) -> None:
    """Poll until ``condition()`` holds, while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.01)


def _kept_file(stderr: str) -> Path:
    """The file an OutputAppeared error says the result is in."""
    assert "was created by another program while xcrai worked" in stderr, stderr
    return Path(stderr.split("the result is in '")[1].split("'")[0])


def test_infill_output_created_during_the_run_is_left_intact(long_input, tmp_path):
    """Another program writes the output while xcrai infills: its file survives, the run
    fails in one line naming where its own result went, and that result is complete."""
    out = tmp_path / "out.nc"
    process = subprocess.Popen(
        _xcrai("infill", long_input, "-m", MODEL, "-o", out, "--device", "cpu", "--no-progress"),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(lambda: any(p.stat().st_size for p in tmp_path.glob(".out.nc.*.tmp")), process,
              "the temporary file")  # fmt: skip
    out.write_text("another program's file")
    process.wait(timeout=120)
    stderr = process.stderr.read()
    assert process.returncode == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert out.read_text() == "another program's file"
    kept = _kept_file(stderr)
    assert kept.parent == tmp_path and kept.suffix == ".nc" and kept.name.startswith("out.")
    with xr.open_dataset(kept) as result, xr.open_dataset(long_input) as source:
        assert result.sizes == source.sizes and bool(result.tas.notnull().all())
    assert _temps(tmp_path) == []


def test_identical_infills_started_together_write_the_output_once(sample, tmp_path):
    """Three runs without --overwrite onto one output: one writes it, the others are
    refused (at the start, or at the end with their result kept aside), none replaces it."""
    out = tmp_path / "out.nc"
    processes = [
        subprocess.Popen(_xcrai("infill", sample, "-m", MODEL, "-o", out, "--no-progress"),
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    results = [(p.wait(timeout=180), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2, 2], results
    for code, stderr in results:
        if code == 2 and "exists; pass --overwrite" not in stderr:
            assert _kept_file(stderr).is_file()
    with xr.open_dataset(out) as written:
        assert bool(written.tas.notnull().all())
    assert _temps(tmp_path) == []


def _fit_command(data: Path, masks: Path, out: Path, *extra: object) -> list[str]:
    return _xcrai("fit", data, "--masks", masks, "-o", out, "--batch-size", "4",
                  "--no-progress", *extra)  # fmt: skip


def test_fit_output_created_during_training_is_left_intact(fit_files, tmp_path):
    data, masks = fit_files
    out, folder = tmp_path / "model.pth", tmp_path / "ck"
    process = subprocess.Popen(
        _fit_command(data, masks, out, "--iterations", "60", "--checkpoint-dir", folder),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for((folder / ".xcrai.lock").exists, process, "training")  # past every check
    out.write_text("another program's model")
    process.wait(timeout=300)
    stderr = process.stderr.read()
    assert process.returncode == 2 and stderr.count("\n") == 1, stderr
    assert out.read_text() == "another program's model"
    kept = _kept_file(stderr)
    assert kept.suffix == ".pth" and xcrai.load_model(kept).config.provenance["iterations"] == 60


def test_two_fits_on_one_checkpoint_folder(fit_files, tmp_path):
    """Started together on one --checkpoint-dir, one run trains and the other is refused
    naming the folder; the folder's checkpoint is the training run's."""
    data, masks = fit_files
    folder = tmp_path / "ck"
    processes = {}
    for seed in (0, 7):
        processes[seed] = subprocess.Popen(
            _fit_command(data, masks, tmp_path / f"model-{seed}.pth", "--iterations", "40",
                         "--checkpoint-dir", folder, "--seed", seed),
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    codes = {seed: (p.wait(timeout=300), p.stderr.read()) for seed, p in processes.items()}
    assert sorted(code for code, _ in codes.values()) == [0, 2], codes
    (winner,) = [seed for seed, (code, _) in codes.items() if code == 0]
    (stderr,) = [err for code, err in codes.values() if code == 2]
    assert stderr.startswith(f"xcrai fit: error: checkpoint_dir: {str(folder)!r}") or (
        stderr.startswith(f"xcrai fit: error: checkpoint_dir: {str(folder / 'checkpoint.pth')!r}")
    ), stderr  # held by the other run, or holding its finished checkpoint by then
    state = torch.load(folder / "checkpoint.pth", weights_only=False)
    assert state["train_config"]["seed"] == winner and state["iteration"] == 40
    assert not (tmp_path / f"model-{7 - winner}.pth").exists()


def test_a_held_checkpoint_folder_is_refused_in_process(fit_files, tmp_path):
    """The hold is per run, not per process: a second fit in the same process is refused."""
    from xcrai.files import FolderInUse, hold_folder

    data, masks = fit_files
    folder = tmp_path / "ck"
    folder.mkdir()
    with xr.open_dataset(data) as d, xr.open_dataset(masks) as m:
        zg, mask = d.zg.load(), m.zg.load()
    with hold_folder(folder, "checkpoint_dir"), unchanged(folder):
        with pytest.raises(FolderInUse, match=rf"checkpoint_dir: {str(folder)!r} is in use "
                           rf"by another xcrai run \(process {os.getpid()}\)"):  # fmt: skip
            zg.crai.fit(mask, iterations=1, batch_size=4, checkpoint_dir=folder, progress=False)


def test_a_killed_fit_does_not_leave_its_folder_held(fit_files, tmp_path):
    data, masks = fit_files
    folder = tmp_path / "ck"
    process = subprocess.Popen(
        _fit_command(data, masks, tmp_path / "model.pth", "--iterations", "50",
                     "--checkpoint-dir", folder, "--checkpoint-every", "1"),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for((folder / "checkpoint.pth").exists, process, "a checkpoint")
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    result = subprocess.run(
        _fit_command(data, masks, tmp_path / "model.pth", "--iterations", "50",
                     "--checkpoint-dir", folder, "--resume", folder),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def _special_files(tmp_path: Path) -> list[tuple[Path, str]]:
    fifo = tmp_path / "fifo.nc"
    os.mkfifo(fifo)
    specials = [(fifo, "FIFO (named pipe)")]
    device = tmp_path / "null.nc"
    try:  # a copy of /dev/null's node, where this process may make device nodes
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        specials.append((device, "character device"))
    except (PermissionError, OSError):
        pass
    return specials


def _kind(path: Path) -> int:
    return stat.S_IFMT(path.lstat().st_mode)


def test_overwrite_never_replaces_a_fifo_or_a_device(sample, fit_files, tmp_path):
    data, masks = fit_files
    for path, kind in _special_files(tmp_path):
        before = _kind(path)
        for command in (
            ["infill", sample, "-m", MODEL, "-o", path, "--overwrite", "--no-progress"],
            ["fit", data, "--masks", masks, "-o", path, "--overwrite", "--iterations", "1",
             "--batch-size", "4", "--no-progress"],
        ):  # fmt: skip
            result = _run(*command, timeout=120)
            _one_line_error(result, f"output: {str(path)!r} is a {kind}, not a regular file")
            assert _kind(path) == before
    model = xcrai.load_model(MODEL)
    with pytest.raises(ValueError, match="is a FIFO"):
        model.save(tmp_path / "fifo.nc")
    assert stat.S_ISFIFO((tmp_path / "fifo.nc").lstat().st_mode)


@pytest.mark.parametrize("command", ["infill", "fit"])
def test_output_dash_is_refused(sample, fit_files, tmp_path, command):
    data, masks = fit_files
    args = (["infill", sample, "-m", MODEL] if command == "infill"
            else ["fit", data, "--masks", masks, "--iterations", "1"])  # fmt: skip
    with unchanged(tmp_path):
        result = _run(*args, "-o", "-", "--no-progress", cwd=tmp_path)
    _one_line_error(result, "output: '-' would be a file named '-'")


# --- 7c. missing values that nobody decoded ------------------------------------------------


def _tas(**open_kwargs) -> xr.DataArray:
    with xr.open_dataset(xcrai.data.hadcrut4_sample(), **open_kwargs) as ds:
        return ds.tas.load()


@pytest.fixture(scope="module")
def decoded_infill() -> xr.DataArray:
    return _tas().crai.infill(MODEL, device="cpu", progress=False)


@pytest.mark.parametrize("how", [{"mask_and_scale": False}, {"decode_cf": False}])
def test_undecoded_fill_values_are_holes(decoded_infill, how):
    raw = _tas(**how)
    holes = int((raw == raw.attrs["_FillValue"]).sum())
    assert holes == int(_tas().isnull().sum()) > 7000
    with pytest.warns(UserWarning, match=rf"data: 'tas' has {holes} point\(s\) holding the fill "
                      r"value\(s\) 1e\+20 of its attrs; they are treated as missing \(holes\); "
                      r"decode the data first: xr.decode_cf"):  # fmt: skip
        filled = raw.crai.infill(MODEL, device="cpu", progress=False)
    np.testing.assert_array_equal(filled.values, decoded_infill.values)
    assert decoded_infill.attrs["history"].split("), ")[-1] in filled.attrs["history"]  # share
    assert float(np.abs(filled).max()) < 100  # no 1e20 came through


def test_missing_value_attribute_of_hand_made_data(decoded_infill):
    """-999 in the holes, declared by ``missing_value``: holes, not -999 K fed to the net."""
    data = _tas().fillna(-999).assign_attrs(missing_value=-999)
    with pytest.warns(UserWarning, match=r"point\(s\) holding the fill value\(s\) -999"):
        filled = data.crai.infill(MODEL, device="cpu", progress=False)
    np.testing.assert_array_equal(filled.values, decoded_infill.values)


def test_lazy_undecoded_input_stays_lazy_and_matches(decoded_infill):
    with xr.open_dataset(xcrai.data.hadcrut4_sample(), mask_and_scale=False,
                         chunks={"time": 1}) as ds:  # fmt: skip
        with pytest.warns(UserWarning, match="has points holding the fill value"):
            filled = ds.tas.crai.infill(MODEL, device="cpu", progress=False)
        assert filled.chunks is not None
        np.testing.assert_array_equal(filled.values, decoded_infill.values)


def test_values_outside_the_valid_range_are_holes(decoded_infill):
    tas = _tas()
    data = tas.fillna(1e3).assign_attrs(valid_range=np.array([-80.0, 80.0], dtype=np.float32))
    with pytest.warns(UserWarning, match=r"values outside its valid range \[-80.0, 80.0\]"):
        filled = data.crai.infill(MODEL, device="cpu", progress=False)
    np.testing.assert_array_equal(filled.values, decoded_infill.values)


def test_packed_values_not_decoded_are_refused(tmp_path, fit_files):
    packed = tmp_path / "p.nc"
    _pack(xcrai.data.hadcrut4_sample(), packed, "int16")
    with xr.open_dataset(packed, mask_and_scale=False) as ds:
        raw = ds.tas.load()
    with pytest.raises(ValueError, match=r"data: 'tas' holds packed values \(scale_factor=.* "
                       r"in its attrs, not applied\); decode the data first"):  # fmt: skip
        raw.crai.infill(MODEL)
    data, masks = fit_files
    with xr.open_dataset(data) as d, xr.open_dataset(masks) as m:
        zg, mask = d.zg.load(), m.zg.load()
    with pytest.raises(ValueError, match=r"data: 'zg' holds packed values"):
        zg.assign_attrs(scale_factor=0.5).crai.fit(mask, iterations=1, progress=False)


def test_fit_takes_undecoded_fill_values_for_missing_points(fit_files):
    """A fill value at the same points of every training field (land, say) is a point
    never learnt, as NaN is: the same model as with NaN there, bit for bit."""
    data, masks = fit_files
    with xr.open_dataset(data) as d, xr.open_dataset(masks) as m:
        zg, mask = d.zg.load(), m.zg.load()
    land = xr.zeros_like(zg.isel(time=0), dtype=bool)
    land[:10, :20] = True
    options = {"iterations": 2, "batch_size": 4, "progress": False, "seed": 3}
    with_nan = zg.where(~land).crai.fit(mask, **options)
    raw = zg.where(~land, -1e30).assign_attrs(_FillValue=np.float32(-1e30))
    with pytest.warns(UserWarning, match=rf"data: 'zg' has {int(land.sum()) * zg.sizes['time']} "
                      r"point\(s\) holding the fill value\(s\) -1e\+30"):  # fmt: skip
        with_fill = raw.crai.fit(mask, **options)
    assert with_fill.config.steady_mask is not None
    assert np.array_equal(with_fill.config.steady_mask, with_nan.config.steady_mask)
    for name, weight in with_nan.net.state_dict().items():
        assert torch.equal(weight, with_fill.net.state_dict()[name]), name


# --- 7d. variables an infill replaces; data infilled before --------------------------------


def test_replacing_a_datasets_output_and_foreign_flags_is_warned(hadcrut):
    ds = hadcrut.assign(tas_output=hadcrut.tas * 0, tas_flag=hadcrut.tas.isnull().astype("i1"))
    with pytest.warns(UserWarning) as caught:
        out = ds.crai.infill(MODEL, return_output=True, device="cpu", progress=False)
    said = [str(w.message) for w in caught]
    assert any(m.startswith("tas_output: the dataset already holds") for m in said), said
    assert any(m.startswith("tas_flag: the dataset already holds") for m in said), said
    assert set(np.unique(out.tas_flag.values)) <= {-1, 0, 1}


def test_reinfilling_a_flagged_output_keeps_the_first_pass_flags(hadcrut, sample, tmp_path):
    """The points an earlier pass infilled stay infilled (and are infilled afresh, from the
    observations alone): the second pass equals the first, flags and values."""
    first = tmp_path / "first.nc"
    result = _run("infill", sample, "-m", MODEL, "-o", first, "--flags", "--no-progress")
    assert result.returncode == 0, result.stderr
    second = tmp_path / "second.nc"
    result = _run("infill", first, "-m", MODEL, "-o", second, "--flags", "--no-progress",
                  warnings="default")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "data: 'tas' was infilled before (tas_flag holds xcrai's flags)" in result.stderr
    with xr.open_dataset(first) as a, xr.open_dataset(second) as b:
        assert (a.tas_flag.values == 0).sum() > 7000
        np.testing.assert_array_equal(b.tas_flag.values, a.tas_flag.values)
        np.testing.assert_array_equal(b.tas.values, a.tas.values)
        with pytest.warns(UserWarning, match=r"'tas' was infilled before .* \d+ point\(s\) it "
                          "flags infilled or unreachable are holes again"):  # fmt: skip
            again = a.load().crai.infill(MODEL, return_output=True, device="cpu", progress=False)
        np.testing.assert_array_equal(again.tas_flag.values, a.tas_flag.values)
        with pytest.warns(UserWarning, match=r"'tas' was infilled by xcrai before .* taken for "
                          r"observations; infill the Dataset holding tas_flag"):  # fmt: skip
            a.tas.load().crai.infill(MODEL, device="cpu", progress=False)


# --- 8. file modes follow the umask --------------------------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_infill_output_follows_the_umask(sample, tmp_path, mask):
    out = tmp_path / "out.nc"
    with umask(mask):
        assert main(["infill", str(sample), "-m", MODEL, "-o", str(out), "--no-progress"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_fit_output_follows_the_umask(fit_files, tmp_path, mask):
    data, masks = fit_files
    out = tmp_path / "model.pth"
    with umask(mask):
        code = main(["fit", str(data), "--masks", str(masks), "-o", str(out), "--iterations",
                     "1", "--batch-size", "4", "--no-progress"])  # fmt: skip
    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_model_save_follows_the_umask(tmp_path, mask):
    model = xcrai.load_model(MODEL)
    with umask(mask):
        path = model.save(tmp_path / "model.pth")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


# --- 10. one line, exit status 2, no file ---------------------------------------------------


def _file_size_limit(size: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead

    return limit


def test_full_disk_is_reported_and_leaves_no_file(long_input, tmp_path):
    subset = tmp_path / "in.nc"
    with xr.open_dataset(long_input) as ds:
        ds.isel(time=slice(0, 200)).to_netcdf(subset)  # 4 MB of output
    out = tmp_path / "out.nc"
    with unchanged(tmp_path):
        result = _run("infill", subset, "-m", MODEL, "-o", out, "--no-progress",
                      preexec_fn=_file_size_limit(1_000_000))  # fmt: skip
    _one_line_error(result, f"output: could not write {str(out)!r}",
                    "(disk full or file size limit?)")  # fmt: skip


def test_full_disk_during_model_save(tmp_path):
    model = xcrai.load_model(MODEL)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, limits[1]))
    try:
        with unchanged(tmp_path), pytest.raises(OSError, match=r"path: could not write .*disk"):
            model.save(tmp_path / "model.pth")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)


@pytest.mark.parametrize("missing", ["config", "state_dict"])
def test_model_file_without_config_or_weights(sample, tmp_path, capsys, missing):
    full = {"xcrai_format": 1, "config": {}, "state_dict": {}}
    torch.save({k: v for k, v in full.items() if k != missing}, tmp_path / "m.pth")
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", str(tmp_path / "m.pth"), "-o",
                     str(tmp_path / "o.nc")])  # fmt: skip
    assert code == 2
    assert f"is an xcrai model file without {missing!r}" in capsys.readouterr().err


def test_model_file_with_an_unreadable_config(sample, tmp_path, capsys):
    torch.save({"xcrai_format": 1, "config": {"padding": "global"}, "state_dict": {}},
               tmp_path / "m.pth")  # fmt: skip
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", str(tmp_path / "m.pth"), "-o",
                     str(tmp_path / "o.nc")])  # fmt: skip
    assert code == 2
    assert "has a configuration xcrai cannot read (KeyError: 'architecture')" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("device", ["mps", "meta"])
def test_devices_other_than_cpu_and_cuda_are_refused(sample, tmp_path, capsys, hadcrut, device):
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", MODEL, "-o", str(tmp_path / "o.nc"),
                     "--device", device, "--no-progress"])  # fmt: skip
    assert code == 2
    assert f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="device: expected"):
        hadcrut.tas.crai.infill(MODEL, device=device)


@pytest.mark.parametrize("architecture", [{"n_filters": 0}, {"depth": 0}, {"n_filters": 2.5}])
def test_fit_architecture_is_validated(fit_files, tmp_path, architecture):
    data, masks = (xr.open_dataset(path).zg.load() for path in fit_files)
    with unchanged(tmp_path), pytest.raises(ValueError, match=r"architecture: expected"):
        data.crai.fit(masks, architecture=architecture, iterations=1, batch_size=4,
                      checkpoint_dir=tmp_path / "checkpoints", progress=False)  # fmt: skip


def _corrupt_crai_checkpoint(path: Path, edit) -> None:
    checkpoint = torch.load(xcrai.data.demo_model(), map_location="cpu", weights_only=True)
    edit(checkpoint[checkpoint["labels"][-1]]["model"])
    torch.save(checkpoint, path)


def test_crai_checkpoint_with_inconsistent_channels(sample, tmp_path, capsys):
    def widen(state):
        for kind in ("input_conv", "mask_conv"):
            key = f"decoder.1.partial_conv.{kind}.weight"
            state[key] = torch.cat([state[key], state[key][:, :6]], dim=1)  # 54 -> 60 inputs

    _corrupt_crai_checkpoint(tmp_path / "bad.pth", widen)
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", str(tmp_path / "bad.pth"), "-o",
                     str(tmp_path / "o.nc"), "--no-progress"])  # fmt: skip
    assert code == 2
    assert "model: decoder layer 1 takes 60 input channels" in capsys.readouterr().err


def test_non_finite_weights_are_warned_about(tmp_path):
    def poison(state):
        state["encoder.1.partial_conv.input_conv.weight"][0, 0, 0, 0] = float("nan")

    _corrupt_crai_checkpoint(tmp_path / "nan.pth", poison)
    with pytest.warns(UserWarning, match=r"non-finite weights .*encoder\.1") as record:
        xcrai.load_model(tmp_path / "nan.pth")
    assert record[0].filename == __file__


# --- 11. smaller holes ---------------------------------------------------------------------


def test_return_output_must_be_a_bool(hadcrut):
    with pytest.raises(TypeError, match="return_output: expected True or False, got 'yes'"):
        hadcrut.tas.crai.infill(MODEL, return_output="yes")


def test_zarr_output_is_refused(sample, tmp_path, capsys):
    with unchanged(tmp_path):
        code = main(["infill", str(sample), "-m", MODEL, "-o", str(tmp_path / "x.zarr")])
    assert code == 2
    err = capsys.readouterr().err
    assert "writes netCDF" in err and ".to_zarr" in err


def test_repeated_var_gives_one_history_line(sample, tmp_path):
    out = tmp_path / "out.nc"
    assert main(["infill", str(sample), "-m", MODEL, "-o", str(out), "--var", "tas", "--var",
                 "tas", "--no-progress"]) == 0  # fmt: skip
    with xr.open_dataset(out) as ds:
        assert ds.attrs["history"].count("infilled tas with") == 1


def test_input_that_is_not_netcdf_is_named(tmp_path, capsys):
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file\n")
    with unchanged(tmp_path):
        code = main(["infill", str(text), "-m", MODEL, "-o", str(tmp_path / "o.nc")])
    assert code == 2
    assert f"input: could not read {str(text)!r} as netCDF" in capsys.readouterr().err


def test_masks_of_other_values_are_named(fit_files, tmp_path, capsys):
    data, masks = fit_files
    with xr.open_dataset(masks) as ds:
        halves = ds.load() * 0.5  # 0 and 0.5, no NaN
    halves.to_netcdf(tmp_path / "halves.nc")
    with unchanged(tmp_path):
        code = main(["fit", str(data), "--masks", str(tmp_path / "halves.nc"), "-o",
                     str(tmp_path / "m.pth"), "--iterations", "1", "--batch-size", "4",
                     "--no-progress"])  # fmt: skip
    assert code == 2
    assert "masks: expected bool, 0/1 or NaN-marked fields, found values [0.  0.5]" in (
        capsys.readouterr().err
    )


# --- model configurations, masks in another order, and clear errors (review items 3, 5, 6) ---


def _holes(da: xr.DataArray) -> xr.DataArray:
    """A (lat, lon) mask that hides a block in the north-west and a band in the south: not
    symmetric, so a mask flipped by position (not by label) would hide other points."""
    field = da.isel(time=0, drop=True)
    keep = np.ones(field.shape, bool)
    keep[50:66, 5:30] = False
    keep[3:9, :] = False
    return xr.DataArray(keep, dims=field.dims, coords=field.coords)


@pytest.mark.parametrize("order", ["lat", "lon", "both"])
def test_a_mask_in_another_order_is_aligned_by_its_labels(hadcrut, demo_model, order):
    """A mask whose latitude runs north to south (or whose longitude is rolled) means the
    same points as the data's order: the infill is the same, bit for bit."""
    mask = _holes(hadcrut.tas)
    other = mask
    if order in ("lat", "both"):
        other = other.isel(lat=slice(None, None, -1))
    if order in ("lon", "both"):
        other = other.roll(lon=17, roll_coords=True)
    expected = hadcrut.tas.crai.infill(demo_model, mask=mask)
    got = hadcrut.tas.crai.infill(demo_model, mask=other)
    np.testing.assert_array_equal(got.values, expected.values)
    assert not np.array_equal(expected.values, hadcrut.tas.crai.infill(demo_model).values)


def test_a_steady_mask_in_another_order_is_aligned_by_its_labels(hadcrut, demo_model):
    steady = ~_holes(hadcrut.tas)
    with pytest.warns(UserWarning, match="steady points"):
        expected = hadcrut.tas.crai.infill(demo_model, steady_mask=steady)
    flipped = steady.isel(lat=slice(None, None, -1))
    with pytest.warns(UserWarning, match="steady points"):
        got = hadcrut.tas.crai.infill(demo_model, steady_mask=flipped)
    np.testing.assert_array_equal(got.values, expected.values)


@pytest.mark.parametrize("argument", ["mask", "steady_mask"])
def test_a_mask_on_another_grid_is_refused_with_advice_that_keeps_its_points(
    hadcrut, demo_model, argument
):
    mask = _holes(hadcrut.tas)
    if argument == "steady_mask":
        mask = ~mask
    shifted = mask.assign_coords(lat=mask.lat + 0.5)
    with pytest.raises(ValueError, match=rf"^{argument}: .*differ.*reindex_like") as error:
        hadcrut.tas.crai.infill(demo_model, **{argument: shifted})
    assert "assign_coords" not in str(error.value)


def _edited(payload: dict, field: str, value) -> dict:
    """A deep copy of a model file's payload with ``field`` (dotted, with list indices as
    numbers: ``config.architecture.encoder.0.kernel_size``) set to ``value``."""
    import copy

    payload = copy.deepcopy(payload)
    *parents, last = field.split(".")
    node = payload
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(last) if isinstance(node, list) else last] = value
    return payload


@pytest.fixture(scope="module")
def saved_payload(tmp_path_factory) -> dict:
    """A real saved model's payload, with every optional field filled as fit fills them."""
    path = xcrai.load_model(MODEL).save(tmp_path_factory.mktemp("saved") / "m.pth")
    payload = torch.load(path, weights_only=True)
    steady = np.zeros((72, 72), bool)
    steady[:3] = True
    payload["config"].update(
        mean=280.0, std=10.0, variable="tas", units="K", bounds=[0.0, None],
        grid={"shape": [72, 72], "lat": [-88.75, 88.75], "lon": [1.25, 358.75],
              "periodic": True, "lat_ascending": True},
        steady_mask=xcrai.model.pack_mask(steady),
    )  # fmt: skip
    return payload


# (field, corrupt value, what the message says after "its ")
CORRUPT_FIELDS = [
    ("sigma_scale", float("nan"), "sigma_scale: expected a finite number > 0, got nan"),
    ("sigma_scale", float("inf"), "sigma_scale: expected a finite number > 0, got inf"),
    ("sigma_scale", 0.0, "sigma_scale: expected a finite number > 0, got 0.0"),
    ("sigma_scale", -1.0, "sigma_scale: expected a finite number > 0, got -1.0"),
    ("sigma_scale", "2", "sigma_scale: expected a finite number > 0, got '2'"),
    ("grid.shape", [72], "grid.shape: expected a list of 2, got [72]"),
    ("grid.shape", [72, 0], "grid.shape[1]: expected an integer >= 1, got 0"),
    ("grid.lat", [-95.0, 90.0], "grid.lat[0]: expected a finite number in [-90, 90]"),
    ("grid.periodic", "yes", "grid.periodic: expected True or False, got 'yes'"),
    ("grid.lat_ascending", 1, "grid.lat_ascending: expected True or False, got 1"),
    ("grid", [72, 72], "grid: expected a dict, got [72, 72]"),
    ("architecture", "unet", "architecture: expected a dict, got 'unet'"),
    ("architecture.kind", "resnet", "architecture.kind: expected 'crainet', or no kind"),
    ("architecture.encoder", [], "architecture.encoder: expected a list of at least 1"),
    (
        "architecture.encoder.0.kernel_size",
        4,
        "architecture.encoder[0].kernel_size: expected an odd integer >= 1, got 4",
    ),
    (
        "architecture.decoder.1.in_channels",
        2.5,
        "architecture.decoder[1].in_channels: expected an integer >= 1, got 2.5",
    ),
    (
        "architecture.encoder.0.batch_norm",
        "no",
        "architecture.encoder[0].batch_norm: expected True or False, got 'no'",
    ),
    ("architecture.normalization", "bogus", "architecture.normalization: expected one of"),
    ("time_context", [1], "time_context: expected a list of 2, got [1]"),
    ("time_context", [0, -1], "time_context[1]: expected an integer >= 0, got -1"),
    ("time_context", [2, 2], "time_context: the model reads 1 time step(s)"),
    ("mean", "280", "mean: expected a finite number, got '280'"),
    ("std", -1.0, "std: expected a finite number > 0, got -1.0"),
    ("variable", 5, "variable: expected a string, got 5"),
    ("units", ["K"], "units: expected a string, got ['K']"),
    ("inputs", ["tas", "tas"], "inputs: expected distinct items, got ['tas', 'tas']"),
    ("inputs", [], "inputs: expected a list of at least 1, got []"),
    ("target", 3, "target: expected a string, got 3"),
    ("stats", [[280.0, 0.0]], "stats[0][1]: expected a finite number > 0, got 0.0"),
    ("bounds", [1.0, 0.0], "bounds: the lower bound 1 is not below the upper bound 0"),
    ("steady_mask.bits", "00", "steady_mask.bits: expected 648 bytes (a 72x72 mask)"),
    ("steady_mask.shape", [36, 144], "steady_mask: expected the grid's shape [72, 72]"),
    ("steady_mask", "land", "steady_mask: expected a dict, got 'land'"),
    ("provenance", "CRAI", "provenance: expected a dict, got 'CRAI'"),
    ("provenance.history", 5, "provenance.history: expected a list, got 5"),
    ("provenance.seed", -3, "provenance.seed: expected an integer >= 0, got -3"),
]


@pytest.mark.parametrize(("field", "value", "said"), CORRUPT_FIELDS,
                         ids=[f"{f}={v!r}" for f, v, _ in CORRUPT_FIELDS])  # fmt: skip
def test_a_corrupt_configuration_field_is_refused_naming_the_file_and_the_field(
    tmp_path, saved_payload, field, value, said
):
    torch.save(saved_payload, tmp_path / "good.pth")
    xcrai.load_model(tmp_path / "good.pth")  # the payload itself is sound
    torch.save(_edited(saved_payload, f"config.{field}", value), tmp_path / "bad.pth")
    with pytest.raises(ValueError) as error:
        xcrai.load_model(tmp_path / "bad.pth")
    message = str(error.value)
    assert message.startswith(f"model: {str(tmp_path / 'bad.pth')!r} has a configuration")
    assert f"its {said}" in message, message


def test_every_configuration_field_has_a_check():
    from dataclasses import fields

    from xcrai.schema import CONFIG_FIELDS

    assert set(CONFIG_FIELDS) == {f.name for f in fields(xcrai.model.ModelConfig)}


def test_a_corrupt_grid_shape_is_a_one_line_error_from_the_command_line(
    sample, tmp_path, saved_payload
):
    torch.save(_edited(saved_payload, "config.grid.shape", [72]), tmp_path / "bad.pth")
    with unchanged(tmp_path):
        result = _run("infill", sample, "-m", tmp_path / "bad.pth", "-o", tmp_path / "o.nc")
    _one_line_error(result, "bad.pth", "its grid.shape: expected a list of 2, got [72]")


@pytest.mark.parametrize("version", ["1", 1.0, True, 0, None])
def test_a_format_version_that_is_not_a_whole_number_names_the_file(
    tmp_path, saved_payload, version
):
    torch.save({**saved_payload, "xcrai_format": version}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"^model: '.*bad\.pth' is not a readable xcrai model "
                       r"file: its xcrai_format: expected an integer >= 1, got "):  # fmt: skip
        xcrai.load_model(tmp_path / "bad.pth")


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("ensemble", ["a"], "its ensemble: expected a dict, got ['a']"),
        ("ensemble.labels", ["a"], "its ensemble.labels: expected one label per member (2)"),
        ("ensemble.labels", ["a", "a"], "its ensemble.labels: expected distinct items"),
        ("ensemble.labels", ["a", 2], "its ensemble.labels[1]: expected a string, got 2"),
        ("ensemble.members", {}, "its ensemble.members: expected a list of at least 1"),
        ("ensemble.members.1", "weights", "its ensemble.members[1]: expected a dict"),
        ("ensemble.members.1.config.sigma_scale", float("nan"),
         "(ensemble member 1, 'b') has a configuration xcrai cannot read (ValueError: its "
         "sigma_scale: expected a finite number > 0, got nan)"),
    ],
)  # fmt: skip
def test_a_corrupt_ensemble_file_is_refused_naming_the_file_and_the_field(
    tmp_path, field, value, said
):
    model = xcrai.load_model(MODEL)
    path = xcrai.Ensemble((model, model), ("a", "b")).save(tmp_path / "ens.pth")
    payload = torch.load(path, weights_only=True)
    torch.save(_edited(payload, field, value), tmp_path / "bad.pth")
    with pytest.raises(ValueError) as error:
        xcrai.load_model(tmp_path / "bad.pth", label="all")
    assert str(error.value).startswith(f"model: {str(tmp_path / 'bad.pth')!r}")
    assert said in str(error.value), str(error.value)


# --- unclear errors (the second fault matrix, item 6) --------------------------------------


@pytest.mark.parametrize(("seed", "ensemble"), [(2**64, 1), (2**70, 1), (2**64 - 1, 2)])
def test_a_seed_beyond_64_bits_is_refused_naming_the_range(fit_files, tmp_path, seed, ensemble):
    data, masks = fit_files
    args = ["fit", data, "--masks", masks, "-o", tmp_path / "m.pth", "--iterations", "1",
            "--seed", str(seed), "--ensemble", str(ensemble)]  # fmt: skip
    with unchanged(tmp_path):
        result = _run(*args)
    _one_line_error(result, "seed: expected an integer from 0 to 2**64 - 1", str(seed))
    with pytest.raises(ValueError, match=r"^seed: expected an integer from 0 to 2\*\*64 - 1"):
        xcrai.options.FitOptions(seed=seed, ensemble=ensemble)
    assert xcrai.options.FitOptions(seed=2**64 - ensemble).seed == 2**64 - ensemble


@pytest.mark.parametrize("latitudes", ["doubled", "radians_as_degrees", "nan"])
def test_latitudes_outside_minus_90_to_90_are_refused(hadcrut, tmp_path, latitudes):
    lat = hadcrut.lat.values.astype(float)
    bad = {
        "doubled": lat * 2,
        "radians_as_degrees": lat + 90,
        "nan": np.where(lat > 80, np.nan, lat),
    }
    ds = hadcrut.assign_coords(lat=("lat", bad[latitudes], hadcrut.lat.attrs))
    with pytest.raises(ValueError, match=r"^data: latitude 'lat' holds \d+ value\(s\) outside"):
        ds.tas.crai.infill(MODEL)
    path = tmp_path / "bad.nc"
    ds.to_netcdf(path)
    with unchanged(tmp_path):
        result = _run("infill", path, "-m", MODEL, "-o", tmp_path / "o.nc")
    _one_line_error(result, "latitude 'lat' holds", "outside [-90, 90] degrees")
    with (
        xr.open_dataset(FITBENCH / "zg_train.nc") as a,
        xr.open_dataset(FITBENCH / "zg_masks.nc") as b,
    ):
        train, masks = a.zg.load(), b.zg.load()
    shifted = train.assign_coords(lat=train.lat + 100)
    with pytest.raises(ValueError, match=r"latitude 'lat' holds \d+ value\(s\) outside"):
        shifted.crai.fit(masks.assign_coords(lat=masks.lat + 100), iterations=1, progress=False)


def test_an_input_held_open_by_its_writer_says_it_may_be_incomplete_or_locked(tmp_path):
    """A real writer process holds the netCDF-4 file open (HDF5 locks it)."""
    held = tmp_path / "held.nc"
    writer = subprocess.Popen(
        [sys.executable, "-c", f"""
import time, netCDF4, numpy as np
d = netCDF4.Dataset({str(held)!r}, "w")
d.createDimension("time", None); d.createDimension("lat", 36); d.createDimension("lon", 72)
d.createVariable("tas", "f4", ("time", "lat", "lon"))[0] = np.zeros((36, 72))
d.sync()
print("ready", flush=True)
time.sleep(60)
"""],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "ready"
        before = held.read_bytes()
        with unchanged(tmp_path):
            result = _run("infill", held, "-m", MODEL, "-o", tmp_path / "o.nc")
        _one_line_error(result, f"input: could not read {str(held)!r} as netCDF",
                        "may be incomplete, still being written, or locked")  # fmt: skip
        assert held.read_bytes() == before
    finally:
        writer.kill()
        writer.wait()


def test_data_in_a_netcdf_group_is_named_and_read_with_group(sample, tmp_path):
    grouped = tmp_path / "grouped.nc"
    with xr.open_dataset(sample) as ds:
        ds.load().to_netcdf(grouped, group="obs/monthly")
    with unchanged(tmp_path):
        result = _run("infill", grouped, "-m", MODEL, "-o", tmp_path / "o.nc")
        _one_line_error(result, "has no variables in its root",
                        "netCDF group(s) ['obs/monthly']", "pass --group NAME")  # fmt: skip
        result = _run("infill", grouped, "-m", MODEL, "-o", tmp_path / "o.nc", "--group", "obs")
        _one_line_error(result, "has no variables in group 'obs'", "['obs/monthly']")
        result = _run("infill", grouped, "-m", MODEL, "-o", tmp_path / "o.nc", "--group", "nope")
        _one_line_error(result, "--group: ", "has no group 'nope'", "['obs/monthly']")
    out = tmp_path / "from-group.nc"
    assert _run("infill", grouped, "-m", MODEL, "-o", out, "--group", "obs/monthly").returncode == 0
    root = tmp_path / "from-root.nc"
    assert _run("infill", sample, "-m", MODEL, "-o", root).returncode == 0
    with xr.open_dataset(out) as a, xr.open_dataset(root) as b:
        xr.testing.assert_equal(a.tas, b.tas)


def test_masks_in_a_netcdf_group_are_named_with_advice(fit_files, tmp_path):
    data, masks = fit_files
    grouped = tmp_path / "grouped-masks.nc"
    with xr.open_dataset(masks) as m:
        m.load().to_netcdf(grouped, group="coverage")
    with unchanged(tmp_path):
        result = _run("fit", data, "--masks", grouped, "-o", tmp_path / "m.pth")
    _one_line_error(result, "masks: ", "group(s) ['coverage']",
                    "xr.open_dataset(FILE, group=NAME).to_netcdf(NEW)")  # fmt: skip


def test_a_foreign_networks_weights_are_named_as_such(tmp_path):
    path = tmp_path / "resnet.pth"
    foreign = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save({"model": foreign.state_dict()}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError) as error:
        xcrai.load_model(path)
    said = str(error.value)
    assert said.startswith(f"model: {str(path)!r} holds weights of a network xcrai does not")
    assert "'0.weight'" in said and "recurrent memory, attention or channel fusion?" not in said
    assert path.read_bytes() == before
