"""The training loop: seeded sampling, Adam, fine-tuning, validation, checkpoints, resume.

Every batch is a pure function of ``(seed, iteration)``, so a run resumed from a
checkpoint draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from xcrai.bounds import constrain
from xcrai.engine import window_indices
from xcrai.files import write_torch
from xcrai.firstguess import FirstGuess
from xcrai.numerics import Numerics, cpu_threads, scoped
from xcrai.observer import progress_bar_class
from xcrai.train.checkpoints import CHECKPOINT_KEY
from xcrai.train.distributed import World, average
from xcrai.train.losses import LossWeights, gaussian_nll, loss_terms, total_loss
from xcrai.uncertainty import log_variance


@dataclass
class Variables:
    """The variables a network reads, and the one it outputs: one variable is the case
    ``len(masks) == 1``, ``output == 0``.

    Attributes
    ----------
    masks : list of ndarray of bool (M_v, H, W)
        Each input variable's coverage patterns, True where observed, in channel order.
    valid : ndarray of bool (V, H, W)
        Each variable's points that are ever valid (the inputs, then a target): a
        variable is never shown, nor a target, where it is NaN in every field.
    output : int
        The variable the network outputs: 0 (the first input, infilled), or
        ``len(masks)`` (a target, never shown: all of it counts as hole).
    norms : tuple of (mean, std)
        Each variable's normalisation, as ``valid``.
    """

    masks: list[np.ndarray]
    valid: np.ndarray
    output: int
    norms: tuple[tuple[float, float], ...]

    @classmethod
    def one(cls, masks: np.ndarray, target: np.ndarray, mean: float, std: float) -> Variables:
        """One variable, infilled: its coverage patterns (M, H, W), its ever-valid points
        (H, W) and its normalisation."""
        return cls([masks], target[None], 0, ((mean, std),))

    @property
    def n_inputs(self) -> int:
        return len(self.masks)


@dataclass
class TrainingData:
    """Arrays for training (NumPy, or dask: read batch by batch), in one layout for one
    variable or several: (series, variable, time, lat, lon).

    Attributes
    ----------
    fields : array (S, V, T, H, W)
        Complete training fields of every variable (the inputs, then a target); NaN only
        where a variable is never valid (``variables.valid`` False).
    variables : Variables
        Which variables are read and output, their coverage patterns and normalisation.
    val_fields : array (S', V, T', H, W) or None
        Validation fields, each input's sample k paired with its mask ``k % M_v``.
    """

    fields: Any
    variables: Variables
    val_fields: Any = None
    #: the training fields' mean at each point, in the network's normalised units,
    #: (V, 1, H, W): what :func:`mix` turns the fields about (needed with ``TrainConfig.mix``)
    centre: np.ndarray | None = None
    #: the first guess the network corrects (one variable; ``fields`` and ``val_fields``
    #: stay the data itself: batches turn them into departures from it), with the calendar
    #: months of the training and validation fields' time steps (None: not datetime-like)
    guess: FirstGuess | None = None
    months: np.ndarray | None = None
    val_months: np.ndarray | None = None

    @property
    def n_series(self) -> int:
        return int(self.fields.shape[0])

    @property
    def length(self) -> int:
        """Time steps of the training fields."""
        return int(self.fields.shape[-3])


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (saved in checkpoints)."""

    iterations: int
    batch_size: int
    lr: float
    finetune_iterations: int
    lr_finetune: float
    loss: LossWeights
    padding: str
    time_context: tuple[int, int]
    mean: float
    std: float
    seed: int
    log_every: int
    early_stopping: int | None = None
    checkpoint_every: int | None = None
    augment: bool = False
    precision: str = "fp32"
    vgg_weights: str | None = None
    deterministic: bool = True
    #: output bounds in the network's normalised units (:mod:`xcrai.bounds`), or None
    bounds: tuple[float | None, float | None] | None = None
    #: a second output channel, the log-variance of the Gaussian NLL term
    uncertainty: bool = False
    #: the learning rate over the main phase: "constant", or "cosine" (from lr down to 0)
    lr_schedule: str = "constant"
    #: the share of training samples mixed with another one (:func:`mix`)
    mix: float = 0.0
    #: with ``augment``: mirror half of the samples north-south too (False where the
    #: latitudes are not symmetric about the equator: a mirrored field would not fit the
    #: grid); the rolls in longitude stay
    mirror: bool = True
    #: the kind of first guess the network corrects (:mod:`xcrai.firstguess`), or None
    first_guess: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time_context"] = list(self.time_context)
        if self.bounds is None:  # as checkpoints without bounds recorded it
            del d["bounds"]
        else:
            d["bounds"] = list(self.bounds)
        if not self.uncertainty:  # likewise
            del d["uncertainty"]
        if self.lr_schedule == "constant":  # likewise
            del d["lr_schedule"]
        if not self.mix:  # likewise
            del d["mix"]
        if self.mirror or not self.augment:  # likewise: augment mirrored wherever it rolled
            del d["mirror"]
        if self.first_guess is None:  # likewise
            del d["first_guess"]
        return d


@dataclass
class History:
    """Losses per logging step."""

    rows: list[dict[str, float]] = field(default_factory=list)


class _Batches(Dataset):
    """Batch number -> (x, mask, gt, target) tensors, drawn from (seed, iteration).

    With several processes, each takes its equal slice of the same global batch.
    """

    def __init__(self, data: TrainingData, config: TrainConfig, world: World | None) -> None:
        self.data = data
        self.config = config
        self.world = world
        self.n_series, self.length = data.n_series, data.length

    def __len__(self) -> int:  # pragma: no cover - sampled by iteration number
        return 2**62

    def __getitem__(self, iteration: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.config.seed, iteration])
        size = self.config.batch_size
        stream = np.arange(iteration * size, (iteration + 1) * size)
        samples = shuffled(stream, self.n_series * self.length, (self.config.seed, 0))
        # each input's own holes: its own seeded stream of its masks
        mask_index = np.stack([
            shuffled(stream, len(masks), (self.config.seed, 1 + v))
            for v, masks in enumerate(self.data.variables.masks)
        ])  # fmt: skip
        width = self.data.fields.shape[-1]
        shifts, flips = np.zeros(size, int), np.zeros(size, bool)
        if self.config.augment:  # the flips are drawn either way: the same stream
            shifts, flips = rng.integers(0, width, size), rng.random(size) < 0.5
            flips &= self.config.mirror
        mixing = None
        if self.config.mix:
            chosen = rng.random(size) < self.config.mix
            partners = rng.integers(0, self.n_series * self.length, size)
            angles = rng.uniform(0.0, 2 * np.pi, size)
            mixing = Mixing(np.where(chosen, partners, -1), angles, self.data.centre)
            if self.config.augment:
                mixing = replace(mixing, shifts=rng.integers(0, width, size),
                                 flips=(rng.random(size) < 0.5) & self.config.mirror)  # fmt: skip
        if self.world is not None:
            local = size // self.world.size
            part = slice(self.world.rank * local, (self.world.rank + 1) * local)
            samples, mask_index = samples[part], mask_index[..., part]
            shifts, flips = shifts[part], flips[part]
            if mixing is not None:
                mixing = mixing.part(part)
        return make_batch(self.data.fields, self.data.variables, samples, mask_index,
                          self.config, shifts, flips, mixing, self.data.guess, self.data.months)


@dataclass(frozen=True)
class Mixing:
    """Which samples of a batch :func:`mix` turns towards another sample, and how far.

    Attributes
    ----------
    partners : ndarray of int (N,)
        Each sample's partner, as a sample number ``s * T + t``; -1: left as it is.
    angles : ndarray (N,)
        The angle θ of each turn, radians.
    centre : ndarray
        :attr:`TrainingData.centre`.
    shifts, flips : ndarray (N,), optional
        With ``augment``: each partner's own longitude roll and north-south mirroring
        (of its difference from the centre), so that a blend joins patterns that no
        training field holds together.
    """

    partners: np.ndarray
    angles: np.ndarray
    centre: Any
    shifts: np.ndarray | None = None
    flips: np.ndarray | None = None

    def part(self, part: slice) -> Mixing:
        """The mixing of the samples ``part`` of the batch."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[part]

        return Mixing(self.partners[part], self.angles[part], self.centre,
                      cut(self.shifts), cut(self.flips))  # fmt: skip

    def apply(self, x: np.ndarray, read: Any) -> np.ndarray:
        """``x`` (N, ..., H, W, normalised) with the chosen samples mixed; ``read(samples)``
        gives the partners' fields as ``x`` holds its own."""
        chosen = np.flatnonzero(self.partners >= 0)
        if not len(chosen):
            return x
        x = x.copy()
        away = read(self.partners[chosen]) - self.centre
        if self.shifts is not None:
            away = roll_each(away, self.shifts[chosen])
        if self.flips is not None:
            away = mirror_each(away, self.flips[chosen])
        # a partner's never-valid points (land, say), moved by its roll, add nothing
        away = np.where(np.isnan(away), np.float32(0), away)
        angles = self.angles[chosen].reshape(-1, *[1] * (x.ndim - 1))
        x[chosen] = mix(x[chosen], self.centre + away, angles, self.centre)
        return x


def roll_each(samples: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each sample (first axis) rolled in longitude (last axis) by its own shift."""
    return np.stack(
        [np.roll(sample, int(k), axis=-1) for sample, k in zip(samples, shifts, strict=True)]
    )


def mirror_each(samples: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """A copy of ``samples`` with those where ``flips`` (first axis) is True mirrored
    north-south (second last axis)."""
    out = samples.copy()
    out[flips] = samples[flips][..., ::-1, :]
    return out


def mix(a: np.ndarray, b: np.ndarray, angle: Any, centre: Any) -> np.ndarray:
    """Turn field ``a`` towards field ``b`` by ``angle`` about their pointwise mean ``c``:
    ``c + cos(angle) (a - c) + sin(angle) (b - c)``.

    With the angle drawn uniformly from [0, 2π), the result has on average the mean and
    the covariance of the fields it is drawn from, and its patterns are new blends of
    theirs: from a short record, an endless supply of plausible training fields.
    """
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    return (centre + cos * (a - centre) + sin * (b - centre)).astype(np.float32)


def shuffled(positions: np.ndarray, n: int, key: tuple[int, int]) -> np.ndarray:
    """Items at ``positions`` of an endless stream of shuffled passes over ``range(n)``:
    every item once per pass (an epoch), each pass in its own seeded order."""
    epochs, offsets = np.divmod(positions, n)
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([*key, int(epoch)]).permutation(n)
        out[epochs == epoch] = order[offsets[epochs == epoch]]
    return out


def make_batch(
    fields: Any,
    variables: Variables,
    samples: np.ndarray,
    mask_index: np.ndarray,
    config: TrainConfig,
    shifts: np.ndarray | None = None,
    flips: np.ndarray | None = None,
    mixing: Mixing | None = None,
    guess: FirstGuess | None = None,
    months: np.ndarray | None = None,
) -> tuple[torch.Tensor, ...]:
    """Network input and mask (each input variable's window in turn: CRAI's channel
    order), truth and target weights of the output variable, and where the loss counts
    its truth as shown, for samples ``s * T + t`` of ``fields`` (S, V, T, H, W).

    ``mask_index`` (n_inputs, N) is the mask each input's sample is paired with. ``mixing``
    blends samples with others (:func:`mix`); then ``shifts`` rolls each sample's fields
    (and their never-valid points) in longitude, and ``flips`` mirrors them north-south.
    The coverage masks are applied as they are. With a first ``guess`` (one variable;
    ``months``: the calendar month of each of the T time steps), every value is its
    departure from the guess made from the sample's observed points, as ``infill`` gives
    the network (:mod:`xcrai.firstguess`).
    """
    past, future = config.time_context
    n_inputs, out = variables.n_inputs, variables.output
    means = np.array([mean for mean, _ in variables.norms], np.float32)[:, None, None, None]
    stds = np.array([std for _, std in variables.norms], np.float32)[:, None, None, None]
    length = fields.shape[-3]

    def read(numbers: np.ndarray) -> np.ndarray:  # (N, V, C, H, W), normalised
        x = read_windows(fields, numbers, config.time_context).astype(np.float32)
        if guess is not None:  # the base (a climatology): departures before any mixing
            steps = window_indices(length, past, future, 0, length)[numbers % length]
            picked = None if months is None else months[steps]
            x = x - guess.bases(picked, steps.size).reshape(x.shape)
        return (x - means) / stds

    raw = read(samples)
    if mixing is not None:
        raw = mixing.apply(raw, read)
    valid = np.broadcast_to(variables.valid[:, None], (len(raw), *variables.valid[:, None].shape))
    if shifts is not None and shifts.any():
        raw, valid = roll_each(raw, shifts), roll_each(valid, shifts)
    if flips is not None and flips.any():
        raw, valid = mirror_each(raw, flips), mirror_each(valid, flips)
    m = (
        np.stack(
            [
                masks[window_indices(len(masks), past, future, 0, len(masks))[mask_index[v]]]
                for v, masks in enumerate(variables.masks)
            ],
            axis=1,
        )
        & valid[:, :n_inputs]
    )  # (N, n_inputs, C, H, W)
    if guess is not None and len(guess.patterns):  # EOFs fitted to what is observed
        mean, std = (np.float32(n) for n in variables.norms[out])
        height, width = raw.shape[-2:]
        departures = (raw * std + mean).reshape(-1, height, width)
        fitted = guess.correction(departures, m.reshape(-1, height, width))
        raw = raw - fitted.reshape(raw.shape) / std
    x = np.where(m, raw[:, :n_inputs], np.float32(0))
    targets = valid[:, out]  # (N, 1, H, W)
    gt = np.where(targets, raw[:, out, past : past + 1], np.float32(0))
    if out < n_inputs:  # an input infilled: what the network saw of it is not a hole
        shown = m[:, out, past : past + 1]
    else:  # a target: never shown, every point a hole
        shown = np.zeros_like(targets)
    shape = (len(x), n_inputs * (past + future + 1), *x.shape[-2:])
    return (
        torch.from_numpy(np.ascontiguousarray(x.reshape(shape))),
        torch.from_numpy(m.reshape(shape).astype(np.float32)),
        torch.from_numpy(np.ascontiguousarray(gt)),
        torch.from_numpy(targets.astype(np.float32)),
        torch.from_numpy(shown.astype(np.float32)),
    )


def read_windows(fields: Any, samples: np.ndarray, time_context: tuple[int, int]) -> np.ndarray:
    """The windows of time steps of samples ``s * T + t`` of ``fields`` (S, ..., T, H, W):
    (N, ..., C, H, W), as stored."""
    length = fields.shape[-3]
    series, steps = np.divmod(samples, length)
    windows = window_indices(length, *time_context, 0, length)[steps]
    return np.stack(
        [np.asarray(fields[s][..., w, :, :]) for s, w in zip(series, windows, strict=True)]
    )


def _terms(
    out: torch.Tensor, gt: torch.Tensor, shown: torch.Tensor, target: torch.Tensor,
    config: TrainConfig, vgg: Any = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:  # fmt: skip
    """The loss terms of a batch's output (its bounds applied), and the output's values:
    its first channel; a second (``uncertainty``) is the log-variance of the ``nll`` term."""
    values = out[:, :1]
    if config.bounds is not None:
        values = constrain(values, config.bounds)
    terms = loss_terms(values, gt, shown, target, vgg)
    if out.shape[1] > 1:
        terms["nll"] = gaussian_nll(values, out[:, 1:2], gt, (1 - shown) * target)
    return terms, values


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, ...],
    config: TrainConfig,
    device: torch.device,
    vgg: Any,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step on one batch; returns the loss terms and the total."""
    batch = tuple(t.to(device, non_blocking=True) for t in batch)
    x, m, gt, target, shown = batch
    x = x.contiguous(memory_format=torch.channels_last)
    m = m.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, torch.bfloat16, enabled=config.precision == "bf16"):
        out, _ = model(x, m, config.padding)
    terms, _ = _terms(out.float(), gt, shown, target, config, vgg)
    loss = total_loss(terms, config.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return terms, loss


def _set_finetune(net: torch.nn.Module) -> None:
    """CRAI's fine-tuning: the batch norm of every encoding layer (the main encoder's and
    an attention network's encoder of the other variables) uses, and keeps, its running
    statistics."""
    net.train()
    for name, module in net.named_modules():
        encoding = name.startswith("encoder.") or ".partial_conv_enc." in name
        if encoding and isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


@torch.no_grad()
def validate(
    net: torch.nn.Module,
    data: TrainingData,
    config: TrainConfig,
    device: torch.device,
    weigh: bool = False,
) -> dict[str, float]:
    """Loss terms and hole RMSE (in data units) on the fixed validation pairs; with
    ``uncertainty``, also ``val_sigma_scale``: the factor that makes the network's σ
    calibrated there, ``sqrt(mean((out - gt)² / σ²))`` over the hidden points (left out
    when the masks hide none of them).

    With ``weigh`` (a first guess), also ``val_correction_weight``: the share ``w`` in
    [0, 1] of the network's correction of the guess that fits the hidden points best by
    least squares (the guess plus ``w`` times the correction), and ``val_hole_rmse`` is
    that of the weighted correction; where the masks hide nothing, ``w`` is 1."""
    val = data.val_fields
    n = val.shape[0] * val.shape[-3]
    modes = {module: module.training for module in net.modules()}
    net.eval()
    totals = {"valid": 0.0, "hole": 0.0, "tv": 0.0}
    if config.uncertainty:
        totals["nll"] = 0.0
    squared, standardised, count = 0.0, 0.0, 0.0
    # sums over the hidden points of c·e, c², e² and c, e, 1: c the network's correction of
    # the guess and e the guess's error, both in normalised units (the guess alone is
    # -mean/std there)
    products = np.zeros(3)
    offset = config.mean / config.std
    for first in range(0, n, 64):
        samples = np.arange(first, min(n, first + 64))
        mask_index = np.stack([samples % len(masks) for masks in data.variables.masks])
        batch = make_batch(val, data.variables, samples, mask_index, config,
                           guess=data.guess, months=data.val_months)  # fmt: skip
        x, m, gt, target, shown = (t.to(device) for t in batch)
        raw, _ = net(x, m, config.padding)
        terms, out = _terms(raw, gt, shown, target, config)
        for name in totals:
            totals[name] += float(terms[name]) * len(samples)
        holes = (1 - shown) * target
        squared += float((((out - gt) * holes) ** 2).sum())
        count += float(holes.sum())
        if weigh:
            correction, error = (out + offset) * holes, (gt + offset) * holes
            products += [float((correction * error).sum()), float((correction**2).sum()),
                         float((error**2).sum())]  # fmt: skip
        if config.uncertainty:
            precision = torch.exp(-log_variance(raw[:, 1:2]))
            standardised += float(((out - gt) ** 2 * precision * holes).sum())
    for module, mode in modes.items():  # e.g. the encoder's frozen batch norm when fine-tuning
        module.train(mode)
    result = {f"val_{k}": v / n for k, v in totals.items()}
    weights = config.loss
    result["val_loss"] = (
        weights.valid * result["val_valid"]
        + weights.hole * result["val_hole"]
        + weights.tv * result["val_tv"]
        + weights.nll * result.get("val_nll", 0.0)
    )
    result["val_hole_rmse"] = math.sqrt(squared / max(count, 1.0)) * config.std
    if weigh:
        both, corrections, errors = products
        weight = min(max(both / corrections, 0.0), 1.0) if corrections > 0 else 1.0
        result["val_correction_weight"] = weight
        if count > 0:  # sum of (w c - e)², expanded
            left = weight**2 * corrections - 2 * weight * both + errors
            result["val_hole_rmse"] = math.sqrt(max(left, 0.0) / count) * config.std
    if config.uncertainty and count > 0:
        result["val_sigma_scale"] = math.sqrt(standardised / count)
    return result


def prefetch(iterable: Any, depth: int) -> Iterator[Any]:
    """Iterate over ``iterable`` while a thread produces the next ``depth`` items."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        items = iter(iterable)
        pending = deque(pool.submit(next, items, None) for _ in range(depth))
        while pending:
            item = pending.popleft().result()
            if item is None:
                break
            pending.append(pool.submit(next, items, None))
            yield item


def save_training_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write a training checkpoint (temp file in the same folder, rename)."""
    write_torch(payload, path, "checkpoint_dir")


def train(
    *args: Any, threads: int | None = None, **kwargs: Any
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]], int]:
    """Train ``net`` in place; returns (weights to keep, loss history, iterations run).

    Without early stopping the weights are the last iteration's; with it, the best by
    validation loss. Denormal floats are flushed to zero meanwhile: weights and
    gradients decaying towards zero otherwise slow CPU training down up to 40x. The
    CPU runs ``threads`` intra-op threads (the caller's count when None). Both are
    put back as they were afterwards.
    """
    flushing = _flushes_denormals()
    torch.set_flush_denormal(True)
    try:
        with cpu_threads(threads or torch.get_num_threads()):
            return _train(*args, **kwargs)
    finally:
        torch.set_flush_denormal(flushing)


def cosine_lr(lr: float, iteration: int, iterations: int) -> float:
    """The learning rate of step ``iteration`` (1-based) of ``iterations`` under the cosine
    schedule: ``lr`` at the first step, falling to 0 after the last."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * (iteration - 1) / iterations))


def _flushes_denormals() -> bool:
    """Whether the CPU flushes denormal floats now (torch has no getter)."""
    tiny = torch.tensor(1e-40, dtype=torch.float32)  # a denormal
    return bool(tiny * 1.0 == 0)


def _train(
    net: torch.nn.Module,
    data: TrainingData,
    config: TrainConfig,
    *,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    resume: dict[str, Any] | None = None,
    progress: bool = True,
    world: World | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, float]], int]:
    tqdm = progress_bar_class()
    # channels-last: faster convolutions, CPU and GPU (torch's type hints omit memory_format)
    net.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    total = config.iterations + config.finetune_iterations
    # one fused kernel for every parameter's update on CUDA instead of several per tensor
    # (a training step of this network is bound by kernel launches there)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, fused=device.type == "cuda")
    history: list[dict[str, float]] = []
    start, end = 0, total
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    # early stopping's patience, and the sums of a logging window a checkpoint cut in two
    since_best = 0
    running: dict[str, float] = {}
    if resume is not None:
        net.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        history = list(resume["history"])
        start = int(resume["iteration"])
        if resume.get("best") is not None:
            best = (resume["best"]["loss"], resume["best"]["iteration"], resume["best"]["state"])
        since_best = int(resume.get("since_best", 0))
        running = dict(resume.get("running", {}))
        if resume.get("stopped"):  # early stopping ended the run: it stays ended
            end = start
    net.train()
    if start >= config.iterations:
        _set_finetune(net)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_finetune
    model: torch.nn.Module = net
    if world is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(net, device_ids=ids)
    main = world is None or world.main
    numerics = Numerics.training(config.precision, config.deterministic, device)
    vgg = None
    if config.loss.needs_vgg:
        from xcrai.train.perceptual import VGG16Features

        vgg = VGG16Features.from_file(cast(str, config.vgg_weights)).to(device)  # checked by fit
    loader: Any = DataLoader(
        _Batches(data, config, world),
        batch_size=None,
        sampler=range(start, end),
        num_workers=0,
        generator=torch.Generator().manual_seed(config.seed),
    )  # its own generator: an iterator draws a seed, which must not come from the user's
    if not isinstance(data.fields, np.ndarray):
        # dask-backed fields are read batch by batch in a thread, ahead of the step (a
        # loader process would fork dask's and HDF5's threads and locks)
        loader = prefetch(loader, depth=4)
    bar = tqdm(
        total=total, initial=start, desc="training", disable=not (progress and main), unit="it"
    )
    iteration = start
    for iteration, batch in enumerate(loader, start=start + 1):
        if iteration == config.iterations + 1 and config.finetune_iterations:
            _set_finetune(net)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_finetune
        elif iteration <= config.iterations and config.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(config.lr, iteration, config.iterations)
        with scoped(numerics):
            terms, loss = _step(model, optimizer, batch, config, device, vgg)
        for name, value in (("loss", loss), *terms.items()):
            running[name] = running.get(name, 0.0) + float(value.detach())
        if iteration % config.log_every == 0 or iteration == total:
            steps = (iteration - 1) % config.log_every + 1
            row = {"iteration": float(iteration)}
            row.update({f"train_{k}": average(v / steps, world) for k, v in running.items()})
            running = {}
            if data.val_fields is not None:
                with scoped(numerics):
                    row.update(validate(net, data, config, device))
                if config.early_stopping is not None:
                    if best is None or row["val_loss"] < best[0]:
                        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                        best, since_best = (row["val_loss"], iteration, state), 0
                    else:
                        since_best += 1
            history.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in
                             ("train_loss", "val_loss", "val_hole_rmse")})  # fmt: skip
        bar.update(1)
        stop = config.early_stopping is not None and since_best > config.early_stopping
        if (
            main
            and checkpoint_dir is not None
            and (
                (config.checkpoint_every and iteration % config.checkpoint_every == 0)
                or iteration == total
                or stop
            )
        ):
            payload = {
                CHECKPOINT_KEY: 1,
                "iteration": iteration,
                "train_config": config.to_dict(),
                "state_dict": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "fingerprint": fingerprint,
                "threads": torch.get_num_threads(),
                "best": None
                if best is None
                else {"loss": best[0], "iteration": best[1], "state": best[2]},
                "since_best": since_best,
                "running": running,
                "stopped": stop,
            }
            save_training_checkpoint(Path(checkpoint_dir) / "checkpoint.pth", payload)
        if stop:
            break
    bar.close()
    net.eval()
    weights = best[2] if best is not None else net.state_dict()
    return {k: v.detach().cpu().clone() for k, v in weights.items()}, history, iteration
