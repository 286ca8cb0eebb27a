"""Math-Verify 0.9 on the same workload as `phi4r-actors bench verifier`: the final answer of each
solution of MATH-500 and GSM8K (test) verified against the gold answer, one thread.

    python3 scripts/mathverify_bench.py ../shared/data/eval > mv.json
    phi4r-actors bench verifier --peer mv.json
"""
import json
import sys
import time

from math_verify import parse, verify


def gsm_answer(solution):
    return solution.split("####")[-1].strip() if "####" in solution else solution


def main():
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    out = {}
    for name in ["math500", "gsm8k_test"]:
        rows = [json.loads(l) for l in open(f"{d}/{name}.jsonl")][:n]
        pairs = []
        for r in rows:
            sol = r["solution"]
            if name.startswith("gsm8k"):
                sol = f"The answer is ${gsm_answer(sol)}$"
            pairs.append((f"${r['answer']}$", sol))
        for g, p in pairs[:20]:
            verify(parse(g), parse(p))
        ok = 0
        t0 = time.perf_counter()
        for g, p in pairs:
            ok += bool(verify(parse(g), parse(p)))
        dt = time.perf_counter() - t0
        out[name] = {"count": len(pairs), "verifications_per_s": len(pairs) / dt, "agreement": ok / len(pairs)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
