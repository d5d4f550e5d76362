"""The values xcrai's options take, and the checks of them, without PyTorch.

:mod:`xcrai.options` declares every option from these, so that the command line's help,
its refusals and the options' own checks run before (and without) importing torch; the
modules that act on a value (:mod:`xcrai.numerics`, :mod:`xcrai.nn`,
:mod:`xcrai.train.weights`) read the same names from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: convolution padding: zeros, global (zeros in latitude, circular in longitude), or chosen
#: from the grid
PADDING_CHOICES: tuple[str, ...] = ("zeros", "global", "auto")
#: precisions of a forward pass (:data:`xcrai.numerics.PRECISIONS` gives their dtypes)
PRECISION_CHOICES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
#: precisions ``fit`` trains in (fp16 would need loss scaling)
TRAINING_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")
#: how a partial convolution rescales by its count of valid inputs
NORMALIZATIONS: tuple[str, ...] = ("crai", "window")
#: the initialisations ``fit(init=...)`` offers (CRAI's, and PyTorch's own)
INITS: tuple[str, ...] = ("kaiming", "gaussian", "xavier", "orthogonal", "torch")
#: the networks ``fit`` builds (``fit(network=...)``), with a line on each; the first is the
#: default. :data:`xcrai.nn.DESIGNS` builds them; CRAI's channel-infusion network is the
#: U-Net fitted to several variables
NETWORK_CHOICES: dict[str, str] = {
    "unet": "CRAI's partial-convolution U-Net (several inputs: channel infusion)",
    "convlstm": "the U-Net with ConvLSTM memory over the time context (CRAI's --lstm-steps)",
    "trajgru": "the U-Net with TrajGRU memory over the time context (CRAI's --gru-steps)",
    "attention": "the U-Net with attention over the inputs after the first (CRAI's --attention)",
}


def check_padding(padding: str, argument: str = "padding") -> str:
    """``padding`` if it is one of :data:`PADDING_CHOICES`, else a ValueError naming
    ``argument``."""
    if padding not in PADDING_CHOICES:
        raise ValueError(f"{argument}: expected one of {PADDING_CHOICES}, got {padding!r}")
    return padding


def check_int(value: Any, argument: str, allow_zero: bool = False) -> int:
    """A whole number >= 1 (>= 0 with ``allow_zero``), or a ValueError naming ``argument``."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{argument}: expected an integer >= {low}, got {value!r}")
    return int(value)


def check_time_context(time_context: Any, in_channels: int | None = None) -> tuple[int, int]:
    """Validate ``time_context=(P, F)``; with ``in_channels`` (the steps the model reads of
    each input variable), check it fits the model."""
    try:
        past, future = (int(v) for v in time_context)
        ok = past >= 0 and future >= 0 and (past, future) == tuple(time_context)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "time_context: expected a pair (P, F) of non-negative integers "
            f"(P past and F future steps), got {time_context!r}"
        )
    if in_channels is not None and past + future + 1 != in_channels:
        raise ValueError(
            f"time_context: the model reads {in_channels} time step(s) of each input "
            f"variable, so P + F + 1 must be {in_channels}; got time_context={time_context!r}"
        )
    return past, future


def check_precision(precision: object, allowed: tuple[str, ...] = PRECISION_CHOICES) -> str:
    """``precision`` if it is one of ``allowed``, else a ValueError naming the argument."""
    if precision not in allowed:
        raise ValueError(f"precision: expected one of {allowed}, got {precision!r}")
    return str(precision)


def check_threads(threads: object) -> int | str:
    """``"auto"`` or a whole number >= 1 (as an int), else a ValueError naming the argument."""
    if threads == "auto":
        return "auto"
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads: expected 'auto' or an integer >= 1, got {threads!r}")
    return int(threads)


def check_init(init: object) -> str:
    """``init`` if it is one of :data:`INITS`, else a ValueError naming the argument."""
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    return str(init)
