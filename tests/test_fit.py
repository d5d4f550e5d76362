"""Training: da.crai.fit on the shipped fitbench data (500 hPa heights, HadCRUT4 masks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from fitbench_data import FITBENCH, kill_fit_after_a_checkpoint, open_zg

import xcrai

SMALL = {"n_filters": 6, "depth": 3}
#: runs whose weights are compared bit for bit take a fixed CPU thread count ("auto" follows
#: the machine's load, and CPU training repeats bit for bit for the same count)
SAME = {"threads": 1}
pytestmark = pytest.mark.filterwarnings("ignore::xcrai.UnreachableWarning")


@pytest.fixture(scope="module")
def train():
    return open_zg("zg_train.nc")


@pytest.fixture(scope="module")
def masks():
    return open_zg("zg_masks.nc")


@pytest.fixture(scope="module")
def quick(train, masks):
    """A short real training run, shared by several tests. On the fields as they are
    (``mix=0``): with every sample a random blend (the default), the training loss of a
    few logged batches says more about the blends drawn than about learning."""
    return train.crai.fit(
        masks, validation=open_zg("zg_val.nc"), iterations=60, batch_size=4, lr=2e-3,
        architecture=SMALL, loss={"hole": 1}, progress=False, log_every=10, mix=0.0,
    )  # fmt: skip


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_save_load_infill(quick, tmp_path):
    path = quick.save(tmp_path / "zg.pth")
    model = xcrai.load_model(path)
    assert model.config.variable == "zg" and model.config.padding == "global"
    assert model.config.mean is not None and model.config.std > 0
    assert model.config.grid["shape"] == [73, 144]
    assert model.config.provenance["seed"] == 0
    test = open_zg("zg_test.nc")
    filled = test.crai.infill(path)  # nothing else needed
    valid = np.isfinite(test.values)
    assert np.isfinite(filled.values).all()
    np.testing.assert_array_equal(filled.values[valid], test.values[valid])
    truth = open_zg("zg_truth.nc").values
    rmse = np.sqrt(np.mean((filled.values - truth)[~valid] ** 2))
    zero_fill = np.sqrt(np.mean(truth[~valid] ** 2))
    assert rmse < zero_fill  # even 60 small steps beat filling with zeros (35.9 m)


def test_the_loss_falls(quick):
    history = quick.history
    assert list(history.iteration.values) == [10, 20, 30, 40, 50, 60]
    assert history.val_loss[-1] < history.val_loss[0]
    assert history.train_loss[-3:].mean() < history.train_loss[:3].mean()
    assert np.isfinite(history.val_hole_rmse).all()


def test_resume_equals_uninterrupted(train, masks, tmp_path):
    """A constant learning rate lets a run continue further than it was first asked."""
    options = dict(validation=0.2, batch_size=4, architecture={"n_filters": 4, "depth": 2},
                   progress=False, log_every=5, seed=3, lr_schedule="constant", **SAME)  # fmt: skip
    whole = train.crai.fit(masks, iterations=20, **options)
    train.crai.fit(masks, iterations=10, checkpoint_dir=tmp_path, **options)  # "interrupted"
    resumed = train.crai.fit(masks, iterations=20, resume=tmp_path, **options)
    assert _same_weights(whole.net.state_dict(), resumed.net.state_dict())
    xr.testing.assert_equal(whole.history, resumed.history)
    stale = train.crai.fit(masks, iterations=20, **{**options, "seed": 4})
    assert not _same_weights(whole.net.state_dict(), stale.net.state_dict())


def test_resume_refuses_other_settings(train, masks, tmp_path):
    options = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False)
    train.crai.fit(masks, iterations=2, checkpoint_dir=tmp_path, log_every=1, **options)
    with pytest.raises(ValueError, match=r"resume: .* other settings: batch_size=4"):
        train.crai.fit(masks, iterations=4, resume=tmp_path, log_every=1,
                       **{**options, "batch_size": 2})  # fmt: skip
    with pytest.raises(FileNotFoundError, match="resume: no training checkpoint"):
        train.crai.fit(masks, iterations=4, resume=tmp_path / "nope", **options)


def test_resume_refuses_other_data_masks_and_options(train, masks, tmp_path):
    """A checkpoint continues only the run it came from: other data, validation fields,
    masks, architecture or settings are named and refused, and so is a resumed run shorter
    than the checkpoint's. A longer one continues (with the checkpoint's logging)."""
    options = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False,
                   lr_schedule="constant")  # fmt: skip
    train.crai.fit(masks, iterations=4, checkpoint_dir=tmp_path, **options)
    other = train.copy(data=train.values[::-1].copy())  # the same fields in another order
    first = train.copy(data=train.values.copy())
    first[0] += 1  # a training field, not a validation one
    with pytest.raises(ValueError, match=r"resume: .* other data than given now \(data: sha"):
        first.crai.fit(masks, iterations=8, resume=tmp_path, **options)
    with pytest.raises(ValueError, match=r"resume: .* other data and validation than"):
        other.crai.fit(masks, iterations=8, resume=tmp_path, **options)
    with pytest.raises(ValueError, match=r"resume: .* other masks than"):
        train.crai.fit(masks[::-1], iterations=8, resume=tmp_path, **options)
    with pytest.raises(ValueError, match=r"other architecture than .*channels 4-8 in the check"):
        train.crai.fit(masks, iterations=8, resume=tmp_path,
                       **{**options, "architecture": {"n_filters": 5, "depth": 2}})  # fmt: skip
    with pytest.raises(ValueError, match=r"other settings: lr=0.001 \(now 0.002\)"):
        train.crai.fit(masks, iterations=8, resume=tmp_path, lr=2e-3, **options)
    with pytest.raises(ValueError, match=r"has run 4 iterations, more than the 3 asked for"):
        train.crai.fit(masks, iterations=3, resume=tmp_path, **options)
    longer = train.crai.fit(masks, iterations=6, resume=tmp_path, **options)
    assert longer.config.provenance["iterations"] == 6


def test_validation_split_is_never_trained_on(train, masks):
    options = dict(validation=0.2, iterations=6, batch_size=4, progress=False, log_every=3, **SAME,
                   architecture={"n_filters": 4, "depth": 2})  # fmt: skip
    base = train.crai.fit(masks, **options)
    changed = train.copy(data=train.values.copy())
    changed[-4:] = changed[-4:] * 3 + 100  # the last 20 % (4 of 18 steps) is validation
    other = changed.crai.fit(masks, **options)
    a, b = base.net.state_dict(), other.net.state_dict()
    # normalisation statistics come from the training part only, so they match too
    assert base.config.mean == other.config.mean and base.config.std == other.config.std
    assert _same_weights(a, b)
    assert not np.allclose(base.history.val_loss, other.history.val_loss)


def test_nan_points_of_the_data_are_never_targets(train, masks):
    land = train.copy(data=train.values.copy())
    land[:, 30:40, 50:70] = np.nan  # NaN in every field, like land in an SST field
    model = land.crai.fit(masks, validation=0.2, iterations=6, batch_size=4, progress=False,
                          log_every=3, architecture={"n_filters": 4, "depth": 2})  # fmt: skip
    history = model.history
    assert all(np.isfinite(history[v]).all() for v in history.data_vars)


def test_losses_ignore_points_that_are_not_targets():
    from xcrai.train.losses import loss_terms

    rng = np.random.default_rng(0)
    out, gt = (torch.from_numpy(rng.normal(size=(2, 1, 8, 8))) for _ in range(2))
    mask = torch.from_numpy((rng.random((2, 1, 8, 8)) > 0.5).astype(np.float64))
    target = torch.ones_like(out)
    target[..., 2:5, 3:6] = 0
    a = loss_terms(out, gt, mask, target)
    out2, gt2 = out.clone(), gt.clone()
    out2[..., 2:5, 3:6] += 1e3
    gt2[..., 2:5, 3:6] -= 1e3
    b = loss_terms(out2, gt2, mask, target)
    for name in ("valid", "hole", "tv"):
        assert float(a[name]) == float(b[name]), name


def test_float_masks_with_nan_for_missing(train, masks):
    as_nan = masks.where(masks == 1)  # 1 observed, NaN missing, like real observations
    a = train.crai.fit(as_nan, iterations=3, batch_size=4, progress=False, log_every=3,
                       architecture={"n_filters": 4, "depth": 2}, **SAME)  # fmt: skip
    b = train.crai.fit(masks.astype(bool), iterations=3, batch_size=4, progress=False,
                       log_every=3, architecture={"n_filters": 4, "depth": 2}, **SAME)  # fmt: skip
    assert _same_weights(a.net.state_dict(), b.net.state_dict())


# -- bad input -----------------------------------------------------------------------------


def test_masks_on_another_grid(train, hadcrut):
    with pytest.raises(ValueError, match="masks: on another grid than the data"):
        train.crai.fit(hadcrut.tas, iterations=1, progress=False)


def test_masks_that_hide_everything_or_nothing(train, masks):
    with pytest.raises(ValueError, match=r"masks: 1 of 60 masks hide every point"):
        train.crai.fit(masks.where(masks.time != masks.time[5], 0), iterations=1)
    with pytest.raises(ValueError, match="masks: no mask hides any point"):
        train.crai.fit(xr.ones_like(masks), iterations=1)


def test_scattered_nans_in_the_data(train, masks):
    holes = train.copy(data=train.values.copy())
    holes[3, 10, 10] = np.nan
    with pytest.raises(ValueError, match="data: 1 grid points are NaN in some fields"):
        holes.crai.fit(masks, iterations=1)


def test_too_few_time_steps_for_the_batch(train, masks):
    with pytest.raises(ValueError, match="batch_size: 32 is larger than the 16 training fields"):
        train.crai.fit(masks, batch_size=32, iterations=1)


def test_wrong_dtype_of_masks(train, masks):
    with pytest.raises(TypeError, match="masks: expected bool, 0/1"):
        train.crai.fit(masks.astype(str), iterations=1)
    with pytest.raises(TypeError, match=r"masks: expected an xarray\.DataArray"):
        train.crai.fit(masks.values, iterations=1)


def test_bad_options(train, masks):
    with pytest.raises(ValueError, match="vgg_weights: the perceptual and style terms"):
        train.crai.fit(masks, loss={"perceptual": 0.05}, iterations=1)
    with pytest.raises(ValueError, match="loss: expected None or a dict"):
        train.crai.fit(masks, loss={"ssim": 1.0}, iterations=1)
    with pytest.raises(ValueError, match="iterations: expected an integer >= 1"):
        train.crai.fit(masks, iterations=0)
    with pytest.raises(ValueError, match="validation: expected a fraction"):
        train.crai.fit(masks, validation=2.0, iterations=1)


def test_cli_fit_then_infill(tmp_path):
    from xcrai.cli import main

    model = tmp_path / "zg.pth"
    code = main(["fit", str(FITBENCH / "zg_train.nc"), "--masks", str(FITBENCH / "zg_masks.nc"),
                 "-o", str(model), "--iterations", "4", "--batch-size", "4", "--loss", "hole=1",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    out = tmp_path / "filled.nc"
    assert main(["infill", str(FITBENCH / "zg_test.nc"), "-m", str(model), "-o", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    with xr.open_dataset(out) as ds:
        assert np.isfinite(ds.zg.values).all()


def test_dask_backed_training_data_is_streamed_to_the_same_result(train, masks):
    import dask.array

    options = dict(validation=0.2, iterations=6, batch_size=4, progress=False, log_every=3, **SAME,
                   architecture={"n_filters": 4, "depth": 2})  # fmt: skip
    eager = train.crai.fit(masks, **options)
    lazy_data = train.chunk({"time": 1})
    assert isinstance(lazy_data.data, dask.array.Array)
    lazy = lazy_data.crai.fit(masks, **options)
    assert _same_weights(eager.net.state_dict(), lazy.net.state_dict())
    xr.testing.assert_allclose(eager.history, lazy.history)


def test_bf16_training_runs_and_learns(train, masks):
    # the schedule and data of the former defaults, on which 30 steps learn visibly
    model = train.crai.fit(masks, validation=0.2, iterations=30, batch_size=4, lr=2e-3,
                           precision="bf16", progress=False, log_every=10,
                           architecture={"n_filters": 6, "depth": 3}, lr_schedule="constant",
                           mix=0)  # fmt: skip
    history = model.history
    assert np.isfinite(history.train_loss).all()
    assert history.val_loss[-1] < history.val_loss[0]
    with pytest.raises(ValueError, match="precision: expected"):
        train.crai.fit(masks, precision="fp8", iterations=1)


def test_augmentation_rolls_and_mirrors_fields_not_masks(train, masks):
    from xcrai.train.loop import TrainConfig, Variables, make_batch
    from xcrai.train.losses import LossWeights

    config = TrainConfig(iterations=1, batch_size=2, lr=1e-3, finetune_iterations=0,
                         lr_finetune=1e-4, loss=LossWeights(), padding="global",
                         time_context=(0, 0), mean=0.0, std=1.0, seed=0, log_every=1,
                         augment=True)  # fmt: skip
    fields = train.values[None]
    observed = masks.values.astype(bool)
    target = np.ones(fields.shape[-2:], bool)
    one = Variables.one(observed, target, 0.0, 1.0)
    args = (fields[:, None], one, np.array([3, 3]), np.array([[5, 5]]), config)
    _, m, gt, _, _ = make_batch(*args, np.array([0, 10]), np.array([False, True]))
    np.testing.assert_array_equal(gt[0, 0].numpy(), fields[0, 3])
    np.testing.assert_array_equal(gt[1, 0].numpy(), np.roll(fields[0, 3], 10, axis=-1)[::-1])
    np.testing.assert_array_equal(m[0].numpy(), m[1].numpy())  # the mask is not moved
    np.testing.assert_array_equal(m[0, 0].numpy(), observed[5])


def test_finetuning_freezes_the_encoder_batch_norm(train, masks):
    options = dict(validation=0.2, batch_size=4, progress=False, log_every=2, seed=5, **SAME,
                   architecture={"n_filters": 4, "depth": 3})  # fmt: skip
    first = train.crai.fit(masks, iterations=4, **options).net.state_dict()
    tuned = train.crai.fit(masks, iterations=4, finetune_iterations=4, lr_finetune=1e-3,
                           **options).net.state_dict()  # fmt: skip
    for i in (1, 2):  # encoder layers with batch norm keep the statistics of iteration 4
        key = f"encoder.{i}.partial_conv.bn.running_mean"
        assert torch.equal(first[key], tuned[key])
    key = "decoder.0.partial_conv.bn.running_mean"  # the decoder's go on
    assert not torch.equal(first[key], tuned[key])
    weight = "encoder.1.partial_conv.input_conv.weight"
    assert not torch.equal(first[weight], tuned[weight])


def test_early_stopping_returns_the_best_weights(train, masks):
    options = dict(validation=0.2, batch_size=4, lr=2e-2, progress=False, log_every=1, seed=2,
                   architecture={"n_filters": 4, "depth": 2}, lr_schedule="constant",
                   **SAME)  # fmt: skip
    stopped = train.crai.fit(masks, iterations=40, early_stopping=2, **options)
    history = stopped.history
    best = int(history.iteration[int(np.argmin(history.val_loss.values))])
    assert len(history.iteration) == best + 3 < 40  # stopped after 3 steps without progress
    again = train.crai.fit(masks, iterations=best, **options)
    assert _same_weights(stopped.net.state_dict(), again.net.state_dict())
    without = train.crai.fit(masks, iterations=int(history.iteration[-1]), **options)
    if best != int(history.iteration[-1]):  # otherwise last and best coincide
        assert not _same_weights(stopped.net.state_dict(), without.net.state_dict())


def test_cli_fit_errors_leave_files_alone(tmp_path, capsys):
    from xcrai.cli import main

    model = tmp_path / "zg.pth"
    model.write_text("precious")
    data, masks = str(FITBENCH / "zg_train.nc"), str(FITBENCH / "zg_masks.nc")
    args = ["fit", data, "--masks", masks, "-o", str(model), "--iterations", "2",
            "--batch-size", "4", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert model.read_text() == "precious"
    missing = ["fit", str(FITBENCH / "zg_train.nc"), "--masks", str(tmp_path / "nope.nc"),
               "-o", str(tmp_path / "new.pth")]  # fmt: skip
    assert main(missing) == 2
    assert "masks: no file" in capsys.readouterr().err
    assert not (tmp_path / "new.pth").exists()


def test_checkpoint_dir_must_be_a_folder(train, masks, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir: .* is a file"):
        train.crai.fit(masks, iterations=1, batch_size=4, checkpoint_dir=blocker, progress=False)
    assert blocker.read_text() == "x"


def test_perceptual_and_style_terms_from_a_local_vgg16_file(train, masks, tmp_path):
    from xcrai.train.perceptual import VGG16Features

    # a file in torchvision's VGG16 layout (random weights: nothing can be downloaded here)
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG16Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # other keys of the real file are ignored
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    model = train.crai.fit(masks, validation=0.2, iterations=4, batch_size=4, progress=False,
                           log_every=2, architecture={"n_filters": 4, "depth": 2},
                           loss={"hole": 6, "perceptual": 0.05, "style": 120},
                           vgg_weights=path)  # fmt: skip
    history = model.history
    assert (history.train_perceptual > 0).all() and (history.train_style > 0).all()
    weighted = (6 * history.train_hole + 0.05 * history.train_perceptual
                + 120 * history.train_style)  # fmt: skip
    np.testing.assert_allclose(history.train_loss, weighted, rtol=1e-5)
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"vgg_weights: .* not a torchvision VGG16"):
        train.crai.fit(masks, loss={"style": 1}, vgg_weights=bad, iterations=1)


def test_data_digests_do_not_depend_on_chunking(train):
    """Resume compares per-field sha256s: the same for NumPy and any dask chunking."""
    import dask

    from xcrai.digests import field_digests

    fields = train.values[None]
    lazy = train.chunk(time=5, lat=40).data[None]
    eager = field_digests(fields)
    np.testing.assert_array_equal(dask.compute(field_digests(lazy))[0], eager)
    assert len({bytes(d) for d in eager.reshape(-1, 32)}) == fields.shape[1]


def test_cosine_learning_rate_schedule(train, masks, tmp_path):
    from xcrai.train.loop import cosine_lr

    assert cosine_lr(1e-3, 1, 100) == 1e-3
    assert cosine_lr(1e-3, 51, 100) == pytest.approx(5e-4)
    assert 0 < cosine_lr(1e-3, 100, 100) < 1e-6
    options = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False,
                   iterations=12, validation=None, **SAME)  # fmt: skip
    cosine = train.crai.fit(masks, lr_schedule="cosine", **options)
    again = train.crai.fit(masks, lr_schedule="cosine", **options)
    constant = train.crai.fit(masks, lr_schedule="constant", **options)
    assert _same_weights(cosine.net.state_dict(), again.net.state_dict())
    assert not _same_weights(cosine.net.state_dict(), constant.net.state_dict())
    assert cosine.config.provenance["train_config"]["lr_schedule"] == "cosine"
    assert "lr_schedule" not in constant.config.provenance["train_config"]  # as before
    # the cosine's course follows from the iterations: a resume may not change them
    train.crai.fit(masks, checkpoint_dir=tmp_path, lr_schedule="cosine", **options)
    with pytest.raises(ValueError, match=r"resume: .* other settings: iterations=12"):
        train.crai.fit(masks, resume=tmp_path, lr_schedule="cosine",
                       **{**options, "iterations": 20})  # fmt: skip


def test_a_killed_cosine_run_resumes_to_the_uninterrupted_weights(train, masks, tmp_path):
    """The default schedule (cosine) follows from the run's iterations, so a resumed run
    takes the same ones: ``xcrai fit`` killed (SIGKILL, a real process) after a checkpoint,
    then resumed, ends with the uninterrupted run's weights."""
    iterations = 400
    options = dict(validation=None, batch_size=4, architecture={"n_filters": 4, "depth": 2},
                   progress=False, **SAME)  # fmt: skip
    kill_fit_after_a_checkpoint(tmp_path, iterations)
    resumed = train.crai.fit(masks, iterations=iterations, resume=tmp_path, **options)
    whole = train.crai.fit(masks, iterations=iterations, **options)
    assert whole.config.provenance["train_config"]["lr_schedule"] == "cosine"  # the default
    assert _same_weights(whole.net.state_dict(), resumed.net.state_dict())
    # checkpoints every 5, losses logged every 4: the checkpoint (at 5 or 10, as a rule)
    # carries the sums of the logging window it cut, so the history is the uninterrupted one
    xr.testing.assert_equal(whole.history, resumed.history)


def test_a_new_run_refuses_an_earlier_runs_checkpoint(train, masks, tmp_path):
    """A second run into the same checkpoint_dir would overwrite the first run's checkpoint
    (a killed run restarted without resume, say): refused, the checkpoint untouched."""
    options = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False,
                   iterations=2, **SAME)  # fmt: skip
    train.crai.fit(masks, checkpoint_dir=tmp_path, **options)
    before = (tmp_path / "checkpoint.pth").read_bytes()
    with pytest.raises(FileExistsError, match=r"checkpoint_dir: .* holds the checkpoint of an "):
        train.crai.fit(masks, checkpoint_dir=tmp_path, **{**options, "seed": 1})
    assert (tmp_path / "checkpoint.pth").read_bytes() == before
    # an ensemble checks every member's folder before the first member trains
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "member-1").write_text("in the way")
    with pytest.raises(ValueError, match=r"checkpoint_dir: .*member-1' is a file"):
        train.crai.fit(masks, ensemble=2, checkpoint_dir=tmp_path / "ens", **options)
    assert not (tmp_path / "ens" / "member-0" / "checkpoint.pth").exists()
    # resuming another run into it is no licence to overwrite it either
    train.crai.fit(masks, checkpoint_dir=tmp_path / "other", **options)
    with pytest.raises(FileExistsError, match=r"checkpoint_dir: .* holds the checkpoint of an "):
        train.crai.fit(masks, checkpoint_dir=tmp_path, resume=tmp_path / "other", **options)
    assert (tmp_path / "checkpoint.pth").read_bytes() == before
    with pytest.raises(FileNotFoundError, match=r"resume: .* holds the member-<i> folders of an"):
        (tmp_path / "ens" / "member-1").unlink()
        train.crai.fit(masks, ensemble=2, checkpoint_dir=tmp_path / "ens", **options)
        train.crai.fit(masks, resume=tmp_path / "ens", **options)


def test_resume_keeps_early_stopping(train, masks, tmp_path):
    """A checkpoint carries early stopping's patience: a run resumed from it stops where
    the uninterrupted run stopped, with the same weights and history, and a run that
    stopped stays stopped."""
    options = dict(validation=0.2, batch_size=4, architecture={"n_filters": 4, "depth": 2},
                   progress=False, seed=2, lr=0.02, lr_schedule="constant", early_stopping=1,
                   log_every=2, **SAME)  # fmt: skip
    whole = train.crai.fit(masks, iterations=40, checkpoint_dir=tmp_path / "whole", **options)
    stopped = int(whole.history.iteration[-1])
    assert stopped < 40  # the premise: early stopping ended it
    # "interrupted" at the logging step before the stop, which spent some of the patience
    cut = stopped - 2
    train.crai.fit(masks, iterations=cut, checkpoint_dir=tmp_path / "cut", **options)
    resumed = train.crai.fit(masks, iterations=40, resume=tmp_path / "cut", **options)
    assert _same_weights(whole.net.state_dict(), resumed.net.state_dict())
    xr.testing.assert_equal(whole.history, resumed.history)
    again = train.crai.fit(masks, iterations=40, resume=tmp_path / "whole", **options)
    assert _same_weights(whole.net.state_dict(), again.net.state_dict())
    assert int(again.history.iteration[-1]) == stopped


def test_early_stopping_needs_validation_fields(train, masks):
    with pytest.raises(ValueError, match=r"early_stopping: it watches the validation loss, but"):
        train.crai.fit(masks, validation=None, early_stopping=2, iterations=2, progress=False)


def test_validation_fields_are_put_on_the_data_grid_and_must_be_complete(train, masks):
    """Validation fields that run north to south where the data runs south to north are
    turned as masks are; another longitude grid, NaN where the data has values, and
    infinite training values are refused."""
    options = dict(batch_size=4, architecture={"n_filters": 4, "depth": 2}, progress=False,
                   iterations=2, log_every=2, **SAME)  # fmt: skip
    fields, held = train.isel(time=slice(0, 14)), train.isel(time=slice(14, None))
    right = fields.crai.fit(masks, validation=held, **options)
    flipped = fields.crai.fit(masks, validation=held.isel(lat=slice(None, None, -1)), **options)
    xr.testing.assert_equal(right.history, flipped.history)
    with pytest.raises(ValueError, match=r"validation: on another grid than the data: longit"):
        fields.crai.fit(masks, validation=held.assign_coords(lon=held.lon - 180), **options)
    holed = held.copy(data=held.values.copy())
    holed[0, 10:20, 10:20] = np.nan
    with pytest.raises(ValueError, match=r"validation: 100 grid points are NaN or infinite in"):
        fields.crai.fit(masks, validation=holed, **options)
    infinite = fields.copy(data=fields.values.copy())
    infinite[3, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"data: holds infinite values; training fields must be"):
        infinite.crai.fit(masks, **options)


def test_a_field_without_any_value_is_named(train, masks):
    holed = train.copy(data=train.values.copy())
    holed[3] = np.nan
    with pytest.raises(ValueError, match=r"data: the fields at time index \[3\] have no value"):
        holed.crai.fit(masks, iterations=2, progress=False)
    with pytest.raises(ValueError, match=r"data: the fields at time index \[3\] have no value"):
        holed.chunk(time=5).crai.fit(masks, iterations=2, progress=False)  # lazy, the same


def _batches_of(fields, masks, mirror, iterations=6):
    """The truths of a few augmented batches (rolled, and mirrored where ``mirror``)."""
    from xcrai.train.loop import TrainConfig, TrainingData, Variables, _Batches
    from xcrai.train.losses import LossWeights

    config = TrainConfig(iterations=iterations, batch_size=4, lr=1e-3, finetune_iterations=0,
                         lr_finetune=1e-4, loss=LossWeights(), padding="global",
                         time_context=(0, 0), mean=0.0, std=1.0, seed=0, log_every=1,
                         augment=True, mirror=mirror)  # fmt: skip
    data = TrainingData(fields[None, None], Variables.one(masks, np.ones(fields.shape[-2:], bool),
                                                          0.0, 1.0))  # fmt: skip
    batches = _Batches(data, config, None)
    return [batches[i][2][:, 0].numpy() for i in range(iterations)]


def _mirrored_samples(truths, fields):
    """How many truths are mirrored (a north-south flipped roll of a training field)."""
    flipped = 0
    for gt in truths:
        for sample in gt:
            rolls = [np.roll(f, k, axis=-1) for f in fields for k in range(f.shape[-1])]
            plain = any(np.array_equal(sample, r) for r in rolls)
            mirrored = any(np.array_equal(sample, r[::-1]) for r in rolls)
            assert plain or mirrored
            flipped += mirrored and not plain
    return flipped


def test_augment_mirrors_only_where_latitudes_are_symmetric(train, masks):
    """On a grid from 77.5 S to 90 N a mirrored field would put the Arctic on the Southern
    Ocean: augment rolls it in longitude only (and the model says so); fitbench's -90..90
    grid is still mirrored."""
    from xcrai.fit import symmetric_latitudes
    from xcrai.grid import find_grid

    south = train.sel(lat=slice(-77.5, None))
    assert float(south.lat[0]) == -77.5 and float(south.lat[-1]) == 90.0
    assert symmetric_latitudes(train, find_grid(train))
    assert not symmetric_latitudes(south, find_grid(south))
    fields, observed = south.values[:4], masks.sel(lat=slice(-77.5, None)).values.astype(bool)
    assert _mirrored_samples(_batches_of(fields, observed, mirror=False), fields) == 0
    full = train.values[:4]
    assert _mirrored_samples(_batches_of(full, masks.values.astype(bool), mirror=True), full) > 0
    options = dict(iterations=2, batch_size=4, architecture=SMALL, progress=False, **SAME)
    model = south.crai.fit(masks.sel(lat=slice(-77.5, None)), **options)
    recorded = model.config.provenance["train_config"]
    assert recorded["augment"] is True and recorded["mirror"] is False
    assert "mirror" not in train.crai.fit(masks, **options).config.provenance["train_config"]
