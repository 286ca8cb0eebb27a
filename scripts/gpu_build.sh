#!/usr/bin/env bash
# Builds the CUDA binary for a GPU machine on this (CPU-only) machine: `cargo build --release --features
# cuda` with nvcc 13.0 from NVIDIA's PyPI wheels (scripts/cuda_env.sh; sm_90 for H100/H200), without debug
# info and stripped, so that it travels with scripts/gpu_check.sh (the GPU machines take at most 64 MiB of
# files and have no Rust toolchain). The CUDA libraries are not linked: cudarc loads libcuda, cuBLAS,
# cuRAND and NVRTC at run time (vendor patch 0006), from the driver and the GPU machine's PyTorch wheels.
#
#   scripts/gpu_build.sh          -> target/gpu/phi4r-actors
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda_env.sh

export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
t0=$SECONDS
cargo build --release -p phi4r-actors --features cuda --target-dir "$CACHE/target-gpu"
mkdir -p target/gpu
cp "$CACHE/target-gpu/release/phi4r-actors" target/gpu/phi4r-actors.tmp
mv target/gpu/phi4r-actors.tmp target/gpu/phi4r-actors
echo "gpu_build: target/gpu/phi4r-actors, $(du -m target/gpu/phi4r-actors | cut -f1) MB, $((SECONDS - t0)) s"
