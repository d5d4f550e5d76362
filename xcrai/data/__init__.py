"""Paths to the data bundled with xcrai (see README.md in this folder for sources and licences).

Examples
--------
>>> import xarray as xr, xcrai
>>> ds = xr.open_dataset(xcrai.data.hadcrut4_sample())
>>> model = xcrai.load_model(xcrai.data.demo_model())
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _path(name: str) -> Path:
    return Path(str(files(__name__).joinpath(name)))


def demo_model() -> Path:
    """CRAI's demo model ``20crtasgn72.pth`` (HadCRUT4 72x72 grid, use global padding)."""
    return _path("20crtasgn72.pth")


def hadcrut4_sample() -> Path:
    """HadCRUT4 near-surface temperature anomalies, 1877-09 and 1893-08, 72x72, holes as NaN."""
    return _path("tas_hadcrut_187709_189308.nc")


def hadcrut4_mask() -> Path:
    """One HadCRUT4 coverage mask on the 72x72 grid (1 = observed)."""
    return _path("hadcrut_missmask_1.nc")


__all__ = ["demo_model", "hadcrut4_mask", "hadcrut4_sample"]
