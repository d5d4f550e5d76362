"""benchmarks/fitbench/calibration.py: the calibration scores of a method's σ, checked on
fitbench's real hidden points with synthetic values of known error distribution."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

FITBENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "fitbench"
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def calibration():
    path = FITBENCH / "calibration.py"
    spec = importlib.util.spec_from_file_location("fitbench_calibration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hidden(calibration):
    """The truths at the 23,504 hidden points of zg_test.nc, and a per-point σ (m) that
    varies tenfold (seeded)."""
    test, truth = calibration.skill.load("zg_test.nc"), calibration.skill.load("zg_truth.nc")
    points = np.isnan(test.values) & np.isfinite(truth.values)
    values = truth.values[points].astype(np.float64)
    sigma = np.random.default_rng(1).uniform(3.0, 30.0, values.size)
    return values, sigma


def _noise(size: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(size)


def _tolerance(p: float, n: int) -> float:
    """Four binomial standard errors of a share p estimated from n points."""
    return 4 * np.sqrt(p * (1 - p) / n)


def test_coverage_of_gaussian_errors(calibration, hidden):
    truth, sigma = hidden
    assert truth.size == 23504
    errors = (truth + sigma * _noise(truth.size)) - truth
    for k, p in ((1, 0.6827), (2, 0.9545)):
        assert calibration.coverage(errors, sigma, k) == pytest.approx(p, abs=_tolerance(p, 23504))
    # a σ twice too large: ±1σ then covers ±2 true σ
    assert calibration.coverage(errors, 2 * sigma, 1) == pytest.approx(
        0.9545, abs=_tolerance(0.9545, 23504)
    )
    # and half too small: ±2σ covers ±1 true σ
    assert calibration.coverage(errors, sigma / 2, 2) == pytest.approx(
        0.6827, abs=_tolerance(0.6827, 23504)
    )


def test_crps_gain(calibration, hidden):
    pytest.importorskip("scoringrules")
    truth, sigma = hidden
    # errors of one σ for all, stated as the hole RMSE itself: no gain, by definition
    errors = 15.0 * _noise(truth.size)
    rmse = calibration.rmse(errors)
    same = calibration.crps_gain(errors, np.full_like(errors, rmse))
    assert same["crps_gain"] == pytest.approx(0.0, abs=1e-12)
    assert same["crps_m"] == pytest.approx(same["crps_const_m"])
    # stated as the true constant σ (15 m, within 1 % of the RMSE): gain about 0
    assert abs(calibration.crps_gain(errors, np.full_like(errors, 15.0))["crps_gain"]) < 1e-3
    # a σ that varies and is right beats one σ for all; the same σ shuffled does worse
    errors = sigma * _noise(truth.size)
    right = calibration.crps_gain(errors, sigma)
    assert right["crps_gain"] > 0.05
    # CRPS of N(0, s) at its own draws: s / sqrt(pi) on average
    assert right["crps_m"] == pytest.approx(np.mean(sigma) / np.sqrt(np.pi), rel=0.02)
    shuffled = np.random.default_rng(3).permutation(sigma)
    assert calibration.crps_gain(errors, shuffled)["crps_gain"] < 0
    # σ = 0 (members that agree): a point mass, whose CRPS is the absolute error
    point = calibration.crps_gain(np.array([3.0, -4.0]), np.zeros(2))
    assert point["crps_m"] == pytest.approx(3.5)


def test_spread_skill_tracks_sigma(calibration, hidden):
    truth, sigma = hidden
    errors = sigma * _noise(truth.size)
    bins = calibration.spread_skill(errors, sigma, bins=10)
    assert len(bins["points"]) == 10 and sum(bins["points"]) == truth.size
    assert np.all(np.diff(bins["rms_sigma_m"]) > 0)
    # about 2,350 points a bin: the RMSE's relative standard error is 1 / sqrt(2n) = 1.5 %
    np.testing.assert_allclose(bins["rmse_m"], bins["rms_sigma_m"], rtol=0.06)
    # a σ twice too large: the bins' RMSEs lie at half their σ
    half = calibration.spread_skill(errors, 2 * sigma)
    np.testing.assert_allclose(half["rmse_m"], np.array(half["rms_sigma_m"]) / 2, rtol=0.06)
    # one σ for every point: a single bin
    assert calibration.spread_skill(errors, np.full_like(errors, 5.0))["points"] == [truth.size]


def test_score_record_of_perfect_sigma(calibration, hidden):
    test = calibration.skill.load("zg_test.nc")
    truth = calibration.skill.load("zg_truth.nc")
    points = np.isnan(test.values) & np.isfinite(truth.values)
    sigma = np.zeros(test.shape)
    sigma[points] = hidden[1]
    values = truth.values.astype(np.float64) + sigma * _noise(test.size).reshape(test.shape)
    record = calibration.score("synthetic", values, sigma, 1.0, test, truth)
    assert record["fields"] == 3 and record["hidden_points"] == 23504
    assert record["within_1sigma"] == pytest.approx(0.6827, abs=_tolerance(0.6827, 23504))
    assert record["within_2sigma"] == pytest.approx(0.9545, abs=_tolerance(0.9545, 23504))
    assert record["rmse_m"] == pytest.approx(calibration.rmse(hidden[1]), rel=0.02)


def test_ensemble_limit_separates_shared_and_own_errors(calibration, hidden):
    points = hidden[0].size
    rng = np.random.default_rng(4)
    shared = 20.0 * rng.standard_normal(points)  # what every member gets wrong alike
    own = 5.0 * rng.standard_normal((5, points))  # what averaging removes
    limit = calibration.ensemble_limit(shared + own)
    assert limit["own_variance_share"] == pytest.approx(25 / 425, rel=0.03)
    assert limit["infinite_ensemble_rmse_m"] == pytest.approx(20.0, rel=0.02)
    # the docstring's threshold: an own share of 12.2 % puts the mean of 5 at 95 % of a
    # member's RMSE
    errors = np.sqrt(1 - 0.122) * shared + np.sqrt(0.122) * 4 * own
    share = calibration.ensemble_limit(errors)["own_variance_share"]
    assert share == pytest.approx(0.122, rel=0.03)
    ratio = calibration.rmse(errors.mean(axis=0)) / calibration.rmse(errors)
    assert ratio == pytest.approx(0.95, abs=0.005)
    with pytest.raises(ValueError, match="errors: expected 2 or more members"):
        calibration.ensemble_limit(errors[:1])


def test_command_line_kriging_writes_json_markdown_and_png(calibration, tmp_path):
    pytest.importorskip("pykrige")
    records = calibration.main([
        "--methods", "kriging", "--kriging-fields", "1", "--json", str(tmp_path / "c.jsonl"),
        "--markdown", str(tmp_path / "c.md"), "--png", str(tmp_path / "c.png"),
    ])  # fmt: skip
    (record,) = records
    assert record["method"] == "ordinary kriging" and record["fields"] == 1
    assert 0.3 < record["within_1sigma"] < record["within_2sigma"] <= 1
    assert record["rmse_m"] > 0 and len(record["spread_skill"]["points"]) >= 5
    assert json.loads((tmp_path / "c.jsonl").read_text()) == record
    table = (tmp_path / "c.md").read_text()
    assert "| ordinary kriging | 1 |" in table and "within ±1\u03c3" in table
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_sigma_and_ensemble_models_are_scored(calibration, tmp_path):
    import xcrai

    train, masks = calibration.skill.load("zg_train.nc"), calibration.skill.load("zg_masks.nc")
    tiny = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False)
    train.crai.fit(masks, uncertainty=True, iterations=5, **tiny).save(tmp_path / "s.pth")
    ensemble = train.crai.fit(masks, ensemble=2, iterations=3, **tiny)
    assert isinstance(ensemble, xcrai.Ensemble)
    ensemble.save(tmp_path / "e.pth")
    records = calibration.main([
        "--methods", "sigma,ensemble", "--device", "cpu", "--model-sigma", str(tmp_path / "s.pth"),
        "--model-ensemble", str(tmp_path / "e.pth"), "--markdown", str(tmp_path / "c.md"),
    ])  # fmt: skip
    sigma, members = records
    assert sigma["method"] == "\u03c3 head, s.pth" and sigma["fields"] == 3
    assert 0 <= sigma["within_1sigma"] <= sigma["within_2sigma"] <= 1
    assert members["method"] == "ensemble, e.pth" and len(members["member_rmse_m"]) == 2
    assert "ddof=1" in members["note"]
    assert 0 <= members["own_variance_share"] <= 1 and members["infinite_ensemble_rmse_m"] >= 0
    # neither asked for nor given: a note, not a failure
    (skipped,) = calibration.main(["--methods", "sigma"])
    assert "skipped" in skipped


def test_a_deep_ensemble_is_scored_as_infill_combines_it(calibration, tmp_path):
    train, masks = calibration.skill.load("zg_train.nc"), calibration.skill.load("zg_masks.nc")
    test = calibration.skill.load("zg_test.nc")
    tiny = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False)
    deep = train.crai.fit(masks, ensemble=2, uncertainty=True, iterations=4, **tiny)
    assert calibration.deep(deep)
    values, sigma = calibration.ensemble_method(deep, "cpu")(test)
    mean = test.crai.infill(deep, members="mean", sigma=True, device="cpu", progress=False)
    mean = mean.transpose("time", "lat", "lon")
    hidden = test.isnull().transpose("time", "lat", "lon").values
    np.testing.assert_allclose(values[hidden], mean.zg.values[hidden], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sigma[hidden], mean.zg_sigma.values[hidden], rtol=1e-4, atol=1e-3)
    deep.save(tmp_path / "d.pth")
    (record,) = calibration.main(
        ["--methods", "ensemble", "--device", "cpu", "--model-ensemble", str(tmp_path / "d.pth")]
    )
    assert "sqrt(mean \u03c3_i\u00b2 + their variance)" in record["note"]
    assert record["within_1sigma"] > 0  # the members' own sigma counts, not their spread alone
