//! The evaluation sets in ../shared/data/eval load as they are.

use phi4r_data::{JsonlReader, ProblemAnswer};
use std::path::PathBuf;

fn eval_dir() -> PathBuf {
    let dir = std::env::var("PHI4R_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/eval")));
    assert!(
        dir.is_dir(),
        "eval sets not found at {} (set PHI4R_EVAL_DIR to the folder holding gsm8k_test.jsonl, math500.jsonl, ...)",
        dir.display()
    );
    dir
}

#[test]
fn every_eval_file_loads_strictly_with_its_documented_row_count() {
    let dir = eval_dir();
    for (file, rows) in [
        ("gsm8k_test.jsonl", 1319),
        ("gsm8k_train.jsonl", 7473),
        ("math500.jsonl", 500),
        ("aime24.jsonl", 30),
        ("aime25.jsonl", 30),
    ] {
        let path = dir.join(file);
        let mut reader = JsonlReader::<ProblemAnswer>::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut ids = std::collections::HashSet::new();
        let mut n = 0;
        for rec in reader.by_ref() {
            let rec = rec.unwrap_or_else(|e| panic!("{e}"));
            assert!(!rec.problem.is_empty() && !rec.answer.is_empty(), "{file}: empty problem or answer");
            let id = rec.id.unwrap_or_else(|| panic!("{file}: every record has an id"));
            assert!(ids.insert(id), "{file}: ids are unique");
            n += 1;
        }
        assert_eq!(n, rows, "{file}");
        assert_eq!(reader.skipped(), 0);
    }
}

#[test]
fn gsm8k_golds_are_integers_and_math500_keeps_latex() {
    let dir = eval_dir();
    let gsm = phi4r_data::read_jsonl::<ProblemAnswer>(&dir.join("gsm8k_test.jsonl"), false).expect("loads");
    assert!(gsm.records.iter().all(|r| r.answer.parse::<i64>().is_ok()));
    assert!(gsm.records[0].solution.as_deref().is_some_and(|s| s.contains("####")));
    let math = phi4r_data::read_jsonl::<ProblemAnswer>(&dir.join("math500.jsonl"), false).expect("loads");
    assert!(math.records.iter().any(|r| r.answer.contains('\\')));
}
