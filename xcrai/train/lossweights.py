"""How much each loss term weighs (``fit(loss=...)``): plain data, without PyTorch, so that
the options check a ``loss=`` before torch is imported."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (each an L1 mean over all points of the batch).

    The defaults are CRAI's weighting without its perceptual and style terms, whose
    ImageNet VGG16 weights CRAI downloads at run time; xcrai computes those only from a
    local weights file (``fit(..., vgg_weights=path)``; CRAI's weights: perceptual 0.05,
    style 120).

    Attributes
    ----------
    valid : float
        ``|M * (out - gt)|``: how well the network reproduces what it was shown.
    hole : float
        ``|(1 - M) * (out - gt)|``: how well it fills the holes.
    tv : float
        Total variation of the composite ``M * gt + (1 - M) * out``: smoothness.
    perceptual, style : float
        L1 distances of VGG16 features, and of their Gram matrices, of the output and the
        composite against the truth; 0 unless asked for.
    nll : float
        Gaussian negative log-likelihood of the truth at the hidden points under the
        network's σ, ``0.5 * (log σ² + (out - gt)² / σ²)`` averaged over all points like
        the others (hidden points only), for a model trained with ``uncertainty=True``;
        the output is held fixed in it (gradients reach the σ channel only), so σ learns
        the errors the other terms leave and does not re-weight them. It counts only
        with ``uncertainty=True``, so a dict that leaves it out keeps its default, 1.
    """

    valid: float = 1.0
    hole: float = 6.0
    tv: float = 0.1
    perceptual: float = 0.0
    style: float = 0.0
    nll: float = 1.0

    @property
    def needs_vgg(self) -> bool:
        return bool(self.perceptual or self.style)

    @property
    def trains_values(self) -> bool:
        """Whether a term other than ``nll`` (which shapes σ only) weighs more than 0."""
        return any(getattr(self, f.name) for f in fields(self) if f.name != "nll")

    @classmethod
    def from_argument(cls, loss: Any) -> LossWeights:
        """From ``None`` (defaults), a LossWeights, or a dict like ``{"hole": 1}``
        (terms left out weigh 0, but ``nll`` keeps its default) - the ``loss=`` argument of
        ``fit``."""
        if loss is None:
            return cls()
        if isinstance(loss, cls):
            return loss
        names = [f.name for f in fields(cls)]
        if not isinstance(loss, dict) or not set(loss) <= set(names):
            raise ValueError(
                f"loss: expected None or a dict with keys among {names}, e.g. {{'hole': 1}}; "
                f"got {loss!r}"
            )
        given = {**{name: 0.0 for name in names}, "nll": cls.nll, **loss}
        if not all(
            isinstance(v, Real) and not isinstance(v, bool) and 0 <= float(v) < math.inf
            for v in given.values()
        ):
            raise ValueError(f"loss: weights must be finite numbers >= 0, got {loss!r}")
        if not any(given.values()):
            raise ValueError(f"loss: weights must not all be 0, got {loss!r}")
        return cls(**{name: float(v) for name, v in given.items()})
