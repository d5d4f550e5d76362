"""Records beyond fitbench, each of a kind that favours another method, with their rivals.

Every record lives on fitbench's 73 x 144 grid and is hidden by fitbench's masks (the
first ``TEST_MASKS`` hide the test fields, the others train xcrai and cross-validate the
EOFs). Fields are generated from seeded draws (``benchmarks/grf/grf.py``: exact Gaussian
random fields on the sphere), so each record is the same on every machine:

- ``seasonal``: a bounded, seasonal field with a fixed continent, like monthly sea-ice
  concentration: in each hemisphere the "ice" covers the cap poleward of an edge whose
  latitude follows the calendar month (10 degrees of annual swing) and the longitude (a
  fixed pattern), shifted each month by a smooth anomaly (a GRF, 20 degrees); values
  ramp from 0 to 1 over 6 degrees of latitude and stay in [0, 1]. A continent (a fixed
  block of 30 x 60 degrees) is NaN in every field. 8 years train, the next 2 test.
- ``span``: test fields inside the span of the training fields: every field is a mix of
  4 fixed patterns (GRFs, 20 degrees) with random weights, plus 2 % noise; 40 fields
  train, 10 test, the regime where an EOF reconstruction is nearly exact.
- ``grf``: the GRF benchmark (``benchmarks/grf/run.py``) is the third record.

Methods: ``climatology`` (:func:`xcrai.baselines.climatology_fill`: the training fields'
monthly means), ``eof`` (:func:`xcrai.baselines.eof_fill`, k by cross-validation),
``poisson`` (:func:`xcrai.baselines.poisson_fill`), ``xcrai`` (the defaults, trained on the
record's training fields for ``--iterations``, with ``first_guess="auto"``;
``--first-guess`` trains one model per first guess: ``xcrai`` (auto, the default; the
record says which it took), ``xcrai+none``, ``xcrai+climatology``, ``xcrai+eof``).
Scores: hole RMSE (unweighted and area-weighted, cos latitude) on the hidden points that
are not continent.

Usage: python benchmarks/records/run.py [--records seasonal,span] [--iterations 2285]
           [--methods climatology,eof,poisson,xcrai] [--first-guess auto,none,climatology,eof]
           [--json F] [--markdown F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "grf"))

from common import (  # noqa: E402
    TEST_MASKS,
    as_dataarray,
    first_guesses,
    load_masks,
    machine,
    scores,
    write_results,
)  # fmt: skip
from grf import Sphere  # noqa: E402

METHODS = ("climatology", "eof", "poisson", "xcrai")
RECORDS = ("seasonal", "span")


def seasonal(lat: np.ndarray, lon: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """120 monthly fields of the seasonal record, its continent, and the training count."""
    months = 120
    sphere = Sphere(lat, lon, 1.5, 20.0)
    anomaly = 3.0 * sphere.sample(months, seed=seed)  # degrees of edge shift
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    geography = 4.0 * np.sin(np.deg2rad(2 * lon2)) + 3.0 * np.cos(np.deg2rad(3 * lon2 + 40))
    fields = np.empty((months, *lat2.shape))
    for t in range(months):
        phase = 2 * np.pi * (t % 12) / 12
        north = 70 - 10 * np.cos(phase - 2 * np.pi * 2 / 12)  # furthest south in March
        south = -62 - 10 * np.cos(phase - 2 * np.pi * 8 / 12)  # furthest north in September
        edge_n = north + geography + anomaly[t]
        edge_s = south - geography + anomaly[t]
        ice_n = np.clip((lat2 - edge_n) / 6 + 0.5, 0, 1)
        ice_s = np.clip((edge_s - lat2) / 6 + 0.5, 0, 1)
        fields[t] = np.maximum(ice_n, ice_s)
    continent = (np.abs(lat2 - 45) <= 15) & (np.abs(lon2 - 100) <= 30)
    fields[:, continent] = np.nan
    return fields, continent, 96


def span(lat: np.ndarray, lon: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """50 fields in the span of 4 fixed patterns, and the training count."""
    sphere = Sphere(lat, lon, 1.5, 20.0)
    patterns = sphere.sample(4, seed=seed)
    rng = np.random.default_rng(seed + 1)
    weights = rng.standard_normal((50, 4)) * np.array([3.0, 2.0, 1.5, 1.0])
    noise = 0.02 * rng.standard_normal((50, *patterns.shape[1:]))
    fields = np.einsum("tk,khw->thw", weights, patterns) + noise
    return fields, np.zeros(patterns.shape[1:], dtype=bool), 40


def run_record(name: str, args: argparse.Namespace, masks: xr.DataArray) -> list[dict]:
    """Every method on record ``name``; one record (dict) per method."""
    from xcrai.baselines import poisson_fill

    lat, lon = masks.lat.values.astype(np.float64), masks.lon.values.astype(np.float64)
    fields, continent, count = {"seasonal": seasonal, "span": span}[name](lat, lon, args.seed)
    freq = "MS" if name == "seasonal" else "D"
    train = as_dataarray(fields[:count], lat, lon, name=name, freq=freq)
    truth = fields[count:]
    observed = masks.values[np.arange(len(truth)) % TEST_MASKS] == 1
    times = as_dataarray(fields, lat, lon, name=name, freq=freq).time[count:]
    test = as_dataarray(np.where(observed, truth, np.nan), lat, lon, name=name, freq=freq)
    test = test.assign_coords(time=times.values)
    hidden = ~observed & ~continent
    weight = np.cos(np.deg2rad(lat))[:, None]
    train_masks = masks.isel(time=slice(TEST_MASKS, None))
    records = []

    def record(method: str, seconds: float, filled: np.ndarray, **extra: object) -> None:
        entry = {"record": name, "method": method, "seconds": round(seconds, 1),
                 **scores(filled, truth, hidden, weight), **extra}  # fmt: skip
        records.append(entry)
        print(json.dumps(entry), flush=True)

    methods = set(args.methods)
    if "climatology" in methods:
        from xcrai.baselines import climatology_fill

        start = time.perf_counter()
        record("climatology", time.perf_counter() - start, climatology_fill(test, train).values)
    if "eof" in methods:
        from xcrai.baselines import eof_fill

        start = time.perf_counter()
        filled = eof_fill(test, train, masks=train_masks).values
        record("eof", time.perf_counter() - start, filled)
    if "poisson" in methods:
        start = time.perf_counter()
        record("poisson", time.perf_counter() - start, poisson_fill(test).values)
    for guess in args.first_guess if "xcrai" in methods else ():
        start = time.perf_counter()
        model = train.crai.fit(train_masks, iterations=args.iterations, seed=args.seed,
                               first_guess=guess, progress=False)  # fmt: skip
        filled = test.crai.infill(model, progress=False).values
        label = "xcrai" if guess == "auto" else f"xcrai+{guess or 'none'}"
        chosen = model.config.first_guess  # what "auto" took
        extra = {"first_guess": None if chosen is None else chosen.kind}
        record(label, time.perf_counter() - start, filled, iterations=args.iterations,
               **extra)  # fmt: skip
    best = min((r for r in records if not r["method"].startswith("xcrai")),
               key=lambda r: r["rmse"], default=None)  # fmt: skip
    for entry in records:
        if best is not None:
            entry["against_best_classical"] = round(entry["rmse"] / best["rmse"], 4)
            entry["best_classical"] = best["method"]
    return records


def markdown(records: list[dict], machine: str) -> str:
    lines = [f"Records beyond fitbench; {machine}; {time.strftime('%Y-%m-%d')}", "",
             "| record | method | hole RMSE | area-weighted | against the best classical | s |",
             "|" + " --- |" * 6]  # fmt: skip
    for r in records:
        lines.append(f"| {r['record']} | {r['method']} | {r['rmse']:.4f} | {r['rmse_area']:.4f} "
                     f"| {r.get('against_best_classical', float('nan')):.3f}x "
                     f"({r.get('best_classical', '-')}) | {r['seconds']:g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=lambda t: t.split(","), default=list(RECORDS))
    parser.add_argument("--methods", type=lambda t: t.split(","), default=list(METHODS))
    parser.add_argument("--iterations", type=int, default=2285)
    parser.add_argument("--first-guess", type=first_guesses, default=["auto"],
                        help="xcrai's first guesses to train with: auto,none,climatology,eof")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    for option, given, known in (("--records", args.records, RECORDS),
                                 ("--methods", args.methods, METHODS)):  # fmt: skip
        if set(given) - set(known):
            parser.error(f"{option}: unknown {sorted(set(given) - set(known))}; from {known}")
    masks = load_masks()
    records = [r for name in args.records for r in run_record(name, args, masks)]
    write_results(records, args.json, args.markdown, markdown(records, machine()))
    return records


if __name__ == "__main__":
    main()
