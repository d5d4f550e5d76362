"""The notebooks of docs/examples are stored without outputs.

They are executed by the docs build (``sphinx-build -W -b html docs docs/_build/html``, a step
of ``.ci/run`` after the tests), which fails on an exception in any cell; executing them here
too would double CI's time. This test keeps outputs (images, timings, paths of temporary
folders) out of git, so that a diff of a notebook shows only what changed in its code and text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 4, f"expected the example notebooks in {EXAMPLES}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    stored = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not stored, (
        f"{path.name}: cells {stored} are stored with outputs; clear them "
        f"(jupyter nbconvert --clear-output --inplace {path.relative_to(EXAMPLES.parents[1])})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_in_the_gallery(path: Path) -> None:
    gallery = (EXAMPLES / "index.md").read_text(encoding="utf-8")
    assert path.stem in gallery.split(), f"{path.name} is missing from docs/examples/index.md"
