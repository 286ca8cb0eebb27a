"""Math-Verify 0.9 on phi4r's ported grader suites: agreement with each case's reference verdict.

Reads every `*.jsonl` under `verifier/tests/fixtures/{graders,rl}/` (one case a line: suite, source, gold,
pred, expected, config) and prints, per suite, how many verdicts Math-Verify agrees with:

- `default`: `verify(parse(gold), parse(pred))`, Math-Verify's default configuration;
- `per_case`: the configuration the case was written for, where its row records one
  (Math-Verify's own rows: `match_types`, `precision`, `strict`, `allow_set_relation_comp`,
  `boxed_match_priority` as its suite's `compare_strings` helper passes them; lighteval's rows:
  its `match_types`, letters as `StringExtractionConfig`; rows of answer-only graders (`answers_extracted`):
  both answers wrapped in `$..$`); the default configuration otherwise.

    pip install math-verify==0.9.0
    python3 scripts/mathverify_agreement.py verifier/tests/fixtures > mv_agreement.json

The floors in `verifier/tests/fixtures/agreement_floor.json` are the `default` numbers.
"""
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

logging.disable(logging.CRITICAL)


def safe(fn):
    try:
        return bool(fn())
    except Exception:
        return False


def default_verdict(row):
    return safe(lambda: verify(parse(row["gold"]), parse(row["pred"])))


def wrap(s):
    return s if "$" in s or "\\(" in s or "\\[" in s or "\\boxed" in s else f"${s}$"


def per_case_verdict(row):
    cfg = row.get("config") or {}
    if cfg.get("answers_extracted"):
        return safe(lambda: verify(parse(wrap(row["gold"])), parse(wrap(row["pred"]))))
    if "match_types" not in cfg:
        return default_verdict(row)
    targets = []
    for m in cfg["match_types"]:
        if m == "latex":
            if "boxed_match_priority" in cfg:
                targets.append(LatexExtractionConfig(boxed_match_priority=cfg["boxed_match_priority"]))
            else:
                targets.append(LatexExtractionConfig())
        elif m == "expr":
            targets.append(ExprExtractionConfig())
        elif m == "NativeLetters":
            targets.append(StringExtractionConfig())
    kwargs = {}
    if "precision" in cfg:
        kwargs["float_rounding"] = cfg["precision"]
    if "strict" in cfg:
        kwargs["strict"] = cfg["strict"]
    if "allow_set_relation_comp" in cfg:
        kwargs["allow_set_relation_comp"] = cfg["allow_set_relation_comp"]
    return safe(lambda: verify(parse(row["gold"], targets), parse(row["pred"], targets), **kwargs))


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "verifier/tests/fixtures")
    out = defaultdict(lambda: {"total": 0, "default": 0, "default_false_pos": 0, "per_case": 0, "per_case_false_pos": 0})
    disagreements = []
    for group in ["graders", "rl"]:
        for path in sorted((root / group).glob("*.jsonl")):
            for line in path.open():
                row = json.loads(line)
                key = f"{group}/{row['suite']}"
                s = out[key]
                s["total"] += 1
                d, p = default_verdict(row), per_case_verdict(row)
                s["default"] += d == row["expected"]
                s["default_false_pos"] += d and not row["expected"]
                s["per_case"] += p == row["expected"]
                s["per_case_false_pos"] += p and not row["expected"]
                if d != row["expected"]:
                    disagreements.append({"suite": key, "test": row.get("test"), "line": row.get("line"), "mv_default": d})
    json.dump({"suites": out, "default_disagreements": disagreements}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
