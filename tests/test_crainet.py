"""xcrai.nn.crainet: CRAI's recurrent and attention checkpoints reproduce CRAI's outputs.

The references (CRAI's checkpoints, inputs and raw outputs) live in ``shared/data/crai/ext``
beside the repository; the tests skip where it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from xcrai.nn.crainet import CraiNet, CraiNetConfig

EXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "crai" / "ext"

# variant: (input variables, (P, F), recurrent kind)
VARIANTS = {
    "conv-lstm": (["tas"], (3, 1), "lstm"),
    "traj-gru": (["tas"], (2, 2), "gru"),
    "attention": (["tas", "uas", "vas"], (0, 0), None),
    "attention-channel-memory": (["tas", "uas", "vas"], (2, 2), None),
}


def _dir(variant: str) -> Path:
    path = EXT / variant
    if not (path / "model.pth").is_file():
        pytest.skip(f"CRAI reference data absent: {path}")
    return path


def _state(variant: str, keep_mask_conv: bool = False) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(_dir(variant) / "model.pth", map_location="cpu", weights_only=True)
    entry = checkpoint[checkpoint["labels"][-1]]["model"]
    state = {k.removeprefix("module."): v for k, v in entry.items()}
    if keep_mask_conv:
        return state
    return {k: v for k, v in state.items() if ".mask_conv." not in k}


def _net(variant: str, **kwargs) -> CraiNet:
    variables, steps, _ = VARIANTS[variant]
    state = _state(variant)
    config = CraiNetConfig.from_state_dict(state, variables=len(variables), steps=steps)
    net = CraiNet(config, **kwargs).eval()
    net.load_state_dict(state, strict=True)
    return net


def _inputs(variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CRAI's evaluation batch: every interior step t = P .. T-1-F, variable-major windows."""
    variables, (p, f), _ = VARIANTS[variant]
    fields = []
    for name in variables:
        with xr.open_dataset(_dir(variant) / "input" / f"{name}_ncl12_masked.nc") as ds:
            fields.append(ds[name].values)
    n_time = fields[0].shape[0]
    windows = np.stack(
        [
            np.stack([a[t + s] for a in fields for s in range(-p, f + 1)])
            for t in range(p, n_time - f)
        ]
    )
    mask = ~np.isnan(windows)
    return torch.from_numpy(np.nan_to_num(windows)), torch.from_numpy(mask.astype(np.float32))


def _crai_output(variant: str) -> np.ndarray:
    variables = VARIANTS[variant][0]
    with xr.open_dataset(_dir(variant) / "out" / f"{variant}_output.nc") as ds:
        return ds[variables[0]].values


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reproduces_crai_output(variant):
    # TrajGRU: CRAI mixes the samples of its batch (see TrajGRU.crai_batch_order); its
    # stored outputs come from one batch of all interior steps, which _inputs rebuilds
    net = _net(variant, crai_batch_order=variant == "traj-gru")
    x, mask = _inputs(variant)
    with torch.no_grad():
        out, reach = net(x, mask)
    expected = _crai_output(variant)
    assert out.shape == (x.shape[0], 1, 72, 72) and reach.shape == out.shape
    assert set(torch.unique(reach).tolist()) <= {0.0, 1.0}
    tolerance = max(1e-5, 2e-6 * float(np.abs(expected).max()))
    np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=0, atol=tolerance)


def test_traj_gru_per_sample_differs_from_crai_batch_order():
    """Without CRAI's reordering each sample is computed on its own: the same output
    whatever the batch, which is not CRAI's for a batch of several sequences."""
    net = _net("traj-gru")
    x, mask = _inputs("traj-gru")
    with torch.no_grad():
        out, _ = net(x, mask)
        alone, _ = net(x[3:4], mask[3:4])
    np.testing.assert_allclose(out[3:4].numpy(), alone.numpy(), rtol=0, atol=1e-6)
    assert np.abs(out[:, 0].numpy() - _crai_output("traj-gru")).max() > 1e-4


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_round_trip_and_properties(variant):
    variables, steps, recurrent = VARIANTS[variant]
    config = _net(variant).config
    d = config.to_dict()
    assert d["kind"] == "crainet"
    assert CraiNetConfig.from_dict(json.loads(json.dumps(d))) == config
    assert config.in_channels == len(variables) * (steps[0] + steps[1] + 1)
    assert config.out_channels == 1 and config.depth == 3 and config.normalization == "crai"
    assert config.recurrent == recurrent and config.sequence == (recurrent is not None)
    assert len(config.encoder) == len(config.decoder) == 3
    assert bool(config.attention) == variant.startswith("attention")


def test_mask_conv_weights_may_be_present():
    state = _state("attention", keep_mask_conv=True)
    assert any(".mask_conv." in k for k in state)
    config = CraiNetConfig.from_state_dict(state, variables=3, steps=(0, 0))
    assert config == _net("attention").config


def test_state_dict_names_are_crai_keys():
    net = _net("conv-lstm")
    assert set(net.state_dict()) == set(_state("conv-lstm"))


@pytest.mark.parametrize(
    ("variant", "variables", "steps", "match"),
    [
        ("attention-channel-memory", 3, (1, 1), "encoder layer 0 to take 3 input channels"),
        ("attention", 3, (2, 2), "encoder layer 0 to take 5 input channels"),
        ("attention", 2, (0, 0), "attention layer 0 to take 1 input channels"),
        ("conv-lstm", 1, (0, 0), r"P \+ F >= 1"),
        ("traj-gru", 2, (2, 2), "encoder layer 0 to take 2 input channels"),
    ],
)
def test_wrong_steps_or_variables_are_a_clear_error(variant, variables, steps, match):
    with pytest.raises(ValueError, match=f"^model: .*{match}"):
        CraiNetConfig.from_state_dict(_state(variant), variables=variables, steps=steps)


def test_inconsistent_state_dict_is_a_clear_error():
    state = _state("attention")
    state["decoder.1.partial_conv.input_conv.weight"] = torch.zeros(72, 200, 3, 3)
    with pytest.raises(ValueError, match=r"^model: expected decoder layer 1 to take 216"):
        CraiNetConfig.from_state_dict(state, variables=3, steps=(0, 0))
    state = _state("traj-gru")
    del state["encoder.1.recurrent_conv.ret.weight"]
    with pytest.raises(ValueError, match=r"^model: expected a TrajGRU in encoder layer 1"):
        CraiNetConfig.from_state_dict(state, variables=1, steps=(2, 2))


@pytest.mark.parametrize("variant", ["conv-lstm", "attention-channel-memory"])
def test_global_padding_runs(variant):
    net = _net(variant)
    x, mask = _inputs(variant)
    with torch.no_grad():
        out, reach = net(x[:2], mask[:2], padding="global")
    assert out.shape == (2, 1, 72, 72) and reach.shape == (2, 1, 72, 72)
    assert torch.isfinite(out).all()


def test_wrong_input_shape_is_a_clear_error():
    net = _net("traj-gru")
    x = torch.zeros(1, 3, 72, 72)
    with pytest.raises(ValueError, match=r"^x: expected x and mask of shape \(N, 5, H, W\)"):
        net(x, torch.ones_like(x))
