//! Throughput benchmark: verifications per second on one thread.
//!
//! Over MATH-500 and GSM8K test, each reference `solution` (a full response) is verified
//! against its `answer`: with the default configuration, with the string fast path off
//! (every pair parsed and compared), and against the next problem's answer (wrong
//! pairs). The pathological inputs of the issue are timed one by one.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::VerifierConfig;
use crate::error::Result;
use crate::evalset::load_eval_file;
use crate::verdict::Outcome;
use crate::verifier::Verifier;

/// Minimum measuring time of one throughput figure.
const MIN_TIME: Duration = Duration::from_millis(400);

/// Throughput on one evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetReport {
    /// File stem, e.g. `math500`.
    pub name: String,
    /// Problems in the set.
    pub count: usize,
    /// Solution-vs-answer verifications per second, default configuration.
    pub verifications_per_sec: f64,
    /// The same with the string fast path off (always parse and compare).
    pub full_parse_per_sec: f64,
    /// Solution vs the next problem's answer (mostly wrong) per second.
    pub wrong_pairs_per_sec: f64,
    /// Fraction of solutions whose extracted answer verifies against the gold.
    pub agreement: f64,
}

/// Time of one pathological verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathologicalTiming {
    /// What the case is.
    pub case: String,
    /// Slowest of 5 runs, in microseconds.
    pub micros: f64,
    /// The outcome (too complex or a decided one).
    pub outcome: Outcome,
}

/// The whole benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Threads used (always 1).
    pub threads: usize,
    /// One entry per evaluation set.
    pub sets: Vec<SetReport>,
    /// The pathological cases.
    pub pathological: Vec<PathologicalTiming>,
}

/// Run the benchmark on `eval_dir` (which holds `math500.jsonl` and `gsm8k_test.jsonl`).
pub fn run(eval_dir: &Path) -> Result<BenchReport> {
    let mut sets = Vec::new();
    for name in ["math500", "gsm8k_test"] {
        let records = load_eval_file(&eval_dir.join(format!("{name}.jsonl")))?;
        let pairs: Vec<(String, String)> =
            records.iter().filter_map(|r| r.solution.clone().map(|s| (r.answer.clone(), s))).collect();
        let wrong: Vec<(String, String)> =
            pairs.iter().enumerate().map(|(i, (_, s))| (pairs[(i + 1) % pairs.len()].0.clone(), s.clone())).collect();
        let default = Verifier::default();
        let full = Verifier::new(VerifierConfig { string_fast_path: false, ..VerifierConfig::default() });
        let agree = pairs.iter().filter(|(g, s)| default.verify(g, s).correct).count();
        sets.push(SetReport {
            name: name.to_string(),
            count: pairs.len(),
            verifications_per_sec: throughput(&default, &pairs),
            full_parse_per_sec: throughput(&full, &pairs),
            wrong_pairs_per_sec: throughput(&default, &wrong),
            agreement: agree as f64 / pairs.len().max(1) as f64,
        });
    }
    Ok(BenchReport { threads: 1, sets, pathological: pathological() })
}

fn throughput(v: &Verifier, pairs: &[(String, String)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let start = Instant::now();
    let mut n = 0usize;
    let mut sink = 0usize;
    while start.elapsed() < MIN_TIME {
        for (g, s) in pairs {
            sink += v.verify(g, s).correct as usize;
        }
        n += pairs.len();
    }
    std::hint::black_box(sink);
    n as f64 / start.elapsed().as_secs_f64()
}

/// The pathological inputs of the issue: `(name, gold, response)`.
pub fn pathological_cases() -> Vec<(String, String, String)> {
    let nested = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
    let filler = "We keep thinking about the problem, step by step. ".repeat(20_000);
    let mut mb = filler.clone();
    mb.truncate(1 << 20);
    let mb_answer = format!("{mb}\nSo the answer is \\boxed{{42}}.");
    vec![
        (
            "power tower 10^{10^{10^{10}}} vs +1".into(),
            "10^{10^{10^{10}}}".into(),
            "\\boxed{10^{10^{10^{10}}}+1}".into(),
        ),
        ("power tower vs 5".into(), "5".into(), "\\boxed{10^{10^{10^{10}}}}".into()),
        ("1000!!! vs 1001!!!".into(), "1000!!!".into(), "\\boxed{1001!!!}".into()),
        ("10,000 nested braces".into(), "1".into(), nested),
        ("1 MB response, boxed at the end".into(), "42".into(), mb_answer),
        ("1 MB response, no answer".into(), "42".into(), mb),
    ]
}

fn pathological() -> Vec<PathologicalTiming> {
    let v = Verifier::default();
    pathological_cases()
        .into_iter()
        .map(|(case, gold, response)| {
            let mut worst = Duration::ZERO;
            let mut outcome = Outcome::TooComplex;
            for _ in 0..5 {
                let t = Instant::now();
                outcome = v.verify(&gold, &response).outcome;
                worst = worst.max(t.elapsed());
            }
            PathologicalTiming { case, micros: worst.as_secs_f64() * 1e6, outcome }
        })
        .collect()
}
/// Math-Verify's figures on one set (a value of `scripts/mathverify_bench.py`'s JSON object, keyed by the
/// set's name).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerSet {
    /// Verifications per second on one thread.
    pub verifications_per_s: f64,
}

/// Speed beside Math-Verify's, per set of `report` that the peer file (`name → PeerSet`) also has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedRatio {
    /// The set.
    pub name: String,
    /// Ours, verifications per second.
    pub phi4r: f64,
    /// Math-Verify's.
    pub math_verify: f64,
    /// Ours over Math-Verify's.
    pub ratio: f64,
}

/// The ratios of `report`'s sets to the peer's (sets the peer lacks, or with no positive rate, are left
/// out). `peer` is the parsed JSON of `scripts/mathverify_bench.py`.
pub fn speed_ratios(
    report: &BenchReport,
    peer: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<SpeedRatio> {
    report
        .sets
        .iter()
        .filter_map(|set| {
            let theirs: PeerSet = serde_json::from_value(peer.get(&set.name)?.clone()).ok()?;
            (theirs.verifications_per_s > 0.0).then(|| SpeedRatio {
                name: set.name.clone(),
                phi4r: set.verifications_per_sec,
                math_verify: theirs.verifications_per_s,
                ratio: set.verifications_per_sec / theirs.verifications_per_s,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_ratios_pair_sets_by_name_and_skip_what_the_peer_lacks() {
        let set = |name: &str, v: f64| SetReport {
            name: name.into(),
            count: 1,
            verifications_per_sec: v,
            full_parse_per_sec: v,
            wrong_pairs_per_sec: v,
            agreement: 1.0,
        };
        let report = BenchReport {
            threads: 1,
            sets: vec![set("math500", 600.0), set("gsm8k_test", 900.0)],
            pathological: vec![],
        };
        let peer: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"math500": {"count": 500, "verifications_per_s": 2.0, "agreement": 1.0}, "other": {"verifications_per_s": 1.0}}"#,
        )
        .expect("JSON");
        let r = speed_ratios(&report, &peer);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].name.as_str(), r[0].ratio), ("math500", 300.0));
    }
}
