# Sourced by scripts/cuda_check.sh and scripts/gpu_build.sh: nvcc 13.0 and the CUDA headers from NVIDIA's
# PyPI wheels, unpacked once into a cache outside the clone (PHI4R_CUDA_CACHE, default
# ~/.cache/phi4r/cuda), and the variables candle's and cudarc's build scripts read. Sets CACHE.
CACHE="${PHI4R_CUDA_CACHE:-${HOME:-/tmp}/.cache/phi4r/cuda}"
# Pinned: nvcc 13.0 (the driver's CUDA) with what its wheel requires (the crt headers, nvvm's cicc, the
# runtime headers), and CCCL (libcu++, CUB, Thrust) for candle's kernels.
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85)
TOOLKIT="$CACHE/toolkit-13.0.88-2"
CUDA_ROOT="$TOOLKIT/nvidia/cu13"

if [ ! -x "$CUDA_ROOT/bin/nvcc" ]; then
    echo "cuda_check: installing ${WHEELS[*]} into $TOOLKIT"
    rm -rf "$TOOLKIT.tmp"
    mkdir -p "$TOOLKIT.tmp/wheels"
    python3 -m pip download --quiet --no-deps --dest "$TOOLKIT.tmp/wheels" "${WHEELS[@]}"
    for w in "$TOOLKIT.tmp"/wheels/*.whl; do
        python3 -m zipfile -e "$w" "$TOOLKIT.tmp/"
    done
    chmod +x "$TOOLKIT.tmp/nvidia/cu13/bin/"* "$TOOLKIT.tmp/nvidia/cu13/nvvm/bin/"* 2>/dev/null || true
    rm -rf "$TOOLKIT.tmp/wheels" "$TOOLKIT"
    mv "$TOOLKIT.tmp" "$TOOLKIT"
fi

export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT" NVCC="$CUDA_ROOT/bin/nvcc"
export PATH="$CUDA_ROOT/bin:$PATH"
# H100/H200 (sm_90); cudarc reads the toolkit version from nvcc, named here so it never guesses.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
nvcc --version | tail -1

