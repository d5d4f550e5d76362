"""Training every network fit offers (``fit(network=...)``: CRAI's U-Net, ConvLSTM, TrajGRU
and attention networks) on the shipped fitbench data (500 hPa heights, HadCRUT4 masks),
with a second variable derived from the heights for the networks of several inputs:
``zg_smooth``, a 3-point running mean of ``zg`` along longitude (periodic). Then saving,
loading and infilling lazily; a ConvLSTM run killed (SIGKILL, a real process) and resumed;
and fine-tuning one of CRAI's ConvLSTM checkpoints (``../shared/data/crai/ext``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import FITBENCH, kill_fit_after_a_checkpoint, open_zg, smoothed

import xcrai
from xcrai.nn import DESIGNS, CraiNetConfig, UNetConfig

TINY = {"n_filters": 4, "depth": 2}
#: weights compared bit for bit: a fixed CPU thread count (see tests/test_fit.py)
OPTIONS = dict(batch_size=4, architecture=TINY, progress=False, threads=1, validation=None)
EXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "crai" / "ext"
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")

#: network: (inputs, time context); None inputs: the DataArray zg alone
CASES = {
    "unet": (["zg", "zg_smooth"], (0, 0)),  # several inputs: CRAI's channel infusion
    "convlstm": (None, (1, 1)),
    "trajgru": (None, (1, 1)),
    "attention": (["zg", "zg_smooth"], (0, 0)),
}


def _with_smooth(zg: xr.DataArray) -> xr.Dataset:
    return xr.Dataset({"zg": zg, "zg_smooth": smoothed(zg)})


@pytest.fixture(scope="module")
def train() -> xr.Dataset:
    return _with_smooth(open_zg("zg_train.nc"))


@pytest.fixture(scope="module")
def masks() -> xr.DataArray:
    return open_zg("zg_masks.nc")


def _fit(train: xr.Dataset, masks: xr.DataArray, network: str, **extra):
    inputs, steps = CASES[network]
    options = {**OPTIONS, "network": network, "time_context": steps, **extra}
    if inputs is None:
        return train.zg.crai.fit(masks, **options)
    return train.crai.fit(masks, inputs=inputs, **options)


def test_every_design_is_covered():
    assert set(CASES) == set(DESIGNS)


@pytest.mark.parametrize("network", list(CASES))
def test_each_network_trains_saves_loads_and_infills_lazily(train, masks, network, tmp_path):
    model = _fit(train, masks, network, iterations=3)
    arch = model.config.architecture
    if network == "unet":
        assert isinstance(arch, UNetConfig) and arch.in_channels == 2
    else:
        assert isinstance(arch, CraiNetConfig)
        assert arch.recurrent == {"convlstm": "lstm", "trajgru": "gru"}.get(network)
        assert bool(arch.attention) == (network == "attention")
    history = model.history
    assert np.isfinite(history.train_loss).all()
    path = model.save(tmp_path / f"{network}.pth")
    back = xcrai.load_model(path)
    assert back.config.architecture == arch
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, back.net.state_dict()[k])
    inputs, _ = CASES[network]
    test = _with_smooth(open_zg("zg_test.nc"))
    data = test.zg if inputs is None else test[inputs]
    eager = data.crai.infill(path, progress=False)
    lazy = data.chunk(time=1).crai.infill(path, progress=False)
    other = data.chunk(time=3, lon=72).crai.infill(path, progress=False)
    assert (lazy.chunks if inputs is None else lazy.zg.chunks) is not None  # still lazy
    ref = eager if inputs is None else eager.zg
    for out in (lazy, other):
        got = out if inputs is None else out.zg
        np.testing.assert_array_equal(got.values, ref.values)
    hidden = np.isnan(data.values if inputs is None else data.zg.values)
    assert hidden.any() and np.isfinite(ref.values[hidden]).mean() > 0.5  # infilled
    valid = ~hidden
    np.testing.assert_array_equal(ref.values[valid], test.zg.values[valid])


def test_a_killed_convlstm_run_resumes_to_the_uninterrupted_weights(train, masks, tmp_path):
    """``xcrai fit --network convlstm`` killed (SIGKILL, a real process) after a checkpoint,
    then resumed: the weights of the uninterrupted run."""
    iterations = 120
    kill_fit_after_a_checkpoint(tmp_path, iterations, "--network", "convlstm",
                                "--time-context", "1,1")  # fmt: skip
    options = {**OPTIONS, "iterations": iterations}
    resumed = _fit(train, masks, "convlstm", resume=tmp_path, **options)
    whole = _fit(train, masks, "convlstm", **options)
    state, other = whole.net.state_dict(), resumed.net.state_dict()
    assert state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)
    # resuming as another network is refused, the checkpoint named
    with pytest.raises(ValueError, match=r"resume: .*other architecture"):
        _fit(train, masks, "trajgru", resume=tmp_path, **options)


@pytest.mark.skipif(not EXT.is_dir(), reason="../shared/data/crai/ext is absent")
def test_fine_tuning_a_crai_convlstm_checkpoint(tmp_path):
    """CRAI's ConvLSTM checkpoint (``--lstm-steps 3,1``) fine-tuned on CRAI's own infilled
    fields of its sample (complete, 8 monthly fields on the 72x72 grid) with the masks of
    its input: training starts from its weights (two Adam steps at lr 1e-6 move none by
    more than 1e-5; a fresh network's differ by far more), in its units."""
    crai = xcrai.load_model(EXT / "conv-lstm" / "model.pth", time_context=(3, 1))
    with xr.open_dataset(EXT / "conv-lstm" / "out" / "conv-lstm_infilled.nc") as ds:
        fields = ds.tas.load()
    with xr.open_dataset(EXT / "conv-lstm" / "input" / "tas_ncl12_masked.nc") as ds:
        observed = ds.tas.load()
    options = dict(iterations=2, batch_size=2, progress=False, threads=1, validation=None)
    tuned = fields.crai.fit(observed, init=crai, time_context=(3, 1), lr=1e-6, **options)
    assert tuned.config.architecture == crai.config.architecture
    assert tuned.config.mean is None  # CRAI's model does not normalise: neither does its tuning
    before, after = crai.net.state_dict(), tuned.net.state_dict()
    moved = max(
        float((before[k] - after[k]).abs().max())
        for k in before
        if before[k].is_floating_point() and "running" not in k
    )
    assert 0 < moved < 1e-5
    fresh = fields.crai.fit(observed, network="convlstm", time_context=(3, 1),
                            architecture={"n_filters": 36, "depth": 3}, **options)  # fmt: skip
    assert tuned.config.provenance["init"] == f"model sha256 {crai.sha256}"
    assert fresh.config.provenance["init"] == "kaiming"
    filled = observed.crai.infill(tuned.save(tmp_path / "tuned.pth"), progress=False)
    assert np.isfinite(filled.values).all()
    # the model brings its own network and time context
    with pytest.raises(ValueError, match=r"time_context: the init model reads the steps \(3, 1\)"):
        fields.crai.fit(observed, init=crai, **options)
    with pytest.raises(ValueError, match=r"init: a model to start from brings its own network"):
        fields.crai.fit(observed, init=crai, time_context=(3, 1), network="trajgru", **options)


@pytest.mark.parametrize(
    ("network", "extra", "message"),
    [
        ("convlstm", {}, r"network: a ConvLSTM network runs over a sequence of time steps; "
                         r"give time_context=\(P, F\) with P \+ F >= 1"),
        ("trajgru", {"time_context": (0, 0)}, r"network: a TrajGRU network .* --gru-steps"),
        ("attention", {}, r"network: an attention network .* at least 2 inputs"),
        ("convlstm", {"time_context": (1, 1),
                      "architecture": {"normalization": "window"}},
         r"architecture: the 'convlstm' network .* expected normalization 'crai'"),
        ("resnet", {}, r"network: expected one of \('unet', 'convlstm', 'trajgru', 'attention'\)"),
    ],
)  # fmt: skip
def test_a_network_that_does_not_fit_the_input_is_refused(train, masks, network, extra, message):
    options = {**OPTIONS, "iterations": 1, **extra}
    with pytest.raises(ValueError, match=message):
        train.zg.crai.fit(masks, **{**options, "network": network})


def test_network_and_a_full_configuration_are_not_both_given(train, masks):
    arch = UNetConfig.from_n_filters(4, 2)
    with pytest.raises(ValueError, match=r"network: 'convlstm' is built from the sizes"):
        train.zg.crai.fit(masks, **{**OPTIONS, "architecture": arch, "network": "convlstm"})


def test_init_must_be_a_scheme_or_a_model_file(train, masks, tmp_path):
    with pytest.raises(ValueError, match=r"init: expected one of .* or a model file, got "
                                         r"'kaimin' \(no such file\)"):  # fmt: skip
        train.zg.crai.fit(masks, **{**OPTIONS, "init": "kaimin"})
    with pytest.raises(TypeError, match=r"init: expected one of .*, got int"):
        train.zg.crai.fit(masks, **{**OPTIONS, "init": 3})


def test_init_from_a_model_file_of_other_variables_is_refused(train, masks, tmp_path):
    path = _fit(train, masks, "unet", iterations=1).save(tmp_path / "two.pth")
    with pytest.raises(ValueError, match=r"init: the model reads 2 variable\(s\) \['zg', "
                                         r"'zg_smooth'\], the data gives 1"):  # fmt: skip
        train.zg.crai.fit(masks, **{**OPTIONS, "iterations": 1, "init": str(path),
                                    "architecture": None})  # fmt: skip


def test_init_refuses_normalize_false_for_a_model_that_normalises(train, masks):
    """The init model's weights read normalised fields: normalize=False is refused by name
    (it was overridden without a word)."""
    start = train.zg.crai.fit(masks, **{**OPTIONS, "iterations": 1})
    assert start.config.mean is not None
    with pytest.raises(ValueError, match=r"^normalize: the init model's weights read"):
        train.zg.crai.fit(masks, **{**OPTIONS, "iterations": 1, "init": start,
                                    "architecture": None, "normalize": False})  # fmt: skip


def test_the_command_line_fine_tunes_a_model_file(train, masks, tmp_path):
    start = train.zg.crai.fit(masks, **{**OPTIONS, "iterations": 2}).save(tmp_path / "a.pth")
    out = tmp_path / "tuned.pth"
    run = subprocess.run(
        [sys.executable, "-m", "xcrai.cli", "fit", str(FITBENCH / "zg_train.nc"), "--masks",
         str(FITBENCH / "zg_masks.nc"), "-o", str(out), "--validation", "0", "--iterations",
         "1", "--batch-size", "4", "--threads", "1", "--no-progress", "--init", str(start)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    tuned = xcrai.load_model(out)
    assert tuned.config.architecture == xcrai.load_model(start).config.architecture
    assert tuned.config.provenance["init"] == f"model sha256 {xcrai.load_model(start).sha256}"


def test_no_code_outside_nn_tells_networks_apart_by_type():
    """The engine, files, options and training ask a network's registry entry
    (:func:`xcrai.nn.network`); only ``xcrai/nn`` knows the network classes' types."""
    import re

    package = Path(xcrai.__file__).parent
    names = "|".join(["UNetConfig", "CraiNetConfig", "PartialConvUNet", "CraiNet"])
    pattern = re.compile(rf"isinstance\([^)]*\b({names})\b|type\([^)]*\) is ({names})\b")
    found = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path.parent.name != "nn"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
    # and the check finds what it looks for
    assert pattern.search("if isinstance(config.architecture, UNetConfig):")


def test_recurrent_networks_take_several_inputs_a_target_and_sigma(train, masks):
    two = train.crai.fit(masks, inputs=["zg", "zg_smooth"], network="convlstm",
                         time_context=(1, 1), **{**OPTIONS, "iterations": 2})  # fmt: skip
    assert two.config.inputs == ("zg", "zg_smooth") and two.config.architecture.variables == 2
    predicted = train.crai.fit(masks, inputs=["zg"], target="zg_smooth", network="trajgru",
                               time_context=(1, 0), **{**OPTIONS, "iterations": 2})  # fmt: skip
    assert predicted.config.target == "zg_smooth"
    sigma = train.zg.crai.fit(masks, network="convlstm", time_context=(1, 1), uncertainty=True,
                              **{**OPTIONS, "iterations": 2, "validation": 0.2})  # fmt: skip
    assert sigma.config.architecture.out_channels == 2
    test = open_zg("zg_test.nc").isel(time=slice(0, 4))
    filled = test.crai.infill(sigma, sigma=True, progress=False)
    hidden = np.isnan(test.values)
    spread = filled.zg_sigma.values[hidden]
    assert np.isfinite(spread).all() and (spread > 0).all()


@pytest.mark.skipif(not EXT.is_dir(), reason="../shared/data/crai/ext is absent")
def test_the_command_line_fine_tunes_a_crai_checkpoint(tmp_path):
    """``xcrai fit --init`` a CRAI ConvLSTM checkpoint, read with the run's --time-context
    (CRAI's files do not record it)."""
    folder = EXT / "conv-lstm"
    out = tmp_path / "tuned.pth"
    args = [sys.executable, "-m", "xcrai.cli", "fit", str(folder / "out" / "conv-lstm_infilled.nc"),
            "--masks", str(folder / "input" / "tas_ncl12_masked.nc"), "-o", str(out),
            "--validation", "0", "--iterations", "1", "--batch-size", "2", "--threads", "1",
            "--no-progress", "--init", str(folder / "model.pth")]  # fmt: skip
    refused = subprocess.run(args, capture_output=True, text=True)
    assert refused.returncode == 2 and "time_context" in refused.stderr and not out.exists()
    run = subprocess.run([*args, "--time-context", "3,1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    crai = xcrai.load_model(folder / "model.pth", time_context=(3, 1))
    tuned = xcrai.load_model(out)
    assert tuned.config.architecture == crai.config.architecture
    assert tuned.config.provenance["init"] == f"model sha256 {crai.sha256}"
