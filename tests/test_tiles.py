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
    _assert_same(tiled.tas_output, whole.tas_output, hadcrut.tas)
    np.testing.assert_array_equal(tiled.tas_flag.values, whole.tas_flag.values)


def test_odd_regional_crop_in_tiles(hadcrut, demo_model):
    crop = hadcrut.tas.isel(lat=slice(9, 62), lon=slice(3, 44))  # 53 x 41, zero padding
    with pytest.warns(UserWarning, match="trained on a 72x72"):  # a crop of its grid
        whole = crop.crai.infill(demo_model, return_output=True)
        tiled = crop.crai.infill(demo_model, return_output=True, tile_size=16)
    _assert_same(tiled.tas_output, whole.tas_output, crop)


def test_odd_latitudes_global_and_time_context(memory_model):
    with xr.open_dataset(FITBENCH / "zg_test.nc") as ds:
        test = ds.zg.load()  # 73 x 144, global
    whole = test.crai.infill(memory_model, return_output=True)
    tiled = test.crai.infill(memory_model, return_output=True, tile_size=24)
    _assert_same(tiled.zg_output, whole.zg_output, test)


def test_tiles_cover_the_field_once(demo_model):
    arch = demo_model.config.architecture
    assert alignment(arch) == 8 and receptive_halo(arch) % 8 == 0
    for padding in ("global", "zeros"):
        hits = np.zeros((73, 144), int)
        for tile in tiles((73, 144), (20, 30), arch, padding):
            hits[tile.out_rows, tile.out_cols] += 1
            assert tile.rows[0] % 8 == 0
        assert (hits == 1).all()


@pytest.mark.parametrize("shape", [(721, 1440), (1801, 3600)], ids=["era5", "0.1deg"])
def test_era5_size_fields_are_tiled_and_equal_the_untiled_network(hadcrut, demo_model, shape):
    """ERA5's 0.25 degree grid and a 0.1 degree grid exceed the CPU budget, so ``infill``
    runs them in tiles; the result equals one untiled pass of the network (global padding)."""
    import torch

    from xcrai.engine import choose_tile

    rows = np.arange(shape[0]) * 72 // shape[0]
    cols = np.arange(shape[1]) * 72 // shape[1]
    field = xr.DataArray(
        hadcrut.tas.values[0][rows][:, cols], dims=("lat", "lon"), attrs={"units": "K"},
        coords={"lat": np.linspace(-90, 90, shape[0]), "lon": np.arange(shape[1]) * 360 / shape[1]},
    )  # fmt: skip
    assert choose_tile(demo_model, shape, torch.device("cpu"), None) is not None
    assert demo_model.config.mean is None  # the network takes the data as they are
    with pytest.warns(UserWarning, match="trained on a 72x72"):  # a finer grid: unreliable
        tiled = field.crai.infill(demo_model, return_output=True, device="cpu")
    valid = np.isfinite(field.values)[None, None]
    x = torch.from_numpy(np.where(valid, field.values, 0).astype(np.float32))
    with torch.inference_mode():
        whole, reach = demo_model.replica(torch.device("cpu"))(
            x, torch.from_numpy(valid.astype(np.float32)), padding="global"
        )
    difference = np.abs(tiled.infilled_output.values - whole[0, 0].numpy()).max()
    assert difference <= 1e-4 * float(field.std()), difference
    np.testing.assert_array_equal(tiled.infilled_flag.values >= 0, reach[0, 0].numpy() > 0)
