"""Output bounds (CRAI's ``--min-bounds``/``--max-bounds``): a transform of the network's
output that keeps it inside an interval, such as precipitation >= 0.

As CRAI does, the transform applies to the network's output before it is un-normalised,
with the bounds normalised the same way:

- both bounds finite: ``lower + (upper - lower) * sigmoid(out)``;
- a lower bound only: ``lower + exp(out)``;
- an upper bound only: ``upper - exp(-out)`` (CRAI turns this case into ``-inf``, adding
  the missing lower bound to ``exp(out)``; xcrai does not copy that);
- neither: the output unchanged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is not imported here: the options check bounds without it
    import torch

#: (lower, upper) in the output variable's units; None for an open side
Bounds = tuple[float | None, float | None]


def check_bounds(bounds: Any, argument: str = "bounds") -> Bounds | None:
    """``bounds`` as ``(lower, upper)`` with None for an open side (infinities become
    None), or None for none; a ValueError naming ``argument`` otherwise.

    Examples
    --------
    >>> check_bounds((0, None))
    (0.0, None)
    >>> check_bounds([float("-inf"), 1])
    (None, 1.0)
    """
    if bounds is None:
        return None
    try:
        pair = tuple(None if v is None or math.isinf(float(v)) else float(v) for v in bounds)
        lower, upper = pair
    except (TypeError, ValueError):
        raise ValueError(
            f"{argument}: expected (lower, upper) with None for an open side, e.g. (0, None), "
            f"got {bounds!r}"
        ) from None
    if any(v is not None and math.isnan(v) for v in pair):
        raise ValueError(f"{argument}: expected numbers or None, got {bounds!r}")
    low, high = lower, upper
    if low is not None and high is not None and not low < high:
        raise ValueError(
            f"{argument}: the lower bound {low:g} is not below the upper bound {high:g}"
        )
    if low is None and high is None:
        return None
    return (low, high)


def normalised(bounds: Bounds, norm: tuple[float, float] | None) -> Bounds:
    """``bounds`` in the network's normalised units, ``(b - mean) / std``."""
    if norm is None:
        return bounds
    mean, std = norm
    return tuple(None if b is None else (b - mean) / std for b in bounds)  # type: ignore[return-value]


def constrain(out: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """The network's output ``out`` kept inside ``bounds`` (in ``out``'s units)."""
    lower, upper = bounds
    if lower is not None and upper is not None:
        return out.sigmoid() * (upper - lower) + lower
    if lower is not None:
        return out.exp() + lower
    if upper is not None:
        return upper - (-out).exp()
    return out


def describe(bounds: Bounds) -> str:
    """``[0, inf)``-style text for history lines and model cards."""
    lower, upper = bounds
    left = "(-inf" if lower is None else f"[{lower:g}"
    right = "inf)" if upper is None else f"{upper:g}]"
    return f"{left}, {right}"
