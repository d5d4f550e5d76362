"""The xcrai command line, run as a real process and through main()."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xcrai
from xcrai.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "in.nc"
    shutil.copy(xcrai.data.hadcrut4_sample(), path)
    return path


def test_infill_file_equals_the_accessor(sample, tmp_path, hadcrut, demo_model):
    out = tmp_path / "out.nc"
    before = _sha(sample)
    assert main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
                 "--time-chunk", "1", "--no-progress"]) == 0  # fmt: skip
    assert _sha(sample) == before
    with xr.open_dataset(out) as ds:
        expected = hadcrut.tas.crai.infill(demo_model)
        np.testing.assert_array_equal(ds.tas.values, expected.values)
        assert ds.tas.attrs["units"] == hadcrut.tas.attrs["units"]
        first = ds.attrs["history"].split("\n")[0]
        fraction = 1 - np.isfinite(hadcrut.tas.values).mean()
        assert "infilled tas with model 20crtasgn72.pth" in first
        assert f"{fraction:.2%} of points infilled" in first
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_time_context_option(sample, tmp_path, hadcrut, memory_model):
    from conftest import DATA

    out = tmp_path / "out.nc"
    model = str(DATA / "channel-memory.inp.pth")
    code = main(["infill", str(sample), "-m", model, "-o", str(out), "--time-context", "3,1",
                 "--padding", "zeros", "--no-progress"])  # fmt: skip
    assert code == 0
    with xr.open_dataset(out) as ds:
        expected = hadcrut.tas.crai.infill(memory_model, padding="zeros")
        np.testing.assert_array_equal(ds.tas.values, expected.values)


def test_precision_option(sample, tmp_path, hadcrut, demo_model):
    out = tmp_path / "out.nc"
    assert main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
                 "--precision", "bf16", "--no-progress"]) == 0  # fmt: skip
    with xr.open_dataset(out) as ds:
        expected = hadcrut.tas.crai.infill(demo_model, precision="bf16")
        np.testing.assert_array_equal(ds.tas.values, expected.values)
        assert not np.array_equal(ds.tas.values, hadcrut.tas.crai.infill(demo_model).values)


def test_refuses_to_overwrite_its_input(sample, capsys):
    before = _sha(sample)
    code = main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(sample)])
    assert code == 2
    assert "is the input file" in capsys.readouterr().err
    assert _sha(sample) == before


def test_existing_output_needs_overwrite(sample, tmp_path, capsys):
    out = tmp_path / "out.nc"
    out.write_text("precious")
    args = ["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_text() == "precious"
    assert main([*args, "--overwrite"]) == 0
    with xr.open_dataset(out) as ds:
        assert np.isfinite(ds.tas.values).all()


def test_bad_model_writes_nothing(sample, tmp_path, capsys):
    out = tmp_path / "out.nc"
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(["infill", str(sample), "-m", str(bad), "-o", str(out)]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "in.nc"]


def test_error_during_infill_leaves_no_file(sample, tmp_path, capsys):
    out = tmp_path / "out.nc"
    code = main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
                 "--var", "nope"])  # fmt: skip
    assert code == 2
    assert "variables: ['nope'] not in the dataset" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nc"]


def test_bad_option_values_are_explained(capsys):
    with pytest.raises(SystemExit):
        main(["infill", "a.nc", "-m", "m.pth", "-o", "b.nc", "--time-context", "3"])
    assert "expected P,F" in capsys.readouterr().err


def test_help_describes_every_option():
    text = subprocess.run(
        [sys.executable, "-m", "xcrai.cli", "infill", "--help"], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    for option in ("--model", "--output", "--var", "--padding", "--time-context", "--device",
                   "--batch-size", "--tile-size", "--precision", "--compile", "--threads",
                   "--mask", "--mask-var", "--flags", "--time-chunk", "--overwrite",
                   "--no-progress"):  # fmt: skip
        assert option in text
    assert (
        "demo"
        in subprocess.run(
            [sys.executable, "-m", "xcrai.cli", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_demo_writes_netcdf_and_picture(tmp_path):
    result = subprocess.run(
        ["xcrai", "demo", "-o", str(tmp_path / "demo")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    nc, png = (
        tmp_path / "demo" / "hadcrut4_infilled.nc",
        tmp_path / "demo" / "hadcrut4_infilled.png",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    with xr.open_dataset(nc) as ds, xr.open_dataset(xcrai.data.hadcrut4_sample()) as raw:
        assert np.isfinite(ds.tas.values).all()
        valid = np.isfinite(raw.tas.values)
        np.testing.assert_array_equal(ds.tas.values[valid], raw.tas.values[valid])
        assert "padding global" in ds.attrs["history"]


def test_demo_checks_its_output_folder_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "-o", str(blocker / "demo")]) == 2
    assert "--output-dir: cannot create folder" in capsys.readouterr().err
    (tmp_path / "out" / "hadcrut4_infilled.nc").mkdir(parents=True)
    assert main(["demo", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--output-dir:" in err and "is a folder" in err
    assert not (tmp_path / "out" / "hadcrut4_infilled.png").exists()


def test_tile_size_option(sample, tmp_path, hadcrut, demo_model):
    out = tmp_path / "out.nc"
    assert main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
                 "--tile-size", "40", "--no-progress"]) == 0  # fmt: skip
    with xr.open_dataset(out) as ds:
        expected = hadcrut.tas.crai.infill(demo_model, tile_size=40)
        np.testing.assert_array_equal(ds.tas.values, expected.values)


def test_mask_file_option(sample, tmp_path, hadcrut, demo_model):
    """--mask FILE [--mask-var NAME] is the mask= argument, read from a file and broadcast."""
    field = hadcrut.tas.isel(time=0, drop=True)
    keep = xr.ones_like(field, dtype=np.int8).where(field.lat < 40, 0).astype(np.int8)
    masks = tmp_path / "masks.nc"
    xr.Dataset({"keep": keep, "other": keep}).to_netcdf(masks)
    out = tmp_path / "out.nc"
    args = ["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
            "--mask", str(masks), "--no-progress"]  # fmt: skip
    assert main(args) == 2  # two variables: which one?
    assert main([*args, "--mask-var", "keep"]) == 0
    with xr.open_dataset(out) as ds:
        expected = hadcrut.tas.crai.infill(demo_model, mask=keep)
        np.testing.assert_array_equal(ds.tas.values, expected.values)
        assert not np.array_equal(ds.tas.values, hadcrut.tas.crai.infill(demo_model).values)
        # the share infilled counts the points the mask hides, as the Python API's does
        share = re.search(r"[0-9.]+% of points infilled", expected.attrs["history"])[0]
        assert share in ds.attrs["history"]


def test_flags_option_writes_the_flag_variable(sample, tmp_path, hadcrut, demo_model):
    out = tmp_path / "out.nc"
    assert main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
                 "--flags", "--no-progress"]) == 0  # fmt: skip
    expected = hadcrut.tas.crai.infill(demo_model, return_output=True)
    with xr.open_dataset(out) as ds:
        assert "tas_output" not in ds  # the flags only
        np.testing.assert_array_equal(ds.tas.values, expected.tas.values)
        np.testing.assert_array_equal(ds.tas_flag.values, expected.tas_flag.values)


def test_fit_command_equals_the_accessor(tmp_path):
    """The options xcrai fit lacked (architecture, --augment, --log-every, --validation FILE)
    reach fit as the same call from Python would."""
    import torch

    bench = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
    out = tmp_path / "m.pth"
    code = main(["fit", str(bench / "zg_train.nc"), "--masks", str(bench / "zg_masks.nc"),
                 "-o", str(out), "--validation", str(bench / "zg_val.nc"), "--iterations", "2",
                 "--batch-size", "4", "--n-filters", "4", "--depth", "2", "--augment", "no",
                 "--log-every", "1", "--threads", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    data, masks, validation = (xr.open_dataset(bench / f"zg_{n}.nc").zg.load()
                               for n in ("train", "masks", "val"))  # fmt: skip
    expected = data.crai.fit(masks, validation=validation, iterations=2, batch_size=4,
                             architecture={"n_filters": 4, "depth": 2}, augment=False,
                             log_every=1, threads=1, progress=False)  # fmt: skip
    model = xcrai.load_model(out)
    assert model.config.architecture == expected.config.architecture
    assert model.config.provenance["train_config"] == expected.config.provenance["train_config"]
    got, want = model.net.state_dict(), expected.net.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_flags_output_is_cf(sample, tmp_path, hadcrut, capsys):
    """The file ``xcrai infill --flags`` writes: global history only, ``tas_flag`` with the
    CF flag attributes, named in ``tas``'s ``ancillary_variables``."""
    from xcrai.cli import infill_file
    from xcrai.options import InfillOptions

    flags = InfillOptions(return_output=True, progress=False)  # --flags --no-progress
    out = infill_file(sample, str(xcrai.data.demo_model()), tmp_path / "out.nc", flags,
                      time_chunk=1)  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10 hole point(s)" in err
    assert "flagged -1 in 'tas_flag'" in err and "return_output" not in err
    with xr.open_dataset(out, mask_and_scale=False) as ds:
        assert set(ds.data_vars) == {"tas", "tas_flag"}
        assert "history" not in ds.tas.attrs and "history" not in ds.tas_flag.attrs
        first = ds.attrs["history"].split("\n")[0]
        assert "infilled tas with" in first and "of points infilled" in first
        assert ds.attrs["Conventions"] == hadcrut.attrs["Conventions"]
        assert ds.tas.attrs["ancillary_variables"] == "tas_flag"
        flag = ds.tas_flag
        assert flag.dtype == np.int8 and flag.dims == ds.tas.dims
        assert flag.attrs["standard_name"] == "air_temperature status_flag"
        np.testing.assert_array_equal(flag.attrs["flag_values"], [-1, 0, 1])
        assert flag.attrs["flag_values"].dtype == flag.dtype
        assert flag.attrs["flag_meanings"] == "unreachable_hole infilled observed"
        assert len(flag.attrs["flag_meanings"].split()) == len(flag.attrs["flag_values"])
        assert "units" not in flag.attrs and "_FillValue" not in flag.attrs
        np.testing.assert_array_equal(flag.values == 1, np.isfinite(hadcrut.tas.values))
        assert (flag.values == -1).sum() == 10


def test_unreached_holes_reported_once_after_the_progress_bar(sample, tmp_path):
    """One line on stderr, after the bar, pointing at --flags (the CLI has no
    return_output); no Python warning per dask block."""
    out = tmp_path / "out.nc"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-m", "xcrai.cli", "infill", str(sample), "-m",
         str(xcrai.data.demo_model()), "-o", str(out), "--time-chunk", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "hole point" in line]
    assert len(lines) == 1 and "Warning" not in result.stderr
    assert lines[0].startswith("xcrai infill: warning: tas: 10 hole point(s)")
    assert "pass --flags for 'tas_flag'" in lines[0] and "return_output" not in lines[0]
    assert result.stderr.rstrip().endswith(lines[0])  # after the progress bar
    with xr.open_dataset(out) as ds:
        assert "tas_flag" not in ds and "ancillary_variables" not in ds.tas.attrs


def test_cf_checker_passes_the_flags_output(sample, tmp_path):
    """cf-checker (PyPI cfchecker) on an ``xcrai infill --flags`` output, when installed; it
    needs the UDUNITS-2 library and the CF standard-name table, which it downloads unless
    XCRAI_CF_STANDARD_NAMES names a local copy."""
    pytest.importorskip("cfchecker.cfchecks")
    from xcrai.cli import infill_file
    from xcrai.options import InfillOptions

    flags = InfillOptions(return_output=True, progress=False)  # --flags --no-progress
    out = infill_file(sample, str(xcrai.data.demo_model()), tmp_path / "out.nc", flags)
    table = os.environ.get("XCRAI_CF_STANDARD_NAMES")
    command = ["cfchecks", *(["-s", table] if table else []), str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert "ERRORS detected: 0" in result.stdout, result.stdout


def test_warnings_are_one_line_each_and_name_the_model_mismatch(sample, tmp_path, demo_model):
    """A model trained on another variable warns (scikit-learn's feature-name check), as a
    line that names xcrai, not a file and line of xcrai's or runpy's."""
    from dataclasses import replace

    model = tmp_path / "pr.pth"
    config = replace(demo_model.config, variable="pr", units="kg m-2 s-1")
    xcrai.CraiModel(config, demo_model.net.state_dict()).save(model)
    result = subprocess.run(
        [sys.executable, "-m", "xcrai.cli", "infill", str(sample), "-m", str(model), "-o",
         str(tmp_path / "out.nc"), "--var", "tas", "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    mismatch = [line for line in lines if "trained on variable 'pr'" in line]
    assert len(mismatch) == 1 and "units 'kg m-2 s-1' (the data's: 'K')" in mismatch[0]
    assert mismatch[0].startswith("xcrai infill: warning: model: ")
    assert all(line.startswith("xcrai infill: warning: ") for line in lines)


def test_the_network_runs_once_per_field_and_the_bar_counts_fields(sample, tmp_path, capsys):
    """The command computes the file, the share of holes and the unreachable holes in one
    pass over the network (a reduction of the flags beside the write would run it twice:
    dask optimises the write's graph on its own), and its bar counts fields, not tasks."""
    code = main(["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o",
                 str(tmp_path / "out.nc"), "--time-chunk", "1"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    # the bar closes on the fields the network infilled: two, once each (a second pass
    # would end it on 4/2)
    assert "2/2" in err and "3/2" not in err and "4/2" not in err
    assert "field" in err and "task" not in err
    assert "tas: 10 hole point(s)" in err


def test_memory_budget_option(sample, tmp_path, capsys):
    """--memory sets the dask threads from the chunk size (same numbers); a bad size is one
    line, before anything is read."""
    out = tmp_path / "out.nc"
    args = ["infill", str(sample), "-m", str(xcrai.data.demo_model()), "-o", str(out),
            "--no-progress", "--time-chunk", "1"]  # fmt: skip
    assert main([*args, "--memory", "lots"]) == 2
    assert "memory: expected a size such as '2GB'" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--memory", "100kB"]) == 0  # one thread
    with xr.open_dataset(out) as small:
        one = small.tas.values
    assert main([*args, "--memory", "2GB", "--overwrite"]) == 0
    with xr.open_dataset(out) as large:
        np.testing.assert_array_equal(large.tas.values, one)


def test_help_and_refusals_do_not_import_torch(tmp_path):
    """``xcrai --help``, ``xcrai infill --help``, ``xcrai fit --help`` and a refused
    overwrite answer without importing PyTorch (a real process: this one has torch)."""
    import json

    existing = tmp_path / "out.nc"
    existing.write_text("the user's file")
    fitbench = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
    cases = {
        "--help": ["--help"],
        "infill --help": ["infill", "--help"],
        "fit --help": ["fit", "--help"],
        "infill over a file": ["infill", str(xcrai.data.hadcrut4_sample()), "-m",
                               str(xcrai.data.demo_model()), "-o", str(existing)],
        "fit over a file": ["fit", str(fitbench / "zg_train.nc"), "--masks",
                            str(fitbench / "zg_masks.nc"), "-o", str(existing)],
    }  # fmt: skip
    script = (
        "import contextlib, io, json, sys\n"
        "from xcrai import cli\n"
        "found = {}\n"
        f"for name, argv in {cases!r}.items():\n"
        "    with contextlib.redirect_stdout(io.StringIO()), "
        "contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "        try:\n"
        "            code = cli.main(argv)\n"
        "        except SystemExit as exit:\n"
        "            code = exit.code\n"
        "    found[name] = [code, 'torch' in sys.modules, err.getvalue()[-200:]]\n"
        "print(json.dumps(found))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.splitlines()[-1])
    assert {name: torch for name, (_, torch, _) in found.items()} == dict.fromkeys(cases, False)
    assert [found[n][0] for n in cases] == [0, 0, 0, 2, 2]
    assert "out.nc' exists; pass --overwrite" in found["infill over a file"][2]
    assert "out.nc' exists; pass --overwrite" in found["fit over a file"][2]
    assert existing.read_text() == "the user's file"
