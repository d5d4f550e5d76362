"""benchmarks/fitbench/skill.py's scoring, against the figures of issue 14 (seconds)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

FITBENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "fitbench"


@pytest.fixture(scope="module")
def skill():
    spec = importlib.util.spec_from_file_location("fitbench_skill", FITBENCH / "skill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_zero_zonal_and_poisson_scores(skill):
    scores = {s.name: s for s in skill.score_methods(["zero", "zonal", "poisson"])}
    assert scores["zero fill"].rmse()[0] == pytest.approx(35.9, abs=0.05)
    assert scores["zonal-mean fill"].rmse()[0] == pytest.approx(37.5, abs=0.05)
    assert scores["Poisson fill"].rmse()[0] == pytest.approx(29.9, abs=0.3)  # measured 29.75
    for result in scores.values():
        assert len(result.squared) == 3 and sum(result.points) == 23504
        assert result.rmse()[1] > 0


def test_area_weighting_and_subsets(skill):
    test, truth = skill.load("zg_test.nc"), skill.load("zg_truth.nc")
    filled = np.where(np.isnan(test.values), 0.0, test.values)
    result = skill.score("check", filled, 1.0, test, truth)
    hidden = np.isnan(test.values)
    weight = np.cos(np.deg2rad(test.lat.values))[None, :, None] * np.ones(test.shape)
    error = (filled - truth.values.astype(np.float64))[hidden]
    assert result.rmse()[1] == pytest.approx(
        np.sqrt(np.sum(weight[hidden] * error**2) / np.sum(weight[hidden]))
    )
    first = skill.score("first", filled[:1], 1.0, test, truth)
    assert first.rmse()[0] == pytest.approx(result.rmse(1)[0])
    assert first.seconds_per_field == 1.0


def test_eof_reconstructs_the_training_span(skill):
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(3, 40))
    fields = rng.normal(size=(10, 3)) @ patterns
    eofs = skill.Eofs.of(fields)
    target = np.array([0.5, -1.0, 2.0]) @ patterns
    observed = np.where(np.arange(40) % 3 == 0, target, np.nan)
    np.testing.assert_allclose(eofs.fill(observed, 3), target, atol=1e-8)


def test_command_line_writes_json_and_markdown(skill, tmp_path, capsys):
    records = skill.main(["--methods", "zero,zonal", "--markdown", str(tmp_path / "t.md"),
                          "--json", str(tmp_path / "t.jsonl")])  # fmt: skip
    assert [r["method"] for r in records] == ["zero fill", "zonal-mean fill"]
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["rmse_m"] == 35.9
    table = (tmp_path / "t.md").read_text()
    assert "| zonal-mean fill | 3 | 37.54 |" in table
    with pytest.raises(ValueError, match="methods: unknown"):
        skill.score_methods(["nearest"])


def test_trained_recipe_and_saved_models_are_scored(skill, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FITBENCH))
    import run  # the module skill.py trains with

    monkeypatch.setitem(run.RECIPE, "iterations", 3)
    monkeypatch.setitem(run.RECIPE, "log_every", 1)
    with pytest.warns(UserWarning, match="beyond the network's reach"):  # 3 iterations
        records = skill.main(["--methods", "", "--train-recipe", "--device", "cpu",
                              "--markdown", str(tmp_path / "t.md")])  # fmt: skip
    assert (tmp_path / "t.recipe.pth").exists()
    assert [r["method"] for r in records] == ["xcrai, CRAI's recipe, seed 0"]
    with pytest.warns(UserWarning, match="beyond the network's reach"):
        again = skill.main(["--methods", "", "--device", "cpu",
                            "--model", str(tmp_path / "t.recipe.pth")])  # fmt: skip
    assert again[0]["rmse_m"] == records[0]["rmse_m"] and again[0]["fields"] == 3
