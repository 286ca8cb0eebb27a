//! `stage` and `eval` through the binary: a learner actor fed by a dataset actor trains, checkpoints,
//! resumes from the checkpoint, and a bad config names its key.

use phi4r_e2e::{run_err, run_ok};
use serde_json::Value;
use std::path::Path;

const CONFIG: &str = r#"
stage = "sft"
seq_len = 96
batch_size = 4
micro_batch = 2
lr = 1e-3
epochs = 1
max_steps = 4
checkpoint_every = 2
"#;

fn setup(dir: &Path) -> (String, String, String) {
    let data = dir.join("data");
    run_ok(&["data", "synth", "--out", data.to_str().expect("utf-8"), "--problems", "60", "--rollouts", "2"]);
    let init = dir.join("init");
    let tok = data.join("tokenizer.json");
    run_ok(&["model", "init", "--tokenizer", tok.to_str().expect("utf-8"), "--out", init.to_str().expect("utf-8")]);
    let cfg = dir.join("sft.toml");
    std::fs::write(&cfg, CONFIG).expect("write config");
    (
        data.to_str().expect("utf-8").to_string(),
        init.to_str().expect("utf-8").to_string(),
        cfg.to_str().expect("utf-8").to_string(),
    )
}

#[test]
fn sft_trains_checkpoints_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, init, cfg) = setup(dir.path());
    let out = dir.path().join("sft");
    let o = out.to_str().expect("utf-8");
    let stage1 = format!("{data}/stage2.jsonl");
    let s: Value = serde_json::from_str(&run_ok(&[
        "stage",
        "sft",
        "--config",
        &cfg,
        "--data",
        &stage1,
        "--init",
        &init,
        "--out",
        o,
        "--stop-after",
        "2",
    ]))
    .expect("summary JSON");
    assert_eq!(s["steps"], 2);
    assert!(s["final_loss"].as_f64().expect("loss").is_finite());
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 2);
    // Resume: continues at step 3 and ends at the schedule's step 4.
    let s: Value = serde_json::from_str(&run_ok(&[
        "stage", "sft", "--config", &cfg, "--data", &stage1, "--init", &init, "--out", o, "--resume",
    ]))
    .expect("summary JSON");
    assert_eq!(s["steps"], 2, "two more steps after resuming at step 2");
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics").lines().last().expect("a line"),
    )
    .expect("JSON line");
    assert_eq!(last["step"], 4);
    let latest = std::fs::read_to_string(out.join("latest")).expect("latest");
    assert!(out.join(latest.trim()).join("model.safetensors").exists());
    // The checkpoint is a model folder eval can read.
    let ev: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--model",
        out.join(latest.trim()).to_str().expect("utf-8"),
        "--data",
        &format!("{data}/eval.jsonl"),
        "--per-tier",
        "1",
        "--max-new-tokens",
        "8",
    ]))
    .expect("eval JSON");
    assert_eq!(ev["n"], 6);
    assert!(ev["tiers"]["6"]["accuracy"].is_number());
}

#[test]
fn a_bad_stage_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, init, cfg) = setup(dir.path());
    std::fs::write(&cfg, CONFIG.replace("micro_batch = 2", "micro_batch = 2\nmicro_bach = 3")).expect("write");
    let e = run_err(&[
        "stage",
        "sft",
        "--config",
        &cfg,
        "--data",
        &format!("{data}/stage2.jsonl"),
        "--init",
        &init,
        "--out",
        dir.path().join("o").to_str().expect("utf-8"),
    ]);
    assert!(e.contains("micro_bach"), "{e}");
}
