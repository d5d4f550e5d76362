"""The GPU benchmark script, rehearsed on the CPU with tiny sizes (slow: about 2.5 minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
