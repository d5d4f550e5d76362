"""xcrai: infill gaps in gridded climate data with CRAI's partial-convolution U-Net.

Importing xcrai registers the ``.crai`` accessor on xarray DataArrays and Datasets.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xcrai")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from xcrai import accessor, data  # noqa: F401  (accessor registers .crai)
from xcrai.checkpoint import load_model
from xcrai.infill import UnreachableWarning
from xcrai.model import CraiModel, ModelConfig

__all__ = ["CraiModel", "ModelConfig", "UnreachableWarning", "__version__", "data", "load_model"]
