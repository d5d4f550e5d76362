"""Sphinx configuration of xcrai's documentation.

Build from the repository root (see building.md):

    pip install -e ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

The notebooks in examples/ are stored without outputs and executed here, once per build;
an exception in any cell fails the build.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import sphinx_autosummary_accessors

ROOT = Path(__file__).resolve().parents[1]
# the source tree, so that a checkout builds its own code even where another xcrai is installed
sys.path.insert(0, str(ROOT))
# the notebook kernels are separate processes: give them the same source tree
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import xcrai  # noqa: E402

project = "xcrai"
author = "xcrai developers"
copyright = "xcrai developers, BSD-3-Clause"
release = xcrai.__version__
version = release

extensions = [
    "myst_nb",  # Markdown pages and executed notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpy-style docstrings
    "sphinx.ext.viewcode",
    "sphinx_autosummary_accessors",  # DataArray.crai.infill and friends
]

templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "generated/.*", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# Pages include sections of README.md (one source for the text); its subsections start at
# "###" under the pages' own "#" titles, which MyST reports as a skipped heading level.
suppress_warnings = ["myst.header"]
myst_heading_anchors = 3

# --- API reference -------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the numpy-style Parameters sections say it better
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}  # documented members only
# classes use _templates/autosummary/class.rst: the documented members in full, without
# autosummary's tables of every method and dataclass field beside them
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # dataclass "Attributes" sections would duplicate the fields

# --- notebooks -----------------------------------------------------------------------------
nb_execution_mode = "force"  # stored without outputs: execute every build
nb_execution_raise_on_error = True  # an exception in a cell fails the build
nb_execution_timeout = 300  # per cell; the training cell takes tens of seconds on 2 cores
nb_execution_show_tb = True  # the traceback goes to the build log
nb_merge_streams = True

# --- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"xcrai {release}"
html_static_path: list[str] = []


# --- docstring fix-ups -----------------------------------------------------------------------
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_attribute_names(app, what, name, obj, options, lines):
    """Split numpy-style ``mean, std : float`` entries of an Attributes section in two.

    napoleon reads ``a, b : type`` correctly under Parameters but, under Attributes with
    ``napoleon_use_ivar``, takes ``b`` for the name and ``a,`` for the type. Each name gets
    the type and the description. Runs before napoleon (priority 400 < its 500); the
    docstrings themselves are left as they are.
    """
    out, section, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            section = line.strip()
        head = re.match(r"^(\s*)(\w+(?:\s*,\s*\w+)+)\s*:\s*(.*)$", line)
        if section == "Attributes" and head:
            indent, names, kind = head.groups()
            body = []
            while i + 1 < len(lines) and (
                not lines[i + 1].strip() or _indent(lines[i + 1]) > len(indent)
            ):
                body.append(lines[i + 1])
                i += 1
            trailing = []  # blank lines after the entry stay after it, once
            while body and not body[-1].strip():
                trailing.insert(0, body.pop())
            for single in (n.strip() for n in names.split(",")):
                out.extend([f"{indent}{single} : {kind}", *body])
            out.extend(trailing)
        else:
            out.append(line)
        i += 1
    lines[:] = out


# --- what the executed notebooks show -----------------------------------------------------
def _notebook_problems(notebook) -> list[str]:
    """What a reader would see wrong in an executed notebook: a ``.crai.plot`` cell (drawing
    a figure of its own, not into ``ax=``) without exactly one image, or a warning that
    points at a library's file rather than at the cell's line."""
    problems = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        images = sum("image/png" in out.get("data", {}) for out in cell.outputs)
        if ".crai.plot(" in cell.source and "ax=" not in cell.source and images != 1:
            problems.append(f"cell {number} calls .crai.plot and shows {images} image(s)")
        stderr = "".join(out.get("text", "") for out in cell.outputs
                         if out.output_type == "stream" and out.name == "stderr")  # fmt: skip
        for source in re.findall(r"^(\S+?):\d+: \w*Warning", stderr, flags=re.M):
            if "ipykernel_" not in source:  # the cell's own file is the user's line
                problems.append(f"cell {number} shows a warning from {source}")
    return problems


def _check_executed_notebooks(app, exception):
    """Fail the build when an executed example notebook shows what ``_notebook_problems``
    finds (myst-nb keeps the executed copies beside the HTML, in jupyter_execute/)."""
    if exception is not None:
        return
    import nbformat
    from sphinx.errors import ExtensionError

    executed = Path(app.outdir).parent / "jupyter_execute"
    found = []
    for path in sorted(executed.rglob("*.ipynb")):
        found += [f"{path.name}: {p}" for p in _notebook_problems(nbformat.read(path, 4))]
    if found:
        raise ExtensionError("executed notebooks: " + "; ".join(found))


def setup(app):
    app.connect("autodoc-process-docstring", _split_attribute_names, priority=400)
    app.connect("build-finished", _check_executed_notebooks)
