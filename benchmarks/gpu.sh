#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one go (about 8 minutes on one H100), for a
# session with a GPU: `bash benchmarks/gpu.sh OUTDIR` from the repository root, with xcrai
# installed (pip install -e . with a CUDA build of torch). JSON lines go to OUTDIR/gpu.jsonl.
set -euo pipefail
out=${1:-.}/gpu.jsonl
mkdir -p "$(dirname "$out")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "${out%.jsonl}.txt"
run() { echo "+ $*" >&2; python "$@" | grep '^{' | tee -a "$out"; }
# engine throughput against the textbook baseline, with torch.compile and CUDA graphs
run benchmarks/throughput.py --device cuda --grid 72x72 --grid 721x1440 --compile default
run benchmarks/throughput.py --device cuda --grid 72x72 --grid 721x1440 --compile reduce-overhead
run benchmarks/throughput.py --device cuda --grid 72x72 --grid 721x1440 --precision bf16
run benchmarks/throughput.py --device cuda --grid 1801x3600 --fields 64
# the roofline: measured copy bandwidth and fp32 matrix-product rate of this GPU
run benchmarks/roofline.py --device cuda --grid 72x72
run benchmarks/roofline.py --device cuda --grid 721x1440
# netCDF to netCDF against reading and writing alone
run benchmarks/pipeline.py --device cuda --fields 50000 --runs 2
run benchmarks/pipeline.py --device cuda --grid 721x1440 --fields 400 --runs 2
# a lazily generated ERA5-size record streamed to netCDF (peak RSS against size)
run benchmarks/streaming.py --device cuda --fields 400 --time-chunk 16
run benchmarks/streaming.py --device cuda --fields 1600 --time-chunk 16
