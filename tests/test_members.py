"""Ensembles as a ``member`` dimension: every label of a multi-label CRAI checkpoint, or a
list of models, on the real HadCRUT4 sample."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcrai

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def two_labels(tmp_path_factory) -> Path:
    """A CRAI checkpoint with two labels, in CRAI's layout, from two real CRAI checkpoints
    of one architecture (minimum-1, label "10", and plain-current-format, label "20")."""
    first = torch.load(DATA / "minimum-1.inp.pth", map_location="cpu", weights_only=True)
    second = torch.load(
        DATA / "plain-current-format" / "model.pth", map_location="cpu", weights_only=True
    )
    path = tmp_path_factory.mktemp("members") / "two-labels.pth"
    torch.save(
        {"labels": ["10", "20"], "10": first["10"], "20": second["20"],
         "train_stats": {"mean": [], "std": []}},
        path,
    )  # fmt: skip
    return path


def quiet_infill(data, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xcrai.UnreachableWarning)
        return data.crai.infill(model, **kwargs)


def test_every_label_becomes_a_member(hadcrut, two_labels):
    ensemble = xcrai.load_model(two_labels, label="all")
    assert isinstance(ensemble, xcrai.Ensemble) and ensemble.labels == ("10", "20")
    filled = quiet_infill(hadcrut.tas, ensemble, padding="zeros")
    assert filled.dims[0] == "member" and filled.sizes["member"] == 2
    assert list(filled.member_label.values) == ["10", "20"]
    assert filled.member.attrs["standard_name"] == "realization"
    for i, label in enumerate(["10", "20"]):
        alone = quiet_infill(hadcrut.tas, xcrai.load_model(two_labels, label=label),
                             padding="zeros")  # fmt: skip
        np.testing.assert_array_equal(filled.isel(member=i).values, alone.values)
        assert f"(member {label})" in filled.attrs["history"]
    assert not np.array_equal(filled.isel(member=0).values, filled.isel(member=1).values)
    spread = filled.std("member")  # the README's reduction
    assert float(spread.max()) > 0 and float(spread.where(np.isfinite(hadcrut.tas)).max()) == 0


def test_a_list_of_models_gives_the_same_layout(hadcrut, two_labels):
    ensemble = quiet_infill(hadcrut, xcrai.load_model(two_labels, label="all"),
                            padding="zeros", return_output=True)  # fmt: skip
    models = [DATA / "minimum-1.inp.pth", DATA / "plain-current-format" / "model.pth"]
    listed = quiet_infill(hadcrut, models, padding="zeros", return_output=True)
    for name in ("tas", "tas_output", "tas_flag"):
        assert listed[name].dims == ensemble[name].dims
        np.testing.assert_array_equal(listed[name].values, ensemble[name].values)
    xr.testing.assert_identical(listed.member_label, ensemble.member_label)


def test_members_are_lazy_and_chunking_invariant(hadcrut_series, two_labels, tmp_path):
    ensemble = xcrai.load_model(two_labels, label="all", padding="zeros")
    eager = quiet_infill(hadcrut_series, ensemble)
    lazy = quiet_infill(hadcrut_series.chunk(time=5), ensemble)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)
    path = tmp_path / "members.nc"
    lazy.to_dataset().to_netcdf(path)
    with xr.open_dataset(path) as back:
        assert list(back.member_label.values) == ["10", "20"]
        np.testing.assert_array_equal(back.tas.values, eager.values)


def test_a_label_must_be_one_of_the_files_labels(two_labels):
    # the checkpoint's other keys ("labels", "train_stats") are no labels
    for wrong in ("labels", "30"):
        with pytest.raises(ValueError, match=r"label: expected one of \['10', '20'\]"):
            xcrai.load_model(two_labels, label=wrong)


def test_label_all_needs_several_labels(two_labels, tmp_path):
    with pytest.raises(ValueError, match=r"label: 'all' .* holds one, '10'"):
        xcrai.load_model(DATA / "minimum-1.inp.pth", label="all")
    own = xcrai.load_model(two_labels, label="10").save(tmp_path / "own.pth")
    with pytest.raises(ValueError, match=r"label: 'all' .* is an xcrai model file"):
        xcrai.load_model(own, label="all")
    with pytest.raises(ValueError, match=r"model: expected a model or a non-empty list"):
        xr.DataArray(np.zeros((2, 2)), dims=("lat", "lon")).crai.infill([])


def test_command_line_members(hadcrut, two_labels, tmp_path, capsys):
    from xcrai.cli import main

    data = tmp_path / "in.nc"
    hadcrut.to_netcdf(data)
    out = tmp_path / "members.nc"
    args = ["infill", str(data), "--padding", "zeros", "--var", "tas"]
    assert main([*args, "-m", str(two_labels), "--label", "all", "-o", str(out)]) == 0
    listed = tmp_path / "listed.nc"
    models = ["-m", str(DATA / "minimum-1.inp.pth"),
              "-m", str(DATA / "plain-current-format" / "model.pth")]  # fmt: skip
    assert main([*args, *models, "-o", str(listed)]) == 0
    expected = quiet_infill(hadcrut.tas, xcrai.load_model(two_labels, label="all"),
                            padding="zeros")  # fmt: skip
    for path in (out, listed):
        with xr.open_dataset(path) as written:
            assert list(written.member_label.values) == ["10", "20"]
            np.testing.assert_array_equal(written.tas.values, expected.values)
            assert written.attrs["history"].count("% of points infilled (member") == 2
    capsys.readouterr()
    bad = tmp_path / "bad.nc"
    assert (
        main([*args, "-m", str(DATA / "minimum-1.inp.pth"), "--label", "all", "-o", str(bad)]) == 2
    )
    assert "label: 'all' asks for every label" in capsys.readouterr().err
    assert not bad.exists()


def test_an_ensemble_shows_its_members_in_jupyter(two_labels):
    ensemble = xcrai.load_model(two_labels, label="all")
    page = ensemble._repr_html_()
    assert "Ensemble of 2 models" in page
    assert "member 10" in page and "member 20" in page and "two-labels.pth" in page
    assert repr(ensemble) == "Ensemble(2 members: ['10', '20'])"
