#!/bin/bash
# The cluster A/B of the README ("Scale-out", Measured): 60 streamed steps with 2 local generators (A)
# against 1 local generator + 1 on a node process over loopback (B), one compute thread per generator
# either way, each arm twice. Usage: scripts/cluster_ab.sh [WORKDIR] (after cargo build --release).
set -euo pipefail
B=$(realpath "${PHI4R_BIN:-target/release/phi4r-actors}")
W=${1:-/tmp/phi4r-cluster-ab}
mkdir -p "$W" && cd "$W"
if [ ! -d init ]; then
  # The tests' fixture: the synthetic task's tokenizer, a random-init model, single-digit prompts.
  $B data synth --out data --problems 40 --rollouts 2 > /dev/null
  $B model init --tokenizer data/tokenizer.json --out init > /dev/null
  python3 -c "print(''.join('{\"problem\":\"What is %d + 0?\",\"answer\":\"%d\",\"tier\":1}\n'%(i%10,i%10) for i in range(40)),end='')" > digits.jsonl
  printf 'stage = "rl"\nseq_len = 160\nmicro_batch = 8\nlr = 1e-5\nmax_steps = 60\ncheckpoint_every = 1000\n\n[rl]\ngroup_size = 4\nprompts_per_step = 2\nmax_new_tokens = 12\nkl_coef = 0.0\nmax_staleness = 1\noverlong = { kind = "off" }\n\n[rl.balance]\nbatch_groups = 2\nmax_pending_groups = 8\n' > rl.toml
  head -c 24 /dev/urandom | base64 > cookie
fi
for rep in 1 2; do
  rm -rf runA; $B --device cpu --threads 2 stage rl --topology 2gen-1learn --config rl.toml --prompts digits.jsonl --init init --out runA > A$rep.json 2>/dev/null
  rm -rf runB; $B --device cpu --threads 2 stage rl --topology 1gen-1learn --config rl.toml --prompts digits.jsonl --init init --out runB --cluster-listen 127.0.0.1:7412 --cookie-file cookie > B$rep.json 2>/dev/null &
  L=$!; sleep 1.5
  RUST_LOG=info $B --device cpu --threads 1 node --join 127.0.0.1:7412 --generators 1 --cookie-file cookie --name n1 2> node$rep.err
  wait $L
done
for f in A1 B1 A2 B2; do python3 -c "
import json; d=json.load(open('$f.json')); print('$f', {k: round(d[k],3) if isinstance(d[k],float) else d[k] for k in ['steps','wall_s','steps_per_s','rollouts_per_s','remote_completions','completions']})"; done
grep -h "weights applied" node1.err node2.err | sed 's/\x1b\[[0-9;]*m//g' | grep -o "seconds=[0-9.]*" | cut -d= -f2 | sort -n \
  | awk '{a[NR]=$1} END {print "weights per version: fetches", NR, "median s", a[int(NR/2)+1], "min", a[1], "max", a[NR]}'
