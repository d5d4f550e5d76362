"""The public surface of ``import xcrai``: lazy submodules, a clean dir(), typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import xcrai

ROOT = Path(__file__).parent.parent


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout


def test_submodules_are_reachable_and_import_xcrai_stays_free_of_torch():
    out = run(
        "import sys, xcrai\n"
        "print('torch' in sys.modules)\n"
        "xcrai.zoo.register; print('torch' in sys.modules)\n"  # the README's example
        "print(xcrai.nn.PartialConvUNet.__name__, xcrai.plot.plot_infilled.__name__)\n"
        "print(xcrai.streaming.memory_budget.__name__)\n"  # the README's, after import xcrai
    )
    assert out.split() == ["False", "False", "PartialConvUNet", "plot_infilled", "memory_budget"]


def test_dir_lists_the_public_names_only():
    names = dir(xcrai)
    for leaked in ("Any", "import_module", "version", "annotations", "PackageNotFoundError"):
        assert leaked not in names
    for public in (
        "load_model",
        "CraiModel",
        "ModelConfig",
        "UnreachableWarning",
        "__version__",
        "data",
        "zoo",
        "nn",
        "plot",
        "train",
    ):
        assert public in names
    assert all(hasattr(xcrai, name) for name in names)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        xcrai.nope  # noqa: B018


def test_py_typed_is_shipped():
    tomllib = pytest.importorskip("tomllib")
    assert (ROOT / "xcrai" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["xcrai"]
    extras = config["project"]["optional-dependencies"]
    assert any(r.startswith("matplotlib") for r in extras["plot"])
    assert not any(r.startswith("matplotlib") for r in config["project"]["dependencies"])
    assert {"mypy", "matplotlib"} <= {r.split(">")[0] for r in extras["test"]}
    assert "mypy xcrai" in (ROOT / ".ci" / "run").read_text()


def _sources() -> dict[str, list[str]]:
    package = Path(xcrai.__file__).parent
    return {
        str(path.relative_to(package)): path.read_text().splitlines()
        for path in sorted(package.rglob("*.py"))
    }


def test_imports_point_down_not_back_to_the_package():
    """No module takes a name back from ``xcrai/__init__.py`` (``from xcrai import ...`` or
    ``import xcrai`` alone): each imports the module that defines what it needs."""
    import re

    upward = re.compile(r"^\s*(from xcrai import |import xcrai(\s|$|\s*#))")
    found = [f"{name}:{n}" for name, lines in _sources().items() if name != "__init__.py"
             for n, line in enumerate(lines, 1) if upward.match(line)]  # fmt: skip
    assert not found, found
    assert upward.match("    import xcrai  # noqa") and upward.match("from xcrai import x")
    assert not upward.match("import xcrai.accessor  # registers .crai")


def test_one_place_reads_pytorch_files():
    """``torch.load`` (with ``weights_only=True``) is called in xcrai.files alone, so every
    model, training checkpoint and weights file is read, and refused, the same way."""
    calls = [f"{name}:{n}" for name, lines in _sources().items()
             for n, line in enumerate(lines, 1)
             if "torch.load(" in line and ">>>" not in line and "``" not in line]  # fmt: skip
    assert len(calls) == 1 and calls[0].startswith("files.py:"), calls
