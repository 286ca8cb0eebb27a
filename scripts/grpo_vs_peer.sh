#!/usr/bin/env bash
# One GRPO iteration side by side, ABBA in one run: TRL's GRPOTrainer (../shared/peers/trl_bench.py part e,
# `tiny`), then `phi4r-actors bench rl --peer` twice, then the peer again, so a load drifting during the
# run weighs on both sides alike. Prints each run and the pooled comparison (each side's measured steps
# pooled: medians, fastest steps, generation and the train part), as the README's "GRPO iteration" table.
#   PEER_PY=/tmp/peer-venv/bin/python scripts/grpo_vs_peer.sh [outdir]
set -euo pipefail
OUT=$(realpath -m "${1:-runs/grpo-bench}")  # relative to where it is called from
cd "$(dirname "$0")/.."
PEER_PY=${PEER_PY:-/tmp/peer-venv/bin/python}
mkdir -p "$OUT"
cargo build --release -p phi4r-actors >/dev/null
BIN=target/release/phi4r-actors
peer() {
  OMP_NUM_THREADS=2 "$PEER_PY" ../shared/peers/trl_bench.py --parts e --sizes tiny \
    --workdir "$OUT/peer-work" --out "$OUT/peer-e.$1.json" >/dev/null
  # trl_bench.py exits 0 when a part fails (it records the error): stop here, saying so.
  python3 - "$OUT/peer-e.$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if "e:tiny" not in r.get("results", {}):
    sys.exit(f"peer part e failed: {r.get('errors')}")
PY
}
ours() { RAYON_NUM_THREADS=2 "$BIN" bench rl --json --peer "$OUT/peer-e.1.json" > "$OUT/phi4r-rl.$1.json"; }
peer 1
ours 1
ours 2
peer 2
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
peer = [json.load(open(f"{out}/peer-e.{i}.json"))["results"]["e:tiny"] for i in (1, 2)]
ours = [json.load(open(f"{out}/phi4r-rl.{i}.json")) for i in (1, 2)]
for i, (p, o) in enumerate(zip(peer, ours), 1):
    ps = p["sec_per_step_all"][p["warmup_steps_excluded"]:]
    os_ = o["grpo_iteration_s"]["all"]
    print(f"run {i}: TRL {statistics.median(ps):.3f} s/step (best {min(ps):.3f}), "
          f"phi4r {statistics.median(os_):.3f} s/iteration (best {min(os_):.3f})")
ps = [s for p in peer for s in p["sec_per_step_all"][p["warmup_steps_excluded"]:]]
os_ = [s for o in ours for s in o["grpo_iteration_s"]["all"]]
def mean(xs):
    xs = [x for x in xs if x is not None]  # the peer leaves a phase out when its profiler has none
    return sum(xs) / len(xs) if xs else float("nan")
gen_p = mean([p["generate_s_median"] for p in peer])
gen_o = mean([o["phases_median_s"]["sampling_s"] for o in ours])
tr_p = mean([p["train_part_s_median"] for p in peer])
tr_o = mean([o["train_part_s_median"] for o in ours])
summary = {
    "trl_s_per_step": {"median": statistics.median(ps), "best": min(ps), "n": len(ps)},
    "phi4r_s_per_iteration": {"median": statistics.median(os_), "best": min(os_), "n": len(os_)},
    "ratio_median": statistics.median(ps) / statistics.median(os_),
    "ratio_best": min(ps) / min(os_),
    "generation_s": {"trl": gen_p, "phi4r": gen_o, "ratio": gen_p / gen_o},
    "train_part_s": {"trl": tr_p, "phi4r": tr_o, "ratio": tr_p / tr_o},
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
