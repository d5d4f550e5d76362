"""CRAI's losses: L1 on valid points, L1 on holes, total variation, and (from a local VGG16
weights file only) perceptual and style terms."""

from __future__ import annotations

from typing import Any

import torch

from xcrai.train.lossweights import LossWeights as LossWeights
from xcrai.uncertainty import gaussian_nll as gaussian_nll


def loss_terms(
    out: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor,
    vgg: Any = None,
) -> dict[str, torch.Tensor]:
    """The loss terms for a batch.

    Parameters
    ----------
    out, gt : Tensor (N, 1, H, W)
        Network output and truth (truth set to 0 where it is unknown).
    mask : Tensor (N, 1, H, W)
        1 where the network was shown the truth.
    target : Tensor (N, 1, H, W)
        1 where the truth is known (0 at points that are NaN in the data, e.g. land
        in an SST field): those points never count.
    vgg : VGG16Features, optional
        Adds the ``perceptual`` and ``style`` terms.
    """
    diff = (out - gt).abs() * target
    valid = (diff * mask).mean()
    hole = (diff * (1 - mask)).mean()
    composite = (mask * gt + (1 - mask) * out) * target
    tv = (composite[..., :, 1:] - composite[..., :, :-1]).abs().mean() + (
        composite[..., 1:, :] - composite[..., :-1, :]
    ).abs().mean()
    terms = {"valid": valid, "hole": hole, "tv": tv}
    if vgg is not None:
        from xcrai.train.perceptual import perceptual_style

        terms["perceptual"], terms["style"] = perceptual_style(vgg, out * target, composite, gt)
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    return sum(getattr(weights, name) * value for name, value in terms.items())
