"""Training models of several variables: ds.crai.fit(masks, inputs=[...], target=...) on the
shipped fitbench data (500 hPa heights, HadCRUT4 masks), with second variables derived from
the heights (see ``_with_derived``), then ds.crai.infill with the trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import FITBENCH, open_zg, smoothed

import xcrai
from xcrai.nn import UNetConfig

TINY = {"n_filters": 4, "depth": 2}
#: weights compared bit for bit: a fixed CPU thread count (see tests/test_fit.py)
OPTIONS = dict(batch_size=4, architecture=TINY, progress=False, threads=1)
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


def _with_derived(zg: xr.DataArray) -> xr.Dataset:
    """``zg`` with two variables derived from it: ``zg_prev``, the field one time step
    earlier (the first step takes the last's), in other units and offset (km + 1), and
    ``zg_smooth``, a 3-point running mean of ``zg`` along longitude (periodic)."""
    prev = zg.roll(time=1, roll_coords=False) / 1000 + 1
    prev.attrs = {"units": "km"}
    return xr.Dataset({"zg": zg, "zg_prev": prev, "zg_smooth": smoothed(zg)})


@pytest.fixture(scope="module")
def train() -> xr.Dataset:
    return _with_derived(open_zg("zg_train.nc"))


@pytest.fixture(scope="module")
def masks() -> xr.DataArray:
    return open_zg("zg_masks.nc")


@pytest.fixture(scope="module")
def test_data() -> xr.Dataset:
    """The test fields of zg (with HadCRUT4 holes) and the complete derived variables."""
    derived = _with_derived(open_zg("zg_truth.nc"))
    return derived.assign(zg=open_zg("zg_test.nc"))


@pytest.fixture(scope="module")
def several(train, masks) -> xcrai.CraiModel:
    """zg infilled from zg and zg_prev, each with holes of its own."""
    return train.crai.fit(masks, inputs=["zg", "zg_prev"], validation=0.2, iterations=12,
                          lr=2e-3, log_every=4, **OPTIONS)  # fmt: skip


@pytest.fixture(scope="module")
def predicting(train, masks) -> xcrai.CraiModel:
    """zg_smooth predicted from zg, with a time context."""
    return train.crai.fit(masks, inputs=["zg"], target="zg_smooth", validation=0.2,
                          iterations=12, lr=2e-3, log_every=4, time_context=(1, 0),
                          **OPTIONS)  # fmt: skip


def _same_weights(a: xcrai.CraiModel, b: xcrai.CraiModel) -> bool:
    x, y = a.net.state_dict(), b.net.state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _saved(config: xcrai.ModelConfig) -> dict:
    """The configuration as saved (the file's name goes into its provenance)."""
    d = config.to_dict()
    d["provenance"] = {k: v for k, v in d["provenance"].items() if k != "file"}
    return d


def test_several_inputs_fit_save_load_infill(several, train, test_data, tmp_path):
    config = several.config
    assert config.inputs == ("zg", "zg_prev") and config.target is None
    assert config.variable == "zg" and config.output_variable == "zg"
    assert config.architecture.in_channels == 2 and config.mean is None
    # each variable normalised by its own statistics over the training part (80 %)
    part = train.isel(time=slice(0, 14))
    for (mean, std), name in zip(config.stats, ["zg", "zg_prev"], strict=True):
        values = part[name].values.astype(np.float64)
        assert mean == pytest.approx(values.mean(), rel=1e-6)
        assert std == pytest.approx(values.std(), rel=1e-6)
    assert config.stats[1][1] < 1  # km
    assert list(several.history.iteration.values) == [4, 8, 12]
    assert np.isfinite(several.history.val_hole_rmse).all()
    model = xcrai.load_model(several.save(tmp_path / "several.pth"))
    assert _saved(model.config) == _saved(config) and _same_weights(model, several)

    filled = test_data.crai.infill(model, progress=False)
    holes = np.isnan(test_data.zg.values)
    assert holes.any() and np.isfinite(filled.zg.values).all()
    np.testing.assert_array_equal(filled.zg.values[~holes], test_data.zg.values[~holes])
    xr.testing.assert_identical(filled.zg_prev, test_data.zg_prev)
    lazy = test_data.chunk(time=1).crai.infill(model)
    assert lazy.zg.chunks is not None  # nothing computed yet
    np.testing.assert_array_equal(lazy.zg.values, filled.zg.values)


def test_a_target_is_predicted_from_the_inputs(predicting, test_data, tmp_path):
    config = predicting.config
    assert config.inputs == ("zg",) and config.target == "zg_smooth"
    assert config.output_variable == "zg_smooth" and len(config.stats) == 2
    assert config.architecture.in_channels == 2  # one input, a window of 2 steps
    history = predicting.history
    # no value of the target is ever shown: all of it is hole, none of it valid
    assert (history.train_valid == 0).all() and (history.val_valid == 0).all()
    assert (history.train_hole > 0).all()
    model = xcrai.load_model(predicting.save(tmp_path / "target.pth"))
    assert _saved(model.config) == _saved(config) and _same_weights(model, predicting)

    data = test_data.drop_vars("zg_smooth")
    out = data.crai.infill(model, return_output=True, progress=False)
    # predicted everywhere (-1: beyond this tiny network's reach of the observed zg)
    assert set(np.unique(out.zg_smooth_flag)) <= {0, -1} and (out.zg_smooth_flag == 0).any()
    lazy = data.chunk(time=1).crai.infill(model)
    assert lazy.zg_smooth.chunks is not None
    np.testing.assert_array_equal(lazy.zg_smooth.values, out.zg_smooth.values)


def test_the_same_seed_gives_the_same_weights(train, masks, several):
    again = train.crai.fit(masks, inputs=["zg", "zg_prev"], validation=0.2, iterations=12,
                           lr=2e-3, log_every=4, **OPTIONS)  # fmt: skip
    assert _same_weights(again, several)
    xr.testing.assert_equal(again.history, several.history)
    other = train.crai.fit(masks, inputs=["zg", "zg_prev"], validation=0.2, iterations=12,
                           lr=2e-3, log_every=4, seed=1, **OPTIONS)  # fmt: skip
    assert not _same_weights(other, several)


def test_each_input_has_its_own_masks(train, masks, several):
    """A dict of masks by input; the same masks for each equal one DataArray for all."""
    options = dict(inputs=["zg", "zg_prev"], validation=0.2, iterations=12, lr=2e-3,
                   log_every=4, **OPTIONS)  # fmt: skip
    same = train.crai.fit({"zg": masks, "zg_prev": masks}, **options)
    assert _same_weights(same, several)
    other = train.crai.fit({"zg": masks, "zg_prev": masks[::-1]}, **options)
    assert not _same_weights(other, several)


def test_a_target_that_is_an_input_is_infilled_first(train, masks):
    model = train.crai.fit(masks, inputs=["zg_prev", "zg"], target="zg", iterations=2,
                           validation=None, **OPTIONS)  # fmt: skip
    assert model.config.inputs == ("zg", "zg_prev") and model.config.target is None


def test_one_input_is_the_single_variable_fit(train, masks):
    options = dict(validation=0.2, iterations=4, log_every=2, **OPTIONS)
    one = train.crai.fit(masks, inputs=["zg"], **options)
    plain = train.zg.crai.fit(masks, **options)
    assert one.config.inputs is None and one.config == plain.config
    assert _same_weights(one, plain)


def test_lazy_training_data_gives_the_same_weights(train, masks, several):
    lazy = train.chunk(time=5).crai.fit(masks, inputs=["zg", "zg_prev"], validation=0.2,
                                        iterations=12, lr=2e-3, log_every=4,
                                        **OPTIONS)  # fmt: skip
    assert _same_weights(lazy, several)


def test_resume_continues_only_the_same_variables(train, masks, tmp_path):
    options = dict(target="zg_smooth", validation=0.2, log_every=2, lr_schedule="constant",
                   **OPTIONS)  # fmt: skip
    whole = train.crai.fit(masks, inputs=["zg", "zg_prev"], iterations=6, **options)
    train.crai.fit(masks, inputs=["zg", "zg_prev"], iterations=3, checkpoint_dir=tmp_path,
                   **options)  # fmt: skip
    resumed = train.crai.fit(masks, inputs=["zg", "zg_prev"], iterations=6, resume=tmp_path,
                             **options)  # fmt: skip
    assert _same_weights(whole, resumed)
    with pytest.raises(
        ValueError, match=r"resume: .* other data and validation and variables than"
    ):
        train.crai.fit(masks, inputs=["zg_prev", "zg"], iterations=6, resume=tmp_path,
                       **options)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": ["zg", "psl"]}, r"inputs: \['psl'\] not in the dataset"),
        ({"inputs": ["zg", "zg_prev", "zg"]}, r"inputs: \['zg'\] given more than once"),
        ({"inputs": ["zg"], "target": "vas"}, r"inputs: \['vas'\] not in the dataset"),
        ({}, r"inputs: the dataset has gridded variables \['zg', 'zg_prev', 'zg_smooth'\]"),
        ({"inputs": []}, "inputs: expected a list of variable names"),
    ],
)
def test_bad_variables(train, masks, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.crai.fit(masks, iterations=1, **kwargs)


def test_bad_masks_and_validation(train, masks):
    with pytest.raises(ValueError, match=r"masks: no coverage patterns for the inputs \['zg_p"):
        train.crai.fit({"zg": masks}, inputs=["zg", "zg_prev"], iterations=1)
    with pytest.raises(ValueError, match=r"masks: \['zg_smooth'\] are not the target, which"):
        train.crai.fit({"zg": masks, "zg_smooth": masks}, inputs=["zg"], target="zg_smooth",
                       iterations=1)  # fmt: skip
    with pytest.raises(ValueError, match=r"validation: the Dataset lacks \['zg_prev'\]"):
        train.crai.fit(masks, inputs=["zg", "zg_prev"], validation=train[["zg"]], iterations=1)
    with pytest.raises(ValueError, match="architecture: expected 2 input channels"):
        train.crai.fit(masks, inputs=["zg", "zg_prev"], iterations=1,
                       architecture=UNetConfig.from_n_filters(4, 2, in_channels=3))  # fmt: skip


def test_batches_stack_each_input_window_in_turn(train, masks):
    """The network input is each input variable's window of steps in turn (CRAI's channel
    order), each normalised by its own statistics and masked by its own masks; one input
    is the same layout, a variable of one."""
    from xcrai.train.loop import TrainConfig, Variables, make_batch
    from xcrai.train.losses import LossWeights

    config = TrainConfig(iterations=1, batch_size=2, lr=1e-3, finetune_iterations=0,
                         lr_finetune=1e-4, loss=LossWeights(), padding="global",
                         time_context=(1, 1), mean=3.0, std=40.0, seed=0, log_every=1,
                         augment=True)  # fmt: skip
    zg, prev = train.zg.values[None], train.zg_prev.values[None]
    observed = masks.values.astype(bool)
    valid = np.ones(zg.shape[-2:], bool)
    samples, mask_index = np.array([0, 7]), np.array([5, 9])
    shifts, flips = np.array([0, 10]), np.array([False, True])
    one = Variables.one(observed, valid, 3.0, 40.0)
    x, m, gt, _, shown = make_batch(zg[:, None], one, samples, mask_index[None], config,
                                    shifts, flips)  # fmt: skip
    assert x.shape == (2, 3, 73, 144)
    window = (zg[0, [6, 7, 8]] - np.float32(3.0)) / np.float32(40.0)  # sample 7's window
    window = np.roll(window, 10, axis=-1)[:, ::-1]  # rolled, then mirrored
    np.testing.assert_array_equal(m[1].numpy(), observed[[8, 9, 10]])  # masks as they are
    np.testing.assert_array_equal(x[1].numpy(), np.where(m[1], window, 0))
    np.testing.assert_array_equal(gt[1, 0].numpy(), window[1])
    assert torch.equal(shown, m[:, 1:2])  # the centre step's mask

    two = Variables([observed, observed[::-1]], np.stack([valid, valid]), 0,
                           ((3.0, 40.0), (1.0, 0.05)))  # fmt: skip
    x, m, gt, _, shown = make_batch(np.stack([zg, prev], axis=1), two, samples,
                                    np.stack([mask_index, mask_index]), config)  # fmt: skip
    assert x.shape == (2, 6, 73, 144)
    np.testing.assert_array_equal(m[:, :3].numpy(), observed[[[4, 5, 6], [8, 9, 10]]])
    np.testing.assert_array_equal(m[:, 3:].numpy(), observed[::-1][[[4, 5, 6], [8, 9, 10]]])
    expected = (prev[0, [6, 7, 8]] - np.float32(1.0)) / np.float32(0.05)  # sample 7's window
    np.testing.assert_array_equal(x[1, 3:].numpy(), np.where(m[1, 3:], expected, 0))
    np.testing.assert_array_equal(gt[1, 0].numpy(), (zg[0, 7] - np.float32(3)) / np.float32(40))
    assert torch.equal(shown, m[:, 1:2])
    target = Variables([observed], np.stack([valid, valid]), 1, ((3.0, 40.0), (1.0, 0.05)))
    *_, shown = make_batch(np.stack([zg, prev], axis=1), target, samples, mask_index[None],
                           config)  # fmt: skip
    assert not shown.any()  # a target is never shown


def _cli_files(tmp_path: Path) -> tuple[str, str]:
    data = tmp_path / "train.nc"
    _with_derived(open_zg("zg_train.nc")).to_netcdf(data)
    return str(data), str(FITBENCH / "zg_masks.nc")


def test_cli_fit_of_several_variables_and_a_target(tmp_path):
    from xcrai.cli import main

    data, masks = _cli_files(tmp_path)
    quick = ["--iterations", "2", "--batch-size", "4", "--n-filters", "4", "--depth", "2",
             "--no-progress", "--threads", "1"]  # fmt: skip
    model = tmp_path / "several.pth"
    validation = tmp_path / "val.nc"
    _with_derived(open_zg("zg_val.nc")).to_netcdf(validation)
    assert main(["fit", data, "--masks", masks, "-o", str(model), "--inputs", "zg,zg_prev",
                 "--validation", str(validation), "--log-every", "1", *quick]) == 0  # fmt: skip
    loaded = xcrai.load_model(model)
    assert loaded.config.inputs == ("zg", "zg_prev") and loaded.config.target is None
    assert np.isfinite(loaded.history.val_loss).all()
    target = tmp_path / "target.pth"
    assert main(["fit", data, "--masks", masks, "-o", str(target), "--inputs", "zg",
                 "--target", "zg_smooth", *quick]) == 0  # fmt: skip
    config = xcrai.load_model(target).config
    assert config.inputs == ("zg",) and config.target == "zg_smooth"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--inputs", "zg,psl"], r"error: inputs: \['psl'\] not in "),
        (["--inputs", "zg,zg_prev,zg"], r"error: inputs: \['zg'\] given more than once"),
        (["--inputs", "zg", "--target", "vas"], r"error: inputs: \['vas'\] not in "),
        (["--inputs", "zg,zg_prev", "--var", "zg"], "error: var: give the inputs with"),
        (["--inputs", "zg,", "--target", "zg_prev"], "error: inputs: expected comma-separated"),
    ],
)
def test_cli_fit_refuses_bad_variables(tmp_path, capsys, extra, message):
    from xcrai.cli import main

    data, masks = _cli_files(tmp_path)
    model = tmp_path / "model.pth"
    checkpoints = tmp_path / "checkpoints"
    assert main(["fit", data, "--masks", masks, "-o", str(model), "--iterations", "1",
                 "--checkpoint-dir", str(checkpoints), "--no-progress", *extra]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re_search(message, err), err
    assert not model.exists() and not checkpoints.exists()


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
