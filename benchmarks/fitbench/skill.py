"""fitbench skill: every infilling method scored on the hidden points of zg_test.nc.

The hidden points are those NaN in ``zg_test.nc`` and finite in ``zg_truth.nc``. Each
method fills the test fields; the score is the RMSE over all hidden points of all its
fields pooled, unweighted and area-weighted (cos latitude), beside the seconds per
field it took. The fields are 500 hPa height anomalies (m, against the 21-field mean;
see data/README.md), so the zero fill is the climatology, and the zonal-mean fill
falls back to it in latitude rows without an observation.

Methods (``--methods``, comma-separated; all by default):

- ``zero``: holes set to 0 (the climatology of the anomalies);
- ``zonal``: holes set to the mean of the observed points of their latitude row;
- ``poisson``: :func:`xcrai.baselines.poisson_fill`;
- ``eof``: reconstruction from the EOFs of the 18 training fields (zg_train.nc): a
  least-squares fit of the first k EOFs to a field's observed points, k chosen by
  leave-one-out on the training fields (each left-out field hidden by one of the masks
  that zg_test.nc does not use); ``eof-ridge``: every EOF, coefficients scaled to unit
  variance and shrunk by a ridge penalty chosen the same way;
- ``kriging``: ordinary kriging on the sphere with PyKrige (geographic coordinates,
  exponential variogram fitted per field with ``nlags=20, weight=True``, every
  observation of the field); a benchmark-only dependency, skipped with a note when
  missing. About 5-20 s per field on a 2-core CPU, so ``--kriging-fields N`` scores only
  the first N test fields (each record says how many fields it scored).

xcrai models: ``--model PATH`` (repeatable) scores saved models; ``--train-recipe``
first trains CRAI's recipe once (seed 0) with run.py's code (minutes on a CPU).

Prints one JSON line per method; ``--markdown PATH`` writes the table.

Usage: python benchmarks/fitbench/skill.py [--methods zero,zonal,poisson,eof,eof-ridge,kriging]
           [--kriging-fields N] [--model PATH ...] [--train-recipe] [--device auto]
           [--markdown PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

DATA = Path(__file__).parent / "data"
CLASSICAL = ("zero", "zonal", "poisson", "eof", "eof-ridge", "kriging")
#: masks zg_test.nc uses (the first three); the EOF cross-validation takes the others
TEST_MASKS = 3
#: ridge penalties tried (m^2: the noise variance against unit-variance EOF coefficients)
RIDGE_PENALTIES = tuple(float(a) for a in np.logspace(0, 6, 25))


def load(name: str) -> xr.DataArray:
    with xr.open_dataset(DATA / name) as ds:
        return ds.zg.load()


@dataclass
class Score:
    """Squared errors of one method, per field, on the hidden points."""

    name: str
    seconds_per_field: float
    squared: list[float] = field(default_factory=list)  # per field: sum of squared errors
    points: list[int] = field(default_factory=list)
    weighted: list[float] = field(default_factory=list)  # sum of cos(lat) x squared error
    weights: list[float] = field(default_factory=list)
    setup_s: float | None = None
    note: str | None = None

    def rmse(self, fields: int | None = None) -> tuple[float, float]:
        """Pooled RMSE, unweighted and area-weighted, over the first ``fields`` fields."""
        n = slice(None, fields)
        plain = np.sqrt(sum(self.squared[n]) / sum(self.points[n]))
        area = np.sqrt(sum(self.weighted[n]) / sum(self.weights[n]))
        return float(plain), float(area)

    def record(self, compare_fields: int | None = None) -> dict:
        plain, area = self.rmse()
        out = {
            "method": self.name,
            "fields": len(self.squared),
            "hidden_points": int(sum(self.points)),
            "rmse_m": round(plain, 2),
            "rmse_area_m": round(area, 2),
            "seconds_per_field": float(f"{self.seconds_per_field:.3g}"),
        }
        if compare_fields is not None and compare_fields < len(self.squared):
            out[f"rmse_first_{compare_fields}_fields_m"] = round(self.rmse(compare_fields)[0], 2)
        if self.setup_s is not None:
            out["setup_s"] = round(self.setup_s, 2)
        if self.note:
            out["note"] = self.note
        return out


def score(name: str, filled: np.ndarray, seconds: float, test: xr.DataArray,
          truth: xr.DataArray) -> Score:  # fmt: skip
    """Score ``filled`` (the first len(filled) test fields, filled) on the hidden points."""
    count = len(filled)
    values, expected = test.values[:count], truth.values[:count].astype(np.float64)
    hidden = np.isnan(values) & np.isfinite(expected)
    weight = np.broadcast_to(np.cos(np.deg2rad(test.lat.values))[:, None], values.shape[1:])
    result = Score(name, seconds / count)
    for index in range(count):
        error = (np.asarray(filled[index], dtype=np.float64) - expected[index])[hidden[index]]
        result.squared.append(float(np.sum(error**2)))
        result.points.append(int(hidden[index].sum()))
        result.weighted.append(float(np.sum(weight[hidden[index]] * error**2)))
        result.weights.append(float(np.sum(weight[hidden[index]])))
    return result


# The methods: test DataArray in, filled fields (NumPy, time first) out.


def zero_fill(test: xr.DataArray) -> np.ndarray:
    return np.where(np.isnan(test.values), 0.0, test.values)


def zonal_mean_fill(test: xr.DataArray) -> np.ndarray:
    values = test.transpose("time", "lat", "lon").values
    observed = np.isfinite(values)
    total = np.where(observed, values, 0.0).sum(axis=-1, keepdims=True)
    count = observed.sum(axis=-1, keepdims=True)
    row_mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(observed, values, row_mean)


def poisson(test: xr.DataArray) -> np.ndarray:
    from xcrai.baselines import poisson_fill

    return poisson_fill(test).values


@dataclass
class Eofs:
    """EOFs of complete training fields, flattened: ``mean + coefficients @ patterns``."""

    mean: np.ndarray  # (points,)
    patterns: np.ndarray  # (components, points), each scaled by its standard deviation

    @classmethod
    def of(cls, fields: np.ndarray) -> Eofs:
        flat = fields.reshape(len(fields), -1).astype(np.float64)
        mean = flat.mean(axis=0)
        _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
        keep = singular > singular[0] * 1e-10  # drop the null direction the mean removed
        scale = singular[keep] / np.sqrt(len(flat) - 1)
        return cls(mean, scale[:, None] * vt[keep])

    def fill(self, field: np.ndarray, components: int, ridge: float = 0.0) -> np.ndarray:
        """``field`` (flattened, NaN = hidden) with the hidden points reconstructed from
        the first ``components`` EOFs, fitted to the observed points (least squares,
        shrunk by ``ridge`` times the squared norm of the coefficients)."""
        observed = np.isfinite(field)
        basis = self.patterns[:components, observed].T
        anomaly = field[observed] - self.mean[observed]
        if ridge:
            gram = basis.T @ basis + ridge * np.eye(components)
            coefficients = np.linalg.solve(gram, basis.T @ anomaly)
        else:
            coefficients = np.linalg.lstsq(basis, anomaly, rcond=None)[0]
        reconstructed = self.mean + coefficients @ self.patterns[:components]
        return np.where(observed, field, reconstructed)


def choose_eof_settings(train: np.ndarray, masks: np.ndarray) -> tuple[int, float, dict]:
    """Number of EOFs (plain fit) and ridge penalty (all EOFs), by leave-one-out on the
    training fields: field i is left out, hidden by mask ``TEST_MASKS + i`` (masks the
    test fields do not use), and reconstructed from the EOFs of the others."""
    count = len(train)
    ks = range(1, count - 1)  # the EOFs of count - 1 fields: count - 2 of them
    errors_k = np.zeros(len(ks))
    errors_ridge = np.zeros(len(RIDGE_PENALTIES))
    for left_out in range(count):
        eofs = Eofs.of(np.delete(train, left_out, axis=0))
        truth = train[left_out].ravel().astype(np.float64)
        mask = masks[TEST_MASKS + left_out % (len(masks) - TEST_MASKS)].ravel() == 1
        field_ = np.where(mask, truth, np.nan)
        for index, k in enumerate(ks):
            errors_k[index] += np.sum((eofs.fill(field_, k) - truth)[~mask] ** 2)
        every = len(eofs.patterns)
        for index, penalty in enumerate(RIDGE_PENALTIES):
            errors_ridge[index] += np.sum((eofs.fill(field_, every, penalty) - truth)[~mask] ** 2)
    k = ks[int(np.argmin(errors_k))]
    penalty = RIDGE_PENALTIES[int(np.argmin(errors_ridge))]
    return k, penalty, {"cv_k_errors": errors_k.tolist(), "cv_ridge_errors": errors_ridge.tolist()}


def eof_methods() -> tuple[Callable, Callable, float, str, str]:
    """The EOF fill and its ridge variant, set up on the training fields."""
    start = time.perf_counter()
    train = load("zg_train.nc").transpose("time", "lat", "lon").values
    masks = load("zg_masks.nc").transpose("time", "lat", "lon").values
    k, penalty, _ = choose_eof_settings(train, masks)
    eofs = Eofs.of(train)
    setup = time.perf_counter() - start

    def apply(test: xr.DataArray, components: int, ridge: float) -> np.ndarray:
        values = test.transpose("time", "lat", "lon").values
        return np.stack([
            eofs.fill(f.ravel().astype(np.float64), components, ridge).reshape(f.shape)
            for f in values
        ])  # fmt: skip

    every = len(eofs.patterns)
    return (
        lambda test: apply(test, k, 0.0),
        lambda test: apply(test, every, penalty),
        setup,
        f"k = {k} of {every} EOFs, chosen by leave-one-out on the {len(train)} training fields",
        f"all {every} EOFs, ridge penalty {penalty:.3g} m^2 chosen by leave-one-out",
    )


def kriging(test: xr.DataArray) -> np.ndarray:
    """Ordinary kriging of each field's hidden points from all its observations."""
    return kriging_with_variance(test)[0]


def kriging_with_variance(test: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kriging`'s fields and the kriging variance of each point (m^2; 0 where
    observed), as PyKrige's ``execute`` gives it (clipped at 0)."""
    from pykrige.ok import OrdinaryKriging

    values = test.transpose("time", "lat", "lon").values.astype(np.float64)
    lon, lat = np.meshgrid(test.lon.values.astype(np.float64), test.lat.values.astype(np.float64))
    out, variance = values.copy(), np.zeros_like(values)
    for index, field_ in enumerate(values):
        observed = np.isfinite(field_)
        x, y, z = one_point_per_pole(lon[observed], lat[observed], field_[observed])
        model = OrdinaryKriging(
            x, y, z, variogram_model="exponential", coordinates_type="geographic",
            nlags=20, weight=True,
        )  # fmt: skip
        estimate, ss = model.execute("points", lon[~observed], lat[~observed])
        out[index][~observed] = np.asarray(estimate)
        variance[index][~observed] = np.maximum(np.asarray(ss), 0.0)
    return out, variance


def one_point_per_pole(
    lon: np.ndarray, lat: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observations with each pole's cells (one place, which would make the kriging
    system singular) merged into one observation holding their mean."""
    pole = np.abs(lat) >= 90 - 1e-6
    keep = [(lon[~pole], lat[~pole], values[~pole])]
    for sign in (-1.0, 1.0):
        found = values[pole & (np.sign(lat) == sign)]
        if found.size:
            keep.append((np.zeros(1), np.full(1, 90.0 * sign), np.full(1, found.mean())))
    x, y, z = (np.concatenate(parts) for parts in zip(*keep, strict=True))
    return x, y, z


def model_method(path: str | Path, device: str) -> Callable[[xr.DataArray], np.ndarray]:
    import xcrai

    model = xcrai.load_model(path)
    return lambda test: test.crai.infill(model, device=device, progress=False).values


def timed(name: str, method: Callable[[xr.DataArray], np.ndarray], test: xr.DataArray,
          truth: xr.DataArray, fields: int | None = None) -> Score:  # fmt: skip
    subset = test.isel(time=slice(None, fields))
    start = time.perf_counter()
    filled = method(subset)
    return score(name, filled, time.perf_counter() - start, test, truth)


def score_methods(
    methods: tuple[str, ...] | list[str] = CLASSICAL,
    *,
    kriging_fields: int | None = None,
    models: tuple[tuple[str, str | Path], ...] = (),
    device: str = "auto",
) -> list[Score]:
    """Score each named classical method, then each ``(name, model path)``."""
    unknown = set(methods) - set(CLASSICAL)
    if unknown:
        raise ValueError(f"methods: unknown {sorted(unknown)}; expected some of {CLASSICAL}")
    test, truth = load("zg_test.nc"), load("zg_truth.nc")
    scores = []
    simple = {"zero": zero_fill, "zonal": zonal_mean_fill, "poisson": poisson}
    labels = {"zero": "zero fill", "zonal": "zonal-mean fill", "poisson": "Poisson fill"}
    eof = eof_methods() if {"eof", "eof-ridge"} & set(methods) else None
    if "poisson" in methods:  # imported before the clock starts: not the method's time
        import scipy.sparse.linalg  # noqa: F401

        import xcrai.baselines  # noqa: F401
    for name in methods:
        if name in simple:
            scores.append(timed(labels[name], simple[name], test, truth))
        elif name in ("eof", "eof-ridge") and eof is not None:
            ridge = name == "eof-ridge"
            label = "EOF reconstruction, ridge" if ridge else "EOF reconstruction"
            result = timed(label, eof[1] if ridge else eof[0], test, truth)
            result.setup_s, result.note = eof[2], eof[4] if ridge else eof[3]
            scores.append(result)
        elif name == "kriging":
            try:
                import pykrige  # noqa: F401
            except ImportError:
                print(json.dumps({"method": "ordinary kriging", "skipped": "PyKrige is not "
                                  "installed (pip install pykrige)"}), flush=True)  # fmt: skip
                continue
            result = timed("ordinary kriging", kriging, test, truth, kriging_fields)
            result.note = "PyKrige, geographic, exponential, nlags=20, weight=True"
            scores.append(result)
    for name, path in models:
        scores.append(timed(name, model_method(path, device), test, truth))
    return scores


def markdown(records: list[dict], machine: str) -> str:
    lines = [
        f"Hole RMSE on the hidden points of fitbench's zg_test.nc ({machine}).",
        "",
        "| method | fields | RMSE (m) | area-weighted RMSE (m) | seconds per field | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        extra = [f"{k}: {v}" for k, v in r.items() if k.startswith("rmse_first_")]
        note = "; ".join([*extra, *([r["note"]] if r.get("note") else [])])
        lines.append(
            f"| {r['method']} | {r['fields']} | {r['rmse_m']:.2f} | {r['rmse_area_m']:.2f} | "
            f"{_seconds(r['seconds_per_field'])} | {note} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--methods", default=",".join(CLASSICAL), help=f"comma-separated, of {', '.join(CLASSICAL)}"
    )
    parser.add_argument("--kriging-fields", type=int, default=None,
                        help="krige only the first N test fields (default: all)")  # fmt: skip
    parser.add_argument("--model", action="append", default=[], help="a saved model to score")
    parser.add_argument(
        "--train-recipe", action="store_true", help="train CRAI's recipe once (seed 0) and score it"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    parser.add_argument("--json", type=Path, help="write the JSON lines here too")
    args = parser.parse_args(argv)
    if args.kriging_fields is not None and args.kriging_fields < 1:
        parser.error(f"--kriging-fields: expected an integer >= 1, got {args.kriging_fields}")
    sys.path.insert(0, str(Path(__file__).parent))
    import run as fitbench_run

    machine = fitbench_run.machine(args.device)
    print(f"machine: {machine}", flush=True)
    models = [(f"xcrai model {Path(p).name}", p) for p in args.model]
    if args.train_recipe:
        model, seconds = fitbench_run.train(args.device, **fitbench_run.RECIPE, seed=0)
        path = Path(args.markdown or "fitbench").with_suffix(".recipe.pth")
        model.save(path)
        print(json.dumps({"trained": "CRAI recipe, seed 0", "train_s": round(seconds, 1),
                          "saved": str(path)}), flush=True)  # fmt: skip
        models.append(("xcrai, CRAI's recipe, seed 0", path))
    methods = [m for m in args.methods.split(",") if m]
    scores = score_methods(methods, kriging_fields=args.kriging_fields, models=tuple(models),
                           device=args.device)  # fmt: skip
    compare = min((len(s.squared) for s in scores), default=None)
    records = []
    for result in scores:
        record = result.record(compare)
        print(json.dumps(record), flush=True)
        records.append(record)
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in records))
    if args.markdown:
        args.markdown.write_text(markdown(records, machine))
    return records


if __name__ == "__main__":
    main()
