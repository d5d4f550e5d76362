"""Benchmark scripts: the GPU script rehearsed on the CPU with tiny sizes (slow: about 2.5
minutes), and the GRF benchmark's exact draws and optimum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_runs_every_step_on_the_cpu(tmp_path):
    env = os.environ | {"DEVICE": "cpu", "QUICK": "1", "PYTHON": sys.executable, "TESTS": "0"}
    subprocess.run(["bash", "benchmarks/gpu.sh", str(tmp_path)], cwd=ROOT, env=env, check=True)
    steps = (tmp_path / "steps.txt").read_text().splitlines()
    assert steps[-1] == "done" and len(steps) == 11  # ten steps on the CPU, then done
    lines = [json.loads(line) for line in (tmp_path / "gpu.jsonl").read_text().splitlines()]
    measures = [line["measure"] for line in lines if "measure" in line]
    assert measures == ["accuracy"] * 3 + ["invariance"] * 3 + ["training"] * 2
    grids = [line["grid"] for line in lines if "grid" in line]
    assert grids == ["72x72", "72x144"] * 3 + ["1801x3600", "72x72", "72x72"] + ["72x144"] * 3
    assert all(line.get("speedup", 1) > 0 for line in lines)


def test_grf_benchmark_draws_exactly_and_its_optimum_is_the_conditional_law():
    """benchmarks/grf: fields drawn from the stated covariance, and an optimum whose
    errors have exactly the variance it states (checked against a direct solve)."""
    pytest.importorskip("gstools")
    sys.path.insert(0, str(ROOT / "benchmarks" / "grf"))
    from grf import Sphere

    lat, lon = np.linspace(-90, 90, 13), np.arange(0, 360, 15.0)
    sphere = Sphere(lat, lon, 1.5, 30.0)
    assert sphere.cov.shape == (11 * 24 + 2,) * 2  # each pole row is one place
    fields = sphere.sample(4000, seed=1)
    assert np.ptp(fields[:, 0], axis=1).max() < 1e-12  # a pole row holds one value
    flat = fields[:, 1:-1].reshape(len(fields), -1)
    empirical = flat.T @ flat / len(flat)
    inner = sphere.cov[np.ix_(sphere.places[24:-24], sphere.places[24:-24])]
    assert np.abs(empirical - inner).max() < 0.1  # 4,000 draws: sampling error ~0.03
    rng = np.random.default_rng(2)
    observed = rng.random((13, 24)) < 0.3
    mean, _ = sphere.optimum(fields[0], observed)
    o = np.unique(sphere.places[observed.ravel()])
    h = np.setdiff1d(np.arange(len(sphere.cov)), o)
    known = np.zeros(len(sphere.cov))
    known[sphere.places[observed.ravel()]] = fields[0].ravel()[observed.ravel()]
    direct = sphere.cov[np.ix_(h, o)] @ np.linalg.solve(sphere.cov[np.ix_(o, o)], known[o])
    hidden = ~np.isin(sphere.places, o)  # grid cells at unobserved places
    expected = direct[np.searchsorted(h, sphere.places[hidden])]
    np.testing.assert_allclose(mean.ravel()[hidden], expected, atol=1e-9)
    assert np.array_equal(mean[observed], fields[0][observed])
    z = []
    for field in fields[:300]:
        m, v = sphere.optimum(field, observed)
        z.append(((m - field) / np.sqrt(np.maximum(v, 1e-300)))[v > 1e-9])
    z = np.concatenate(z)
    assert 0.97 < z.std() < 1.03 and abs(z.mean()) < 0.03
