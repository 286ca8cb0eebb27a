//! `stage` and `eval` through the binary: a learner actor fed by a dataset actor trains and checkpoints;
//! `--resume` refuses a checkpoint of a different run and names each difference; a bad config names its
//! key. (Exact resume after a SIGKILL is `resume_after_kill.rs`.)

phi4r_e2e::use_binary!();
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

struct Setup {
    data: String,
    init: String,
    cfg: String,
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let data = dir.join("data");
        run_ok(&["data", "synth", "--out", data.to_str().expect("utf-8"), "--problems", "60", "--rollouts", "2"]);
        let init = dir.join("init");
        let tok = data.join("tokenizer.json");
        run_ok(&["model", "init", "--tokenizer", tok.to_str().expect("utf-8"), "--out", init.to_str().expect("utf-8")]);
        let cfg = dir.join("sft.toml");
        std::fs::write(&cfg, CONFIG).expect("write config");
        Setup {
            data: data.to_str().expect("utf-8").to_string(),
            init: init.to_str().expect("utf-8").to_string(),
            cfg: cfg.to_str().expect("utf-8").to_string(),
        }
    }

    /// The stage-2 (sft) training file.
    fn sft_data(&self) -> String {
        format!("{}/stage2.jsonl", self.data)
    }

    fn sft<'a>(&'a self, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["stage", "sft", "--config", &self.cfg, "--data", data, "--init", &self.init, "--out", out];
        v.extend_from_slice(extra);
        v
    }
}

/// `eval --model CKPT --data DATA` followed by `extra`.
fn eval_args<'a>(ckpt: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["eval", "--model", ckpt, "--data", data];
    args.extend_from_slice(extra);
    args
}

#[test]
fn sft_trains_checkpoints_and_eval_reads_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Setup::new(dir.path());
    let out = dir.path().join("sft");
    let o = out.to_str().expect("utf-8");
    let sft_data = s.sft_data();
    let summary: Value = serde_json::from_str(&run_ok(&s.sft(&sft_data, o, &[]))).expect("summary JSON");
    assert_eq!(summary["steps"], 4);
    assert!(summary["final_loss"].as_f64().expect("loss").is_finite());
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    let latest = std::fs::read_to_string(out.join("latest")).expect("latest");
    assert_eq!(latest.trim(), "step-00000004");
    // Resuming a finished run takes no step past its schedule.
    let again: Value = serde_json::from_str(&run_ok(&s.sft(&sft_data, o, &["--resume"]))).expect("summary JSON");
    assert_eq!(again["steps"], 0);
    assert_eq!(std::fs::read_to_string(out.join("latest")).expect("latest").trim(), "step-00000004");
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics").lines().count(), 4);
    // The checkpoint is a model folder eval can read; the report adds up.
    let ckpt = out.join(latest.trim());
    let (ckpt, eval_data) = (ckpt.to_str().expect("utf-8"), format!("{}/eval.jsonl", s.data));
    let eval = |extra: &[&str]| -> Value {
        serde_json::from_str(&run_ok(&eval_args(ckpt, &eval_data, extra))).expect("eval JSON")
    };
    let ev = eval(&["--per-tier", "1", "--max-new-tokens", "8"]);
    assert_eq!(ev["n"], 6, "one problem for each of the 6 tiers");
    let tiers = ev["tiers"].as_object().expect("tiers");
    assert_eq!(tiers.len(), 6);
    let mut correct = 0.0;
    for (name, t) in tiers {
        assert_eq!(t["n"], 1, "tier {name}");
        let acc = t["accuracy"].as_f64().expect("accuracy");
        assert!(acc == 0.0 || acc == 1.0, "tier {name}: accuracy of one problem is 0 or 1, got {acc}");
        correct += acc;
    }
    assert_eq!(ev["accuracy"].as_f64(), Some(correct / 6.0), "overall = correct / n");
    // k = 2 samples at T = 0.8: counts per sample, votes per problem, every share a probability.
    let ev = eval(&["--per-tier", "1", "--max-new-tokens", "8", "--samples", "2", "--temperature", "0.8", "--json"]);
    assert_eq!((ev["n"].as_u64(), ev["samples"].as_u64()), (Some(6), Some(2)));
    let c = ev["correct"].as_u64().expect("correct") as f64;
    assert_eq!(ev["accuracy"].as_f64(), Some(c / 12.0), "pass@1 = correct samples / (n k)");
    for key in ["maj_at_k", "stopped", "truncated", "no_answer"] {
        assert!((0.0..=1.0).contains(&ev[key].as_f64().expect(key)), "{key}: {ev}");
    }
    let (stopped, truncated) = (ev["stopped"].as_f64().expect("stopped"), ev["truncated"].as_f64().expect("truncated"));
    assert!((stopped + truncated - 1.0).abs() < 1e-12, "every sample stops or is cut: {ev}");
    let e = run_err(&eval_args(ckpt, &eval_data, &["--samples", "3"]));
    assert!(e.contains("samples") && e.contains("temperature 0"), "{e}");
    // Batches run side by side on 2 threads and one after another on 1: the same answers, problem by
    // problem, greedy and sampled (each batch has its own seed).
    for extra in [&[][..], &["--samples", "2", "--temperature", "0.8"][..]] {
        let with = |threads: &str| -> String {
            let mut args = vec!["--threads", threads];
            args.extend(eval_args(ckpt, &eval_data, &["--per-tier", "3", "--batch", "2", "--max-new-tokens", "12"]));
            args.extend(["--per-problem", "--json"]);
            args.extend_from_slice(extra);
            run_ok(&args)
        };
        assert_eq!(with("1"), with("2"), "{extra:?}");
    }
}

#[test]
fn resume_refuses_a_different_run_and_names_each_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Setup::new(dir.path());
    let out = dir.path().join("sft");
    let o = out.to_str().expect("utf-8");
    let sft_data = s.sft_data();
    run_ok(&s.sft(&sft_data, o, &["--stop-after", "2"]));

    // A changed learning rate and seed: both named, nothing trained.
    let e = run_err(&s.sft(&sft_data, o, &["--resume", "--lr", "5e-4"]));
    assert!(e.contains("`lr`: 0.001 in the checkpoint, 0.0005 now"), "{e}");
    assert!(e.contains("--force-resume"), "{e}");
    std::fs::write(&s.cfg, CONFIG.replace("max_steps = 4", "max_steps = 4\nseed = 9")).expect("write");
    let e = run_err(&s.sft(&sft_data, o, &["--resume"]));
    assert!(e.contains("`seed`: 42 in the checkpoint, 9 now"), "{e}");
    std::fs::write(&s.cfg, CONFIG).expect("write");

    // A changed data file (same name, one line fewer): named as `data`.
    let shorter = dir.path().join("stage2.jsonl");
    let text = std::fs::read_to_string(&sft_data).expect("data");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&shorter, lines.join("\n") + "\n").expect("write");
    let sh = shorter.to_str().expect("utf-8");
    let e = run_err(&s.sft(sh, o, &["--resume"]));
    assert!(e.contains("`data`"), "{e}");
    assert!(!e.contains("`lr`"), "only what changed is named: {e}");
    let metrics = || std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics").lines().count();
    assert_eq!(metrics(), 2, "a refused resume trains nothing");

    // --force-resume accepts the changed data knowingly and continues. (A plain resume of the same run
    // is proven byte for byte in resume_after_kill.rs.)
    let summary: Value =
        serde_json::from_str(&run_ok(&s.sft(sh, o, &["--resume", "--force-resume"]))).expect("summary JSON");
    assert_eq!(summary["steps"], 2, "steps 3 and 4");
    assert_eq!(metrics(), 4);
}

#[test]
fn a_bad_stage_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Setup::new(dir.path());
    std::fs::write(&s.cfg, CONFIG.replace("micro_batch = 2", "micro_batch = 2\nmicro_bach = 3")).expect("write");
    let sft_data = s.sft_data();
    let e = run_err(&s.sft(&sft_data, dir.path().join("o").to_str().expect("utf-8"), &[]));
    assert!(e.contains("micro_bach"), "{e}");
}
