//! Agreement with the public test suites of established graders and RL frameworks' reward tests.
//!
//! Every row of `fixtures/{graders,rl}/*.jsonl` is a reference verdict ported from a public test
//! suite, with its source (repository, path, line) and, where the suite's verdict depends on it, the
//! suite's own configuration. All rows go through one default [`Verifier`]. Per suite, agreement must
//! be at least the recorded floor and false positives at most the recorded ceiling
//! (`fixtures/agreement_floor.json`): Math-Verify's own figures on the same rows (default
//! configuration, measured by `scripts/mathverify_agreement.py`), except for the suites whose row
//! carries a note (Math-Verify's suite, where floor and ceiling are our own figures, and one deliberate
//! disagreement).
//! Set `PHI4R_AGREEMENT_VERBOSE=1` to print every disagreement.

use std::collections::BTreeMap;
use std::path::Path;

use phi4r_verifier::agreement::{agreement, load_groups};
use phi4r_verifier::Verifier;
use serde::Deserialize;

#[derive(Deserialize)]
struct Floor {
    suites: BTreeMap<String, SuiteFloor>,
}

#[derive(Deserialize)]
struct SuiteFloor {
    total: usize,
    mv_default_agree: usize,
    floor: usize,
    fp_ceiling: usize,
    #[serde(default)]
    note: Option<String>,
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

#[test]
fn agreement_per_suite_is_at_least_math_verify_default() -> Result<(), Box<dyn std::error::Error>> {
    let cases = load_groups(fixtures(), &["graders", "rl"])?;
    let floor: Floor = serde_json::from_str(&std::fs::read_to_string(fixtures().join("agreement_floor.json"))?)?;
    let report = agreement(&Verifier::default(), &cases);
    if std::env::var_os("PHI4R_AGREEMENT_VERBOSE").is_some() {
        for d in &report.disagreements {
            let cut = |s: &str| s.chars().take(160).collect::<String>();
            eprintln!(
                "DIS {} {} expected={} got={:?} extracted={:?}\n  gold={:?}\n  pred={:?}",
                d.suite,
                d.test,
                d.expected,
                d.outcome,
                d.extracted,
                cut(&d.gold),
                cut(&d.pred)
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&report.suites)?);
    let mut failures = Vec::new();
    for (suite, f) in &floor.suites {
        let Some(ours) = report.suites.get(suite) else {
            failures.push(format!("{suite}: no rows"));
            continue;
        };
        if ours.total != f.total {
            failures.push(format!("{suite}: {} rows, the floor was measured on {}", ours.total, f.total));
        }
        if ours.agree < f.floor {
            failures.push(format!("{suite}: agreement {} < floor {}", ours.agree, f.floor));
        }
        if ours.false_pos > f.fp_ceiling {
            failures.push(format!("{suite}: false positives {} > ceiling {}", ours.false_pos, f.fp_ceiling));
        }
        if f.note.is_none() && f.floor != f.mv_default_agree {
            failures.push(format!("{suite}: a floor other than Math-Verify's needs a note"));
        }
    }
    assert_eq!(report.suites.len(), floor.suites.len(), "every suite needs a floor");
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}
