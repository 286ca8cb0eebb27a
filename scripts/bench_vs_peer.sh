#!/usr/bin/env bash
# Side-by-side: the PyTorch/TRL peer (../shared/peers/trl_bench.py, parts a and b) and `phi4r-actors bench
# model`, alternating per size in one run, so both see the same machine load. Prints phi4r's JSON with the
# peer's figures and the ratios; then sampling again with bf16 decoding weights (PHI4R_DECODE_WEIGHTS=bf16,
# an option: the comparison proper is f32 against f32).
#   PEER_PY=/tmp/peer-venv/bin/python scripts/bench_vs_peer.sh [sizes] [outdir]
# ABBA=1 also runs phi4r then the peer a second time per size (peer, phi4r, phi4r, peer), so a load that
# drifts during the run weighs on both sides alike, and prints the ratios of the two sides' geometric means.
set -euo pipefail
cd "$(dirname "$0")/.."
PEER_PY=${PEER_PY:-/tmp/peer-venv/bin/python}
SIZES=${1:-tiny,small}
OUT=${2:-runs/bench}
mkdir -p "$OUT"
cargo build --release -p phi4r-actors >/dev/null
BIN=target/release/phi4r-actors
for size in ${SIZES//,/ }; do
  OMP_NUM_THREADS=2 "$PEER_PY" ../shared/peers/trl_bench.py --parts a,b --sizes "$size" \
    --workdir "$OUT/peer-work" --out "$OUT/peer-$size.json" >/dev/null
  RAYON_NUM_THREADS=2 "$BIN" bench model --sizes "$size" --peer "$OUT/peer-$size.json" --json > "$OUT/phi4r-$size.json"
  PHI4R_DECODE_WEIGHTS=bf16 RAYON_NUM_THREADS=2 "$BIN" bench model --sizes "$size" --no-train \
    --peer "$OUT/peer-$size.json" --json > "$OUT/phi4r-$size-bf16w.json"
  python3 - "$OUT/phi4r-$size.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for s, e in r["sizes"].items():
    t, sm, p, q, qb = e["train"], e["sample"], e.get("peer", {}), e.get("ratio", {}), e.get("ratio_best", {})
    print(f"{s}: train {t['tokens_per_s']:.0f} tok/s (peer {p.get('train_tokens_per_s') or 0:.0f}, x{q.get('train') or 0:.2f}), "
          f"sample b16 {sm['batch16']['gen_tokens_per_s']:.0f} (peer {p.get('sample_batch16_tokens_per_s') or 0:.0f}, x{q.get('sample_batch16') or 0:.2f}), "
          f"b1 {sm['batch1']['gen_tokens_per_s']:.0f} (peer {p.get('sample_batch1_tokens_per_s') or 0:.0f}, x{q.get('sample_batch1') or 0:.2f}), mfu {t['mfu']:.3f}; "
          f"fastest repetitions: train x{qb.get('train') or 0:.2f}, b16 x{qb.get('sample_batch16') or 0:.2f}, b1 x{qb.get('sample_batch1') or 0:.2f}")
PY
  if [ "${ABBA:-0}" = 1 ]; then
    RAYON_NUM_THREADS=2 "$BIN" bench model --sizes "$size" --peer "$OUT/peer-$size.json" --json > "$OUT/phi4r-$size.2.json"
    OMP_NUM_THREADS=2 "$PEER_PY" ../shared/peers/trl_bench.py --parts a,b --sizes "$size" \
      --workdir "$OUT/peer-work" --out "$OUT/peer-$size.2.json" >/dev/null
    python3 - "$OUT" "$size" <<'PY'
import json, math, sys
out, size = sys.argv[1], sys.argv[2]
ours = [json.load(open(f"{out}/phi4r-{size}{sfx}.json"))["sizes"][size] for sfx in ("", ".2")]
peer = [json.load(open(f"{out}/peer-{size}{sfx}.json"))["results"] for sfx in ("", ".2")]
gm = lambda xs: math.sqrt(xs[0] * xs[1])
rows = [
    ("train", [o["train"]["tokens_per_s"] for o in ours], [p[f"a:{size}"]["tokens_per_s"] for p in peer]),
    ("b16", [o["sample"]["batch16"]["gen_tokens_per_s"] for o in ours], [p[f"b:{size}"]["batch16"]["gen_tokens_per_s"] for p in peer]),
    ("b1", [o["sample"]["batch1"]["gen_tokens_per_s"] for o in ours], [p[f"b:{size}"]["batch1"]["gen_tokens_per_s"] for p in peer]),
]
print(f"{size} (ABBA, geometric means): " + ", ".join(
    f"{k} {gm(a):.0f} / {gm(b):.0f} = x{gm(a) / gm(b):.2f} (runs {a[0]:.0f}, {a[1]:.0f} vs {b[0]:.0f}, {b[1]:.0f})" for k, a, b in rows))
PY
  fi
  python3 - "$OUT/phi4r-$size-bf16w.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for s, e in r["sizes"].items():
    sm, q = e["sample"], e.get("ratio", {})
    print(f"{s} (bf16 decode weights): sample b16 {sm['batch16']['gen_tokens_per_s']:.0f} (x{q.get('sample_batch16') or 0:.2f}), "
          f"b1 {sm['batch1']['gen_tokens_per_s']:.0f} (x{q.get('sample_batch1') or 0:.2f})")
PY
done
