"""CRAI's losses without the VGG terms: L1 on valid points, L1 on holes, total variation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (each an L1 mean over all points of the batch).

    The defaults are CRAI's weighting without its perceptual and style terms, whose
    ImageNet VGG16 weights CRAI downloads at run time.

    Attributes
    ----------
    valid : float
        ``|M * (out - gt)|``: how well the network reproduces what it was shown.
    hole : float
        ``|(1 - M) * (out - gt)|``: how well it fills the holes.
    tv : float
        Total variation of the composite ``M * gt + (1 - M) * out``: smoothness.
    """

    valid: float = 1.0
    hole: float = 6.0
    tv: float = 0.1

    @classmethod
    def from_argument(cls, loss: Any) -> LossWeights:
        """From ``None`` (defaults), a LossWeights, or a dict like ``{"hole": 1}``
        (terms left out weigh 0) - the ``loss=`` argument of ``fit``."""
        if loss is None:
            return cls()
        if isinstance(loss, cls):
            return loss
        names = [f.name for f in fields(cls)]
        if not isinstance(loss, dict) or not set(loss) <= set(names):
            extra = sorted(set(loss) - set(names)) if isinstance(loss, dict) else None
            hint = (
                " (perceptual and style terms need ImageNet VGG16 weights, which xcrai does "
                "not download; they are not available)"
                if extra and {"perceptual", "style"} & set(extra)
                else ""
            )
            raise ValueError(
                f"loss: expected None or a dict with keys among {names}, e.g. {{'hole': 1}}; "
                f"got {loss!r}{hint}"
            )
        values = {name: float(loss.get(name, 0.0)) for name in names}
        if any(v < 0 for v in values.values()) or not any(values.values()):
            raise ValueError(f"loss: weights must be >= 0 and not all 0, got {loss!r}")
        return cls(**values)


def loss_terms(
    out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The three terms for a batch.

    Parameters
    ----------
    out, gt : Tensor (N, 1, H, W)
        Network output and truth (truth set to 0 where it is unknown).
    mask : Tensor (N, 1, H, W)
        1 where the network was shown the truth.
    target : Tensor (N, 1, H, W)
        1 where the truth is known (0 at points that are NaN in the data, e.g. land
        in an SST field): those points never count.
    """
    diff = (out - gt).abs() * target
    valid = (diff * mask).mean()
    hole = (diff * (1 - mask)).mean()
    composite = (mask * gt + (1 - mask) * out) * target
    tv = (composite[..., :, 1:] - composite[..., :, :-1]).abs().mean() + (
        composite[..., 1:, :] - composite[..., :-1, :]
    ).abs().mean()
    return {"valid": valid, "hole": hole, "tv": tv}


def total_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> torch.Tensor:
    return weights.valid * terms["valid"] + weights.hole * terms["hole"] + weights.tv * terms["tv"]
