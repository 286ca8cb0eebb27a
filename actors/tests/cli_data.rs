//! `data synth` and `data check` through the binary.

phi4r_e2e::use_binary!();
use serde_json::Value;

#[test]
fn synth_writes_every_stage_and_reports_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("syn");
    let o = out.to_str().expect("utf-8");
    let report: Value = serde_json::from_str(&run_ok(&[
        "data",
        "synth",
        "--out",
        o,
        "--problems",
        "120",
        "--rollouts",
        "3",
        "--seed",
        "4",
    ]))
    .expect("JSON report");
    assert_eq!(report["problems"], 120);
    assert_eq!(report["rollouts"], 360);
    let lines = |f: &str| std::fs::read_to_string(out.join(f)).expect("file").lines().count();
    assert_eq!(lines("stage1.jsonl") as u64, report["stage1"].as_u64().expect("count"));
    assert_eq!(lines("stage3.jsonl") as u64, report["stage3"].as_u64().expect("count"));
    assert!(lines("eval.jsonl") > 0 && out.join("tokenizer.json").exists());
    // The files load in the formats they claim.
    let c: Value = serde_json::from_str(&run_ok(&[
        "data",
        "check",
        out.join("stage3.jsonl").to_str().expect("utf-8"),
        "--format",
        "preference",
    ]))
    .expect("JSON");
    assert_eq!(c["records"], report["stage3"]);
    // A checkpoint on the synthetic tokenizer.
    let ckpt = dir.path().join("ckpt");
    let tok = out.join("tokenizer.json");
    let info: Value = serde_json::from_str(&run_ok(&[
        "model",
        "init",
        "--tokenizer",
        tok.to_str().expect("utf-8"),
        "--out",
        ckpt.to_str().expect("utf-8"),
    ]))
    .expect("JSON");
    assert!(info["vocab_size"].as_u64().expect("vocab") <= 512);
}

#[test]
fn check_names_the_bad_line_or_skips_and_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("pc.jsonl");
    std::fs::write(
        &f,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\"}\n{\"prompt\": \"c\", \"completion\": \"d\"}\n",
    )
    .expect("write");
    let p = f.to_str().expect("utf-8");
    let e = run_err(&["data", "check", p, "--format", "prompt-completion"]);
    assert!(e.contains("pc.jsonl") && e.contains(":2") && e.contains("completion"), "{e}");
    let ok: Value =
        serde_json::from_str(&run_ok(&["data", "check", p, "--format", "prompt-completion", "--skip-bad-lines"]))
            .expect("JSON");
    assert_eq!(ok["records"], 2);
    assert_eq!(ok["skipped_bad_lines"], 1);
}

#[test]
fn data_pairs_writes_verified_pairs_of_one_problem_and_counts_what_it_sampled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (init, prompts) = phi4r_e2e::rl_fixture(bin(), dir.path());
    let out = dir.path().join("pairs.jsonl");
    let args = [
        "--device",
        "cpu",
        "data",
        "pairs",
        "--model",
        &init,
        "--problems",
        &prompts,
        "--out",
        out.to_str().expect("utf-8"),
        "--samples",
        "4",
        "--max-new-tokens",
        "8",
        "--max-problems",
        "20",
    ];
    let report: serde_json::Value = serde_json::from_str(&run_ok(&args)).expect("JSON report");
    assert_eq!(report["problems"], 20);
    let stopped = report["completions_stopped"].as_u64().expect("count");
    assert!(stopped <= 80, "{report}");
    let text = std::fs::read_to_string(&out).expect("pairs file");
    assert_eq!(text.lines().count() as u64, report["pairs"].as_u64().expect("pairs"));
    for line in text.lines() {
        let p: serde_json::Value = serde_json::from_str(line).expect("a pair");
        assert!(p["prompt"].as_str().expect("prompt").starts_with("What is "), "{p}");
        assert_ne!(p["chosen"], p["rejected"], "{p}");
    }
    let e = run_err(&["data", "pairs", "--model", &init, "--problems", "/nonexistent.jsonl", "--out", "x"]);
    assert!(e.contains("/nonexistent.jsonl"), "{e}");
}
