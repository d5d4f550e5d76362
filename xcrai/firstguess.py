"""A classical first guess that the network corrects: ``fit(first_guess=...)``.

With a first guess, the network never sees a field itself: it sees the field's departure
from a classical fill made from the same observed points, and learns to predict that
departure in the holes; ``infill`` adds the first guess back. Where position and season
carry most of the signal (a seasonal field with fixed geography, such as sea ice), or
where the test fields lie in the span of the training fields, the classical fill already
gets most of the way and the network learns what it leaves.

Two kinds, both made from the training fields alone and stored in the model:

- ``"climatology"``: the training fields' mean at each point by calendar month (their
  mean where the time axis is not datetime-like, or does not cover every month). It does
  not depend on the observed points, so the network sees anomalies.
- ``"eof"``: the training fields' mean plus their leading EOFs, fitted by least squares to
  each field's observed points (:class:`xcrai.baselines.Eofs`), with k chosen by
  cross-validation on the training fields under the training masks
  (:func:`xcrai.baselines.choose_eof_count`).

Every array is in the data's units and the model's training orientation (H, W). The same
:meth:`FirstGuess.guess` serves training batches and ``infill``, so what the network
learns and what it is given agree; each field's guess depends on that field alone, so
``infill`` stays chunking-invariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: what ``fit(first_guess=...)`` accepts, besides None
KINDS = ("climatology", "eof")
#: fields whose residuals estimate the network's normalisation
RESIDUAL_FIELDS = 256
#: the ridge, relative to the mean of the normal matrix's diagonal, of the EOF fit: keeps
#: a field with fewer observed points than EOFs (or none) solvable
RIDGE = 1e-6


@dataclass(frozen=True, eq=False)
class FirstGuess:
    """A first guess: a base field by calendar month plus EOFs fitted to the observed points.

    Attributes
    ----------
    kind : {"climatology", "eof"}
    base : ndarray float32 (12, H, W) or (1, H, W)
        The base field: by calendar month (index m - 1) or one for every field.
    patterns : ndarray float32 (K, H, W)
        EOFs of the departures from the base, fitted to each field's observed points
        (K = 0: the base alone).
    weight : float
        The share of the network's correction that ``infill`` adds to the guess in the
        holes, in [0, 1]: ``fit`` sets it by least squares on the validation fields'
        hidden points, so that where the network's correction does not help there (test
        fields the guess already fills to the noise) the model falls back towards the
        guess; 1 keeps the whole correction.
    """

    kind: str
    base: np.ndarray
    patterns: np.ndarray
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"first_guess: expected one of {KINDS}, got {self.kind!r}")
        base = np.asarray(self.base, np.float32)
        patterns = np.asarray(self.patterns, np.float32)
        if base.ndim != 3 or len(base) not in (1, 12):
            raise ValueError(f"first_guess: expected a base of 1 or 12 fields, got {base.shape}")
        if patterns.ndim != 3 or patterns.shape[1:] != base.shape[1:]:
            raise ValueError(
                f"first_guess: expected EOFs shaped (K, {base.shape[1]}, {base.shape[2]}), got "
                f"{patterns.shape}"
            )
        weight = self.weight
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (0 <= weight <= 1)
        ):
            raise ValueError(f"first_guess: expected a weight from 0 to 1, got {weight!r}")
        object.__setattr__(self, "weight", float(weight))
        for array in (base, patterns):
            array.flags.writeable = False
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "patterns", patterns)

    @property
    def monthly(self) -> bool:
        """Whether the base depends on the calendar month."""
        return len(self.base) == 12

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.base.shape[1]), int(self.base.shape[2]))

    def describe(self) -> str:
        """A few words for history lines and model cards."""
        if self.kind == "climatology":
            words = "climatology by calendar month" if self.monthly else "the training mean"
        else:
            words = f"the training mean and {len(self.patterns)} EOFs"
        if self.weight != 1:
            words += f"; {self.weight:.2f} of the network's correction kept"
        return words

    def bases(self, months: np.ndarray | None, count: int) -> np.ndarray:
        """(count, H, W) float32: each field's base, by ``months`` (1-12) when monthly."""
        if not self.monthly:
            return np.broadcast_to(self.base[0], (count, *self.shape))
        if months is None:
            raise ValueError(
                "data: the model's first guess is a climatology by calendar month; give the "
                "data a datetime-like time coordinate"
            )
        return self.base[np.asarray(months, np.int64).reshape(-1) - 1]

    def correction(self, departures: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """(N, H, W) float32: the EOFs fitted by least squares (a tiny ridge) to each of
        ``departures`` (N, H, W) at its ``observed`` points; zeros without EOFs."""
        count = len(departures)
        if not len(self.patterns):
            return np.zeros((count, *self.shape), np.float32)
        basis = self.patterns.reshape(len(self.patterns), -1).astype(np.float64)
        seen = observed.reshape(count, -1)
        values = np.where(seen, departures.reshape(count, -1), 0.0).astype(np.float64)
        rhs = values @ basis.T  # (N, K)
        out = np.empty((count, basis.shape[1]), np.float32)
        identity = np.eye(len(basis))
        for i in range(count):  # one (K, K) normal matrix per field
            normal = (basis * seen[i]) @ basis.T
            ridge = RIDGE * max(float(np.trace(normal)) / len(basis), 1e-12)
            coefficients = np.linalg.solve(normal + ridge * identity, rhs[i])
            out[i] = coefficients @ basis
        return out.reshape(count, *self.shape)

    def guess(
        self, values: np.ndarray, observed: np.ndarray, months: np.ndarray | None
    ) -> np.ndarray:
        """(N, H, W) float32: the first guess of each of ``values`` (N, H, W) from its
        ``observed`` points (anything elsewhere is ignored), ``months`` (N,) their calendar
        months (None: not datetime-like)."""
        base = self.bases(months, len(values))
        if not len(self.patterns):
            return np.array(base, np.float32)
        departures = np.where(observed, values - base, 0)
        return (base + self.correction(departures, observed)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a model file: the arrays as little-endian float32 hex."""
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "months": len(self.base),
            "eofs": len(self.patterns),
            "base": self.base.astype("<f4").tobytes().hex(),
            "patterns": self.patterns.astype("<f4").tobytes().hex(),
            **({} if self.weight == 1 else {"weight": self.weight}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FirstGuess:
        height, width = d["shape"]

        def unpack(name: str, count: int) -> np.ndarray:
            data = bytes.fromhex(d[name])
            if len(data) != 4 * count * height * width:
                raise ValueError(
                    f"first_guess.{name}: expected {count} float32 fields of {height}x{width}, "
                    f"got {len(data)} bytes"
                )
            return np.frombuffer(data, "<f4").reshape(count, height, width)

        return cls(d["kind"], unpack("base", d["months"]), unpack("patterns", d["eofs"]),
                   d.get("weight", 1.0))  # fmt: skip


def build(
    kind: str,
    fields: np.ndarray,
    months: np.ndarray | None,
    masks: np.ndarray,
    target: np.ndarray,
) -> FirstGuess:
    """The first guess of ``kind`` from training fields.

    Parameters
    ----------
    kind : {"climatology", "eof"}
    fields : ndarray (N, H, W)
        The training fields (every series' time steps in turn); NaN only where ``target``
        is False.
    months : ndarray of int (N,) or None
        Their calendar months (None: not datetime-like).
    masks : ndarray of bool (M, H, W)
        The training coverage patterns (True where observed): they choose k for ``"eof"``.
    target : ndarray of bool (H, W)
        The points ever valid; the guess is 0 elsewhere.
    """
    from xcrai.baselines import MAX_EOF_FIELDS, Eofs, choose_eof_count, climatology

    values = np.where(target, fields, np.nan)
    if kind == "climatology":
        base = climatology(values, months)
        return FirstGuess(kind, np.where(target, base, 0), np.zeros((0, *target.shape)))
    if kind != "eof":
        raise ValueError(f"first_guess: expected one of {KINDS}, got {kind!r}")
    chosen = np.arange(len(values))
    if len(values) > MAX_EOF_FIELDS:
        chosen = np.linspace(0, len(values) - 1, MAX_EOF_FIELDS).round().astype(int)
    samples = np.asarray(values[chosen], np.float64)[:, target]
    k, _ = choose_eof_count(samples, masks[:, target])
    eofs = Eofs.of(samples)
    base = np.zeros((1, *target.shape))
    base[0][target] = eofs.mean
    patterns = np.zeros((k, *target.shape))
    patterns[:, target] = eofs.patterns[:k]
    return FirstGuess(kind, base, patterns)


def residual_statistics(
    guess: FirstGuess,
    fields: np.ndarray,
    months: np.ndarray | None,
    masks: np.ndarray,
    target: np.ndarray,
) -> tuple[float, float]:
    """Mean and standard deviation of the departures of (at most
    :data:`RESIDUAL_FIELDS`, evenly spaced) training fields from their first guess under
    the training masks (field i under mask ``i % M``), over the points ever valid: the
    network's normalisation."""
    chosen = np.arange(len(fields))
    if len(fields) > RESIDUAL_FIELDS:
        chosen = np.linspace(0, len(fields) - 1, RESIDUAL_FIELDS).round().astype(int)
    values = np.asarray(fields[chosen], np.float64)
    observed = masks[np.arange(len(chosen)) % len(masks)] & target
    picked = None if months is None else np.asarray(months)[chosen]
    residual = (values - guess.guess(values, observed, picked))[:, target]
    mean, std = float(residual.mean()), float(residual.std())
    return mean, std if math.isfinite(std) and std > 0 else 1.0


__all__ = ["KINDS", "FirstGuess", "build", "residual_statistics"]
