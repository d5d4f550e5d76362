"""xcrai: infill gaps in gridded climate data with CRAI's partial-convolution U-Net.

Importing xcrai registers the ``.crai`` accessor on xarray DataArrays and Datasets.
PyTorch is imported on first use, so ``import xcrai`` stays cheap in xarray pipelines:
the functions below and the submodules (``xcrai.zoo``, ``xcrai.nn``, ``xcrai.plot``, ...)
are imported when first touched.

Examples
--------
>>> import xcrai
>>> model = xcrai.load_model("crai-20crtasgn72")  # doctest: +SKIP
>>> xcrai.zoo.REGISTRY.names()  # doctest: +SKIP
['crai-20crtasgn72']
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from xcrai import accessor, data  # accessor registers .crai
from xcrai._version import __version__ as __version__

if _typing.TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from xcrai import baselines as baselines
    from xcrai import checkpoint as checkpoint
    from xcrai import cli as cli
    from xcrai import engine as engine
    from xcrai import files as files
    from xcrai import fit as fit
    from xcrai import grid as grid
    from xcrai import infill as infill
    from xcrai import model as model
    from xcrai import nn as nn
    from xcrai import numerics as numerics
    from xcrai import plot as plot
    from xcrai import streaming as streaming
    from xcrai import train as train
    from xcrai import zoo as zoo
    from xcrai.checkpoint import load_model
    from xcrai.infill import UnreachableWarning
    from xcrai.model import CraiModel, Ensemble, ModelConfig

#: public names imported on first use, and the module each lives in
_LAZY_NAMES = {
    "load_model": "xcrai.checkpoint",
    "CraiModel": "xcrai.model",
    "Ensemble": "xcrai.model",
    "ModelConfig": "xcrai.model",
    "UnreachableWarning": "xcrai.infill",
}
#: submodules imported on first use (``xcrai.zoo.register(...)`` after ``import xcrai``)
_LAZY_MODULES = (
    "baselines",
    "bounds",
    "checkpoint",
    "cli",
    "engine",
    "files",
    "fit",
    "grid",
    "infill",
    "model",
    "nn",
    "numerics",
    "plot",
    "streaming",
    "train",
    "zoo",
)


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY_NAMES:
        return getattr(_importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"xcrai.{name}")
    raise AttributeError(f"module 'xcrai' has no attribute {name!r}")


__all__ = [
    "CraiModel",
    "Ensemble",
    "ModelConfig",
    "UnreachableWarning",
    "__version__",
    "accessor",
    "data",
    "load_model",
]


def __dir__() -> list[str]:
    return sorted({*__all__, *_LAZY_MODULES})
