"""fit(mix=...): training samples blended with others, c + cos θ (a - c) + sin θ (b - c),
on the shipped fitbench data (500 hPa heights, HadCRUT4 masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import open_zg

from xcrai.fit import _centre
from xcrai.train.loop import (
    Mixing,
    TrainConfig,
    TrainingData,
    Variables,
    _Batches,
    make_batch,
    mix,
)
from xcrai.train.losses import LossWeights

TINY = {"n_filters": 4, "depth": 2}
#: weights compared bit for bit: a fixed CPU thread count (see tests/test_fit.py)
OPTIONS = dict(batch_size=4, architecture=TINY, progress=False, threads=1, validation=None)
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def train() -> xr.DataArray:
    return open_zg("zg_train.nc")


@pytest.fixture(scope="module")
def masks() -> xr.DataArray:
    return open_zg("zg_masks.nc")


def _config(**changes) -> TrainConfig:
    settings = dict(iterations=1, batch_size=16, lr=1e-3, finetune_iterations=0,
                    lr_finetune=1e-4, loss=LossWeights(), padding="global",
                    time_context=(0, 0), mean=2.0, std=50.0, seed=0, log_every=1)  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def test_blends_keep_the_fields_mean_and_covariance():
    rng = np.random.default_rng(0)
    fields = (rng.normal(size=(6, 40)) * np.linspace(1, 3, 40) + 5).astype(np.float32)
    centre = fields.mean(axis=0)
    a, b = fields[0], fields[1]
    np.testing.assert_allclose(mix(a, b, 0.0, centre), a, rtol=1e-6)
    np.testing.assert_allclose(mix(a, b, np.pi / 2, centre), b, atol=1e-5)
    np.testing.assert_allclose(mix(a, b, np.pi, centre), 2 * centre - a, atol=1e-5)
    n = 400_000  # random pairs at random angles
    first, second = rng.integers(0, 6, n), rng.integers(0, 6, n)
    angles = rng.uniform(0, 2 * np.pi, (n, 1))
    blends = mix(fields[first], fields[second], angles, centre)
    assert blends.dtype == np.float32
    covariance = np.cov(fields.T, bias=True)
    assert np.abs(blends.mean(axis=0) - centre).max() < 0.02 * np.sqrt(covariance.max())
    assert np.abs(np.cov(blends.T, bias=True) - covariance).max() < 0.03 * covariance.max()


def test_the_centre_is_the_pointwise_mean_where_valid(train):
    import dask.array as dsa

    fields = train.values[None]  # (1, T, H, W)
    valid = np.ones(fields.shape[-2:], bool)
    valid[:3] = False
    centre = _centre(fields, valid, 1)
    np.testing.assert_allclose(centre[3:], fields[0, :, 3:].astype(np.float64).mean(axis=0))
    assert (centre[:3] == 0).all()
    lazy = _centre(dsa.from_array(fields, chunks=(1, 5, 40, 144)), valid, 1)
    np.testing.assert_allclose(lazy.compute(), centre, rtol=1e-12)


def _coefficients(blend: np.ndarray, fields: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The least-squares weights of ``fields - centre`` that make ``blend - centre``."""
    basis = (fields - centre).reshape(len(fields), -1).T.astype(np.float64)
    weights, *_ = np.linalg.lstsq(basis, (blend - centre).ravel().astype(np.float64), rcond=None)
    return weights


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_each_training_sample_is_a_field_or_a_blend_of_two(train, masks, share):
    """The batches of ``mix=1`` are each made of two training fields (at most two nonzero
    weights, and not one field as it is); those of ``mix=0`` are the fields themselves."""
    config = _config(mix=share)
    fields = ((train.values - np.float32(2.0)) / np.float32(50.0))[None]  # as normalised
    # any centre (the fields' mean would make their differences from it dependent)
    centre = np.full(fields.shape[-2:], 0.1, np.float32)
    one = Variables.one(masks.values.astype(bool), np.ones(fields.shape[-2:], bool),
                        config.mean, config.std)  # fmt: skip
    data = TrainingData(train.values[None, None], one, centre=centre[None, None])
    gt = _Batches(data, config, None)[3][2].numpy()[:, 0]  # the truths of batch 3
    blended = 0
    for truth in gt:
        weights = _coefficients(truth, fields[0], centre)
        used = np.abs(weights) > 1e-4
        assert used.sum() <= 2
        rebuilt = np.tensordot(weights[used], fields[0][used] - centre, axes=1) + centre
        np.testing.assert_allclose(rebuilt, truth, atol=1e-4)
        blended += not (used.sum() == 1 and abs(weights[used][0] - 1) < 1e-4)
    assert blended == (len(gt) if share else 0)


def test_every_variable_is_blended_alike(train, masks):
    """Two variables that normalise to the same values stay the same when blended."""
    config = _config(mix=1.0, time_context=(1, 0))
    zg = train.values[None]
    other = zg / np.float32(1000) + np.float32(1)  # km + 1
    norms = ((2.0, 50.0), (2.0 / 1000 + 1, 50.0 / 1000))
    valid = np.ones((2, *zg.shape[-2:]), bool)
    observed = masks.values.astype(bool)
    several = Variables([observed, observed], valid, 0, norms)
    centre = np.stack([(zg[0].mean(0) - n[0]) / n[1] for n in ((2.0, 50.0),) * 2])[:, None]
    rng = np.random.default_rng(1)
    samples, mask_index = np.arange(8), np.zeros((2, 8), int)
    mixing = Mixing(rng.integers(0, 18, 8), rng.uniform(0, 2 * np.pi, 8), centre)
    x, *_ = make_batch(np.stack([zg, other], axis=1), several, samples, mask_index, config,
                       mixing=mixing)  # fmt: skip
    np.testing.assert_allclose(x[:, :2].numpy(), x[:, 2:].numpy(), atol=2e-4)
    plain, *_ = make_batch(np.stack([zg, other], axis=1), several, samples, mask_index, config)
    assert not torch.allclose(x, plain)
    none = Mixing(np.full(8, -1), np.zeros(8), centre)
    one = Variables.one(observed, valid[0], *norms[0])
    alone = make_batch(zg[:, None], one, samples, mask_index[:1], config, mixing=none)
    assert torch.equal(alone[0], make_batch(zg[:, None], one, samples, mask_index[:1],
                                            config)[0])  # fmt: skip


def test_mixed_training_is_seeded_lazy_and_resumable(train, masks, tmp_path):
    options = dict(iterations=8, log_every=2, mix=0.5, lr_schedule="constant", **OPTIONS)
    model = train.crai.fit(masks, **options)
    again = train.crai.fit(masks, **options)
    lazy = train.chunk(time=5).crai.fit(masks, **options)
    plain = train.crai.fit(masks, **{**options, "mix": 0.0})
    weights = model.net.state_dict()
    assert all(torch.equal(weights[k], again.net.state_dict()[k]) for k in weights)
    assert all(torch.equal(weights[k], lazy.net.state_dict()[k]) for k in weights)
    assert not all(torch.equal(weights[k], plain.net.state_dict()[k]) for k in weights)
    assert model.config.provenance["train_config"]["mix"] == 0.5
    assert "mix" not in plain.config.provenance["train_config"]  # as before mixing
    train.crai.fit(masks, checkpoint_dir=tmp_path, **{**options, "iterations": 4})
    resumed = train.crai.fit(masks, resume=tmp_path, **options)
    assert all(torch.equal(weights[k], resumed.net.state_dict()[k]) for k in weights)
    with pytest.raises(ValueError, match=r"resume: .* other settings: mix=0.5 \(now 0.25\)"):
        train.crai.fit(masks, resume=tmp_path, **{**options, "mix": 0.25})


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "half"])
def test_mix_must_be_a_share(train, masks, share):
    with pytest.raises(ValueError, match="mix: expected a share from 0 to 1, got"):
        train.crai.fit(masks, mix=share, iterations=1)


def test_with_augment_each_partner_is_rolled_and_mirrored_on_its_own():
    """Blend with ``b``'s difference from the centre rolled and mirrored, and a partner's
    never-valid points adding nothing."""
    rng = np.random.default_rng(2)
    fields = rng.normal(size=(3, 1, 6, 8)).astype(np.float32)  # (samples, C, H, W)
    fields[2, 0, 0, 0] = np.nan  # a partner's point that is never valid
    centre = rng.normal(size=(6, 8)).astype(np.float32)
    mixing = Mixing(np.array([1, -1, 2]), np.array([0.3, 0.0, 1.1]), centre,
                    shifts=np.array([3, 5, 2]), flips=np.array([True, False, False]))  # fmt: skip
    out = mixing.apply(fields[[0, 1, 0]], lambda numbers: fields[numbers])
    moved = np.roll(fields[1] - centre, 3, axis=-1)[..., ::-1, :] + centre
    np.testing.assert_allclose(out[0], mix(fields[0], moved, 0.3, centre), rtol=1e-6)
    np.testing.assert_array_equal(out[1], fields[1])  # not chosen
    away = np.roll(fields[2] - centre, 2, axis=-1)
    assert np.isnan(away).sum() == 1 and np.isfinite(out[2]).all()
    expected = mix(fields[0], np.where(np.isnan(away), 0, away) + centre, 1.1, centre)
    np.testing.assert_allclose(out[2], expected, rtol=1e-5, atol=1e-6)
    halves = mixing.part(slice(1, 3))
    assert halves.partners.tolist() == [-1, 2] and halves.shifts.tolist() == [5, 2]
