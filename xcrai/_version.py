"""The installed version of xcrai (from its package metadata), for the files and history
lines that record it; the package's ``__version__``."""

from __future__ import annotations

import importlib.metadata as _metadata

try:
    __version__ = _metadata.version("xcrai")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
