#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one go, for a session with a GPU:
#   bash benchmarks/gpu.sh OUTDIR
# from the repository root, with xcrai importable (pip install -e ., or PYTHONPATH=$PWD plus
# the wheels of benchmarks/gpu_wheels.sh on the device machine: see benchmarks/README.md).
# Each step's JSON lines are appended to OUTDIR/gpu.jsonl as soon as it ends, and its wall
# time to OUTDIR/steps.txt, so a run cut short still leaves what it finished.
# DEVICE=cpu QUICK=1 rehearses the whole script on a CPU with tiny sizes (no figures).
# First the whole test suite runs on the device (its summary in OUTDIR/tests.txt, each test's
# outcome in OUTDIR/tests.xml); TESTS=0 skips it.
set -euo pipefail
out=${1:-.}
mkdir -p "$out"
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
if [[ ${QUICK:-0} == 1 ]]; then  # sizes for a rehearsal: every step runs, in seconds
    small=(--fields 8 --baseline-fields 2 --repeats 1); big=(--fields 2); many=200; large=4
    era5=(--grid 72x144); numerics=(--fields 12 --iterations 10 --runs 1)
else
    small=(); big=(--fields 64); many=50000; large=400; era5=(--grid 721x1440)
    numerics=(--fields 600 --iterations 300 --runs 2)
fi
if [[ $device == cuda* ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
"$py" -c "import torch, xarray, dask, xcrai; print('torch', torch.__version__, 'xarray',
xarray.__version__, 'dask', dask.__version__, 'xcrai', xcrai.__file__)" | tee -a "$out/gpu.txt"
if [[ ${TESTS:-1} == 1 ]]; then  # correctness first: the suite on this device
    bin=$(mktemp -d)  # the CLI tests run `xcrai`, which PYTHONPATH alone does not put on PATH
    printf '#!/bin/sh\nexec %s -m xcrai.cli "$@"\n' "$py" > "$bin/xcrai" && chmod +x "$bin/xcrai"
    start=$SECONDS
    PATH="$bin:$PATH" XCRAI_TEST_DEVICE=${device%%:*} "$py" -m pytest -q -p no:cacheprovider \
        --junitxml "$out/tests.xml" 2>&1 | tail -n 40 | tee "$out/tests.txt" || true
    echo "$((SECONDS - start)) s: test suite (XCRAI_TEST_DEVICE=${device%%:*})" | tee -a "$out/steps.txt"
fi
step() {
    local start=$SECONDS
    echo "+ $*" >&2
    "$py" "$@" --device "$device" | { grep '^{' || true; } | tee -a "$out/gpu.jsonl"
    echo "$((SECONDS - start)) s: $*" | tee -a "$out/steps.txt" >&2
}
# what tf32/bf16/fp16 change, batch and chunk invariance, the cost of deterministic training
step benchmarks/numerics.py "${numerics[@]}"
# engine throughput against the textbook baseline, with torch.compile and CUDA graphs
step benchmarks/throughput.py --grid 72x72 "${era5[@]}" "${small[@]}" --compile default
step benchmarks/throughput.py --grid 72x72 "${era5[@]}" "${small[@]}" --compile reduce-overhead
step benchmarks/throughput.py --grid 72x72 "${era5[@]}" "${small[@]}" --precision bf16
step benchmarks/throughput.py --grid 1801x3600 "${big[@]}" --baseline-fields 2 --repeats 2
# the roofline: measured copy bandwidth and fp32 matrix-product rate of this device
step benchmarks/roofline.py --grid 72x72
if [[ $device == cuda* ]]; then step benchmarks/roofline.py --grid 721x1440 --fields 16; fi
# netCDF to netCDF against reading and writing alone
step benchmarks/pipeline.py --fields "$many" --runs 2
step benchmarks/pipeline.py "${era5[@]}" --fields "$large" --runs 2
# a lazily generated ERA5-size record streamed to netCDF (peak RSS against size)
step benchmarks/streaming.py "${era5[@]}" --fields "$large" --time-chunk 16
step benchmarks/streaming.py "${era5[@]}" --fields "$((4 * large))" --time-chunk 16
echo "done" | tee -a "$out/steps.txt"
