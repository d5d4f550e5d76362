"""xcrai: infill gaps in gridded climate data with CRAI's partial-convolution U-Net.

Importing xcrai registers the ``.crai`` accessor on xarray DataArrays and Datasets.
PyTorch is imported on first use, so ``import xcrai`` stays cheap in xarray pipelines.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("xcrai")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from xcrai import accessor, data  # noqa: F401  (accessor registers .crai)

_LAZY = {
    "load_model": "xcrai.checkpoint",
    "CraiModel": "xcrai.model",
    "ModelConfig": "xcrai.model",
    "UnreachableWarning": "xcrai.infill",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xcrai' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["CraiModel", "ModelConfig", "UnreachableWarning", "__version__", "data", "load_model"]
