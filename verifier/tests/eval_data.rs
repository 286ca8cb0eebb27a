//! Checks against the real evaluation sets in `../shared/data/eval/` (CI has them).
//!
//! The directory is `$PHI4R_EVAL_DIR` or `<repo>/../shared/data/eval`. When it is
//! missing these tests fail with a message: they must never pass silently.

use std::collections::BTreeMap;
use std::path::PathBuf;

use phi4r_verifier::{load_eval_file, verify, EvalRecord, Outcome};

fn eval_dir() -> PathBuf {
    let dir = std::env::var("PHI4R_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/eval")));
    assert!(
        dir.join("math500.jsonl").is_file(),
        "evaluation data not found at {} (set PHI4R_EVAL_DIR to the folder holding \
         math500.jsonl, gsm8k_test.jsonl, ...)",
        dir.display()
    );
    dir
}

fn load(name: &str) -> Vec<EvalRecord> {
    let path = eval_dir().join(format!("{name}.jsonl"));
    load_eval_file(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

const FILES: [&str; 5] = ["math500", "gsm8k_test", "gsm8k_train", "aime24", "aime25"];

/// MATH-500 problems whose solution's last boxed answer does not verify against the gold,
/// with the reason. The test asserts that exactly these fail.
const MATH500_EXCEPTIONS: &[(&str, &str)] = &[];

#[test]
fn math500_solutions_verify_against_their_answers() {
    let records = load("math500");
    assert_eq!(records.len(), 500);
    let mut failed = Vec::new();
    for r in &records {
        let solution = r.solution.as_deref().expect("every MATH-500 record has a solution");
        let v = verify(&r.answer, solution);
        if !v.correct {
            failed.push((r.id.clone(), r.answer.clone(), v));
        }
    }
    let expected: Vec<&str> = MATH500_EXCEPTIONS.iter().map(|(id, _)| *id).collect();
    let got: Vec<&str> = failed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(got, expected, "failures: {failed:#?}");
    let agreement = 1.0 - failed.len() as f64 / records.len() as f64;
    assert!(agreement >= 0.99, "agreement {agreement}");
}

#[test]
fn gsm8k_solutions_verify_against_their_answers() {
    for name in ["gsm8k_test", "gsm8k_train", "aime24"] {
        let records = load(name);
        let failed: Vec<_> = records
            .iter()
            .filter_map(|r| {
                let s = r.solution.as_deref()?;
                let v = verify(&r.answer, s);
                (!v.correct && name.starts_with("gsm8k")).then(|| (r.id.clone(), v))
            })
            .collect();
        assert!(failed.is_empty(), "{name}: {failed:#?}");
    }
}

/// Pairs `(file, id, other id, reason)` where a different problem's gold, written
/// differently, verifies against this gold. Pairs whose two golds are the same string
/// are counted in [`SAME_STRING_COLLISIONS`] instead.
const COLLISIONS: &[(&str, &str, &str, &str)] = &[(
    "math500",
    "test/geometry/221.json",
    "test/geometry/65.json",
    "`30` vs `30^\\circ`: the same number under the default degree policy (degree sign dropped)",
)];

/// Per file: how many sampled other golds are the very same string (a legitimate match).
const SAME_STRING_COLLISIONS: &[(&str, usize)] =
    &[("aime24", 0), ("aime25", 0), ("gsm8k_test", 11), ("gsm8k_train", 68), ("math500", 3)];

#[test]
fn every_gold_verifies_against_itself_and_not_a_random_other() {
    let mut collisions = Vec::new();
    let mut same: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for name in FILES {
        let records = load(name);
        let n = records.len();
        same.insert(name, 0);
        for (i, r) in records.iter().enumerate() {
            let g = &r.answer;
            for response in [g.clone(), format!("We did the work, so the answer is \\boxed{{{g}}}.")] {
                let v = verify(g, &response);
                if !v.correct {
                    bad.push((name, r.id.clone(), response, v));
                }
            }
            // Deterministic "random" other problem: a fixed stride modulo the file size.
            let j = (i * 7919 + 104_729) % n;
            let j = if j == i { (i + 1) % n } else { j };
            let other = &records[j];
            let v = verify(g, &format!("so the answer is \\boxed{{{}}}.", other.answer));
            // A response that names no letter to a letter gold is no answer, not a collision.
            if !matches!(v.outcome, Outcome::Wrong | Outcome::NoAnswer) {
                if other.answer.trim() == g.trim() {
                    *same.entry(name).or_default() += 1;
                } else {
                    collisions.push((name, r.id.clone(), other.id.clone(), g.clone(), other.answer.clone(), v.outcome));
                }
            }
        }
    }
    assert!(bad.is_empty(), "golds that do not verify against themselves: {bad:#?}");
    let got: Vec<(&str, &str, &str)> = collisions.iter().map(|(f, a, b, ..)| (*f, a.as_str(), b.as_str())).collect();
    let expected: Vec<(&str, &str, &str)> = COLLISIONS.iter().map(|(f, a, b, _)| (*f, *a, *b)).collect();
    assert_eq!(got, expected, "collisions: {collisions:#?}");
    let same: Vec<(&str, usize)> = same.into_iter().collect();
    let mut expected_same = SAME_STRING_COLLISIONS.to_vec();
    expected_same.sort();
    assert_eq!(same, expected_same, "same-string collisions per file");
}

/// Distinct MATH-500 gold strings that verify as equal (all pairs), with the reason.
/// Every one is a deliberate choice documented in the README.
const MATH500_EQUAL_DISTINCT_GOLDS: &[(&str, &str, &str)] = &[
    ("(-2,1)", "-2,1", "a bare list in the tuple's order matches the tuple"),
    ("-2,1", "1,-2", "bare lists are unordered (sets of solutions)"),
    ("10,\\!080", "10080", "thousands separator"),
    ("120", "120^\\circ", "degree sign dropped (DegreePolicy::Strip)"),
    ("15", "15\\mbox{ cm}^2", "units dropped"),
    ("2 \\sqrt{5}", "2\\sqrt{5}", "spacing"),
    ("30", "30^\\circ", "degree sign dropped"),
    ("36", "36^\\circ", "degree sign dropped"),
    ("36", "\\$36", "dollar sign dropped"),
    ("36^\\circ", "\\$36", "degree and dollar signs dropped"),
    ("40", "40_9", "a base subscript on a numeral is dropped (the digits are compared)"),
    ("5", "x=5", "a leading `x =` is dropped"),
    ("90", "90^\\circ", "degree sign dropped"),
    ("\\frac14", "\\frac{1}{4}", "malformed `\\frac14` = `\\frac{1}{4}`"),
];

#[test]
fn math500_distinct_golds_are_distinguished() {
    let records = load("math500");
    let mut golds: Vec<&str> = records.iter().map(|r| r.answer.trim()).collect();
    golds.sort();
    golds.dedup();
    let mut equal = Vec::new();
    for (i, a) in golds.iter().enumerate() {
        for b in &golds[i + 1..] {
            let v = verify(a, b);
            if !matches!(v.outcome, Outcome::Wrong | Outcome::NoAnswer) {
                equal.push((a.to_string(), b.to_string(), v.outcome));
            }
        }
    }
    let got: Vec<(&str, &str)> = equal.iter().map(|(a, b, _)| (a.as_str(), b.as_str())).collect();
    let expected: Vec<(&str, &str)> = MATH500_EQUAL_DISTINCT_GOLDS.iter().map(|(a, b, _)| (*a, *b)).collect();
    assert_eq!(got, expected, "{equal:#?}");
}
