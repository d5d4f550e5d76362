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


def _import_graph() -> dict[str, set[str]]:
    """Each module of the package (``xcrai.x``, ``xcrai.nn.unet``) -> the package modules it
    imports anywhere in its code (at its top or inside a function; not under
    ``TYPE_CHECKING``)."""
    import ast

    package = Path(xcrai.__file__).parent
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = set()
        for node in ast.walk(tree):  # imports only a type checker reads
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for n in ast.walk(node)}
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets |= set(found) or ({base} if base in modules else set())
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in modules}
        graph[name] = targets - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_the_modules():
    """The modules' imports, lazy ones included, form no circle: the package is layered
    (xarray edge, options, training, engine and model files, networks, file and grid
    helpers), each layer importing only those below it. The package's own __init__ loads
    everything lazily and is left out (no module imports it: the test above)."""
    graph = {k: v - {"xcrai"} for k, v in _import_graph().items() if k != "xcrai"}
    assert {"xcrai.model", "xcrai.nn"} <= graph["xcrai.checkpoint"]  # the graph is read
    assert "xcrai.model" in graph["xcrai.options"]  # lazy imports too
    assert _cycle(graph) is None, _cycle(graph)
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_one_place_reads_pytorch_files():
    """``torch.load`` (with ``weights_only=True``) is called in xcrai.files alone, so every
    model, training checkpoint and weights file is read, and refused, the same way."""
    calls = [f"{name}:{n}" for name, lines in _sources().items()
             for n, line in enumerate(lines, 1)
             if "torch.load(" in line and ">>>" not in line and "``" not in line]  # fmt: skip
    assert len(calls) == 1 and calls[0].startswith("files.py:"), calls
