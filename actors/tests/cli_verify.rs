//! `verify` through the binary: one pair, and a JSONL batch with a malformed line.

phi4r_e2e::use_binary!();
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn single_pair_prints_the_verdict() {
    let v: Value =
        serde_json::from_str(&run_ok(&["verify", "--gold", "\\frac{1}{2}", "--response", "so \\boxed{0.5}."]))
            .expect("JSON");
    assert_eq!(v["correct"], true);
    assert_eq!(v["outcome"], "correct");
    assert_eq!(v["extracted"], "0.5");
    let v: Value =
        serde_json::from_str(&run_ok(&["verify", "--gold", "7", "--response", "I ran out of", "--truncated"]))
            .expect("JSON");
    assert_eq!(v["outcome"], "truncated");
}

#[test]
fn jsonl_batch_keeps_fields_reports_bad_lines_and_goes_on() {
    let input = "{\"gold\": \"3\", \"pred\": \"\\\\boxed{3}\", \"id\": 1}\nnot json\n{\"gold\": 2, \"pred\": \"5\"}\n{\"pred\": \"5\"}\n";
    let mut child = Command::new(bin())
        .args(["verify", "--jsonl", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("runs");
    assert!(out.status.success());
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["correct"], true);
    assert_eq!(lines[1]["outcome"], "wrong");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-:2:"), "{err}");
    assert!(err.contains("-:4:") && err.contains("gold"), "{err}");
    let summary: Value = serde_json::from_str(err.lines().last().expect("summary")).expect("summary JSON");
    assert_eq!(summary["malformed"], 2);
    assert_eq!(summary["total"], 2);
}
