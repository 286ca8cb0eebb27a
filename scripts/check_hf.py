"""Checks that a checkpoint phi4r wrote loads in Hugging Face transformers with the same logits and the
same token ids.

    phi4r-actors model init --preset tiny --seed 1 --out /tmp/ckpt
    python3 scripts/check_hf.py /tmp/ckpt --bin target/release/phi4r-actors

Needs torch and transformers (the peer environment of ../shared/peers/README.md). Exits non-zero on a
mismatch.
"""
import argparse
import json
import subprocess
import sys

import torch
from transformers import Phi3ForCausalLM, PreTrainedTokenizerFast

TEXTS = [
    "<|user|>Tom has 12 apples and eats 5. How many are left?<|end|><|assistant|>",
    "12 - 5 = 7. The answer is \\boxed{7}.<|end|><|endoftext|>",
    "Unicode too: 3 × 4 ≥ 10, naïve café 😀",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--bin", default="target/release/phi4r-actors")
    ap.add_argument("--ids", default="1,7,42,300,5,9,11,2,64,100")
    a = ap.parse_args()
    model = Phi3ForCausalLM.from_pretrained(a.ckpt, torch_dtype=torch.float32).eval()
    ids = [int(x) for x in a.ids.split(",")]
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).logits[0]
    out = subprocess.run([a.bin, "model", "logits", "--model", a.ckpt, "--ids", a.ids], check=True,
                         capture_output=True, text=True).stdout
    ours = torch.tensor(json.loads(out)["logits"])
    diff = (ours - ref).abs().max().item()
    print(f"logits: max |phi4r - transformers| = {diff:.2e}")
    ok = diff < 1e-4
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{a.ckpt}/tokenizer.json")
    for t in TEXTS:
        hf = tok(t, add_special_tokens=False)["input_ids"]
        out = subprocess.run([a.bin, "model", "tokenize", "--model", a.ckpt, "--text", t], check=True,
                             capture_output=True, text=True).stdout
        mine = json.loads(out)["ids"]
        same = hf == mine
        ok &= same
        print(f"tokenizer ids identical: {same} ({len(mine)} tokens)")
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
