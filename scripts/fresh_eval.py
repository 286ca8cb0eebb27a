#!/usr/bin/env python3
"""A larger held-out set for the top tiers: fresh synthetic problems that no run has seen.

    scripts/fresh_eval.py OUT.jsonl RUN_DIR [RUN_DIR ...] [--per-tier 600] [--tiers 4,5,6] [--seed 100]
                          [--bin phi4r-actors]

Runs `phi4r-actors data synth` with a seed of its own and a large `eval_per_tier`, keeps the problems of
`--tiers`, drops every problem whose text appears in any file of RUN_DIR/data/ (training sets, RL prompts
and the run's own eval set), and writes the first `--per-tier` of each tier to OUT.jsonl. It fails if a
tier comes up short. The result is an eval JSONL that `phi4r-actors eval --data` reads as it is; its
paired differences are what README "Stage 4 in the main job" reports on 600 problems per tier. Standard
library only.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def texts(run_dir):
    """Every problem or prompt text in a run's data folder."""
    seen = set()
    data = os.path.join(run_dir, "data")
    for name in sorted(os.listdir(data)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(data, name)) as f:
            for line in f:
                row = json.loads(line)
                for key in ("problem", "prompt"):
                    if isinstance(row.get(key), str):
                        seen.add(row[key])
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--per-tier", type=int, default=600)
    ap.add_argument("--tiers", default="4,5,6")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--bin", default="phi4r-actors")
    a = ap.parse_args()
    tiers = [int(t) for t in a.tiers.split(",")]
    seen = set()
    for r in a.runs:
        seen |= texts(r)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "synth.toml")
        with open(cfg, "w") as f:
            # Few training problems (they are not used); enough eval problems to survive the filter.
            f.write(f"seed = {a.seed}\nproblems = 60\nrollouts = 1\neval_per_tier = {a.per_tier + a.per_tier // 3}\n")
        out = os.path.join(tmp, "data")
        subprocess.run([a.bin, "--threads", "1", "data", "synth", "--config", cfg, "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        kept = {t: [] for t in tiers}
        dropped = 0
        with open(os.path.join(out, "eval.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                t = row.get("tier")
                if t not in kept or len(kept[t]) >= a.per_tier:
                    continue
                if row["problem"] in seen:
                    dropped += 1
                    continue
                kept[t].append(line)
    short = {t: len(v) for t, v in kept.items() if len(v) < a.per_tier}
    if short:
        sys.exit(f"fresh_eval: too few fresh problems for tiers {short}; raise eval_per_tier")
    with open(a.out, "w") as f:
        for t in tiers:
            f.writelines(kept[t])
    print(json.dumps({"out": a.out, "per_tier": a.per_tier, "tiers": tiers, "seen_in_runs": dropped,
                      "run_texts": len(seen)}))


if __name__ == "__main__":
    main()
