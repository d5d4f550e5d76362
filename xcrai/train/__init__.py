"""Training the partial-convolution U-Net: losses, mask sampling, the loop (no xarray here)."""

from xcrai.train.loop import TrainConfig, TrainingData, train
from xcrai.train.losses import LossWeights

__all__ = ["LossWeights", "TrainConfig", "TrainingData", "train"]
