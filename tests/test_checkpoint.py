"""xcrai.checkpoint: CRAI layouts, xcrai's own format, safe and clear loading."""

from __future__ import annotations

import hashlib
import pickle
import re

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import DATA

import xcrai
from xcrai.nn.unet import infer_architecture


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _crai_entry(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint, checkpoint[checkpoint["labels"][-1]]


def test_demo_architecture_is_inferred(demo_model):
    arch = demo_model.config.architecture
    assert [layer.out_channels for layer in arch.encoder] == [18, 36, 72]
    assert [layer.kernel_size for layer in arch.encoder] == [7, 5, 5]
    assert [layer.batch_norm for layer in arch.encoder] == [False, True, True]
    assert [layer.bias for layer in arch.decoder] == [False, False, True]
    assert demo_model.config.time_context == (0, 0)
    assert demo_model.config.mean is None


def test_conv_factor_family_with_pooling_layers_is_inferred(memory_model):
    arch = memory_model.config.architecture
    assert arch.in_channels == 5
    assert [layer.kernel_size for layer in arch.encoder] == [7, 3, 3]
    assert all(layer.batch_norm for layer in arch.encoder)
    assert memory_model.config.time_context == (3, 1)


def test_older_layout_and_module_prefix_give_the_same_model(tmp_path, minimum_model):
    _, entry = _crai_entry(DATA / "minimum-1.inp.pth")
    older = {
        "n_iter": entry["n_iter"],
        "model": {f"module.{k}": v for k, v in entry["model"].items()},
        "optimizer": entry["optimizer"],
    }
    path = tmp_path / "older.pth"
    torch.save(older, path)
    model = xcrai.load_model(path)
    for key, value in minimum_model.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value), key


def test_native_round_trip_is_exact(tmp_path, memory_model, hadcrut_series):
    path = memory_model.save(tmp_path / "memory.pth")
    again = xcrai.load_model(path)  # no extra arguments needed
    assert again.config.architecture == memory_model.config.architecture
    assert again.config.time_context == (3, 1)
    for key, value in memory_model.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[key], value), key
    a = hadcrut_series.crai.infill(memory_model, padding="global")
    b = hadcrut_series.crai.infill(again, padding="global")
    np.testing.assert_array_equal(a.values, b.values)
    assert again.sha256 == _sha(path)
    assert again.name == "memory.pth"


def test_a_model_saved_twice_is_the_same_file(tmp_path, demo_model):
    """The bytes of a saved model depend on the model alone, not on the file's name or the
    process that wrote it: its sha256 (in history lines, for the zoo) is reproducible."""
    first = demo_model.save(tmp_path / "a.pth")
    second = demo_model.save(tmp_path / "b.pth")
    assert first.read_bytes() == second.read_bytes()
    loaded = xcrai.load_model(first)  # its provenance now names the file
    again = loaded.save(tmp_path / "c.pth").read_bytes()
    assert loaded.save(first).read_bytes() == again  # onto the file it came from, too
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match=r"path: .*folder"):
        demo_model.save(tmp_path / "folder")


def test_weights_that_do_not_fit_the_network_name_the_file(tmp_path, demo_model):
    path = demo_model.save(tmp_path / "m.pth")
    checkpoint = torch.load(path, weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = torch.zeros(3, 3)
    torch.save(checkpoint, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"model: the weights in .*shape.pth' do not fit .*size"):
        xcrai.load_model(tmp_path / "shape.pth")
    del checkpoint["state_dict"][first]
    torch.save(checkpoint, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing.pth' do not fit its network \(Missing key"):
        xcrai.load_model(tmp_path / "missing.pth")


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("mean", float("nan"), "its mean: expected a finite number, got nan"),
        ("std", 0.0, "its std: expected a finite number > 0, got 0.0"),
        ("padding", "bogus", "its padding: expected one of"),
    ],
)
def test_a_damaged_configuration_is_refused_at_load(tmp_path, demo_model, key, value, said):
    path = demo_model.save(tmp_path / "m.pth")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"] = {**checkpoint["config"], "mean": 1.0, "std": 2.0, key: value}
    torch.save(checkpoint, tmp_path / "damaged.pth")
    with pytest.raises(ValueError, match=r"damaged.pth' has a configuration xcrai cannot read"):
        xcrai.load_model(tmp_path / "damaged.pth")
    with pytest.raises(ValueError, match=re.escape(said)):
        xcrai.load_model(tmp_path / "damaged.pth")


def test_native_file_keeps_padding_grid_normalisation_and_provenance(tmp_path, demo_model):
    from dataclasses import replace

    config = replace(
        demo_model.config,
        padding="global",
        mean=1.5,
        std=2.0,
        variable="tas",
        units="K",
        grid={"shape": [72, 72], "lat": [-88.75, 88.75], "lon": [2.5, 357.5], "periodic": True},
        provenance={**demo_model.config.provenance, "note": "test"},
    )
    model = xcrai.CraiModel(config, demo_model.net.state_dict())
    again = xcrai.load_model(model.save(tmp_path / "m.pth"))
    for field in ("padding", "mean", "std", "variable", "units", "grid", "architecture"):
        assert getattr(again.config, field) == getattr(config, field), field
    assert again.config.provenance["note"] == "test"
    assert again.config.provenance["xcrai_version"] == xcrai.__version__


def test_numpy_train_stats_are_allow_listed(tmp_path, hadcrut):
    checkpoint, _ = _crai_entry(DATA / "minimum-1.inp.pth")
    checkpoint["train_stats"] = {"mean": [np.float32(0.25)], "std": [np.float32(2.0)]}
    path = tmp_path / "normalised.pth"
    torch.save(checkpoint, path)
    model = xcrai.load_model(path)
    assert model.config.mean == 0.25 and model.config.std == 2.0
    plain = xcrai.load_model(DATA / "minimum-1.inp.pth")
    # (x - mean) / std through the network, then back: differs from the plain model
    a = hadcrut.tas.crai.infill(model, padding="zeros")
    b = hadcrut.tas.crai.infill(plain, padding="zeros")
    assert not np.allclose(a.values, b.values)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"labels": ["1"], "1": {"model": {}, "payload": _Evil()}}, f)
    before = _sha(path)
    with pytest.raises(ValueError, match=r"model: .* not a readable PyTorch checkpoint") as error:
        xcrai.load_model(path)
    assert "weights_only=False" not in str(error.value)  # no advice to load unsafely
    assert _sha(path) == before


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="model: no checkpoint file"):
        xcrai.load_model(tmp_path / "nope.pth")


def test_a_netcdf_file_is_not_a_checkpoint():
    with pytest.raises(ValueError, match=r"model: .* is a netCDF \(or HDF5\) file, not a model"):
        xcrai.load_model(xcrai.data.hadcrut4_sample())


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes((DATA / "minimum-1.inp.pth").read_bytes()[:50_000])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        xcrai.load_model(path)


def test_pickled_dict_without_model_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no CRAI or xcrai checkpoint"):
        xcrai.load_model(path)


def test_wrong_type_of_source():
    with pytest.raises(TypeError, match="model: expected a path"):
        xcrai.load_model(42)


def test_unsupported_crai_layers_are_named(minimum_model):
    state = {**minimum_model.net.state_dict(), "lstm.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="does not support"):
        infer_architecture(state)


def test_time_context_must_fit_the_channels():
    with pytest.raises(ValueError, match=r"time_context: the model reads 5 time step\(s\)"):
        xcrai.load_model(DATA / "channel-memory.inp.pth", time_context=(2, 1))
    with pytest.raises(ValueError, match="time_context: expected a pair"):
        xcrai.load_model(DATA / "channel-memory.inp.pth", time_context="3,1")


def test_models_pickle_for_dask_workers(demo_model):
    again = pickle.loads(pickle.dumps(demo_model))
    assert again.sha256 == demo_model.sha256
    for key, value in demo_model.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[key], value)


@pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")
def test_current_crai_checkpoint_without_normalisation():
    """Current CRAI saves train_stats={'mean': [], 'std': []} when it trains without
    normalisation: no statistics, not "0 variables"; the model reproduces CRAI's output."""
    folder = DATA / "plain-current-format"
    model = xcrai.load_model(folder / "model.pth", padding="zeros")
    assert model.config.mean is None and model.config.std is None
    with xr.open_dataset(folder / "tas_ncl12_masked.nc") as source:
        masked = source.tas.load()
    with xr.open_dataset(folder / "plain-current-format_infilled.nc") as crai:
        expected = crai.tas.load()
    filled = masked.crai.infill(model)
    np.testing.assert_allclose(filled.values, expected.values, rtol=0, atol=1e-6)  # 1.5e-8 K
