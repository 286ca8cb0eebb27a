#!/usr/bin/env bash
# Stages 1-3 on the embedded synthetic task with the tiny model, evaluated after each stage.
#   scripts/evidence.sh [outdir] [mid_steps] [sft_steps] [dpo_steps] [per_tier] [mid_epochs]
# Defaults are the README's run: stage 1 for 800 steps of a 4-epoch cosine schedule, SFT for its whole
# cpu profile (200 steps), DPO 40 steps at the cpu profile's lr 1e-6, 200 eval problems per tier. About an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/evidence}; MID=${2:-800}; SFT=${3:-200}; DPO=${4:-40}; PER=${5:-200}; MID_EPOCHS=${6:-4}
# B=path/to/phi4r-actors uses a prebuilt binary (e.g. a copy, so rebuilding meanwhile is safe).
if [ -z "${B:-}" ]; then cargo build --release -p phi4r-actors >/dev/null; B=target/release/phi4r-actors; fi
mkdir -p "$OUT"
$B data synth --out "$OUT/data" > "$OUT/synth.json"
$B model init --preset tiny --tokenizer "$OUT/data/tokenizer.json" --seed 0 --out "$OUT/init" > /dev/null
ev() { $B eval --model "$1" --data "$OUT/data/eval.jsonl" --per-tier "$PER" --max-new-tokens 320 > "$2"; }
ev "$OUT/init" "$OUT/eval-init.json"
$B stage mid --profile cpu --epochs "$MID_EPOCHS" --data "$OUT/data/stage1.jsonl" --init "$OUT/init" \
  --out "$OUT/mid" --max-steps "$MID" > "$OUT/mid.json"
ev "$OUT/mid/$(cat "$OUT/mid/latest")" "$OUT/eval-mid.json"
$B stage sft --profile cpu --data "$OUT/data/stage2.jsonl" --init "$OUT/mid/$(cat "$OUT/mid/latest")" \
  --out "$OUT/sft" --max-steps "$SFT" > "$OUT/sft.json"
ev "$OUT/sft/$(cat "$OUT/sft/latest")" "$OUT/eval-sft.json"
$B stage dpo --profile cpu --data "$OUT/data/stage3.jsonl" --init "$OUT/sft/$(cat "$OUT/sft/latest")" \
  --out "$OUT/dpo" --max-steps "$DPO" > "$OUT/dpo.json"
ev "$OUT/dpo/$(cat "$OUT/dpo/latest")" "$OUT/eval-dpo.json"
echo done
