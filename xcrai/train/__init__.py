"""Training the networks: losses, mask sampling, the loop (no xarray here).

The names below are imported on first use, so that importing a torch-free part of the
package (:mod:`xcrai.train.lossweights`, which the options read) does not import the loop
and PyTorch with it.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from xcrai.train.loop import TrainConfig, TrainingData, train
    from xcrai.train.lossweights import LossWeights

_LAZY_NAMES = {
    "LossWeights": "xcrai.train.lossweights",
    "TrainConfig": "xcrai.train.loop",
    "TrainingData": "xcrai.train.loop",
    "train": "xcrai.train.loop",
}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY_NAMES:
        return getattr(_importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'xcrai.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_NAMES])


__all__ = ["LossWeights", "TrainConfig", "TrainingData", "train"]
