"""The options of each verb, in one place: :class:`InfillOptions` and :class:`FitOptions`.

Each is a frozen dataclass that checks and normalises its values when built, so an
options object that exists is a valid one. Every field carries its default, its help
text and how it is written on the command line (``metadata``); the accessor signatures
are checked against these fields by the tests, and the ``xcrai`` command builds its
options from them (:func:`xcrai.cli.add_options`). Data (``mask``, ``masks``,
``validation`` fields) is not an option: it stays an argument of the functions.

Examples
--------
>>> InfillOptions(batch_size=8, precision="bf16").engine()["batch_size"]
8
>>> FitOptions(iterations=0)
Traceback (most recent call last):
...
ValueError: iterations: expected an integer >= 1, got 0
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xcrai.bounds import check_bounds
from xcrai.choices import (
    INITS,
    NETWORK_CHOICES,
    NORMALIZATIONS,
    PADDING_CHOICES,
    PRECISION_CHOICES,
    TRAINING_PRECISIONS,
    check_int,
    check_padding,
    check_precision,
    check_threads,
    check_time_context,
)
from xcrai.firstguess import KINDS as FIRST_GUESS_KINDS
from xcrai.train.lossweights import LossWeights

if TYPE_CHECKING:  # torch and the networks are imported where a value needs them
    from xcrai.nn import Architecture

#: the network ``fit`` builds without ``architecture``: CRAI's demo architecture
DEFAULT_ARCHITECTURE: dict[str, Any] = {"n_filters": 18, "depth": 3, "normalization": "crai"}
#: the network ``fit`` trains by default (the first of :data:`xcrai.choices.NETWORK_CHOICES`)
DEFAULT_NETWORK: str = next(iter(NETWORK_CHOICES))
#: choices of ``architecture["normalization"]`` (the partial convolution's)
ARCHITECTURE_CHOICES: dict[str, tuple[str, ...]] = {"normalization": NORMALIZATIONS}


#: the largest seed: torch's random generators are seeded with 64 bits
MAX_SEED = 2**64 - 1
#: what ``first_guess`` accepts besides None: a kind, or "auto" (chosen by ``fit``)
FIRST_GUESS_CHOICES = (*FIRST_GUESS_KINDS, "auto")

# How options are written on a command line: text -> value, errors for argparse to print.


def parse_init(text: str) -> str | Path:
    """``--init``: a scheme of :data:`INITS`, else the path of a model file."""
    return text if text in INITS else Path(text)


def parse_time_context(text: str) -> tuple[int, int]:
    """``"3,1"`` -> ``(3, 1)``."""
    try:
        past, future = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected P,F (two non-negative integers, e.g. 3,1), got {text!r}"
        ) from None
    return past, future


#: learning-rate schedules of fit's main phase
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
#: what infill does with an ensemble's members
MEMBERS_CHOICES: tuple[str, ...] = ("keep", "mean")
#: what infill puts at holes beyond the network's reach (see InfillOptions.unreachable)
UNREACHABLE_CHOICES: tuple[str, ...] = ("crai", "poisson")


def parse_bounds(text: str) -> tuple[float | None, float | None]:
    """``"0,"`` -> ``(0.0, None)``: LOW,HIGH with an empty side open."""
    try:
        low, high = (None if v.strip() == "" else float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH with an empty side open (e.g. 0, for >= 0), got {text!r}"
        ) from None
    return low, high


def parse_positive(text: str) -> int:
    """``"8"`` -> ``8``; refuses anything but a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_count(text: str) -> int:
    """``"0"`` -> ``0``; refuses anything but a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def parse_threads(text: str) -> int | str:
    """``"auto"`` or a positive integer."""
    return text if text == "auto" else parse_positive(text)


def parse_loss(text: str) -> dict[str, float]:
    """``"valid=1,hole=6"`` -> ``{"valid": 1.0, "hole": 6.0}``."""
    try:
        pairs = (item.split("=") for item in text.split(","))
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TERM=WEIGHT pairs separated by commas (e.g. hole=1), got {text!r}"
        ) from None


def parse_augment(text: str) -> bool | str:
    """``"auto"``, ``"yes"`` or ``"no"`` -> ``"auto"``, True or False."""
    values: dict[str, bool | str] = {"auto": "auto", "yes": True, "no": False}
    if text not in values:
        raise argparse.ArgumentTypeError(f"expected one of auto, yes, no; got {text!r}")
    return values[text]


def parse_first_guess(text: str) -> str | None:
    """``"none"`` or one of :data:`FIRST_GUESS_CHOICES` -> None or that choice."""
    if text != "none" and text not in FIRST_GUESS_CHOICES:
        raise argparse.ArgumentTypeError(
            f"expected one of none, {', '.join(FIRST_GUESS_CHOICES)}; got {text!r}"
        )
    return None if text == "none" else text


def meta(
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    default_text: str | None = None,
    cli: bool = True,
    engine: bool = False,
) -> dict[str, Any]:
    """A dataclass field's ``metadata``: how the option is written on the command line.

    The field's default is the default of the Python argument and of the option.

    Parameters
    ----------
    help : str
        Help text of the command-line option (the docstrings say more).
    choices : tuple of str, optional
        Allowed values, from their single source (e.g. :data:`xcrai.numerics.PRECISIONS`).
    parse : callable, optional
        Text -> value for the command line (booleans need none: they are switches).
    metavar : str, optional
        Placeholder of the value in ``--help``.
    flag : str, optional
        The option's name on the command line; default ``--`` + the field's name with
        dashes.
    default_text : str, optional
        What ``--help`` says for the default; default the value itself.
    cli : bool
        False for options the command line spells otherwise (documented in
        :data:`xcrai.cli.API_ONLY`).
    engine : bool
        True for options passed on to :func:`xcrai.engine.predict`.
    """
    return dict(help=help, choices=choices, parse=parse, metavar=metavar, flag=flag,
                default_text=default_text, cli=cli, engine=engine)  # fmt: skip


def _set(options: Any, name: str, value: Any) -> None:
    object.__setattr__(options, name, value)  # normalising a frozen dataclass's own field


def _check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument}: expected True or False, got {value!r}")
    return value


def _check_optional_int(options: Any, name: str, allow_zero: bool = False) -> None:
    value = getattr(options, name)
    if value is not None:
        _set(options, name, check_int(value, name, allow_zero))


def _check_device(device: Any) -> None:
    """The device's type only: whether it exists is known where the work runs."""
    if not isinstance(device, str) and type(device).__module__ + "." + type(device).__name__ != (
        "torch.device"
    ):
        raise TypeError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {type(device).__name__}"
        )


def _check_path(options: Any, name: str) -> None:
    value = getattr(options, name)
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path or None, got {type(value).__name__}")


@dataclass(frozen=True)
class InfillOptions:
    """How ``infill`` runs: the options of :meth:`xcrai.accessor.CraiDataArrayAccessor.infill`
    (whose docstring describes each) and of ``xcrai infill``.

    Examples
    --------
    >>> InfillOptions(padding="global", time_context=[3, 1]).time_context
    (3, 1)
    """

    padding: str | None = field(
        default=None,
        metadata=meta(
            "convolution padding: global wraps longitude (uniform 360-degree grids), zeros "
            "pads with zeros, auto picks global when the longitude covers the globe",
            choices=PADDING_CHOICES,
            default_text="the model's; auto for CRAI checkpoints",
        ),
    )
    time_context: tuple[int, int] | None = field(
        default=None,
        metadata=meta(
            "past and future steps stacked as channels (needed for CRAI time-context models)",
            parse=parse_time_context,
            metavar="P,F",
            default_text="the model's",
        ),
    )
    bounds: tuple[float | None, float | None] | None = field(
        default=None,
        metadata=meta(
            "keep the output inside LOW,HIGH (an empty side is open, e.g. 0, for >= 0), as "
            "CRAI's --min-bounds/--max-bounds do",
            parse=parse_bounds,
            metavar="LOW,HIGH",
            default_text="the model's",
        ),
    )
    unreachable: str = field(
        default="crai",
        metadata=meta(
            "holes beyond the network's reach (flagged -1): crai leaves CRAI's fill value (the "
            "training mean) there; poisson fills them by Laplace's equation from the values "
            "around them",
            choices=UNREACHABLE_CHOICES,
        ),
    )
    sigma: bool = field(
        default=False,
        metadata=meta(
            "also write each variable's <var>_sigma: the standard deviation of each "
            "infilled value from a model trained with --uncertainty, or the spread of an "
            "ensemble's members with --members mean (0 where observed)",
        ),
    )
    members: str = field(
        default="keep",
        metadata=meta(
            "an ensemble's members: keep them along a member dimension, or write their "
            "mean (and, with --sigma, their spread)",
            choices=MEMBERS_CHOICES,
        ),
    )
    return_output: bool = field(
        default=False,
        metadata=meta(
            "also write each variable's flag variable: 1 observed, 0 infilled, -1 a hole "
            "no window of the network reached",
            flag="--flags",
        ),
    )
    device: str = field(
        default="auto", metadata=meta("auto (CUDA if present), cpu, cuda or cuda:N", engine=True)
    )
    batch_size: int | None = field(
        default=None,
        metadata=meta(
            "fields per forward pass",
            parse=parse_positive,
            metavar="N",
            default_text="from free memory",
            engine=True,
        ),
    )
    tile_size: int | None = field(
        default=None,
        metadata=meta(
            "run fields in spatial tiles of about N points a side (with halos, so the "
            "result equals the untiled one)",
            parse=parse_positive,
            metavar="N",
            default_text="tiles only fields too large for the device",
            engine=True,
        ),
    )
    precision: str = field(
        default="fp32",
        metadata=meta(
            "arithmetic of the convolutions: fp32 is IEEE on every device; tf32, bf16 and "
            "fp16 are faster on GPUs",
            choices=PRECISION_CHOICES,
            engine=True,
        ),
    )
    compile: bool = field(
        default=False,
        metadata=meta(
            "run the network through torch.compile (for long runs; figures in "
            "benchmarks/README.md)",
            engine=True,
        ),
    )
    threads: int | str = field(
        default="auto",
        metadata=meta(
            "CPU threads; auto: the cores other processes leave free",
            parse=parse_threads,
            metavar="N",
            engine=True,
        ),
    )
    progress: bool = field(
        default=True,
        metadata=meta(
            "a progress bar of the fields infilled (eager input shows it when a call takes "
            "more than a second; the command line's counts the file's fields)"
        ),
    )

    def __post_init__(self) -> None:
        if self.padding is not None:
            check_padding(self.padding)
        if self.time_context is not None:
            _set(self, "time_context", check_time_context(self.time_context))
        if self.bounds is not None:
            _set(self, "bounds", check_bounds(self.bounds) or (None, None))
        if self.members not in MEMBERS_CHOICES:
            raise ValueError(f"members: expected one of {MEMBERS_CHOICES}, got {self.members!r}")
        if self.unreachable not in UNREACHABLE_CHOICES:
            raise ValueError(
                f"unreachable: expected one of {UNREACHABLE_CHOICES}, got {self.unreachable!r}"
            )
        for name in ("return_output", "sigma", "compile", "progress"):
            _check_bool(getattr(self, name), name)
        _check_device(self.device)
        for name in ("batch_size", "tile_size"):
            _check_optional_int(self, name)
        check_precision(self.precision)
        _set(self, "threads", check_threads(self.threads))

    def engine(self) -> dict[str, Any]:
        """The options :func:`xcrai.engine.predict` takes, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["engine"]}


@dataclass(frozen=True)
class FitOptions:
    """How ``fit`` trains: the options of :meth:`xcrai.accessor.CraiDataArrayAccessor.fit`
    (whose docstring describes each) and of ``xcrai fit``.

    ``loss`` is normalised to a :class:`xcrai.train.LossWeights`, ``time_context`` to a
    pair (``(0, 0)`` when None), ``threads`` to "auto" or an int.

    Examples
    --------
    >>> FitOptions(loss={"hole": 1}).loss.valid
    0.0
    """

    iterations: int = field(
        default=10_000,
        metadata=meta(
            "optimiser steps (the cosine --lr-schedule spans them)",
            parse=parse_positive,
            metavar="N",
        ),
    )
    batch_size: int = field(
        default=16, metadata=meta("fields per step", parse=parse_positive, metavar="N")
    )
    lr: float = field(
        default=1e-3,
        metadata=meta(
            "Adam learning rate (at the start of a cosine --lr-schedule; CRAI's: 2e-4)",
            parse=float,
            metavar="RATE",
        ),
    )
    lr_schedule: str = field(
        default="cosine",
        metadata=meta(
            "the learning rate over the --iterations: constant, or cosine (from --lr down "
            "to 0 at the last iteration)",
            choices=LR_SCHEDULES,
        ),
    )
    finetune_iterations: int = field(
        default=0,
        metadata=meta(
            "further steps at --lr-finetune with the encoder's batch norm frozen",
            parse=parse_count,
            metavar="N",
        ),
    )
    lr_finetune: float = field(
        default=5e-5,
        metadata=meta("learning rate of the fine-tuning steps", parse=float, metavar="RATE"),
    )
    loss: dict[str, float] | LossWeights | None = field(
        default=None,
        metadata=meta(
            "loss weights, e.g. hole=1 (terms left out weigh 0, but nll keeps its 1); "
            "perceptual and style need --vgg-weights",
            parse=parse_loss,
            metavar="TERM=W,...",
            default_text="valid=1,hole=6,tv=0.1 (CRAI's without VGG terms)",
        ),
    )
    architecture: dict[str, Any] | Architecture | None = field(
        default=None,
        metadata=meta("the network's sizes: see --n-filters, --depth, --normalization", cli=False),
    )
    network: str = field(
        default=DEFAULT_NETWORK,
        metadata=meta(
            "the network to train: "
            + "; ".join(f"{name}: {summary}" for name, summary in NETWORK_CHOICES.items()),
            choices=tuple(NETWORK_CHOICES),
        ),
    )
    padding: str = field(
        default="auto",
        metadata=meta(
            "convolution padding; auto: global for a uniform 360-degree longitude",
            choices=PADDING_CHOICES,
        ),
    )
    time_context: tuple[int, int] | None = field(
        default=None,
        metadata=meta(
            "past and future steps around each field: stacked as channels (a sequence "
            "for --network convlstm and trajgru)",
            parse=parse_time_context,
            metavar="P,F",
            default_text="0,0",
        ),
    )
    normalize: bool = field(
        default=True, metadata=meta("train on (x - mean) / std of the training data")
    )
    ensemble: int = field(
        default=1,
        metadata=meta(
            "train N members from the seeds SEED .. SEED + N - 1 into one model file; "
            "infill gives a member dimension (or their mean and spread)",
            parse=parse_positive,
            metavar="N",
        ),
    )
    uncertainty: bool = field(
        default=False,
        metadata=meta(
            "also train a log-variance output channel (Gaussian NLL on the hidden points), "
            "so that infill can give each infilled value a sigma",
        ),
    )
    bounds: tuple[float | None, float | None] | None = field(
        default=None,
        metadata=meta(
            "keep the output inside LOW,HIGH (an empty side is open, e.g. 0, for >= 0) in "
            "training and infilling, as CRAI's --min-bounds/--max-bounds do; stored in the "
            "model",
            parse=parse_bounds,
            metavar="LOW,HIGH",
            default_text="none",
        ),
    )
    device: str = field(
        default="auto", metadata=meta("auto (CUDA if present), cpu, cuda or cuda:N")
    )
    seed: int = field(
        default=0,
        metadata=meta(
            "initial weights and every batch follow from it", parse=parse_count, metavar="N"
        ),
    )
    checkpoint_dir: str | os.PathLike[str] | None = field(
        default=None,
        metadata=meta(
            "folder for checkpoint.pth (written atomically)",
            parse=Path,
            metavar="DIR",
            default_text="no checkpoints",
        ),
    )
    checkpoint_every: int | None = field(
        default=None,
        metadata=meta(
            "iterations between checkpoints",
            parse=parse_positive,
            metavar="N",
            default_text="at the end only",
        ),
    )
    resume: str | os.PathLike[str] | None = field(
        default=None,
        metadata=meta(
            "training checkpoint (or its folder) to continue from",
            parse=Path,
            metavar="CKPT",
        ),
    )
    progress: bool = field(default=True, metadata=meta("a progress bar with the current losses"))
    early_stopping: int | None = field(
        default=None,
        metadata=meta(
            "stop after PATIENCE logging steps without a better validation loss and keep "
            "the best weights",
            parse=parse_count,
            metavar="PATIENCE",
            default_text="never",
        ),
    )
    log_every: int | None = field(
        default=None,
        metadata=meta(
            "iterations per logging step (losses, validation)",
            parse=parse_positive,
            metavar="N",
            default_text="1 percent of the run",
        ),
    )
    init: Any = field(
        default="kaiming",
        metadata=meta(
            "initial weights: a scheme, or a model file to fine-tune (an xcrai model, or a "
            "CRAI checkpoint of one variable, read with --time-context; load one of several "
            "variables with xcrai.load_model(..., inputs=[...]) and pass the model in Python)",
            parse=parse_init,
            metavar="{" + ",".join(INITS) + "}|MODEL",
        ),
    )
    distributed: bool = field(
        default=False,
        metadata=meta(
            "data-parallel training under torchrun (one process per GPU, or gloo on CPUs): "
            "torchrun --nproc-per-node N -m xcrai.cli fit ... --distributed",
        ),
    )
    augment: bool | str = field(
        default="auto",
        metadata=meta(
            "roll training fields in longitude and mirror half of them north-south (where "
            "the latitudes are symmetric about the equator); auto: on global grids",
            parse=parse_augment,
            metavar="{auto,yes,no}",
        ),
    )
    mix: float = field(
        default=1.0,
        metadata=meta(
            "the share of training samples turned towards another by a random angle about "
            "the fields' pointwise mean (new blends of the record's patterns)",
            parse=float,
            metavar="SHARE",
        ),
    )
    first_guess: str | None = field(
        default="auto",
        metadata=meta(
            "a classical fill that the network corrects: climatology (by calendar month "
            "where the time axis allows) or eof (the training fields' EOFs fitted to the "
            "observed points); auto: the one whose classical fill does best on the "
            "validation fields where it beats Poisson's, else none (also none without "
            "validation fields, with bounds, or for several variables); stored in the "
            "model, which infill adds back",
            parse=parse_first_guess,
            metavar="{none,climatology,eof,auto}",
        ),
    )
    precision: str = field(
        default="fp32",
        metadata=meta(
            "arithmetic of forward and backward passes: fp32 is IEEE on every device",
            choices=TRAINING_PRECISIONS,
        ),
    )
    vgg_weights: str | os.PathLike[str] | None = field(
        default=None,
        metadata=meta(
            "local file of ImageNet VGG16 weights (torchvision's), for the perceptual and "
            "style loss terms; nothing is downloaded",
            parse=Path,
            metavar="FILE",
        ),
    )
    deterministic: bool = field(
        default=True,
        metadata=meta(
            "deterministic algorithms, no cuDNN autotuning: the same weights for the same "
            "seed on CUDA",
        ),
    )
    threads: int | str = field(
        default="auto",
        metadata=meta(
            "CPU threads; auto: the cores other processes leave free at the start",
            parse=parse_threads,
            metavar="N",
        ),
    )

    def __post_init__(self) -> None:
        if self.bounds is not None:
            _set(self, "bounds", check_bounds(self.bounds))
        for name in ("iterations", "batch_size", "ensemble"):
            _set(self, name, check_int(getattr(self, name), name))
        for name in ("finetune_iterations", "seed"):
            _set(self, name, check_int(getattr(self, name), name, allow_zero=True))
        if self.seed + self.ensemble - 1 > MAX_SEED:  # torch's generators take 64 bits
            last = "" if self.ensemble == 1 else f" - {self.ensemble - 1} (ensemble seeds)"
            raise ValueError(
                f"seed: expected an integer from 0 to 2**64 - 1{last}, got {self.seed}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        for name in ("lr", "lr_finetune"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: expected a positive learning rate, got {value!r}")
        for name in ("normalize", "progress", "distributed", "deterministic", "uncertainty"):
            _check_bool(getattr(self, name), name)
        weights = LossWeights.from_argument(self.loss)
        if not weights.trains_values:
            raise ValueError(
                f"loss: every term that trains the infilled values weighs 0 ({self.loss!r}); "
                "nll shapes only the sigma of uncertainty=True"
            )
        if weights.needs_vgg and self.vgg_weights is None:
            raise ValueError(
                "vgg_weights: the perceptual and style terms of loss need a local file of "
                "ImageNet VGG16 weights (torchvision's vgg16-397923af.pth); xcrai downloads "
                "nothing"
            )
        _set(self, "loss", weights)
        check_padding(self.padding)
        time_context = check_time_context(
            (0, 0) if self.time_context is None else self.time_context
        )
        _set(self, "time_context", time_context)
        _check_architecture(self.architecture, sum(time_context) + 1, 1 + self.uncertainty)
        if self.network not in NETWORK_CHOICES:
            raise ValueError(
                f"network: expected one of {tuple(NETWORK_CHOICES)}, got {self.network!r}"
            )
        full = self.architecture is not None and not isinstance(self.architecture, dict)
        if self.network != DEFAULT_NETWORK and full:
            raise ValueError(
                f"network: {self.network!r} is built from the sizes in an architecture dict; "
                "a full architecture configuration says its network itself, so give one or "
                "the other"
            )
        sizes = self.architecture if isinstance(self.architecture, dict) else {}
        if self.network != DEFAULT_NETWORK and sizes.get("normalization", "crai") != "crai":
            raise ValueError(
                f"architecture: the {self.network!r} network rescales its partial convolutions "
                f"as CRAI does; expected normalization 'crai', got {sizes['normalization']!r}"
            )
        _check_device(self.device)
        _check_optional_int(self, "early_stopping", allow_zero=True)
        _check_optional_int(self, "checkpoint_every")
        _check_optional_int(self, "log_every")
        for name in ("checkpoint_dir", "resume", "vgg_weights"):
            _check_path(self, name)
        _check_init(self.init)
        if self.augment != "auto" and not isinstance(self.augment, bool):
            raise ValueError(f"augment: expected True, False or 'auto', got {self.augment!r}")
        if (
            isinstance(self.mix, bool)
            or not isinstance(self.mix, (int, float))
            or not (0 <= self.mix <= 1)
        ):
            raise ValueError(f"mix: expected a share from 0 to 1, got {self.mix!r}")
        if self.first_guess is not None and self.first_guess not in FIRST_GUESS_CHOICES:
            raise ValueError(
                f"first_guess: expected None or one of {FIRST_GUESS_CHOICES}, got "
                f"{self.first_guess!r}"
            )
        if self.first_guess not in (None, "auto") and self.bounds is not None:
            raise ValueError(
                "first_guess: not with bounds (the network corrects a first guess, and the "
                "bounds would apply to its correction); give one of them"
            )
        if self.first_guess == "eof" and self.augment is True:
            raise ValueError(
                "augment: the EOFs of first_guess='eof' are fitted where the data lies on "
                "the globe, which rolled fields would not; leave augment 'auto' (off then)"
            )
        _set(self, "precision", check_precision(self.precision, TRAINING_PRECISIONS))
        _set(self, "threads", check_threads(self.threads))


def _check_init(init: Any) -> None:
    """``init`` is one of :data:`INITS`, a model (``CraiModel``) or the path of a model
    file."""
    if isinstance(init, str) and init in INITS:
        return
    if isinstance(init, (str, os.PathLike)):
        if not Path(init).is_file():
            raise ValueError(f"init: expected one of {INITS} or a model file, got {str(init)!r} "
                             "(no such file)")  # fmt: skip
        return
    from xcrai.model import CraiModel, Ensemble  # a model in hand: torch is imported already

    if isinstance(init, CraiModel):
        return
    if isinstance(init, Ensemble):
        raise ValueError("init: expected one model to start from, got an Ensemble; pass one "
                         "of its members (ensemble.members[i])")  # fmt: skip
    raise TypeError(f"init: expected one of {INITS}, a CraiModel or a model file, got "
                    f"{type(init).__name__}")  # fmt: skip


def _check_architecture(architecture: Any, in_channels: int, out_channels: int = 1) -> None:
    """``architecture`` is None, a dict of :data:`DEFAULT_ARCHITECTURE`'s keys, or the
    configuration of a network ``fit`` trains (:data:`xcrai.nn.NETWORKS`) for a multiple of
    ``in_channels`` inputs (the time context of each input variable; ``fit`` checks their
    number) and ``out_channels`` outputs (2 with ``uncertainty``). A configuration is
    checked with the networks' registry, imported only then (torch comes with it)."""
    if architecture is None:
        return
    if not isinstance(architecture, dict):
        from xcrai.nn import NETWORKS, is_architecture, network  # a configuration: torch is in

        if not is_architecture(architecture):
            raise TypeError(f"architecture: expected None, a dict or a network configuration, "
                            f"got {type(architecture).__name__}")  # fmt: skip
        if not network(architecture).trainable:
            raise ValueError(
                f"architecture: fit trains {sorted(k for k, n in NETWORKS.items() if n.trainable)} "
                f"networks, not {network(architecture).kind!r} ones; give a dict of "
                f"{sorted(DEFAULT_ARCHITECTURE)} and network= one of {tuple(NETWORK_CHOICES)}"
            )
        if architecture.in_channels % in_channels or architecture.out_channels != out_channels:
            raise ValueError(
                f"architecture: expected {in_channels} input channel(s) (time context) per "
                f"input variable and {out_channels} output channel(s), got "
                f"{architecture.in_channels} and {architecture.out_channels}"
            )
        return
    allowed = set(DEFAULT_ARCHITECTURE)
    if not set(architecture) <= allowed:
        raise ValueError(f"architecture: expected keys among {sorted(allowed)}, got "
                         f"{sorted(architecture)}")  # fmt: skip
    for key in ("n_filters", "depth"):
        value = architecture.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"architecture: expected {key} to be an integer >= 1, got {value!r}")
    normalization = architecture.get("normalization", DEFAULT_ARCHITECTURE["normalization"])
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"architecture: expected normalization to be one of {NORMALIZATIONS}, got "
            f"{normalization!r}"
        )
