"""fitbench calibration: how well each method's σ describes its errors on the hidden points.

Every method that gives a standard deviation σ with each infilled value is scored on the
hidden points of ``zg_test.nc`` (NaN there, finite in ``zg_truth.nc``; see skill.py), all
fields pooled:

- ``within_1sigma``, ``within_2sigma``: the share of truths within ±1σ and ±2σ of the
  method's value (0.683 and 0.954 for errors that are Gaussian with that σ);
- ``crps_m``: the mean CRPS of the Gaussian N(value, σ) at the truth (m), against
  ``crps_const_m``, that of a constant-σ Gaussian whose σ is the method's own hole RMSE;
  ``crps_gain`` = 1 - crps / crps_const (positive: the σ tells good points from bad ones
  better than one σ for all). Needs scoringrules (benchmark-only; skipped with a note);
- ``rmse_m``: the hole RMSE of the values;
- ``spread_skill``: σ in ~10 quantile bins, each bin's RMS σ against the RMSE of its errors
  (``--png`` plots them with the 1:1 line, one line per method).

Methods (``--methods``, comma-separated; all by default):

- ``kriging``: ordinary kriging with skill.py's settings and its own kriging variance
  (σ = sqrt of PyKrige's ``ss``); ``--kriging-fields N`` scores the first N test fields
  only (about 5-20 s a field on 2 cores). Skipped with a note without PyKrige.
- ``sigma``: an xcrai model trained with ``fit(masks, uncertainty=True)``: the values and
  ``zg_sigma`` of ``infill(model, sigma=True)``. ``--model-sigma PATH`` scores a saved one;
  ``--train`` trains one with xcrai's defaults for ``--budget`` seconds (as run.py's
  defaults run: short probes measure the speed, ``run.iterations_for``),
  and the same without ``uncertainty`` for the hole RMSE with it on and off.
- ``ensemble``: ``fit(masks, ensemble=5)``, value = the members' mean, σ = their standard
  deviation with ddof=1 (the unbiased variance of 5 members). ``--model-ensemble PATH``
  scores a saved one; ``--train`` trains 5 members for ``--budget / 4`` seconds each
  (``--ensemble-uncertainty``: with σ heads). Members with σ heads (a deep ensemble) are
  scored as ``infill(members="mean", sigma=True)`` combines them: σ = ``sqrt(mean(σ_i²) +
  var(x_i))``. The record has each member's hole RMSE beside the mean's.

``--train`` saves the models it trains beside ``--json`` (or ``--markdown``, ``--png``):
``.sigma.pth``, ``.plain.pth`` (without uncertainty) and ``.ensemble.pth``.

Prints one JSON line per method; ``--json``, ``--markdown`` and ``--png`` write them, the
table and the spread-skill plot.

Usage: python benchmarks/fitbench/calibration.py [--methods kriging,sigma,ensemble]
           [--kriging-fields N] [--model-sigma PATH] [--model-ensemble PATH] [--train]
           [--ensemble-uncertainty]
           [--budget 287] [--device auto] [--json PATH] [--markdown PATH] [--png PATH]
"""

# ruff: noqa: RUF001  (σ in the table, labels and notes is the Greek letter on purpose)

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
import run as fitbench_run
import skill

METHODS = ("kriging", "sigma", "ensemble")
#: Gaussian shares within ±1σ and ±2σ
GAUSSIAN = {1: 0.6827, 2: 0.9545}
ENSEMBLE_MEMBERS = 5
ENSEMBLE_DDOF = 1
NEEDS = "needs xcrai with uncertainty= and ensemble= in fit (issue 15)"

#: a method: test fields (time, lat, lon) in, (values, sigma) of the same shape out
Method = Callable[[xr.DataArray], tuple[np.ndarray, np.ndarray]]


# Scoring: errors (value - truth) and σ at the hidden points, 1-D.


def coverage(errors: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """The share of points whose truth lies within ±k σ of the value."""
    return float(np.mean(np.abs(errors) <= k * sigma))


def rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors))))


def crps_gain(errors: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Mean CRPS of N(value, σ) at the truth, that of N(value, RMSE) (one σ for every
    point: the method's own hole RMSE), and the gain ``1 - crps / crps_const``."""
    from scoringrules import crps_normal

    def mean_crps(spread: np.ndarray) -> float:
        # the CRPS of N(mu, s) at y depends on y - mu only: the error, with mu = 0; with
        # s = 0 (a point mass: ensemble members that agree) it is |y - mu|
        positive = spread > 0
        crps = np.abs(errors)
        crps[positive] = crps_normal(errors[positive], 0.0, spread[positive])
        return float(np.mean(crps))

    crps, const = mean_crps(sigma), mean_crps(np.full_like(errors, rmse(errors)))
    return {"crps_m": crps, "crps_const_m": const, "crps_gain": 1.0 - crps / const}


def spread_skill(errors: np.ndarray, sigma: np.ndarray, bins: int = 10) -> dict[str, list]:
    """σ in ``bins`` quantile bins (fewer where quantiles coincide): each bin's RMS σ, the
    RMSE of its errors, and its number of points. Calibrated: RMSE = RMS σ."""
    edges = np.unique(np.quantile(sigma, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, sigma, side="right")
    out: dict[str, list] = {"rms_sigma_m": [], "rmse_m": [], "points": []}
    for index in range(len(edges) + 1):
        chosen = which == index
        if chosen.any():
            out["rms_sigma_m"].append(rmse(sigma[chosen]))
            out["rmse_m"].append(rmse(errors[chosen]))
            out["points"].append(int(chosen.sum()))
    return out


def ensemble_limit(errors: np.ndarray) -> dict[str, float]:
    """How far averaging can take an ensemble, from its members' errors (member first,
    one column a point). A member's mean squared error is the part all members share
    plus its own variance; a mean of N members keeps the shared part and 1/N of the
    own. Gives the own variance's share of a member's MSE (unbiased, ddof=1) and the
    RMSE of a mean of infinitely many such members (the shared part alone). For the mean
    of 5 to lie 5 % below a member, the own share must be at least 12.2 %."""
    errors = np.asarray(errors, dtype=np.float64)
    members = len(errors)
    if members < 2:
        raise ValueError(f"errors: expected 2 or more members, got {members}")
    member_mse = float(np.mean(np.square(errors)))
    own = float(np.mean(errors.var(axis=0, ddof=1)))
    shared = float(np.mean(np.square(errors.mean(axis=0)))) - own / members
    return {
        "own_variance_share": own / member_mse,
        "infinite_ensemble_rmse_m": float(np.sqrt(max(shared, 0.0))),
    }


def hidden_points(values: np.ndarray, sigma: np.ndarray, test: xr.DataArray,
                  truth: xr.DataArray) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Errors and σ at the hidden points of the first len(values) test fields, and how
    many hidden points had no finite value or σ (left out)."""
    count = len(values)
    expected = truth.transpose("time", "lat", "lon").values[:count].astype(np.float64)
    hidden = np.isnan(test.transpose("time", "lat", "lon").values[:count]) & np.isfinite(expected)
    errors = (np.asarray(values, dtype=np.float64) - expected)[hidden]
    spread = np.asarray(sigma, dtype=np.float64)[hidden]
    usable = np.isfinite(errors) & np.isfinite(spread)
    return errors[usable], spread[usable], int((~usable).sum())


def score(name: str, values: np.ndarray, sigma: np.ndarray, seconds: float,
          test: xr.DataArray, truth: xr.DataArray) -> dict:  # fmt: skip
    """The record of one method: coverage, CRPS and its gain, RMSE, spread-skill bins."""
    errors, spread, dropped = hidden_points(values, sigma, test, truth)
    record: dict = {
        "method": name,
        "fields": len(values),
        "hidden_points": int(errors.size),
        "rmse_m": round(rmse(errors), 2),
        "within_1sigma": round(coverage(errors, spread, 1), 4),
        "within_2sigma": round(coverage(errors, spread, 2), 4),
        "mean_sigma_m": round(float(np.mean(spread)), 2),
        "rms_sigma_m": round(rmse(spread), 2),
    }
    try:
        record.update({k: round(v, 4) for k, v in crps_gain(errors, spread).items()})
    except ImportError:
        record["crps_note"] = "scoringrules is not installed (pip install scoringrules)"
    bins = spread_skill(errors, spread)
    record["spread_skill"] = {k: [round(x, 3) for x in v] for k, v in bins.items()}
    record["seconds_per_field"] = float(f"{seconds / len(values):.3g}")
    if dropped:
        record["left_out_points"] = dropped  # no finite value or σ
    if np.any(spread == 0):
        record["zero_sigma_points"] = int(np.sum(spread == 0))
    return record


# The methods.


def kriging_method(test: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """skill.py's ordinary kriging, σ = the square root of its kriging variance."""
    values, variance = skill.kriging_with_variance(test)
    return values, np.sqrt(variance)


def sigma_method(model, device: str = "auto") -> Method:
    """A model trained with ``fit(..., uncertainty=True)``: ``infill(model, sigma=True)``."""

    def apply(test: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
        out = test.crai.infill(model, sigma=True, device=device, progress=False)
        out = out.transpose("time", "lat", "lon")
        return out.zg.values, out.zg_sigma.values

    return apply


def deep(ensemble) -> bool:
    """Whether every member has a σ head (a deep ensemble)."""
    return all(member.config.uncertainty for member in ensemble.members)


def ensemble_members(ensemble, test: xr.DataArray, device: str = "auto") -> xr.Dataset:
    """Each member's infill along ``member``: ``zg``, and ``zg_sigma`` for a deep ensemble."""
    out = test.crai.infill(ensemble, device=device, progress=False, sigma=deep(ensemble))
    if isinstance(out, xr.DataArray):  # values alone
        out = out.to_dataset(name="zg")
    return out.transpose("member", "time", "lat", "lon")


def mean_and_spread(members: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The members' mean and σ, member first: their standard deviation (ddof =
    ``ENSEMBLE_DDOF``), or for a deep ensemble ``sqrt(mean(σ_i²) + var(x_i))`` with ddof=0,
    as ``infill(members="mean", sigma=True)`` gives it."""
    values = members.zg.values.astype(np.float64)
    if "zg_sigma" not in members:
        return values.mean(axis=0), values.std(axis=0, ddof=ENSEMBLE_DDOF)
    own = np.square(members.zg_sigma.values.astype(np.float64)).mean(axis=0)
    return values.mean(axis=0), np.sqrt(own + values.var(axis=0))


def ensemble_method(ensemble, device: str = "auto") -> Method:
    """An ensemble: its members' mean, and their spread (with their own σ) as σ."""
    return lambda test: mean_and_spread(ensemble_members(ensemble, test, device))


def timed(name: str, method: Method, test: xr.DataArray, truth: xr.DataArray,
          fields: int | None = None) -> dict:  # fmt: skip
    subset = test.isel(time=slice(None, fields))
    start = time.perf_counter()
    values, sigma = method(subset)
    return score(name, values, sigma, time.perf_counter() - start, test, truth)


# Training, as run.py's defaults run: short probes measure the speed (run.iterations_for).


#: the validation split of the calibration runs: the last 2 of zg_train.nc's 18 fields.
#: zg_val.nc (run.py's validation) holds the test fields, hidden by other masks: fit's
#: calibration of σ there would have seen the truth it is scored on
VALIDATION = 0.1


def at_budget(budget: float, device: str, **options):
    """A model (``options`` on top of xcrai's defaults) trained for about ``budget``
    seconds on zg_train.nc (its last fields held out for validation: ``VALIDATION``), and
    a dict of its iterations and training seconds."""
    probe_options = {k: v for k, v in options.items() if k != "ensemble"}
    iterations = fitbench_run.iterations_for(budget, device, validation=VALIDATION, **probe_options)
    model, seconds = fitbench_run.train(
        device, iterations=iterations, validation=VALIDATION, **options
    )
    return model, {"iterations": iterations, "train_s": round(seconds, 1)}


def hole_rmse_of(values: np.ndarray, test: xr.DataArray, truth: xr.DataArray) -> float:
    errors, _, _ = hidden_points(values, np.zeros_like(values), test, truth)
    return round(rmse(errors), 2)


def member_errors(members: xr.Dataset, test: xr.DataArray, truth: xr.DataArray) -> np.ndarray:
    """Each member's errors at the hidden points, member first."""
    return np.stack([hidden_points(m, np.zeros_like(m), test, truth)[0] for m in members.zg.values])


def needs_api(error: Exception) -> bool:
    """Whether ``error`` is an xcrai without the σ head or ensembles refusing them."""
    text = str(error)
    return isinstance(error, TypeError) and any(
        word in text for word in ("uncertainty", "ensemble", "sigma", "members")
    )


#: record keys the table's note shows
EXTRA_KEYS = (
    "rmse_uncertainty_off_m", "member_rmse_m", "own_variance_share", "infinite_ensemble_rmse_m",
    "iterations", "train_s", "mean_sigma_m",
)  # fmt: skip


def markdown(records: list[dict], machine: str) -> str:
    lines = [
        f"Calibration on the hidden points of fitbench's zg_test.nc ({machine}). "
        f"Gaussian errors with the stated σ: {GAUSSIAN[1]} within ±1σ, {GAUSSIAN[2]} within "
        "±2σ. CRPS gain = 1 - CRPS / CRPS of N(value, hole RMSE) (positive: better).",
        "",
        "| method | fields | hidden points | RMSE (m) | within ±1σ | within ±2σ | "
        "CRPS (m) | CRPS, σ = RMSE (m) | CRPS gain | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        if "skipped" in r:
            lines.append(f"| {r['method']} | | | | | | | | | skipped: {r['skipped']} |")
            continue
        formats = (("crps_m", ".2f"), ("crps_const_m", ".2f"), ("crps_gain", "+.3f"))
        crps = [f"{r[k]:{f}}" if k in r else "-" for k, f in formats]
        notes = [f"{k}: {v}" for k, v in r.items() if k in EXTRA_KEYS]
        notes += [r[k] for k in ("note", "crps_note") if r.get(k)]
        lines.append(
            f"| {r['method']} | {r['fields']} | {r['hidden_points']} | {r['rmse_m']:.2f} | "
            f"{r['within_1sigma']:.3f} | {r['within_2sigma']:.3f} | {' | '.join(crps)} | "
            f"{'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for r in records:
        if "spread_skill" not in r:
            continue
        bins = r["spread_skill"]
        axes.plot(bins["rms_sigma_m"], bins["rmse_m"], "o-", label=r["method"])
        top = max(top, *bins["rms_sigma_m"], *bins["rmse_m"])
    top = top * 1.05 or 1.0
    axes.plot([0, top], [0, top], "k--", lw=1, label="1:1")
    axes.set(xlim=(0, top), ylim=(0, top), xlabel="RMS σ in the bin (m)",
             ylabel="RMSE of the errors in the bin (m)")  # fmt: skip
    axes.set_title(f"fitbench spread-skill (σ quantile bins)\n{machine}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument("--kriging-fields", type=int, default=None,
                        help="krige only the first N test fields (default: all)")  # fmt: skip
    parser.add_argument("--model-sigma", type=Path, help="a saved model with a σ head")
    parser.add_argument("--model-ensemble", type=Path, help="a saved xcrai.Ensemble")
    parser.add_argument("--train", action="store_true",
                        help="train the sigma and ensemble models (and the σ model without "
                        "uncertainty) at --budget")  # fmt: skip
    parser.add_argument("--ensemble-uncertainty", action="store_true",
                        help="--train the ensemble's members with σ heads")  # fmt: skip
    parser.add_argument("--budget", type=float, default=fitbench_run.CRAI_SECONDS,
                        help="training seconds (the ensemble: a quarter per member)")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="write the JSON lines here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--png", type=Path, help="write the spread-skill plot here")
    args = parser.parse_args(argv)
    if args.kriging_fields is not None and args.kriging_fields < 1:
        parser.error(f"--kriging-fields: expected an integer >= 1, got {args.kriging_fields}")
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}; expected some of {METHODS}")
    machine = fitbench_run.machine(args.device)
    print(f"machine: {machine}", flush=True)
    test, truth = skill.load("zg_test.nc"), skill.load("zg_truth.nc")
    saved = Path(args.json or args.markdown or args.png or "calibration")
    records = []

    def emit(record: dict) -> None:
        print(json.dumps(record), flush=True)
        records.append(record)

    for name in methods:
        try:
            record = run_method(name, args, test, truth, saved)
        except TypeError as error:
            if not needs_api(error):
                raise
            record = {"method": name, "skipped": f"{NEEDS} ({type(error).__name__}: {error})"}
        if record is not None:
            emit(record)
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in records))
    if args.markdown:
        args.markdown.write_text(markdown(records, machine))
    if args.png:
        plot(records, args.png, machine)
    return records


def run_method(name: str, args: argparse.Namespace, test: xr.DataArray, truth: xr.DataArray,
               saved: Path) -> dict | None:  # fmt: skip
    import xcrai

    if name == "kriging":
        try:
            import pykrige  # noqa: F401
        except ImportError:
            return {"method": "ordinary kriging", "skipped": "PyKrige is not installed "
                    "(pip install pykrige)"}  # fmt: skip
        record = timed("ordinary kriging", kriging_method, test, truth, args.kriging_fields)
        record["note"] = "σ: kriging variance; PyKrige, geographic, exponential, nlags=20"
        return record
    if name == "sigma":
        extra: dict = {}
        if args.model_sigma:
            model, label = xcrai.load_model(args.model_sigma), f"σ head, {args.model_sigma.name}"
        elif args.train:
            model, extra = at_budget(args.budget, args.device, uncertainty=True)
            model.save(saved.with_suffix(".sigma.pth"))
            off, info = at_budget(args.budget, args.device)
            off.save(saved.with_suffix(".plain.pth"))
            off_values = off_values_of(off, test, args.device)
            extra.update({"rmse_uncertainty_off_m": hole_rmse_of(off_values, test, truth),
                          "off_iterations": info["iterations"]})  # fmt: skip
            label = f"xcrai defaults + σ head, {args.budget:.0f} s"
        else:
            return {"method": "σ head", "skipped": "give --model-sigma PATH or --train"}
        record = timed(label, sigma_method(model, args.device), test, truth)
        record.update(extra)
        return record
    if name == "ensemble":
        extra = {}
        if args.model_ensemble:
            ensemble = xcrai.load_model(args.model_ensemble, label="all")
            label = f"ensemble, {args.model_ensemble.name}"
        elif args.train:
            ensemble, extra = at_budget(args.budget / 4, args.device, ensemble=ENSEMBLE_MEMBERS,
                                        uncertainty=args.ensemble_uncertainty)  # fmt: skip
            ensemble.save(saved.with_suffix(".ensemble.pth"))
            label = f"ensemble of {ENSEMBLE_MEMBERS}, {args.budget / 4:.0f} s each"
        else:
            return {"method": "ensemble", "skipped": "give --model-ensemble PATH or --train"}
        start = time.perf_counter()  # as timed(..., ensemble_method(...)), infilled once
        members = ensemble_members(ensemble, test, args.device)
        seconds = time.perf_counter() - start
        record = score(label, *mean_and_spread(members), seconds, test, truth)
        errors = member_errors(members, test, truth)
        record["member_rmse_m"] = [round(rmse(e), 2) for e in errors]
        record.update((key, round(value, 3)) for key, value in ensemble_limit(errors).items())
        record["note"] = f"value: mean of {members.sizes['member']} members; σ: " + (
            "sqrt(mean σ_i² + their variance), ddof=0" if "zg_sigma" in members
            else f"their std, ddof={ENSEMBLE_DDOF}"
        )  # fmt: skip
        record.update(extra)
        return record
    raise ValueError(f"methods: unknown {name!r}")


def off_values_of(model, test: xr.DataArray, device: str) -> np.ndarray:
    return (
        test.crai.infill(model, device=device, progress=False)
        .transpose("time", "lat", "lon")
        .values
    )


if __name__ == "__main__":
    main()
