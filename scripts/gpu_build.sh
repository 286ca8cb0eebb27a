#!/usr/bin/env bash
# Builds the CUDA binary for a GPU machine on this (CPU-only) machine: `cargo build --release --features
# cuda` with nvcc 13.0 from NVIDIA's PyPI wheels (scripts/cuda_env.sh; sm_90 for H100/H200), without debug
# info and stripped, so that it travels with scripts/gpu_check.sh (the GPU machines take at most 64 MiB of
# files and have no Rust toolchain). Of the CUDA libraries only the runtime (libcudart.so.13, for candle's
# MoE kernels) is linked; cudarc loads libcuda, cuBLAS, cuRAND and NVRTC at run time (vendor patch 0006),
# from the driver and the GPU machine's PyTorch wheels.
#
#   scripts/gpu_build.sh          -> target/gpu/phi4r-actors
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda_env.sh

export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
# candle-kernels links its static MoE kernels against the CUDA runtime (`-lcudart`); the runtime wheel
# ships only the versioned libcudart.so.13, so the linker gets an unversioned name beside it (through
# LIBRARY_PATH, which leaves cargo's fingerprints alone). The binary then needs libcudart.so.13 at run
# time, which scripts/gpu_check.sh finds beside PyTorch's other CUDA wheels.
ln -sf libcudart.so.13 "$CUDA_ROOT/lib/libcudart.so"
export LIBRARY_PATH="$CUDA_ROOT/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
t0=$SECONDS
cargo build --release -p phi4r-actors --features cuda --target-dir "$CACHE/target-gpu"
mkdir -p target/gpu
cp "$CACHE/target-gpu/release/phi4r-actors" target/gpu/phi4r-actors.tmp
mv target/gpu/phi4r-actors.tmp target/gpu/phi4r-actors
# The CUDA runtime it links (0.7 MB) travels with it; scripts/gpu_check.sh puts target/gpu on the loader path.
cp "$CUDA_ROOT/lib/libcudart.so.13" target/gpu/libcudart.so.13
# Stripped, the binary is ~74 MB (candle's PTX kernels are embedded as text): over the 64 MiB a GPU machine
# takes. xz makes it ~11 MB; scripts/gpu_check.sh unpacks it (xz, or Python's lzma where xz is missing).
# Carry target/gpu/phi4r-actors.xz and target/gpu/libcudart.so.13.
xz -9 -T0 -c target/gpu/phi4r-actors > target/gpu/phi4r-actors.xz.tmp
mv target/gpu/phi4r-actors.xz.tmp target/gpu/phi4r-actors.xz
echo "gpu_build: target/gpu/phi4r-actors $(du -m target/gpu/phi4r-actors | cut -f1) MB, .xz $(du -m target/gpu/phi4r-actors.xz | cut -f1) MB, libcudart.so.13 $(du -k target/gpu/libcudart.so.13 | cut -f1) KB; $((SECONDS - t0)) s"
