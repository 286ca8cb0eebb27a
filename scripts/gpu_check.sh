#!/usr/bin/env bash
# The GPU check: one command that, on a machine with an NVIDIA GPU, proves the CUDA path and prints JSON.
# It needs no Rust toolchain and no network: the binary comes from scripts/gpu_build.sh (built on a
# CPU-only machine, stripped, ~tens of MB) and travels with this script; the CUDA libraries come from the
# driver (libcuda) and the machine's PyTorch wheels (cuBLAS, cuRAND, NVRTC), found below.
#
#   scripts/gpu_build.sh                    # here: -> target/gpu/phi4r-actors(.xz), libcudart.so.13
#   scripts/gpu_check.sh                    # there: JSON on stdout, every part's output under $OUT
#
# With the `run` device tool: carry ["target/gpu/phi4r-actors.xz", "target/gpu/libcudart.so.13"] (12 MB).
#
# Parts (each under its own time limit, so one failure still leaves the others' figures; the limits and the
# 10 s each gets to stop after SIGTERM add up to 580 s, inside the device tool's 600 s per command, and
# every part's output is under $OUT as it goes):
#   1. bench gpu, `small`: the same seeded model on GPU and CPU — logits max difference in f32 and bf16,
#      every parameter's gradient non-zero and finite, two training steps' losses against the CPU's —
#      then training tok/s and MFU (bf16, f32 master weights) and sampling tok/s at batch 1, 16 and 64;
#   2. bench gpu, Phi-4-mini's shape (3.8B parameters, random init, bf16 with AdamW state): training
#      tok/s and MFU against the H200's bf16 peak;
#   3. the main job, `--profile quick`, every stage on the GPU;
#   4. `stage rl` with the learner on the GPU and 4 generators on CPU threads
#      (configs/topologies/gpu-learner.toml) from part 3's stage-3 checkpoint: weights copied to the CPU
#      once per version, bytes and seconds in its summary.
#
# A rehearsal on a CPU-only machine runs the same parts, flags and report with the CPU build, so that the
# script cannot rot between the rare sessions that have a GPU (.ci/run does it: 280 s on 2 cores with the
# test profile's binary, 104 s with a release build):
#
#   PHI4R_GPU_CHECK_DEVICE=cpu PHI4R_BIN=target/release/phi4r-actors OUT=/tmp/rehearsal scripts/gpu_check.sh
#
# There every `cuda:0` is `cpu`, `micro` stands in for `small` and for Phi-4-mini's shape (neither would
# fit the time on 2 cores), part 4's learner is on the CPU and in bf16 (the GPU's default dtype; part 3
# stays f32, as the main job in bf16 takes ~11 minutes on 2 cores), and each part may take 3x as long
# (CI's binary is the test profile's: the quick main job takes ~220 s with it, ~90 s with a release build).
# What only a GPU exercises: CUDA's kernels, and part 4's copy of each version from the learner's device
# to the generators' (`Phi3::frozen_on`; on the CPU both roles share one device, and the generators sample
# in the learner's bf16 rather than the f32 they get beside a GPU learner).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${PHI4R_BIN:-target/gpu/phi4r-actors}"
OUT="${OUT:-gpu_check_out}"
DEV="${PHI4R_GPU_CHECK_DEVICE:-cuda:0}"
mkdir -p "$OUT"
if [ "$DEV" = cpu ]; then
    SMALL=micro PHI4=micro THREADS=$(nproc) SCALE=3 RL_DTYPE=bf16
else
    SMALL=small PHI4=phi4-mini THREADS=8 SCALE=1 RL_DTYPE=auto
fi
# Part 4's learner goes where the other parts ran.
sed "s/^learner = \"cuda:0\"/learner = \"$DEV\"/" configs/topologies/gpu-learner.toml > "$OUT/learner-topology.toml"
grep -q "^learner = \"$DEV\"" "$OUT/learner-topology.toml" ||
    { echo "gpu_check: configs/topologies/gpu-learner.toml has no line 'learner = \"cuda:0\"' to place" >&2; exit 2; }
if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then
    # What travels is the xz-compressed binary (scripts/gpu_build.sh): unpack it beside itself.
    { xz -dc "$BIN.xz" 2>/dev/null || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$BIN.xz"; } > "$BIN.tmp" \
        && chmod +x "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
fi
[ -x "$BIN" ] || { echo "gpu_check: no $BIN or $BIN.xz (build them with scripts/gpu_build.sh)" >&2; exit 2; }

# cuBLAS, cuRAND and NVRTC from the Python packages (PyTorch's nvidia-* wheels; CUDA 13 wheels keep them
# in nvidia/cu13/lib, CUDA 12 ones in nvidia/<lib>/lib), then the system's.
libdirs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
dirs = []
for r in roots:
    for pat in ("nvidia/*/lib", "nvidia/cu*/lib", "torch/lib"):
        for d in glob.glob(os.path.join(r, pat)):
            if any(glob.glob(os.path.join(d, n)) for n in ("libcublas.so*", "libcurand.so*", "libnvrtc.so*")):
                dirs.append(d)
print(":".join(dict.fromkeys(dirs)))
PY
)
# The binary's own folder first: scripts/gpu_build.sh puts the CUDA runtime it links (libcudart.so.13) there.
export LD_LIBRARY_PATH="$(cd "$(dirname "$BIN")" && pwd):${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "gpu_check: LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true
cat "$OUT/gpu.txt" >&2

# part NAME LIMIT_S CMD...: runs with a time limit, stdout to $OUT/NAME.json, stderr to $OUT/NAME.log,
# and records the exit status and seconds in $OUT/parts.tsv.
part() {
    local name=$1 limit=$(($2 * SCALE)) t0=$SECONDS rc
    shift 2
    echo "gpu_check: $name ($limit s at most): $*" >&2
    timeout -k 10 "$limit" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/parts.tsv"
    echo "gpu_check: $name exit $rc in $((SECONDS - t0)) s" >&2
    tail -3 "$OUT/$name.log" >&2
}
: > "$OUT/parts.tsv"

part bench_small 110 "$BIN" --device "$DEV" bench gpu --parity-size "$SMALL" --sizes "$SMALL" --sample-batches 1,16,64
part bench_phi4 140 "$BIN" --device "$DEV" bench gpu --parity-size micro --sizes "$PHI4" --train-batch 8 --seq 256
part pipeline_quick 210 "$BIN" --device "$DEV" --threads "$THREADS" --topology 4gen-1learn --profile quick --run-dir "$OUT/quick" --json
dpo="$OUT/quick/dpo/$(cat "$OUT/quick/dpo/latest" 2>/dev/null)"
part rl_gpu_learner 80 "$BIN" --device cpu --dtype "$RL_DTYPE" --threads "$THREADS" stage rl --topology "$OUT/learner-topology.toml" \
    --config "$OUT/quick/configs/rl.toml" --profile cpu --init "$dpo" --ref "$dpo" \
    --prompts "$OUT/quick/data/rl_prompts.jsonl" --max-steps 8 --out "$OUT/rl_gpu_learner"

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:
        return {"unreadable": f"{name}: {e}"}
parts = {}
for line in open(os.path.join(out, "parts.tsv")):
    name, rc, s = line.rstrip("\n").split("\t")
    parts[name] = {"exit": int(rc), "seconds": int(s)}
report = {
    "gpu": open(os.path.join(out, "gpu.txt")).read().strip(),
    "parts": parts,
    "bench_small": load("bench_small.json"),
    "bench_phi4_mini": load("bench_phi4.json"),
    "pipeline_quick": load("quick/report.json"),
    "rl_gpu_learner": load("rl_gpu_learner/summary.json"),
}
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps(report, indent=1))
# Every part ran to the end, and every report is there: else the exit status says the check failed.
failed = [n for n, p in parts.items() if p["exit"] != 0]
failed += [n for n, v in report.items() if isinstance(v, dict) and "unreadable" in v]
if failed:
    print("gpu_check: failed: " + ", ".join(dict.fromkeys(failed)), file=sys.stderr)
    sys.exit(1)
PY
