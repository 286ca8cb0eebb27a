#!/usr/bin/env bash
# The GPU build check: `cargo check` of the workspace with the `cuda` feature, candle's CUDA kernels
# included, on a machine without a GPU or a CUDA install. nvcc and the CUDA headers come from NVIDIA's
# wheels on PyPI (CUDA 13.0: no newer than the GPU machines' driver, 580 / CUDA 13.0), unpacked into a
# cache outside the clone; the check's own target folder is cached beside it, so a second run only
# re-checks what changed. Both caches are optional: without them the script downloads (~60 MB) and
# compiles everything (see the README for the time).
#
#   scripts/cuda_check.sh            # check (what .ci/run runs)
#   PHI4R_CUDA_CACHE=DIR scripts/cuda_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/cuda_env.sh

cargo check --workspace --all-targets --features phi4r-actors/cuda --target-dir "$CACHE/target"
