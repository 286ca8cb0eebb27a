"""Makes model/tests/fixtures/hf_phi3_*: tiny Phi3ForCausalLM checkpoints written by transformers itself,
with reference logits, so phi4r's model is checked against the real implementation.

    python3 scripts/make_phi3_fixture.py model/tests/fixtures

Needs torch and transformers (see ../shared/peers/README.md for the environment).
"""
import json
import os
import sys

import torch
from transformers import Phi3Config, Phi3ForCausalLM


def make(out, name, tie, rope_scaling, seqs):
    torch.manual_seed(1234)
    cfg = Phi3Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, partial_rotary_factor=0.5,
                     max_position_embeddings=128, original_max_position_embeddings=32,
                     rope_theta=10000.0, rope_scaling=rope_scaling, tie_word_embeddings=tie,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0, rms_norm_eps=1e-5)
    model = Phi3ForCausalLM(cfg).to(torch.float32).eval()
    # Random non-trivial norms so a wrong norm implementation cannot pass.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    d = os.path.join(out, name)
    model.save_pretrained(d, safe_serialization=True)
    refs = []
    for ids in seqs:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        refs.append({"ids": ids, "logits": logits.tolist()})
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                   "cases": refs}, f)


def main():
    out = sys.argv[1]
    g = torch.Generator().manual_seed(7)
    short = torch.randint(3, 96, (20,), generator=g).tolist()
    long = torch.randint(3, 96, (48,), generator=g).tolist()  # > original_max_position_embeddings: long factors
    half = 4  # rotary dim 4 -> 2 factors
    longrope = {"rope_type": "longrope", "short_factor": [1.0, 1.5][:half // 2],
                "long_factor": [2.0, 6.0][:half // 2]}
    make(out, "hf_phi3_gqa_longrope", False, longrope, [short, long])
    make(out, "hf_phi3_tied", True, None, [short])


if __name__ == "__main__":
    main()
