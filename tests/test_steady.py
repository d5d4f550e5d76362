"""Steady masks: points no training field observes are stored by fit, left NaN by infill.

The "land" of these tests is a made-up continent on the fitbench zg grid (2.5 degrees):
rows 30-39 and columns 50-69, i.e. 15S to 7.5N and 125E to 172.5E, set NaN in every
training field as land is in an SST field.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from fitbench_data import open_zg

import xcrai
from xcrai.cli import main
from xcrai.infill import FLAG_ATTRS, FLAG_STEADY, count_unreached
from xcrai.model import ModelConfig, pack_mask, unpack_mask

LAND = {"lat": slice(30, 40), "lon": slice(50, 70)}
QUICK = dict(
    validation=0.2, iterations=4, batch_size=4, progress=False, log_every=2, threads=1,
    architecture={"n_filters": 4, "depth": 2},
)  # fmt: skip
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def _land_mask() -> np.ndarray:
    land = np.zeros((73, 144), bool)
    land[LAND["lat"], LAND["lon"]] = True
    return land


@pytest.fixture(scope="module")
def train() -> xr.DataArray:
    data = open_zg("zg_train.nc")
    data[{"time": slice(None), **LAND}] = np.nan
    return data


@pytest.fixture(scope="module")
def masks() -> xr.DataArray:
    return open_zg("zg_masks.nc")


@pytest.fixture(scope="module")
def model(train, masks) -> xcrai.CraiModel:
    return train.crai.fit(masks, **QUICK)


@pytest.fixture(scope="module")
def test_fields() -> xr.DataArray:
    return open_zg("zg_test.nc")


def test_fit_stores_the_points_never_observed(model):
    np.testing.assert_array_equal(model.config.steady_mask, _land_mask())
    assert not model.config.steady_mask.flags.writeable


def test_models_without_such_points_have_none(masks, demo_model):
    model = open_zg("zg_train.nc").crai.fit(masks, **QUICK)
    assert model.config.steady_mask is None
    assert model.config.to_dict()["steady_mask"] is None
    assert demo_model.config.steady_mask is None  # a CRAI checkpoint


def test_save_load_keeps_the_mask(model, tmp_path):
    loaded = xcrai.load_model(model.save(tmp_path / "land.pth"))
    np.testing.assert_array_equal(loaded.config.steady_mask, model.config.steady_mask)
    assert loaded.config.architecture == model.config.architecture
    packed = model.config.to_dict()["steady_mask"]
    assert packed["shape"] == [73, 144] and len(packed["bits"]) == 2 * -(-73 * 144 // 8)
    np.testing.assert_array_equal(unpack_mask(pack_mask(_land_mask())), _land_mask())
    again = ModelConfig.from_dict(model.config.to_dict())
    assert again == model.config
    other = ModelConfig.from_dict({**model.config.to_dict(), "steady_mask": None})
    assert other != model.config


def test_infill_leaves_steady_points_nan_and_flags_them(model, test_fields):
    out = test_fields.crai.infill(model, return_output=True, progress=False)
    land = xr.zeros_like(test_fields.isel(time=0), dtype=bool)
    land[LAND] = True
    filled, flag = out.zg, out.zg_flag
    assert filled.where(land).isnull().all()
    assert (flag.where(land, FLAG_STEADY) == FLAG_STEADY).all()
    assert (flag.where(~land, 0) != FLAG_STEADY).all()
    # the other holes are infilled, the observed points kept
    assert np.isfinite(filled.where(~land, 0)).all()
    valid = np.isfinite(test_fields) & ~land
    xr.testing.assert_equal(filled.where(valid), test_fields.where(valid))
    values, meanings = flag.attrs["flag_values"], flag.attrs["flag_meanings"].split()
    assert len(values) == len(meanings) and values.dtype == flag.dtype
    assert dict(zip(meanings, values.tolist(), strict=True))["steady_mask"] == FLAG_STEADY
    assert sorted(values.tolist()) == values.tolist()  # CF: listed in order, each once
    assert "steady_mask" in flag.attrs["comment"]


def test_values_given_at_steady_points_stay_out(model, test_fields):
    """A value at a steady point (the input's, not the training's) is neither shown to the
    network nor kept."""
    complete = open_zg("zg_truth.nc")
    lost = complete.sizes["time"] * 10 * 20
    with pytest.warns(UserWarning, match=f"steady_mask: {lost} observed value") as caught:
        out = complete.crai.infill(model, progress=False)
    assert caught[0].filename == __file__  # at the user's line
    assert out[{"time": slice(None), **LAND}].isnull().all()
    assert int(out.isnull().sum()) == lost
    with pytest.warns(UserWarning, match="steady_mask: ") as caught:  # once per call
        complete.crai.infill([model, model], progress=False)
    assert len([w for w in caught if "steady_mask: " in str(w.message)]) == 1


def test_lazy_and_chunked_input_gives_the_same(model, test_fields):
    eager = test_fields.crai.infill(model, return_output=True, progress=False)
    lazy = test_fields.chunk(time=1).crai.infill(model, return_output=True, progress=False)
    xr.testing.assert_equal(lazy.compute(), eager)  # history differs: the lazy note
    xr.testing.assert_identical(lazy.zg_flag.compute(), eager.zg_flag)


def test_descending_latitude_gives_the_same_at_the_same_labels(model, test_fields):
    plain = test_fields.crai.infill(model, return_output=True, progress=False)
    flipped = test_fields.isel(lat=slice(None, None, -1))
    turned = flipped.crai.infill(model, return_output=True, progress=False)
    assert (turned.lat.values == flipped.lat.values).all()
    # identical but for the second each history line is stamped with (the two calls may
    # straddle one)
    xr.testing.assert_identical(_unstamped(turned.sortby("lat")), _unstamped(plain))


def _unstamped(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the time stamps at the start of its history lines removed."""
    history = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: ", "", ds.attrs["history"],
                     flags=re.M)  # fmt: skip
    assert history != ds.attrs["history"]  # a stamp was there to remove
    return ds.assign_attrs(history=history)


def test_fit_adds_an_explicit_steady_mask(train, masks):
    ice = xr.zeros_like(train.isel(time=0, drop=True), dtype=bool)
    ice[{"lat": slice(0, 4)}] = True  # south of 82.5S: "never observed"
    model = train.crai.fit(masks, steady_mask=ice, **QUICK)
    np.testing.assert_array_equal(model.config.steady_mask, _land_mask() | ice.values)
    again = train.crai.fit(masks, steady_mask=ice.astype(np.int8), **QUICK)
    np.testing.assert_array_equal(again.config.steady_mask, model.config.steady_mask)


def test_explicit_steady_mask_on_hadcrut(hadcrut, demo_model):
    """The Arctic north of 60N marked never valid (as a land-sea mask would mark land),
    with CRAI's demo model, which has no steady mask of its own."""
    tas = hadcrut.tas
    arctic = tas.lat > 60
    arctic = arctic.broadcast_like(tas.isel(time=0, drop=True)).transpose("lat", "lon")
    out = tas.crai.infill(demo_model, steady_mask=arctic, return_output=True, progress=False)
    assert out.tas.where(arctic).isnull().all()
    assert np.isfinite(out.tas.where(~arctic, 0)).all()
    assert (out.tas_flag.where(arctic, FLAG_STEADY) == FLAG_STEADY).all()
    valid = np.isfinite(tas) & ~arctic
    xr.testing.assert_equal(out.tas.where(valid), tas.where(valid))
    as_int = tas.crai.infill(demo_model, steady_mask=arctic.astype("i1"), progress=False)
    xr.testing.assert_equal(as_int, out.tas)
    ds = hadcrut.crai.infill(demo_model, variables="tas", steady_mask=arctic,
                             return_output=True, progress=False)  # fmt: skip
    xr.testing.assert_equal(ds.tas, out.tas)
    assert "steady_mask" in ds.tas_flag.attrs["flag_meanings"]
    # none: the model's flags, exactly as before steady masks
    plain = hadcrut.crai.infill(demo_model, variables="tas", return_output=True, progress=False)
    assert plain.tas_flag.attrs["flag_meanings"] == FLAG_ATTRS["flag_meanings"]


def test_explicit_mask_replaces_the_models(model, test_fields):
    nothing = xr.zeros_like(test_fields.isel(time=0, drop=True), dtype=bool)
    out = test_fields.crai.infill(model, steady_mask=nothing, progress=False)
    assert np.isfinite(out).all()


def test_model_mask_on_another_grid_is_refused(model, test_fields):
    coarse = test_fields.isel(lat=slice(0, 72, 2), lon=slice(0, 144, 2))
    with pytest.warns(UserWarning, match="trained on a 73x144"):
        with pytest.raises(ValueError, match=r"steady_mask: .* 73x144 .* the data is 36x72"):
            coarse.crai.infill(model, progress=False)
    # a mask on the data's own grid replaces the model's there
    own = xr.zeros_like(coarse.isel(time=0, drop=True), dtype=bool)
    with pytest.warns(UserWarning, match="trained on a 73x144"):
        assert coarse.crai.infill(model, steady_mask=own, progress=False).notnull().all()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda m: m.values, TypeError, "steady_mask: expected an xarray.DataArray"),
        (lambda m: m.astype(str), TypeError, "steady_mask: expected bool or 0/1 values, got"),
        (lambda m: m.astype(int) * 2, ValueError, "steady_mask: expected bool or 0/1 values"),
        (lambda m: m.isel(lat=slice(0, 40)), ValueError, "steady_mask: sizes"),
        (lambda m: m.expand_dims(time=2), ValueError, "steady_mask: expected the data's lat"),
        (lambda m: m.rename(lat="y"), ValueError, "steady_mask: expected the data's lat"),
        (lambda m: m.assign_coords(lat=m.lat + 1), ValueError, "steady_mask: its latitude"),
        (lambda m: m | True, ValueError, "steady_mask: every point"),
    ],
)
def test_bad_steady_masks(model, train, masks, test_fields, make, error, message):
    land = xr.zeros_like(test_fields.isel(time=0, drop=True), dtype=bool)
    land[LAND] = True
    bad = make(land)
    with pytest.raises(error, match=message):
        test_fields.crai.infill(model, steady_mask=bad, progress=False)
    with pytest.raises(error, match=message):
        train.crai.fit(masks, steady_mask=bad, **QUICK)


def test_counts_with_steady_points():
    """A field with no valid point is counted as empty also when steady points are in it."""
    flag = xr.DataArray(np.array([[[-1, -2], [-1, -1]], [[1, -2], [-1, 0]]], np.int8),
                        dims=("time", "lat", "lon"))  # fmt: skip
    holes, empty = count_unreached(flag, ("lat", "lon"))
    assert (int(holes), int(empty)) == (1, 1)


def test_command_line_round_trip(train, masks, test_fields, tmp_path):
    train.to_dataset().to_netcdf(tmp_path / "train.nc")
    masks.to_dataset().to_netcdf(tmp_path / "masks.nc")
    test_fields.to_dataset().to_netcdf(tmp_path / "test.nc")
    ice = xr.zeros_like(train.isel(time=0, drop=True), dtype=np.int8).rename("sftice")
    ice[{"lat": slice(0, 4)}] = 1
    ice.to_dataset().to_netcdf(tmp_path / "ice.nc")
    code = main(["fit", str(tmp_path / "train.nc"), "--masks", str(tmp_path / "masks.nc"),
                 "-o", str(tmp_path / "m.pth"), "--steady-mask", str(tmp_path / "ice.nc"),
                 "--iterations", "4", "--batch-size", "4", "--n-filters", "4", "--depth",
                 "2", "--validation", "0.2", "--log-every", "2", "--threads", "1",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    model = xcrai.load_model(tmp_path / "m.pth")
    expected = train.crai.fit(masks, steady_mask=ice, **QUICK)
    np.testing.assert_array_equal(model.config.steady_mask, expected.config.steady_mask)
    code = main(["infill", str(tmp_path / "test.nc"), "-m", str(tmp_path / "m.pth"), "-o",
                 str(tmp_path / "out.nc"), "--flags", "--no-progress"])  # fmt: skip
    assert code == 0
    with xr.open_dataset(tmp_path / "out.nc") as out:
        steady = out.zg_flag == FLAG_STEADY
        assert (steady.isel(time=0).values == expected.config.steady_mask).all()
        assert out.zg.where(steady).isnull().all() and out.zg.where(~steady, 0).notnull().all()
    # --steady-mask for infill replaces the model's: the ice alone
    code = main(["infill", str(tmp_path / "test.nc"), "-m", str(tmp_path / "m.pth"), "-o",
                 str(tmp_path / "ice_only.nc"), "--flags", "--no-progress", "--steady-mask",
                 str(tmp_path / "ice.nc"), "--steady-mask-var", "sftice"])  # fmt: skip
    assert code == 0
    with xr.open_dataset(tmp_path / "ice_only.nc") as out:
        steady = (out.zg_flag == FLAG_STEADY).isel(time=0)
        assert (steady.values == (ice.values == 1)).all()
        # the share infilled leaves the steady points out, as the Python API's does
        python = test_fields.crai.infill(expected, steady_mask=ice == 1)
        share = re.search(r"[0-9.]+% of points infilled", python.attrs["history"])[0]
        assert share in out.attrs["history"]


def test_command_line_bad_steady_mask(model, test_fields, tmp_path, capsys):
    model.save(tmp_path / "m.pth")
    test_fields.to_dataset().to_netcdf(tmp_path / "test.nc")
    wrong = test_fields.isel(time=0, lat=slice(0, 10), drop=True).notnull().astype("i1")
    wrong.to_dataset(name="land").to_netcdf(tmp_path / "wrong.nc")
    args = ["infill", str(tmp_path / "test.nc"), "-m", str(tmp_path / "m.pth"), "-o",
            str(tmp_path / "out.nc"), "--no-progress", "--steady-mask"]  # fmt: skip
    assert main([*args, str(tmp_path / "wrong.nc")]) == 2
    assert "steady_mask: sizes" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "absent.nc")]) == 2
    assert "steady_mask: no file" in capsys.readouterr().err
    assert not (tmp_path / "out.nc").exists()
