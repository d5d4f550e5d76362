"""The σ head of ``fit(..., uncertainty=True)``: a second output channel, the
log-variance of a Gaussian around the first, trained with a negative log-likelihood at the
hidden points (as DINCAE, Barth et al. 2020) and turned into σ when infilling."""

from __future__ import annotations

import torch

#: bounds of the network's log-variance channel, in normalised units (σ from e^-6 to e^6
#: times the data's standard deviation): the same clamp in training and infilling
LOG_VARIANCE_RANGE = (-12.0, 12.0)


def log_variance(raw: torch.Tensor) -> torch.Tensor:
    """The network's log-variance channel, clamped to :data:`LOG_VARIANCE_RANGE`."""
    return raw.clamp(*LOG_VARIANCE_RANGE)


def gaussian_nll(
    out: torch.Tensor, raw_log_variance: torch.Tensor, gt: torch.Tensor, holes: torch.Tensor
) -> torch.Tensor:
    """The ``nll`` term: ``0.5 * (log σ² + (out - gt)² / σ²)`` at ``holes`` (1 where the
    truth is known and was hidden), averaged over all points, with ``out`` held fixed."""
    logvar = log_variance(raw_log_variance)
    squared = (out.detach() - gt) ** 2
    return (0.5 * (logvar + squared * torch.exp(-logvar)) * holes).mean()
