#!/usr/bin/env bash
# Run HERE (with internet) before a GPU session: downloads into .whl/ (git-ignored) the
# wheels that the device machine's image (Python 3.12, x86-64, torch, xarray, pandas, numpy;
# no network) lacks for xcrai and gpu.sh. The versions are those the
# CPU figures were measured with. See "gpu.sh" in benchmarks/README.md for the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    dask==2026.8.0 distributed==2026.8.0 netCDF4==1.7.5.1.post1 cftime==1.6.6.1 \
    cf_xarray==0.11.3 pooch==1.9.0 platformdirs==4.14.8 partd==1.4.2 locket==1.0.0 \
    tblib==3.2.2 zict==3.0.0 sortedcontainers==2.4.0 tornado==6.6.1 \
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
du -sh .whl
