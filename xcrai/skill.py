"""Where a trained model stands: its hole RMSE on ``fit``'s validation fields beside that
of the classical fills that need nothing beyond NumPy and SciPy.

At the end of ``fit``, the validation fields (field k hidden by mask ``k % len(masks)``,
as ``fit`` validates) are filled by the model and by :func:`~xcrai.baselines.poisson_fill`'s
solver, the training fields' climatology (:func:`~xcrai.baselines.climatology`) and an
EOF reconstruction from the training fields (:class:`~xcrai.baselines.Eofs`, k by
cross-validation on the training fields under the training masks). Every score is the
RMSE over the hidden points of every validation field pooled, each point alike (no area
weighting), in the data's units: the ``val_hole_rmse`` of ``model.history``. The table
goes into the model's provenance (``validation_skill``), its model card and one log line;
a classical fill that beats the model warns (:class:`ClassicalFillWarning`).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np

from xcrai.callsite import user_stacklevel
from xcrai.laplace import fill_field

logger = logging.getLogger("xcrai")

#: the key of the table in ``ModelConfig.provenance``
PROVENANCE_KEY = "validation_skill"


class ClassicalFillWarning(UserWarning):
    """A classical fill scored a lower hole RMSE than the model on the model's own
    validation fields: the network is not worth its cost there yet."""


@dataclass(frozen=True)
class Holdout:
    """What ``fit`` holds out and trained on, in the data's units.

    Attributes
    ----------
    train, val : array (S, T, H, W), NumPy or dask
        The training fields and the validation fields.
    train_months, val_months : ndarray of int (T,) or None
        Calendar months of their time steps (None: not datetime-like).
    masks : ndarray of bool (M, H, W)
        Coverage patterns, True where observed; validation field k takes mask k % M.
    target : ndarray of bool (H, W)
        The points the model learns (False: never valid).
    periodic : bool
        Whether longitude wraps around (for the Poisson fill).
    """

    train: Any
    val: Any
    train_months: np.ndarray | None
    val_months: np.ndarray | None
    masks: np.ndarray
    target: np.ndarray
    periodic: bool


def validation_table(
    holdout: Holdout, model_rmse: float, units: str | None,
    classical: dict[str, Any] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The table of hole RMSEs (plain data, for the provenance), or None when the masks
    hide no point of the validation fields that the model learns; ``classical``: the
    :func:`classical_table` of ``holdout`` when it is already made."""
    table = classical_table(holdout, units) if classical is None else classical
    if table is None:
        return None
    return {**table, "rmse": {"model": float(model_rmse), **table["rmse"]}}


def classical_table(holdout: Holdout, units: str | None) -> dict[str, Any] | None:
    """:func:`validation_table` without the model: the classical fills' hole RMSEs on the
    validation fields (``fit(first_guess="auto")`` chooses by them before training)."""
    start = time.perf_counter()
    val = np.asarray(holdout.val, np.float64)
    height, width = val.shape[-2:]
    series = val.shape[0]
    val = val.reshape(-1, height, width)
    seen = holdout.masks[np.arange(len(val)) % len(holdout.masks)] & holdout.target
    hidden = holdout.target & ~seen
    count = int(hidden.sum())
    if not count:
        return None
    fills, notes = {}, {}
    fills["Poisson"] = np.stack(
        [
            fill_field(np.where(s, v, np.nan), holdout.periodic)
            for v, s in zip(val, seen, strict=True)
        ]
    )
    fills["climatology"], notes["climatology"] = _climatology(holdout, series, len(val))
    fills["EOF"], notes["EOF"] = _eof(holdout, val, seen)
    rmse = {}
    for name, filled in fills.items():
        rmse[name] = float(np.sqrt(np.mean((filled[hidden] - val[hidden]) ** 2)))
    best = min((name for name in fills), key=lambda name: rmse[name])
    # the time goes to the log, not the table: a model file stays the same run after run
    logger.debug("classical fills of %d validation fields: %.3f s", len(val),
                 time.perf_counter() - start)  # fmt: skip
    return {
        "metric": "hole RMSE",
        "weighting": "none: every hidden point alike, as val_hole_rmse",
        "units": units,
        "fields": len(val),
        "hole_points": count,
        "rmse": rmse,
        "best_classical": best,
        "notes": notes,
    }


def _climatology(holdout: Holdout, series: int, count: int) -> tuple[np.ndarray, str]:
    """Each validation field's climatology of the training fields, and how it was made."""
    from xcrai.baselines import climatology, climatology_guess

    train = holdout.train
    height, width = train.shape[-2:]
    flat = train.reshape(-1, height, width)
    months = None
    if holdout.train_months is not None and holdout.val_months is not None:
        months = np.tile(holdout.train_months, train.shape[0])
    means = climatology(flat, months)
    val_months = None if holdout.val_months is None else np.tile(holdout.val_months, series)
    guess = climatology_guess(means, val_months, count)
    how = "by calendar month" if len(means) == 12 else "the training fields' mean"
    return guess, how


def _eof(holdout: Holdout, val: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, str]:
    """Each validation field reconstructed from the training fields' EOFs at its observed
    points (k by cross-validation), and how."""
    from xcrai.baselines import MAX_EOF_FIELDS, Eofs, choose_eof_count

    train, target = holdout.train, holdout.target
    height, width = train.shape[-2:]
    flat = train.reshape(-1, height, width)
    chosen = np.arange(len(flat))
    if len(flat) > MAX_EOF_FIELDS:
        chosen = np.linspace(0, len(flat) - 1, MAX_EOF_FIELDS).round().astype(int)
    picked = flat[chosen]
    if isinstance(picked, dsa.Array):
        picked = picked.compute()
    samples = np.asarray(picked, np.float64)[:, target]
    k, _ = choose_eof_count(samples, holdout.masks[:, target])
    eofs = Eofs.of(samples)
    out = val.copy()
    for index, observed in enumerate(seen):
        out[index][target] = eofs.fill(val[index][target], observed[target], k)
    return out, f"k = {k} of {len(eofs.patterns)} EOFs from {len(samples)} training fields"


def summary(table: dict[str, Any]) -> str:
    """One line: the model's hole RMSE, the best classical fill's, and how much better
    (or worse) the model is."""
    units = f" {table['units']}" if table.get("units") else ""
    rmse, best = table["rmse"], table["best_classical"]
    model, classical = rmse["model"], rmse[best]
    share = round(100 * abs(classical - model) / classical) if classical else 0
    verdict = "better" if model <= classical else "worse"
    return (
        f"validation hole RMSE {model:.3g}{units}; best classical: {best} "
        f"{classical:.3g}{units}; {share} % {verdict}"
    )


def describe(table: dict[str, Any]) -> str:
    """The whole table as text, for model cards: every method's RMSE, how it was made,
    and over how many fields and hidden points."""
    units = f" {table['units']}" if table.get("units") else ""
    notes = table.get("notes", {})
    parts = [
        f"{name} {value:.4g}{units}" + (f" ({notes[name]})" if name in notes else "")
        for name, value in table["rmse"].items()
    ]
    return (
        f"{table['metric']} on {table['fields']} validation field(s), "
        f"{table['hole_points']} hidden points: " + "; ".join(parts)
    )


def report(table: dict[str, Any]) -> None:
    """Log :func:`summary` to the ``xcrai`` logger, and warn at the user's line when a
    classical fill beats the model."""
    line = summary(table)
    logger.info(line)
    rmse, best = table["rmse"], table["best_classical"]
    if rmse[best] < rmse["model"]:
        warnings.warn(
            f"fit: a classical fill beats the model on its own validation fields ({line}); "
            "train longer or on more fields, or use the classical fill "
            f"(model.card has every score)",
            ClassicalFillWarning,
            stacklevel=user_stacklevel(),
        )
