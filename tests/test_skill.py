"""fit tells the user where it stands: the model's hole RMSE on its validation fields beside
the classical fills' (Poisson, climatology, EOF), stored in the model file and its card."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import xarray as xr
from fitbench_data import open_zg

import xcrai
from xcrai.skill import ClassicalFillWarning

SMALL = {"n_filters": 6, "depth": 3}
QUICK = dict(batch_size=4, architecture=SMALL, progress=False, threads=1)
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def fitted():
    """fitbench (18 fields, fit's default split: the last 2 for validation), logged."""
    train, masks = open_zg("zg_train.nc"), open_zg("zg_masks.nc")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("xcrai")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ClassicalFillWarning)
            model = train.crai.fit(masks, iterations=30, **QUICK)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return model, [r.getMessage() for r in records]


def test_fit_stores_the_validation_table_and_logs_one_line(fitted):
    model, messages = fitted
    table = model.standing
    assert table is model.config.provenance["validation_skill"]
    assert list(table["rmse"]) == ["model", "Poisson", "climatology", "EOF"]
    assert table["fields"] == 2 and table["units"] == "m"
    masks = open_zg("zg_masks.nc").values == 1
    assert table["hole_points"] == int((~masks[0]).sum() + (~masks[1]).sum())
    # the model's score is the returned weights' val_hole_rmse, on the same holes
    assert table["rmse"]["model"] == pytest.approx(float(model.history.val_hole_rmse[-1]))
    classical = {k: v for k, v in table["rmse"].items() if k != "model"}
    assert table["best_classical"] == min(classical, key=classical.get)
    assert np.isfinite(list(table["rmse"].values())).all()
    lines = [m for m in messages if m.startswith("validation hole RMSE ")]
    assert len(lines) == 1
    best = table["best_classical"]
    assert f"; best classical: {best} {table['rmse'][best]:.3g} m; " in lines[0]
    assert lines[0].endswith(("% better", "% worse"))


def test_the_table_survives_save_and_load_and_shows_in_the_card(fitted, tmp_path, capsys):
    from xcrai.cli import main

    model, _ = fitted
    path = model.save(tmp_path / "zg.pth")
    loaded = xcrai.load_model(path)
    assert loaded.standing == model.standing
    html = loaded._repr_html_()
    assert "validation skill" in html and "best classical" in html and "Poisson" in html
    assert "validation hole RMSE" in repr(loaded)
    assert "validation skill: validation hole RMSE" in loaded.card
    assert main(["models", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "validation skill" in printed and "EOF" in printed and "climatology" in printed
    # files without a table (the bundled CRAI model) load and show their card as before
    demo = xcrai.load_model(xcrai.data.demo_model())
    assert demo.standing is None and "validation skill" not in demo.card


def test_a_classical_fill_that_wins_warns_at_the_users_line():
    """A strongly seasonal record made of fitbench's fields (the first 12 as the months of
    every year, 4 years, plus a small part of another field): the climatology by calendar
    month fills it almost exactly (as do the 12 patterns' EOFs), and a model of 2
    iterations without a first guess cannot."""
    zg, masks = open_zg("zg_train.nc"), open_zg("zg_masks.nc")
    cycle = 10 * zg.values[:12]
    noise = 0.05 * zg.values[np.arange(48) % 18][::-1]
    times = xr.date_range("1990-01-01", periods=48, freq="MS")
    record = xr.DataArray(np.concatenate([cycle] * 4) + noise, dims=zg.dims, name="zg",
                          coords={"time": times, "lat": zg.lat, "lon": zg.lon},
                          attrs={"units": "m"})  # fmt: skip
    with pytest.warns(ClassicalFillWarning, match="a classical fill beats the model") as caught:
        model = record.crai.fit(masks, iterations=2, first_guess=None, **QUICK)
    assert caught[0].filename == __file__
    table = model.standing
    assert table["best_classical"] in ("climatology", "EOF")
    assert table["notes"]["climatology"] == "by calendar month"
    assert table["rmse"]["climatology"] < 0.1 * table["rmse"]["model"]


def test_no_validation_fields_no_table():
    train, masks = open_zg("zg_train.nc"), open_zg("zg_masks.nc")
    model = train.crai.fit(masks, iterations=2, validation=None, **QUICK)
    assert model.standing is None and "validation_skill" not in model.config.provenance


def test_several_variables_infilling_an_input_get_the_table():
    train, masks = open_zg("zg_train.nc"), open_zg("zg_masks.nc")
    ds = xr.Dataset({"zg": train, "half": train * 0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassicalFillWarning)
        model = ds.crai.fit(masks, inputs=["zg", "half"], iterations=2, **QUICK)
    table = model.standing
    assert table is not None and table["fields"] == 2 and table["units"] == "m"
    assert table["rmse"]["model"] == pytest.approx(float(model.history.val_hole_rmse[-1]))
