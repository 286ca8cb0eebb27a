//! `stage rl` through the binary on a random-init tiny model: synchronous on-policy GRPO steps write one
//! metrics line each (reward, accuracy, filter counts, positive share, response length, temperature, KL,
//! clip fraction, policy version), checkpoint with the too-easy memory, and `--resume` continues to the
//! same weights as a straight run; a bad `[rl]` key is named.

phi4r_e2e::use_binary!();
use serde_json::Value;
use std::path::Path;

const CONFIG: &str = r#"
stage = "rl"
seq_len = 160
micro_batch = 8
lr = 1e-5
max_steps = 3
checkpoint_every = 2

[rl]
group_size = 4
prompts_per_step = 4
max_draw_rounds = 6   # a random model rarely hits an answer: keep drawing until a mixed group is kept
max_new_tokens = 16
kl_coef = 0.04
overlong = { kind = "off" }   # a random model's completions all hit the limit: train them anyway

[rl.balance]
batch_groups = 2
max_pending_groups = 8
"#;

struct Setup {
    prompts: String,
    init: String,
    cfg: String,
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let (init, prompts) = phi4r_e2e::rl_fixture(bin(), dir);
        let cfg = dir.join("rl.toml");
        std::fs::write(&cfg, CONFIG).expect("write config");
        Setup { prompts, init, cfg: cfg.to_str().expect("utf-8").to_string() }
    }

    fn rl<'a>(&'a self, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        // The CPU, so the seeded draws and the byte-identical resume hold in a CUDA build too.
        let mut v = vec![
            "--device",
            "cpu",
            "--threads",
            "2",
            "stage",
            "rl",
            "--config",
            &self.cfg,
            "--prompts",
            &self.prompts,
            "--init",
            &self.init,
            "--out",
            out,
        ];
        v.extend_from_slice(extra);
        v
    }
}

fn metrics(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

#[test]
fn rl_steps_write_metrics_checkpoint_and_resume_to_the_straight_runs_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Setup::new(dir.path());

    // Two steps, then stop (the final checkpoint is step 2).
    let out = dir.path().join("rl");
    let o = out.to_str().expect("utf-8");
    let summary: Value = serde_json::from_str(&run_ok(&s.rl(o, &["--stop-after", "2"]))).expect("summary JSON");
    assert_eq!(summary["steps"], 2);
    let lines = metrics(&out);
    assert_eq!(lines.len(), 2);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["step"], i as u64 + 1);
        assert_eq!(l["policy_version"], i as u64, "sampled by the weights before the update");
        for key in [
            "reward_mean",
            "accuracy",
            "positive_share",
            "response_len_mean",
            "temperature",
            "trained_groups",
            "in_band",
            "rounds",
            "prompts",
            "completions",
            "filter",
            "rl",
        ] {
            assert!(l.get(key).is_some(), "step {}: no `{key}` in {l}", i + 1);
        }
        for key in ["kept", "no_signal_correct", "no_signal_wrong", "non_uniform_length"] {
            assert!(l["filter"][key].is_u64(), "filter.{key} in {l}");
        }
        let seen: u64 = ["kept", "no_signal_correct", "no_signal_wrong", "non_uniform_length"]
            .iter()
            .map(|k| l["filter"][k].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(seen, l["prompts"].as_u64().expect("prompts"), "every drawn prompt's group is decided");
        assert_eq!(l["completions"].as_u64(), l["prompts"].as_u64().map(|p| p * 4), "G = 4 per prompt");
        if !l["rl"].is_null() {
            for key in ["kl", "clip_fraction", "entropy", "pg_loss", "advantage_mean"] {
                assert!(l["rl"][key].is_f64(), "rl.{key} in {l}");
            }
        }
    }
    assert_eq!(lines[0]["temperature"].as_f64(), Some(1.0), "the schedule starts at 1.0");
    assert!(lines.iter().any(|l| !l["rl"].is_null()), "some step trained: {lines:?}");
    let latest = std::fs::read_to_string(out.join("latest")).expect("latest");
    assert_eq!(latest.trim(), "step-00000002");
    let ckpt = out.join("step-00000002");
    for f in
        ["model.safetensors", "optimizer.safetensors", "train_state.json", "stage.toml", "inputs.json", "easy.json"]
    {
        assert!(ckpt.join(f).is_file(), "checkpoint lacks {f}");
    }

    // --resume continues to step 3 ...
    let summary: Value = serde_json::from_str(&run_ok(&s.rl(o, &["--resume"]))).expect("summary JSON");
    assert_eq!(summary["steps"], 1, "step 3 only");
    let steps: Vec<u64> = metrics(&out).iter().map(|l| l["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert_eq!(std::fs::read_to_string(out.join("latest")).expect("latest").trim(), "step-00000003");

    // ... to the weights of a straight 3-step run (sampling is seeded by (seed, step)).
    let straight = dir.path().join("straight");
    run_ok(&s.rl(straight.to_str().expect("utf-8"), &[]));
    let weights = |d: &Path| std::fs::read(d.join("step-00000003/model.safetensors")).expect("weights");
    assert!(weights(&out) == weights(&straight), "resumed weights differ from the straight run's");

    // A changed [rl] key is named by the resume guard.
    std::fs::write(&s.cfg, CONFIG.replace("kl_coef = 0.04", "kl_coef = 0.02")).expect("write");
    let e = run_err(&s.rl(o, &["--resume"]));
    assert!(e.contains("`rl.kl_coef`: 0.04 in the checkpoint, 0.02 now"), "{e}");
}

#[test]
fn a_bad_rl_key_is_named_and_the_synthetic_stage4_prompts_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Setup::new(dir.path());
    s.prompts = dir.path().join("data/stage4.jsonl").to_str().expect("utf-8").to_string();
    let out = dir.path().join("synth");
    let summary: Value = serde_json::from_str(&run_ok(&s.rl(out.to_str().expect("utf-8"), &["--stop-after", "1"])))
        .expect("summary JSON");
    assert_eq!(summary["steps"], 1);
    std::fs::write(&s.cfg, CONFIG.replace("group_size = 4", "group_size = 1")).expect("write");
    let e = run_err(&s.rl(dir.path().join("o").to_str().expect("utf-8"), &[]));
    assert!(e.contains("`rl.group_size` (line 10)"), "{e}");
    std::fs::write(&s.cfg, CONFIG).expect("write");
    let e = run_err(&[
        "stage",
        "rl",
        "--config",
        &s.cfg,
        "--init",
        &s.init,
        "--out",
        dir.path().join("o").to_str().expect("utf-8"),
    ]);
    assert!(e.contains("--prompts") || e.contains("--data"), "{e}");
    // A topology file that puts the learner on a GPU this build or machine lacks fails before anything
    // runs, naming the key and the reason.
    #[cfg(not(feature = "cuda"))]
    {
        let gpu = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/topologies/gpu-learner.toml");
        let out = dir.path().join("gpu");
        let e = run_err(&s.rl(out.to_str().expect("utf-8"), &["--topology", gpu]));
        assert!(e.contains("devices.learner") && e.contains("cuda") && e.contains("feature"), "{e}");
        assert!(!out.join("control.json").exists(), "nothing started");
    }
}
