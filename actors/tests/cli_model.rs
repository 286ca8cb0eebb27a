//! `model init`, `model logits`, `model tokenize` and `generate` through the binary.

phi4r_e2e::use_binary!();
use serde_json::Value;

#[test]
fn init_then_logits_and_generate_from_a_fresh_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ckpt");
    let o = out.to_str().expect("utf-8 path");
    let info: Value = serde_json::from_str(&run_ok(&["model", "init", "--preset", "tiny", "--seed", "3", "--out", o]))
        .expect("init prints JSON");
    assert_eq!(info["vocab_size"], 1024);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(f).exists(), "{f} written");
    }
    let logits: Value =
        serde_json::from_str(&run_ok(&["model", "logits", "--model", o, "--ids", "1,2,3"])).expect("JSON");
    let rows = logits["logits"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].as_array().map(Vec::len), Some(1024));

    let gen = |seed: &str| -> Value {
        serde_json::from_str(&run_ok(&[
            "generate",
            "--model",
            o,
            "--prompt",
            "Tom has 3 apples",
            "--temperature",
            "1.0",
            "--max-new-tokens",
            "12",
            "--seed",
            seed,
            "--json",
        ]))
        .expect("JSON")
    };
    let a = gen("5");
    assert_eq!(a, gen("5"), "same seed, same generation");
    let tokens: Vec<u64> = a["tokens"].as_array().expect("tokens").iter().map(|t| t.as_u64().expect("id")).collect();
    let n = tokens.len();
    assert_eq!(a["logprobs"].as_array().map(Vec::len), Some(n));
    // No stop strings, a random model: this seeded run ends on the length limit (the serialization of
    // the other finishes is tested in phi4r-rollout).
    assert_eq!(a["finish_reason"], "length");
    assert_eq!(n, 12, "a length finish has max_new_tokens tokens");

    // bf16 decoding weights: the same interface, a bad value named.
    let bf16 = |value: &str| {
        std::process::Command::new(bin())
            .args(["generate", "--model", o, "--prompt", "Tom has 3 apples", "--max-new-tokens", "4", "--json"])
            .env("PHI4R_DECODE_WEIGHTS", value)
            .output()
            .expect("runs")
    };
    let ok = bf16("bf16");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let g: Value = serde_json::from_slice(&ok.stdout).expect("JSON");
    assert!(g["tokens"].as_array().is_some_and(|t| !t.is_empty()));
    let bad = bf16("bf32");
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("PHI4R_DECODE_WEIGHTS") && e.contains("bf32"), "{e}");

    let ids: Value =
        serde_json::from_str(&run_ok(&["model", "tokenize", "--model", o, "--text", "123"])).expect("JSON");
    assert_eq!(ids["ids"].as_array().map(Vec::len), Some(3), "digits are split");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ckpt");
    let o = out.to_str().expect("utf-8 path");
    run_ok(&["model", "init", "--preset", "tiny", "--seed", "1", "--out", o]);
    let e = run_err(&["model", "logits", "--model", o, "--ids", "1,4096"]);
    assert!(e.contains("token id 4096") && e.contains("vocab_size 1024"), "{e}");
    let e = run_err(&["model", "logits", "--model", o, "--ids", "1,x"]);
    assert!(e.contains("--ids") && e.contains("`x`"), "{e}");
    let e = run_err(&["model", "init", "--preset", "huge", "--out", o]);
    assert!(e.contains("preset") && e.contains("huge"), "{e}");
    // A tokenizer larger than the model's vocabulary.
    let tok = out.join("tokenizer.json");
    let e = run_err(&["model", "init", "--tokenizer", tok.to_str().expect("utf-8"), "--vocab-size", "10", "--out", o]);
    assert!(e.contains("vocab_size is 10"), "{e}");
    // Inconsistent config.json.
    let cfg = out.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
    std::fs::write(&cfg, text).expect("write");
    let e = run_err(&["generate", "--model", o, "--prompt", "hi"]);
    assert!(e.contains("hidden_size") && e.contains("num_attention_heads = 3"), "{e}");
    let e = run_err(&["model", "logits", "--model", "/nonexistent/ckpt", "--ids", "1"]);
    assert!(e.contains("/nonexistent/ckpt/config.json"), "{e}");
    // A device that cannot be had says why; a malformed one names itself and the forms.
    let e = run_err(&["model", "logits", "--model", o, "--ids", "1", "--device", "gpu"]);
    assert!(e.contains("gpu") && e.contains("cpu, cuda, cuda:N or auto"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = run_err(&["generate", "--model", o, "--prompt", "hi", "--device", "cuda:1"]);
        assert!(e.contains("device `cuda:1`: this build has no CUDA support"), "{e}");
    }
    let e = run_err(&["model", "logits", "--model", o, "--ids", "1", "--device", "cpu"]);
    assert!(e.contains("hidden_size"), "cpu is accepted; the (broken) checkpoint is the error: {e}");
}

/// `bench gpu` is the GPU check's core (scripts/gpu_check.sh); with `--device cpu` it compares the CPU with
/// itself, which keeps the command and its JSON working on machines without a GPU.
#[test]
fn bench_gpu_on_the_cpu_matches_itself_and_reports_every_part() {
    let out = run_ok(&[
        "--device",
        "cpu",
        "bench",
        "gpu",
        "--parity-size",
        "micro",
        "--sizes",
        "micro",
        "--train-batch",
        "2",
        "--seq",
        "16",
        "--steps",
        "1",
        "--sample-batches",
        "1,3",
        "--new-tokens",
        "4",
    ]);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["dtype"], "f32", "auto is f32 on the CPU");
    let p = &v["parity"];
    assert_eq!(p["logits_max_abs_diff_f32"].as_f64(), Some(0.0), "the CPU against itself in f32: {p}");
    let bf16 = p["logits_max_rel_diff_bf16"].as_f64().expect("bf16 diff");
    assert!(bf16 > 0.0 && bf16 < 0.1, "bf16 rounds, within a few percent: {bf16}");
    for d in ["f32", "bf16"] {
        let g = &p[format!("gradients_{d}")];
        assert!(g["parameters"].as_u64().unwrap_or(0) > 10, "{g}");
        for k in ["missing", "zero", "non_finite"] {
            assert_eq!(
                g[k].as_array().map(Vec::len),
                Some(0),
                "{d}: every parameter gets a finite, non-zero gradient: {g}"
            );
        }
    }
    assert_eq!(p["train_steps_f32"]["max_abs_diff"].as_f64(), Some(0.0), "{p}");
    let micro = &v["sizes"]["micro"];
    assert!(micro["train"]["tokens_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{micro}");
    assert!(micro["train"]["mfu"].as_f64().unwrap_or(0.0) > 0.0, "{micro}");
    for b in ["batch1", "batch3"] {
        assert!(micro["sample"][b]["gen_tokens_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{micro}");
    }
}

/// `bench rl --stream`'s rows report what publishing the weights costs (once per version: count, bytes,
/// seconds). `--generator-device` is parsed and opened: the learner's own device is accepted (and folded
/// into it: the copy across devices only runs beside a GPU), and a GPU this build cannot open is refused,
/// naming the flag.
#[test]
fn bench_rl_stream_reports_the_weights_published_per_version() {
    let out = run_ok(&[
        "bench",
        "rl",
        "--stream",
        "--generators",
        "1",
        "--staleness",
        "0",
        "--stream-steps",
        "2",
        "--generator-device",
        "cpu",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let run = &v["runs"][0];
    assert_eq!(run["steps"].as_u64(), Some(2), "{run}");
    assert_eq!(run["weights_published"], run["steps"], "one version per step: {run}");
    // The tiny model in f32: 4 bytes a parameter.
    assert_eq!(run["weights_bytes"].as_u64(), v["params"].as_u64().map(|p| 4 * p), "{run}");
    assert!(run["weights_publish_s_mean"].as_f64().is_some_and(|s| s > 0.0), "{run}");
    if !cfg!(feature = "cuda") {
        let e = run_err(&["bench", "rl", "--stream", "--generator-device", "cuda:1"]);
        assert!(e.contains("--generator-device") && e.contains("no CUDA support"), "{e}");
    }
}

/// `--dtype bf16` trains in bf16 (f32 master weights in the optimizer) and saves bf16 weights; a bad dtype
/// names itself and the forms.
#[test]
fn bf16_checkpoints_and_a_bad_dtype() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ckpt");
    let o = out.to_str().expect("utf-8 path");
    run_ok(&["--dtype", "bf16", "model", "init", "--preset", "micro", "--out", o]);
    let bytes = std::fs::read(out.join("model.safetensors")).expect("weights");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    let dtypes: std::collections::BTreeSet<&str> = header
        .as_object()
        .expect("map")
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, t)| t["dtype"].as_str())
        .collect();
    assert_eq!(dtypes, ["BF16"].into_iter().collect(), "every weight in bf16");
    let e = run_err(&["--dtype", "fp8", "model", "init", "--preset", "micro", "--out", o]);
    assert!(e.contains("fp8") && e.contains("auto, f32, bf16 or f16"), "{e}");
}
