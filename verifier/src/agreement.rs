//! Agreement with the reference verdicts of other graders' test suites.
//!
//! A grader case is one `(gold, pred, expected)` row ported from a public test suite
//! (Math-Verify, lighteval, NeMo-Skills, the MATH grader, RL frameworks' reward tests),
//! with its source and, where the suite's verdict depends on one, the suite's own
//! configuration. [`agreement`] runs every case through one [`Verifier`] and counts, per
//! suite, the verdicts it shares with the reference, and its false positives (a wrong
//! answer scored correct) and false negatives (a right answer scored wrong or no answer).
//!
//! The cases live in `verifier/tests/fixtures/{graders,rl}/*.jsonl`;
//! `scripts/mathverify_agreement.py` measures Math-Verify on the same files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::verdict::Outcome;
use crate::verifier::Verifier;

/// One reference verdict ported from a grader's test suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraderCase {
    /// Suite name (`math-verify`, `lighteval`, ...).
    pub suite: String,
    /// Source repository (`owner/name`).
    pub repo: String,
    /// Path of the test file in that repository.
    pub path: String,
    /// Line of the case in that file, where known.
    #[serde(default)]
    pub line: Option<u64>,
    /// Name of the test function.
    #[serde(default)]
    pub test: Option<String>,
    /// Commit of the file the case was read from, where known.
    #[serde(default)]
    pub commit: Option<String>,
    /// Gold answer, as the suite passes it (may be LaTeX or a whole solution).
    pub gold: String,
    /// Prediction (a response, or an extracted answer for answer-only graders).
    pub pred: String,
    /// The suite's verdict: is `pred` a correct answer to `gold`?
    pub expected: bool,
    /// The suite's configuration for this case, where its verdict depends on one.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// Agreement counts of one suite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteAgreement {
    /// Cases in the suite.
    pub total: usize,
    /// Cases where our verdict (correct or not) equals the reference's.
    pub agree: usize,
    /// Reference says wrong, we say correct.
    pub false_pos: usize,
    /// Reference says correct, we say wrong, no answer, truncated or too complex.
    pub false_neg: usize,
}

/// One case we disagree on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// Group and suite (`graders/math-verify`).
    pub suite: String,
    /// Test function and line in the source.
    pub test: String,
    /// The gold answer.
    pub gold: String,
    /// The prediction.
    pub pred: String,
    /// The reference verdict.
    pub expected: bool,
    /// Our outcome.
    pub outcome: Outcome,
    /// What we extracted from the prediction.
    pub extracted: Option<String>,
}

/// The agreement of one verifier with a set of suites.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgreementReport {
    /// Per `group/suite` (group = the fixture folder: `graders` or `rl`).
    pub suites: BTreeMap<String, SuiteAgreement>,
    /// Per group, all suites summed.
    pub groups: BTreeMap<String, SuiteAgreement>,
    /// Every case we disagree on.
    pub disagreements: Vec<Disagreement>,
}

/// Read the cases of one JSONL file (one [`GraderCase`] a line; blank lines skipped).
pub fn load_cases(path: &Path) -> Result<Vec<GraderCase>> {
    let file = File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let mut cases = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        if line.trim().is_empty() {
            continue;
        }
        let case = serde_json::from_str(&line).map_err(|e| Error::Record {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        cases.push(case);
    }
    Ok(cases)
}

/// Read every `*.jsonl` of `root/<group>/` for each group, sorted by file name.
pub fn load_groups(root: &Path, groups: &[&str]) -> Result<Vec<(String, GraderCase)>> {
    let mut out = Vec::new();
    for group in groups {
        let dir = root.join(group);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::Io { path: dir.clone(), source: e })?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        for f in files {
            out.extend(load_cases(&f)?.into_iter().map(|c| (group.to_string(), c)));
        }
    }
    Ok(out)
}

/// Run every case through `verifier` and count agreement per suite and group.
pub fn agreement(verifier: &Verifier, cases: &[(String, GraderCase)]) -> AgreementReport {
    let mut report = AgreementReport::default();
    for (group, case) in cases {
        let verdict = verifier.verify(&case.gold, &case.pred);
        let key = format!("{group}/{}", case.suite);
        for s in [report.suites.entry(key.clone()).or_default(), report.groups.entry(group.clone()).or_default()] {
            s.total += 1;
            match (verdict.correct, case.expected) {
                (a, b) if a == b => s.agree += 1,
                (true, false) => s.false_pos += 1,
                _ => s.false_neg += 1,
            }
        }
        if verdict.correct != case.expected {
            report.disagreements.push(Disagreement {
                suite: key,
                test: format!("{}:{}", case.test.as_deref().unwrap_or("?"), case.line.unwrap_or(0)),
                gold: case.gold.clone(),
                pred: case.pred.clone(),
                expected: case.expected,
                outcome: verdict.outcome,
                extracted: verdict.extracted,
            });
        }
    }
    report
}
