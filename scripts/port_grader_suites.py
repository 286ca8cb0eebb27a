"""Port the parametrized test cases of Math-Verify's own test suite into phi4r's grader fixtures.

Reads the `tests/` folder of a Math-Verify 0.9.0 source distribution
(`pip download --no-deps --no-binary :all: math-verify==0.9.0`) and writes one JSON line per
(gold, prediction, expected) case with its source (repository, path, line) and the configuration
the case was written for (the arguments its test passes to the suite's `compare_strings` helper):

    python3 scripts/port_grader_suites.py math_verify-0.9.0/tests > verifier/tests/fixtures/graders/math_verify.jsonl

Only the cases are taken (data); no code of the suite is copied. Rows whose gold or prediction is built
by Python code rather than written as a literal are skipped, as are tests that check the parser's
output rather than a verdict.
"""
import ast
import json
import sys
from pathlib import Path

REPO = "huggingface/Math-Verify"
DEFAULT_CFG = {"match_types": ["latex", "expr"], "precision": 6, "strict": True, "allow_set_relation_comp": False}


def literal(node):
    try:
        return ast.literal_eval(node)
    except Exception:
        return None


def call_config(func):
    """Configuration of the verdict call in a test function: compare_strings(...) or verify(parse(..)).

    Returns (config, mapping from config key to parameter name) or None."""
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "compare_strings":
            cfg = dict(DEFAULT_CFG)
            cfg["boxed_match_priority"] = 0
            from_param = {}
            for kw in node.keywords:
                v = literal(kw.value)
                if v is not None:
                    cfg[kw.arg] = v
                elif isinstance(kw.value, ast.Name):
                    from_param[kw.arg] = kw.value.id
            return cfg, from_param
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "verify":
            return None, {}
    return None


def main():
    tests = Path(sys.argv[1])
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for func in tree.body:
            if not isinstance(func, ast.FunctionDef):
                continue
            found = call_config(func)
            if found is None:
                continue
            cfg, from_param = found
            for dec in func.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in literal(dec.args[0]).split(",")]
                for row in dec.args[1].elts:
                    vals = [literal(e) for e in row.elts]
                    if any(v is None for v in vals):
                        continue
                    case = dict(zip(names, vals))
                    expected = case.get("expected", case.get("result"))
                    if "gold" not in case or "pred" not in case or expected is None:
                        continue
                    row_cfg = dict(cfg) if cfg is not None else None
                    if row_cfg is not None:
                        for key, pname in from_param.items():
                            row_cfg[key] = case[pname]
                    print(
                        json.dumps(
                            {
                                "suite": "math-verify",
                                "repo": REPO,
                                "path": f"tests/{path.name}",
                                "line": row.lineno,
                                "test": func.name,
                                "gold": case["gold"],
                                "pred": case["pred"],
                                "expected": bool(expected),
                                "config": row_cfg,
                            },
                            ensure_ascii=False,
                        )
                    )


if __name__ == "__main__":
    main()
