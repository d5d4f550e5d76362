"""Spatial tiling: tiles with receptive-field halos give the untiled result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xcrai.tiles import alignment, receptive_halo, tiles

pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")
FITBENCH = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"


def _assert_same(tiled: xr.DataArray, whole: xr.DataArray, reference: xr.DataArray) -> None:
    scale = float(reference.std())
    difference = np.abs(tiled.values - whole.values).max()
    assert difference <= 1e-4 * scale, difference


@pytest.mark.parametrize("tile_size", [8, 16, 40])
def test_global_field_in_tiles(hadcrut, demo_model, tile_size):
    whole = hadcrut.tas.crai.infill(demo_model, return_output=True)
    tiled = hadcrut.tas.crai.infill(demo_model, return_output=True, tile_size=tile_size)
    _assert_same(tiled.output, whole.output, hadcrut.tas)
    np.testing.assert_array_equal(tiled["mask"].values, whole["mask"].values)


def test_odd_regional_crop_in_tiles(hadcrut, demo_model):
    crop = hadcrut.tas.isel(lat=slice(9, 62), lon=slice(3, 44))  # 53 x 41, zero padding
    whole = crop.crai.infill(demo_model, return_output=True)
    tiled = crop.crai.infill(demo_model, return_output=True, tile_size=16)
    _assert_same(tiled.output, whole.output, crop)


def test_odd_latitudes_global_and_time_context(memory_model):
    with xr.open_dataset(FITBENCH / "zg_test.nc") as ds:
        test = ds.zg.load()  # 73 x 144, global
    whole = test.crai.infill(memory_model, return_output=True)
    tiled = test.crai.infill(memory_model, return_output=True, tile_size=24)
    _assert_same(tiled.output, whole.output, test)


def test_tiles_cover_the_field_once(demo_model):
    arch = demo_model.config.architecture
    assert alignment(arch) == 8 and receptive_halo(arch) % 8 == 0
    for padding in ("global", "zeros"):
        hits = np.zeros((73, 144), int)
        for tile in tiles((73, 144), (20, 30), arch, padding):
            hits[tile.out_rows, tile.out_cols] += 1
            assert tile.rows[0] % 8 == 0
        assert (hits == 1).all()
