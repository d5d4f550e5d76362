"""GRF benchmark: infilling skill and calibration against the exact optimum.

For each length scale, fields are drawn exactly from a Matérn covariance on fitbench's
73 x 144 grid (``grf.py``) and hidden with fitbench's HadCRUT4-derived masks: the first
``TEST_MASKS`` masks (cycled) hide the test fields, the others serve as training masks
(for xcrai's fit and the EOF cross-validation). Every method fills the same test fields;
scores pool all hidden points of all test fields:

- hole RMSE, unweighted and area-weighted (cos latitude), and its ratio to the optimum's;
- for methods with a per-point σ (the optimum, kriging, xcrai's σ head): the share of
  truths within ±1σ and ±2σ, and the Gaussian CRPS as a ratio to the optimum's.

Methods: ``optimum`` (the exact conditional mean and variance, ``grf.Sphere.optimum``),
``xcrai-N`` (xcrai's defaults trained on N fields, ``--iterations`` each; ``--sigma``
adds a σ head trained on the middle size), ``kriging`` (fitbench's ordinary kriging
with a fitted exponential variogram, PyKrige; the first ``--kriging-fields`` test
fields, as it takes seconds per field), ``poisson`` (:func:`xcrai.baselines.poisson_fill`)
and ``eof-N`` (:func:`xcrai.baselines.eof_fill` from the N training fields, its k chosen
by cross-validation under the training masks).

Needs GSTools and PyKrige (``pip install -e ".[bench]"``). Prints a JSON line per
method; ``--json``, ``--markdown`` and ``--plot`` (the learning curve, PNG) write files.

Usage: python benchmarks/grf/run.py [--len-scales 8,20] [--train-sizes 20,200,2000]
           [--test-fields 200] [--iterations 2285] [--kriging-fields 20] [--sigma]
           [--first-guess auto,none,eof] [--set KEY=VALUE ...]
           [--methods optimum,xcrai,kriging,poisson,eof] [--json F] [--markdown F] [--plot F]
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
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "fitbench"))

from common import (  # noqa: E402
    TEST_MASKS,
    as_dataarray,
    first_guesses,
    fit_changes,
    load_masks,
    machine,
    scores,
    write_results,
)  # fmt: skip
from grf import Sphere  # noqa: E402

NU = 1.5
METHODS = ("optimum", "xcrai", "kriging", "poisson", "eof")


def run_scale(len_scale: float, args: argparse.Namespace, masks: xr.DataArray) -> list[dict]:
    """Every method on one length scale; the records, with ratios to the optimum."""
    from xcrai.baselines import poisson_fill

    lat, lon = masks.lat.values, masks.lon.values
    start = time.perf_counter()
    sphere = Sphere(lat, lon, NU, len_scale)
    largest = max(args.train_sizes)
    train_all = sphere.sample(largest, seed=args.seed)
    truth = sphere.sample(args.test_fields, seed=args.seed + 1)
    setup = time.perf_counter() - start
    observed = masks.values[np.arange(args.test_fields) % TEST_MASKS] == 1
    test = as_dataarray(np.where(observed, truth, np.nan), lat, lon)
    hidden = ~observed
    weight = np.cos(np.deg2rad(lat.astype(np.float64)))[:, None]
    train_masks = masks.isel(time=slice(TEST_MASKS, None))
    records = []

    def record(name: str, seconds: float, filled: np.ndarray, sd: np.ndarray | None = None,
               **extra) -> None:  # fmt: skip
        entry = {"len_scale_deg": len_scale, "nu": NU, "method": name,
                 "seconds": round(seconds, 1), **scores(filled, truth, hidden, weight, sd),
                 **extra}  # fmt: skip
        records.append(entry)
        print(json.dumps(entry), flush=True)

    methods = set(args.methods)
    changes = fit_changes(args.set)
    if True:  # the optimum: the reference of every ratio, always scored
        start = time.perf_counter()
        pairs = [sphere.optimum(truth[i], observed[i]) for i in range(args.test_fields)]
        mean, var = (np.stack(p) for p in zip(*pairs, strict=True))
        record("optimum", time.perf_counter() - start, mean, np.sqrt(var), setup_s=setup)
    if "poisson" in methods:
        start = time.perf_counter()
        record("poisson", time.perf_counter() - start, poisson_fill(test).values)
    if "kriging" in methods and args.kriging_fields:
        from skill import kriging_with_variance

        start = time.perf_counter()
        filled, variance = kriging_with_variance(test.isel(time=slice(args.kriging_fields)))
        record("kriging", time.perf_counter() - start, filled, np.sqrt(variance))
    for size in args.train_sizes:
        train = as_dataarray(train_all[:size], lat, lon)
        if "eof" in methods:
            from xcrai.baselines import eof_fill

            start = time.perf_counter()
            filled = eof_fill(test, train, masks=train_masks).values
            record(f"eof-{size}", time.perf_counter() - start, filled, train_fields=size)
        for guess in args.first_guess if "xcrai" in methods else ():
            start = time.perf_counter()
            model = train.crai.fit(train_masks, iterations=args.iterations, seed=args.seed,
                                   first_guess=guess, progress=False, **changes)  # fmt: skip
            fitted = time.perf_counter() - start
            filled = test.crai.infill(model, progress=False).values
            label = "xcrai" if guess == "auto" else f"xcrai+{guess or 'none'}"
            chosen = model.config.first_guess  # what "auto" took
            extra = {"first_guess": None if chosen is None else chosen.kind}
            if changes:
                extra["set"] = changes
            record(f"{label}-{size}", time.perf_counter() - start, filled, train_fields=size,
                   iterations=args.iterations, fit_s=round(fitted, 1), **extra)  # fmt: skip
    if args.sigma and "xcrai" in methods:
        size = sorted(args.train_sizes)[len(args.train_sizes) // 2]
        train = as_dataarray(train_all[:size], lat, lon)
        start = time.perf_counter()
        model = train.crai.fit(train_masks, iterations=args.iterations, seed=args.seed,
                               uncertainty=True, progress=False, **changes)  # fmt: skip
        out = test.crai.infill(model, sigma=True, progress=False)
        record(f"xcrai-sigma-{size}", time.perf_counter() - start, out.grf.values,
               out.grf_sigma.values, train_fields=size, iterations=args.iterations)  # fmt: skip
    optimum_sd = np.sqrt(var)
    for entry in records:  # each against the optimum on the same fields
        count = entry["fields"]
        reference = scores(mean[:count], truth, hidden, weight, optimum_sd[:count])
        entry["rmse_ratio"] = round(entry["rmse"] / reference["rmse"], 4)
        entry["rmse_area_ratio"] = round(entry["rmse_area"] / reference["rmse_area"], 4)
        if "crps" in entry:
            entry["crps_ratio"] = round(entry["crps"] / reference["crps"], 4)
    return records


def markdown(records: list[dict], machine: str, args: argparse.Namespace) -> str:
    lines = [f"GRF benchmark: Matérn nu={NU}, {args.test_fields} test fields under fitbench's "
             f"masks; {machine}; {time.strftime('%Y-%m-%d')}", "",
             "| length scale | method | fields | hole RMSE (ratio) | area-weighted (ratio) | "
             "±1sd / ±2sd | CRPS (ratio) | s |", "|" + " --- |" * 8]
    for r in records:
        cover = (f"{100 * r['within_1sd']:.1f} / {100 * r['within_2sd']:.1f} %"
                 if "within_1sd" in r else "")
        crps = f"{r['crps']:.4f} ({r['crps_ratio']:.3f}x)" if "crps" in r else ""
        lines.append(f"| {r['len_scale_deg']:g} deg | {r['method']} | {r['fields']} | "
                     f"{r['rmse']:.4f} ({r['rmse_ratio']:.3f}x) | {r['rmse_area']:.4f} "
                     f"({r['rmse_area_ratio']:.3f}x) | {cover} | {crps} | {r['seconds']:g} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["len_scale_deg"] for r in records})
    fig, axes = plt.subplots(1, len(scales), figsize=(5 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        mine = [r for r in records if r["len_scale_deg"] == scale]
        for prefix, style in (("xcrai-", "o-"), ("eof-", "s--")):
            curve = sorted((r["train_fields"], r["rmse_ratio"]) for r in mine
                           if r["method"].startswith(prefix) and "sigma" not in r["method"])
            if curve:
                ax.plot(*zip(*curve, strict=True), style, label=prefix.rstrip("-"))
        for name, colour in (("kriging", "C2"), ("poisson", "C3")):
            for r in mine:
                if r["method"] == name:
                    ax.axhline(r["rmse_ratio"], color=colour, ls=":", label=name)
        ax.axhline(1.0, color="k", lw=0.8, label="optimum")
        ax.set_xscale("log")
        ax.set_xlabel("training fields")
        ax.set_ylabel("hole RMSE / optimum's")
        ax.set_title(f"Matérn {NU}, length scale {scale:g}°")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    number_list = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    parser.add_argument("--len-scales", type=number_list, default=[8.0, 20.0])
    parser.add_argument("--train-sizes", type=lambda t: [int(v) for v in t.split(",")],
                        default=[20, 200, 2000])  # fmt: skip
    parser.add_argument("--test-fields", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=2285)
    parser.add_argument("--kriging-fields", type=int, default=20)
    parser.add_argument("--sigma", action="store_true")
    parser.add_argument("--methods", type=lambda t: t.split(","), default=list(METHODS))
    parser.add_argument("--first-guess", type=first_guesses, default=["auto"],
                        help="xcrai's first guesses to train with: auto,none,climatology,eof")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one of xcrai fit's options for every xcrai run (VALUE as JSON)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}; choose from {list(METHODS)}")
    masks = load_masks()
    records = [r for scale in args.len_scales for r in run_scale(scale, args, masks)]
    write_results(records, args.json, args.markdown, markdown(records, machine(), args))
    if args.plot:
        plot(records, args.plot)
    return records


if __name__ == "__main__":
    main()
