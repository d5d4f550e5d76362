"""How much to trust an infilled value: the σ head (fit(uncertainty=True)) and ensembles
(fit(ensemble=N)), on fitbench's real 500 hPa heights with HadCRUT4 masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import open_zg

import xcrai

DATA = Path(__file__).parent / "data"
TINY = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False, threads=1)
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def masks() -> xr.DataArray:
    return open_zg("zg_masks.nc")


@pytest.fixture(scope="module")
def test_fields() -> xr.DataArray:
    return open_zg("zg_test.nc")


@pytest.fixture(scope="module")
def sigma_model(masks) -> xcrai.CraiModel:
    return open_zg("zg_train.nc").crai.fit(masks, uncertainty=True, iterations=30, **TINY)


@pytest.fixture(scope="module")
def ensemble(masks) -> xcrai.Ensemble:
    return open_zg("zg_train.nc").crai.fit(masks, ensemble=3, iterations=10, **TINY)


def test_sigma_is_positive_at_holes_and_zero_where_observed(sigma_model, test_fields):
    assert sigma_model.config.uncertainty
    assert sigma_model.config.architecture.out_channels == 2
    out = test_fields.crai.infill(sigma_model, sigma=True)
    holes = np.isnan(test_fields.values)
    sigma = out.zg_sigma.values
    assert np.isfinite(sigma[holes]).all() and (sigma[holes] > 0).all()
    assert (sigma[~holes] == 0).all()
    assert out.zg_sigma.attrs["units"] == "m"
    assert "zg_sigma" in out.zg.attrs["ancillary_variables"].split()
    # the values are those of a plain infill with the same model
    np.testing.assert_array_equal(out.zg.values, test_fields.crai.infill(sigma_model).values)
    # return_output includes it for a model that has it
    assert "zg_sigma" in test_fields.crai.infill(sigma_model, return_output=True)


def test_a_model_without_sigma_says_so(test_fields, masks, tmp_path, capsys):
    plain = open_zg("zg_train.nc").crai.fit(masks, iterations=2, **TINY)
    with pytest.raises(ValueError, match=r"sigma: .* has no uncertainty output; train one"):
        test_fields.crai.infill(plain, sigma=True)
    assert "zg_sigma" not in test_fields.crai.infill(plain, return_output=True)
    from xcrai.cli import main

    data, model = tmp_path / "test.nc", plain.save(tmp_path / "plain.pth")
    test_fields.to_dataset().to_netcdf(data)
    out = tmp_path / "out.nc"
    assert main(["infill", str(data), "-m", str(model), "--sigma", "-o", str(out)]) == 2
    assert "sigma: plain.pth has no uncertainty output" in capsys.readouterr().err
    assert not out.exists()


def test_the_nll_head_recovers_a_known_noise_level(masks):
    """Fields of pure Gaussian noise (σ = 7 m, on fitbench's grid): nothing at a hidden
    point can be predicted, so the best σ is the noise's own; the head learns it."""
    rng = np.random.default_rng(0)
    template = open_zg("zg_train.nc")
    noise = template.copy(data=rng.normal(0.0, 7.0, template.shape).astype(np.float32))
    model = noise.crai.fit(masks, uncertainty=True, iterations=150, lr=2e-3, validation=None,
                           **{**TINY, "batch_size": 8})  # fmt: skip
    test = (
        noise.isel(time=slice(0, 3))
        .copy(data=rng.normal(0.0, 7.0, (3, *noise.shape[1:])).astype(np.float32))
        .where(masks.isel(time=slice(0, 3)).values > 0)
    )
    sigma = test.crai.infill(model, sigma=True).zg_sigma.values[np.isnan(test.values)]
    rms = float(np.sqrt(np.mean(sigma**2)))
    assert abs(rms - 7.0) / 7.0 < 0.2, rms


def test_sigma_models_save_load_stay_lazy_and_chunking_invariant(sigma_model, tmp_path):
    series = open_zg("zg_truth.nc").where(open_zg("zg_masks.nc").isel(time=slice(3, 6)).values > 0)
    loaded = xcrai.load_model(sigma_model.save(tmp_path / "sigma.pth"))
    assert loaded.config.uncertainty
    eager = series.crai.infill(sigma_model, sigma=True)
    lazy = series.chunk(time=1).crai.infill(loaded, sigma=True)
    assert lazy.zg_sigma.chunks is not None
    xr.testing.assert_equal(lazy.compute(), eager)  # bitwise (history lines differ)
    assert lazy.zg_sigma.attrs == eager.zg_sigma.attrs


def test_ensembles_save_load_and_give_a_member_dimension(ensemble, test_fields, tmp_path):
    assert isinstance(ensemble, xcrai.Ensemble)
    assert ensemble.labels == ("seed 0", "seed 1", "seed 2")
    seeds = [member.config.provenance["seed"] for member in ensemble]
    assert seeds == [0, 1, 2]
    path = ensemble.save(tmp_path / "ensemble.pth")
    with pytest.raises(ValueError, match="holds an ensemble of 3 models"):
        xcrai.load_model(path)
    assert xcrai.load_model(path, label="all").labels == ensemble.labels
    one = xcrai.load_model(path, label="seed 1")
    filled = test_fields.crai.infill(path)  # a path to an ensemble file: every member
    assert filled.dims[0] == "member" and list(filled.member_label.values) == list(
        seeds and ensemble.labels
    )
    np.testing.assert_array_equal(filled.isel(member=1).values,
                                  test_fields.crai.infill(one).values)  # fmt: skip
    lazy = test_fields.chunk(time=1).crai.infill(ensemble)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, filled.values)


def test_sigma_of_an_ensemble_whose_members_are_kept_advises_their_mean(
    ensemble, test_fields, tmp_path
):
    """The members have no sigma of their own; their mean has their spread for one."""
    path = ensemble.save(tmp_path / "ensemble.pth")
    for model in (path, ensemble, list(ensemble)):
        with pytest.raises(ValueError, match=r"^sigma: .* pass members='mean'") as error:
            test_fields.crai.infill(model, sigma=True)
        assert "xcrai infill --members mean" in str(error.value)
    followed = test_fields.crai.infill(path, sigma=True, members="mean")  # the advice works
    sigma = followed.zg_sigma.values[np.isnan(test_fields.values)]
    assert np.isfinite(sigma).mean() > 0.5 and (sigma[np.isfinite(sigma)] > 0).all()


def test_ensembles_and_crai_labels_share_the_member_layout(ensemble, hadcrut, tmp_path):
    """An ensemble from fit and a multi-label CRAI checkpoint: the same dims, coordinates
    and attributes, only the labels differ."""
    first = torch.load(DATA / "minimum-1.inp.pth", map_location="cpu", weights_only=True)
    crai = tmp_path / "two-labels.pth"
    torch.save({"labels": ["10", "20"], "10": first["10"], "20": first["10"]}, crai)
    a = hadcrut.tas.crai.infill(xcrai.load_model(crai, label="all"), padding="zeros")
    b = open_zg("zg_test.nc").crai.infill(ensemble)
    for result in (a, b):
        assert result.dims[0] == "member"
        assert set(result.coords) >= {"member", "member_label"}
        assert result.member.attrs == {"standard_name": "realization"}
        assert result.member_label.dims == ("member",)
        np.testing.assert_array_equal(result.member.values, np.arange(result.sizes["member"]))


def test_the_mean_of_members_and_their_spread(ensemble, test_fields):
    members = test_fields.crai.infill(ensemble)
    mean = test_fields.crai.infill(ensemble, members="mean", return_output=True)
    holes = np.isnan(test_fields.values)
    assert mean.zg.dims == test_fields.dims
    np.testing.assert_array_equal(mean.zg.values[~holes], test_fields.values[~holes])
    np.testing.assert_allclose(mean.zg.values[holes], members.mean("member").values[holes],
                               rtol=1e-6)  # fmt: skip
    # beyond the network's reach the members all hold the fill value: no σ, not σ = 0
    unreached = mean.zg_flag.values == -1
    assert unreached.any() and np.isnan(mean.zg_sigma.values[unreached]).all()
    reached = holes & ~unreached
    spread = members.std("member").values[reached]
    np.testing.assert_allclose(mean.zg_sigma.values[reached], spread, rtol=1e-4, atol=1e-4)
    assert (mean.zg_sigma.values[reached] > 0).all()
    assert (mean.zg_sigma.values[~holes] == 0).all()
    assert "(the mean of the 3 members above)" in mean.attrs["history"]


def test_a_mean_of_one_model_is_refused(sigma_model, test_fields, tmp_path, capsys):
    for one in (sigma_model, [sigma_model]):  # a list of one is no ensemble either
        with pytest.raises(ValueError, match=r"members: 'mean' averages the members of an"):
            test_fields.crai.infill(one, members="mean")
    from xcrai.cli import main

    data, model = tmp_path / "test.nc", sigma_model.save(tmp_path / "one.pth")
    test_fields.to_dataset().to_netcdf(data)
    out = tmp_path / "out.nc"
    assert main(["infill", str(data), "-m", str(model), "--members", "mean", "-o", str(out)]) == 2
    assert "members: 'mean' averages the members of an ensemble, but one.pth" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def test_a_mean_of_members_with_and_without_sigma_says_whose_sigma_it_is(
    sigma_model, masks, test_fields
):
    plain = open_zg("zg_train.nc").crai.fit(masks, iterations=2, **TINY)
    with pytest.warns(UserWarning, match=r"sigma: only 1 of the 2 members have a sigma") as caught:
        mixed = test_fields.crai.infill([sigma_model, plain], members="mean", sigma=True)
    assert caught[0].filename == __file__
    spread = test_fields.crai.infill([sigma_model, plain]).std("member")
    reached = np.isnan(test_fields.values) & np.isfinite(mixed.zg_sigma.values)
    assert reached.sum() > 0.5 * np.isnan(test_fields.values).sum()  # not vacuous
    np.testing.assert_allclose(mixed.zg_sigma.values[reached], spread.values[reached], atol=1e-3)


def test_validation_fields_without_holes_leave_sigma_uncalibrated_and_say_so(masks):
    train = open_zg("zg_train.nc")
    seeing = masks.copy(data=masks.values.copy())
    seeing[0] = 1  # the first mask hides nothing: the one validation field is all seen
    with pytest.warns(UserWarning, match="validation: the masks hide no point") as caught:
        model = train.isel(time=slice(1, None)).crai.fit(
            seeing, uncertainty=True, iterations=3, validation=train.isel(time=[0]), **TINY
        )
    assert model.config.sigma_scale == 1.0  # not 0, which made every σ 0
    assert caught[0].filename == __file__


def test_sigma_is_calibrated_on_the_validation_fields(masks):
    """fit scales σ so that on the validation pairs (held-out fields, each hidden by mask
    ``i % M``), which it never trained on, the standardised errors have a mean square of 1."""
    train = open_zg("zg_train.nc")
    model = train.crai.fit(masks, uncertainty=True, iterations=30, validation=0.25, **TINY)
    assert model.config.sigma_scale != 1.0
    n = round(0.25 * train.sizes["time"])  # the last 4 of the 18 fields
    held = train.isel(time=slice(-n, None))
    hidden = held.where(masks.isel(time=[i % masks.sizes["time"] for i in range(n)]).values > 0)
    out = hidden.crai.infill(model, sigma=True)
    holes = np.isnan(hidden.values)
    z2 = ((out.zg.values - held.values)[holes] / out.zg_sigma.values[holes]) ** 2
    assert np.mean(z2) == pytest.approx(1.0, rel=1e-3)


def test_command_line_trains_and_infills_ensembles_and_sigma(masks, test_fields, tmp_path, capsys):
    from xcrai.cli import main

    data, mask_file = tmp_path / "train.nc", tmp_path / "masks.nc"
    open_zg("zg_train.nc").to_dataset().to_netcdf(data)
    masks.to_dataset().to_netcdf(mask_file)
    test = tmp_path / "test.nc"
    test_fields.to_dataset().to_netcdf(test)
    common = ["--iterations", "4", "--batch-size", "4", "--n-filters", "4", "--depth", "2",
              "--threads", "1", "--no-progress"]  # fmt: skip
    members = tmp_path / "members.pth"
    fit = ["fit", str(data), "--masks", str(mask_file), *common]
    assert main([*fit, "--ensemble", "2", "--uncertainty", "-o", str(members)]) == 0
    ensemble = xcrai.load_model(members, label="all")
    assert ensemble.labels == ("seed 0", "seed 1") and all(m.config.uncertainty for m in ensemble)
    out = tmp_path / "mean.nc"
    infill = ["infill", str(test), "-m", str(members), "--no-progress"]
    capsys.readouterr()
    assert main([*infill, "--members", "mean", "--sigma", "--flags", "-o", str(out)]) == 0
    expected = test_fields.crai.infill(ensemble, members="mean", sigma=True)
    with xr.open_dataset(out) as written:
        np.testing.assert_array_equal(written.zg.values, expected.zg.values)
        np.testing.assert_array_equal(written.zg_sigma.values, expected.zg_sigma.values)
        assert "member" not in written.dims
        unreached = int((written.zg_flag == -1).sum())
    # the blocks count each member's unreachable holes; the file flags each point once
    said = capsys.readouterr().err
    assert f"{2 * unreached} hole point(s) are beyond" in said
    assert "(counted in each of the 2 members averaged)" in said
    kept = tmp_path / "kept.nc"
    assert main([*infill, "--sigma", "-o", str(kept)]) == 0
    with xr.open_dataset(kept) as written:
        assert written.zg_sigma.dims[0] == "member" and written.sizes["member"] == 2
