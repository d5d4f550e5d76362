"""Output bounds (CRAI's --min-bounds/--max-bounds) on the real HadCRUT4 sample."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xcrai
from xcrai.bounds import check_bounds, constrain, describe


@pytest.fixture(scope="module")
def raw(hadcrut, demo_model):
    """The demo model's unbounded output and the data's holes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        out = hadcrut.tas.crai.infill(demo_model, return_output=True)
    return out.tas_output.values, ~np.isfinite(hadcrut.tas.values)


def infill(hadcrut, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        return hadcrut.tas.crai.infill(model, return_output=True, **kwargs)


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, None), (None, 0.0)])
def test_bounds_keep_infilled_values_inside_and_observed_ones_unchanged(
    hadcrut, demo_model, raw, bounds
):
    out = infill(hadcrut, demo_model, bounds=bounds)
    values, holes = out.tas.values, raw[1]
    lower, upper = bounds
    assert np.isfinite(values).all()  # an upper bound alone is not -inf (CRAI's slip)
    if lower is not None:
        assert (values[holes] >= lower).all()
    if upper is not None:
        assert (values[holes] <= upper).all()
    np.testing.assert_array_equal(values[~holes], hadcrut.tas.values[~holes])
    # the transform of the unbounded output (the demo model is not normalised)
    expected = constrain(torch.from_numpy(raw[0]), check_bounds(bounds)).numpy()
    np.testing.assert_allclose(out.tas_output.values, expected, rtol=1e-6, atol=1e-6)
    # the history names the bounds and counts nothing
    history = out.attrs["history"].splitlines()[0]
    assert history.endswith(f"output bounds {describe(check_bounds(bounds))}")


def test_bounds_are_stored_in_the_model_and_can_be_overridden(hadcrut, demo_model, tmp_path):
    bounded = demo_model.with_options(bounds=(0, None))
    path = bounded.save(tmp_path / "bounded.pth")
    loaded = xcrai.load_model(path)
    assert loaded.config.bounds == (0.0, None)
    a = infill(hadcrut, loaded)
    b = infill(hadcrut, demo_model, bounds=(0, None))
    np.testing.assert_array_equal(a.tas.values, b.tas.values)
    assert re.search(r"output bounds \[0, inf\)", a.attrs["history"])
    unbounded = infill(hadcrut, loaded, bounds=(None, None))
    np.testing.assert_array_equal(unbounded.tas.values, infill(hadcrut, demo_model).tas.values)
    assert "output bounds" not in unbounded.attrs["history"]


def test_bounds_lazy_equal_eager(hadcrut_series, demo_model):
    eager = infill(hadcrut_series.to_dataset(), demo_model, bounds=(-2, 2))
    lazy = infill(hadcrut_series.chunk(time=5).to_dataset(), demo_model, bounds=(-2, 2))
    np.testing.assert_array_equal(lazy.tas.values, eager.tas.values)
    assert lazy.attrs["history"].splitlines()[0].endswith("output bounds [-2, 2]")


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((1, 0), "bounds: the lower bound 1 is not below the upper bound 0"),
        ((0,), r"bounds: expected \(lower, upper\)"),
        ((0, float("nan")), "bounds: expected numbers or None"),
    ],
)
def test_bad_bounds_are_refused_before_any_work(hadcrut, demo_model, bounds, message):
    with pytest.raises(ValueError, match=message):
        hadcrut.tas.crai.infill(demo_model, bounds=bounds)


def test_command_line_bounds(hadcrut, demo_model, tmp_path, capsys):
    from xcrai.cli import main

    data = tmp_path / "in.nc"
    hadcrut.to_netcdf(data)
    out = tmp_path / "out.nc"
    args = ["infill", str(data), "-m", str(xcrai.data.demo_model())]
    assert main([*args, "--bounds=-1,1", "-o", str(out)]) == 0
    expected = infill(hadcrut, demo_model, bounds=(-1, 1))
    with xr.open_dataset(out) as written:
        np.testing.assert_array_equal(written.tas.values, expected.tas.values)
        assert written.attrs["history"].splitlines()[0].endswith("output bounds [-1, 1]")
    capsys.readouterr()
    bad = tmp_path / "bad.nc"
    assert main([*args, "--bounds", "1,0", "-o", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["xcrai infill: error: bounds: the lower bound 1 is not below the upper bound 0"]
    assert not bad.exists()


def test_fit_trains_with_bounds_and_stores_them():
    """fitbench's 500 hPa heights (m) with a lower bound: the transform is part of training
    (other weights than without it), stored in the model, and applied when infilling."""
    from pathlib import Path

    fitbench = Path(__file__).parents[1] / "benchmarks" / "fitbench" / "data"
    with (
        xr.open_dataset(fitbench / "zg_train.nc") as f,
        xr.open_dataset(fitbench / "zg_masks.nc") as g,
        xr.open_dataset(fitbench / "zg_test.nc") as h,
    ):
        zg, masks, test = f.zg.load(), g.zg.load(), h.zg.load()
    options = dict(iterations=6, batch_size=4, architecture={"n_filters": 4, "depth": 2},
                   progress=False, threads=1, validation=0.2)  # fmt: skip
    lower = float(zg.min()) + 100.0  # above some of the training values
    bounded = zg.crai.fit(masks, bounds=(lower, None), **options)
    plain = zg.crai.fit(masks, **options)
    assert bounded.config.bounds == (lower, None)
    mean, std = bounded.config.mean, bounded.config.std
    recorded = bounded.config.provenance["train_config"]["bounds"]
    assert recorded == [pytest.approx((lower - mean) / std), None]
    weights = bounded.net.state_dict()
    assert any(not torch.equal(v, plain.net.state_dict()[k]) for k, v in weights.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        filled = test.crai.infill(bounded)
    holes = ~np.isfinite(test.values)
    assert (filled.values[holes] >= lower).all()
    with pytest.raises(ValueError, match="bounds: the lower bound 2 is not below"):
        zg.crai.fit(masks, bounds=(2, 1), **options)


def test_a_model_trained_with_bounds_01_counts_no_points_beyond_them():
    """A fit with bounds=(0, 1) (a sea-ice-like share, from fitbench's heights): its network
    outputs logits, which the history line once compared with the bounds in normalised
    units and reported as tens of thousands of points "beyond" them. It names the bounds
    only; every infilled value lies inside them."""
    from fitbench_data import open_zg

    zg, masks, test = open_zg("zg_train.nc"), open_zg("zg_masks.nc"), open_zg("zg_test.nc")
    low, high = float(zg.min()), float(zg.max())
    share = ((zg - low) / (high - low)).assign_attrs(units="1")
    model = share.crai.fit(masks, bounds=(0, 1), iterations=4, batch_size=4, progress=False,
                           architecture={"n_filters": 4, "depth": 2}, threads=1)  # fmt: skip
    holes = ~np.isfinite(test.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        filled = ((test - low) / (high - low)).assign_attrs(units="1").crai.infill(model)
    assert ((filled.values[holes] >= 0) & (filled.values[holes] <= 1)).all()
    line = filled.attrs["history"].splitlines()[0]
    assert line.endswith("output bounds [0, 1]")
    assert "beyond" not in line and "transform" not in line
