"""fit(first_guess=...): the network corrects a classical fill that the model stores.

On fitbench (18 monthly fields, HadCRUT4 masks): the guesses equal the classical fills
of :mod:`xcrai.baselines`, what the network is given at ``infill`` is what it trained on
(the infill of the validation fields scores the validation table's hole RMSE), the infill
keeps every observed value, is chunking-invariant and survives save and load, and the
combinations it cannot serve are refused naming the argument.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import open_zg

import xcrai
from xcrai.baselines import Eofs, choose_eof_count, climatology, eof_samples
from xcrai.firstguess import build
from xcrai.skill import ClassicalFillWarning

SMALL = {"n_filters": 6, "depth": 3}
QUICK = dict(batch_size=4, architecture=SMALL, progress=False, threads=1)
pytestmark = [
    pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning"),
    pytest.mark.filterwarnings("ignore::xcrai.skill.ClassicalFillWarning"),
]


@pytest.fixture(scope="module")
def bench():
    return open_zg("zg_train.nc"), open_zg("zg_masks.nc")


@pytest.fixture(scope="module", params=["climatology", "eof"])
def fitted(request, bench):
    train, masks = bench
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassicalFillWarning)
        model = train.crai.fit(masks, iterations=20, first_guess=request.param, **QUICK)
    return request.param, model


def test_the_climatology_is_the_training_fields_monthly_mean(bench):
    train, masks = bench
    months = train.time.dt.month.values
    target = np.ones(train.shape[1:], bool)
    guess = build("climatology", train.values, months, masks.values == 1, target)
    assert guess.monthly and len(guess.patterns) == 0
    np.testing.assert_allclose(guess.base, climatology(train.values, months), rtol=1e-6)
    # each field's guess is its month's mean, whatever is observed
    observed = masks.values[:3] == 1
    out = guess.guess(train.values[:3], observed, months[:3])
    np.testing.assert_array_equal(out, guess.base[months[:3] - 1])


def test_the_eof_guess_is_the_eof_reconstruction_of_the_observed_points(bench):
    train, masks = bench
    fields, seen = train.values[:16], masks.values == 1
    target = np.ones(fields.shape[1:], bool)
    guess = build("eof", fields, None, seen, target)
    samples, _ = eof_samples(fields)
    k, _ = choose_eof_count(samples, seen.reshape(len(seen), -1))
    assert len(guess.patterns) == k > 0
    eofs = Eofs.of(samples)
    for index in (16, 17):  # fields it was not made from
        observed = seen[index]
        want = eofs.fill(train.values[index].ravel().astype(np.float64), observed.ravel(), k)
        got = guess.guess(train.values[index][None], observed[None], None)[0]
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got[~observed], want.reshape(observed.shape)[~observed],
                                   atol=1e-3 * scale)  # fmt: skip


def test_infill_gives_the_network_what_it_trained_on(fitted, bench):
    """The validation table scores the trained network on the validation fields under
    masks k % M as training batches give them; infill of the same fields must score the
    same: a guess made differently at infill would not."""
    kind, model = fitted
    train, masks = bench
    assert model.config.first_guess.kind == kind
    assert model.config.provenance["train_config"]["first_guess"] == kind
    val = train.isel(time=slice(16, None))
    seen = masks.values[np.arange(2) % len(masks)] == 1
    filled = val.where(seen).crai.infill(model, progress=False)
    hidden = ~seen
    rmse = float(np.sqrt(np.mean((filled.values[hidden] - val.values[hidden]) ** 2)))
    table = model.config.provenance["validation_skill"]["rmse"]
    assert rmse == pytest.approx(table["model"], rel=1e-4)


def test_observed_values_kept_and_chunking_invariant(fitted, bench):
    _, model = fitted
    train, masks = bench
    data = train.where(masks.values[:18] == 1)
    eager = data.crai.infill(model, progress=False)
    lazy = data.chunk(time=5).crai.infill(model, progress=False)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)
    observed = masks.values[:18] == 1
    np.testing.assert_array_equal(eager.values[observed], train.values[observed])


def test_the_card_and_the_history_name_the_first_guess(fitted, bench):
    kind, model = fitted
    train, masks = bench
    words = model.config.first_guess.describe()
    assert words == (
        "climatology by calendar month"
        if kind == "climatology"
        else f"the training mean and {len(model.config.first_guess.patterns)} EOFs"
    )
    assert f"first guess: {words}, which the network corrects" in model.card
    assert "normalisation: (x - first guess - " in model.card
    data = train.isel(time=slice(0, 2)).where(masks.values[:2] == 1)
    history = data.crai.infill(model, progress=False).attrs["history"]
    assert f"correcting a first guess ({words})" in history


def test_the_first_guess_survives_save_and_load(fitted, bench, tmp_path):
    _, model = fitted
    train, masks = bench
    again = xcrai.load_model(model.save(tmp_path / "m.pth"))
    assert again.config.first_guess.to_dict() == model.config.first_guess.to_dict()
    assert (again.config.mean, again.config.std) == (model.config.mean, model.config.std)
    np.testing.assert_array_equal(again.config.first_guess.base, model.config.first_guess.base)
    data = train.isel(time=slice(0, 4)).where(masks.values[:4] == 1)
    np.testing.assert_array_equal(
        data.crai.infill(again, progress=False).values,
        data.crai.infill(model, progress=False).values,
    )


def test_a_model_without_a_first_guess_writes_none(bench, tmp_path):
    train, masks = bench
    model = train.crai.fit(masks, iterations=2, **QUICK)
    assert model.config.first_guess is None
    payload = torch.load(model.save(tmp_path / "m.pth"), weights_only=True)
    assert "first_guess" not in payload["config"]
    assert "first_guess" not in payload["config"]["provenance"]["train_config"]


def test_a_corrupt_first_guess_is_refused_naming_the_file(fitted, tmp_path):
    _, model = fitted
    payload = torch.load(model.save(tmp_path / "m.pth"), weights_only=True)
    payload["config"]["first_guess"]["base"] = payload["config"]["first_guess"]["base"][:-8]
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*its first_guess\.base: expected"):
        xcrai.load_model(tmp_path / "bad.pth")


def test_a_monthly_guess_needs_dates(bench):
    train, masks = bench
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassicalFillWarning)
        model = train.crai.fit(masks, iterations=2, first_guess="climatology", **QUICK)
    assert model.config.first_guess.monthly
    undated = train.isel(time=slice(0, 2)).assign_coords(time=[0, 1])
    with pytest.raises(ValueError, match=r"^data: the model's first guess is a climatology by"):
        undated.crai.infill(model, progress=False)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"first_guess": "kriging"}, "^first_guess: expected None or one of"),
        ({"first_guess": "eof", "bounds": (0, None)}, "^first_guess: not with bounds"),
        ({"first_guess": "eof", "augment": True}, "^augment: the EOFs of first_guess='eof'"),
    ],
)
def test_what_a_first_guess_cannot_serve_is_refused(bench, options, said):
    train, masks = bench
    with pytest.raises(ValueError, match=said):
        train.crai.fit(masks, iterations=2, **{**QUICK, **options})


def test_several_variables_take_no_first_guess(bench):
    train, masks = bench
    ds = xr.Dataset({"zg": train, "half": train / 2})
    with pytest.raises(ValueError, match=r"^first_guess: a model of several variables"):
        ds.crai.fit(masks, inputs=["zg", "half"], iterations=2, first_guess="eof", **QUICK)


def test_the_command_line_takes_first_guess():
    result = subprocess.run(
        [sys.executable, "-m", "xcrai.cli", "fit", "--help"], capture_output=True, text=True
    )
    assert "--first-guess {none,climatology,eof,auto}" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "xcrai.cli", "fit", "d.nc", "-m", "m.nc", "-o", "o.pth",
         "--first-guess", "kriging"], capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    said = "--first-guess: expected one of none, climatology, eof, auto; got 'kriging'"
    assert said in result.stderr


def test_a_run_resumes_only_with_the_same_first_guess(bench, tmp_path):
    train, masks = bench
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClassicalFillWarning)
        train.crai.fit(masks, iterations=2, checkpoint_dir=tmp_path / "ck", **QUICK)
        with pytest.raises(ValueError, match="first_guess") as error:
            train.crai.fit(masks, iterations=4, first_guess="climatology",
                           resume=tmp_path / "ck", **QUICK)  # fmt: skip
    assert str(error.value).startswith("resume:"), str(error.value)


def _auto(train, masks, **options):
    model = train.crai.fit(masks, iterations=2, first_guess="auto", **QUICK, **options)
    rmse = model.config.provenance["validation_skill"]["rmse"]
    best = min(("climatology", "EOF"), key=lambda name: rmse[name])
    return model, best.lower() if rmse[best] < rmse["Poisson"] else None


def test_auto_takes_no_guess_where_poisson_beats_the_guesses(bench):
    train, masks = bench  # 18 unrelated fields: the climatology and the EOFs do poorly
    model, expected = _auto(train, masks)
    assert expected is None
    assert model.config.first_guess is None
    assert "first_guess" not in model.config.provenance["train_config"]


def test_auto_takes_the_best_guess_where_it_beats_poisson(bench):
    train, masks = bench
    months = train.time.dt.month  # a fixed pattern (field 0) that waxes and wanes each year
    seasonal = 3 * np.cos(2 * np.pi * months / 12) * train.isel(time=0, drop=True) + train / 10
    model, expected = _auto(seasonal, masks)
    assert expected is not None
    assert model.config.first_guess.kind == expected
    assert model.config.provenance["train_config"]["first_guess"] == expected


def test_auto_is_the_default_and_abstains_where_no_guess_can_serve(bench):
    """Without validation fields to choose on, or with bounds, "auto" takes no guess: the
    model is the one first_guess=None trains, bit for bit."""
    import inspect

    from xcrai.options import FitOptions

    assert FitOptions().first_guess == "auto"
    assert inspect.signature(xr.DataArray.crai.fit).parameters["first_guess"].default == "auto"
    train, masks = bench
    for options in ({"validation": None}, {"bounds": (None, 1e6)}):
        by_default = train.crai.fit(masks, iterations=2, **QUICK, **options)
        assert by_default.config.first_guess is None
        none = train.crai.fit(masks, iterations=2, first_guess=None, **QUICK, **options)
        assert _same_weights(by_default, none)
    with pytest.raises(ValueError, match=r"^first_guess: not with bounds"):
        train.crai.fit(masks, iterations=2, first_guess="eof", bounds=(None, 1e6), **QUICK)


def test_auto_with_augment_chooses_among_the_guesses_augment_allows(bench):
    train, masks = bench
    months = train.time.dt.month
    seasonal = 3 * np.cos(2 * np.pi * months / 12) * train.isel(time=0, drop=True) + train / 10
    model = seasonal.crai.fit(masks, iterations=2, augment=True, **QUICK)
    rmse = model.config.provenance["validation_skill"]["rmse"]
    assert rmse["climatology"] < rmse["Poisson"]  # so "auto" takes it, the EOFs left out
    assert model.config.first_guess.kind == "climatology"


def _same_weights(a, b) -> bool:
    one, other = a.net.state_dict(), b.net.state_dict()
    return one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one)


@pytest.mark.parametrize("kind", ["climatology", "eof"])
def test_dask_backed_training_fields_train_as_numpy_ones(bench, kind):
    train, masks = bench
    eager = train.crai.fit(masks, iterations=3, first_guess=kind, **QUICK)
    lazy = train.chunk(time=4).crai.fit(masks, iterations=3, first_guess=kind, **QUICK)
    assert lazy.config.first_guess.to_dict() == eager.config.first_guess.to_dict()
    assert (lazy.config.mean, lazy.config.std) == (eager.config.mean, eager.config.std)
    lazy_weights = lazy.net.state_dict()
    for name, weights in eager.net.state_dict().items():
        torch.testing.assert_close(lazy_weights[name], weights, rtol=0, atol=0)


def _with_weight(model, weight):
    guess = replace(model.config.first_guess, weight=weight)
    return xcrai.CraiModel(replace(model.config, first_guess=guess), model.net.state_dict())


@pytest.fixture(scope="module")
def span_fitted(bench):
    """30 fields in the span of 4 of fitbench's, plus noise: the EOF guess fills them to
    the noise, and 20 iterations of correction help less than they cost."""
    train, masks = bench
    rng = np.random.default_rng(0)
    patterns = train.values[:4] - train.values.mean(0)
    values = np.einsum("tk,khw->thw", rng.standard_normal((30, 4)), patterns)
    values += 0.5 * rng.standard_normal(values.shape)
    coords = {"time": np.arange(30), "lat": train.lat, "lon": train.lon}
    span = xr.DataArray(values, dims=train.dims, coords=coords, name="zg", attrs=train.attrs)
    model = span.crai.fit(masks, iterations=20, first_guess="eof", **QUICK)
    return model, span.isel(time=slice(27, None))


@pytest.mark.parametrize("case", ["climatology", "eof", "span"])
def test_the_correction_kept_is_the_least_squares_share_on_the_validation_fields(
    case, fitted, span_fitted, bench
):
    """infill = guess + w x the network's correction in the holes, w in [0, 1] fitted on the
    validation fields' hidden points (field k under mask k % M): no other share does
    better there, and the validation table scores the weighted model."""
    train, masks = bench
    if case == "span":
        model, val = span_fitted
        assert 0 < model.config.first_guess.weight < 1  # a share inside, not a bound
    elif case == fitted[0]:
        model, val = fitted[1], train.isel(time=slice(16, None))
    else:
        pytest.skip("the other kind's model")
    weight = model.config.first_guess.weight
    seen = masks.values[np.arange(val.sizes["time"]) % len(masks)] == 1
    hidden = ~seen
    data = val.where(seen)
    guess = data.crai.infill(_with_weight(model, 0.0), progress=False).values[hidden]
    whole = data.crai.infill(_with_weight(model, 1.0), progress=False).values[hidden]
    truth = val.values[hidden].astype(np.float64)
    correction, error = (whole - guess).astype(np.float64), truth - guess
    best = np.clip(correction @ error / (correction @ correction), 0, 1)
    assert weight == pytest.approx(best, rel=1e-3, abs=1e-4)
    filled = data.crai.infill(model, progress=False).values[hidden]
    np.testing.assert_allclose(filled, guess + weight * correction, rtol=1e-5, atol=1e-3)

    def rmse(share):
        return float(np.sqrt(np.mean((guess + share * correction - truth) ** 2)))

    others = (0.0, 1.0, 0.9 * weight, min(1.0, 1.1 * weight))
    assert rmse(weight) <= min(rmse(share) for share in others) + 1e-9
    table = model.config.provenance["validation_skill"]["rmse"]
    assert table["model"] == pytest.approx(rmse(weight), rel=1e-4)


def test_the_weight_is_saved_checked_and_left_out_when_whole(fitted, tmp_path):
    _, model = fitted
    half = _with_weight(model, 0.5)
    assert "0.50 of the network's correction kept" in half.config.first_guess.describe()
    loaded = xcrai.load_model(half.save(tmp_path / "half.pth"))
    assert loaded.config.first_guess.weight == 0.5
    whole = torch.load(_with_weight(model, 1.0).save(tmp_path / "whole.pth"), weights_only=True)
    assert "weight" not in whole["config"]["first_guess"]
    payload = torch.load(tmp_path / "half.pth", weights_only=True)
    for bad in (1.5, -0.1, float("nan"), "1"):
        payload["config"]["first_guess"]["weight"] = bad
        torch.save(payload, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=r"bad\.pth.*first_guess\.weight"):
            xcrai.load_model(tmp_path / "bad.pth")


def test_a_sigma_model_keeps_the_whole_correction(bench):
    train, masks = bench
    model = train.crai.fit(masks, iterations=4, first_guess="eof", uncertainty=True, **QUICK)
    assert model.config.first_guess.weight == 1.0
