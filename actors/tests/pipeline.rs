//! The main job end to end: `phi4r-actors --topology 2gen-1learn --profile quick` runs data, stages 1-4
//! (stage 4 streamed) and an evaluation after each, prints report.json (`--json`) and writes it, report.md
//! and the plots;
//! the stage-1 row beats the base row beyond its interval.

phi4r_e2e::use_binary!();

#[test]
fn the_quick_main_job_runs_every_stage_and_stage_1_beats_the_base_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let out = run_ok(&[
        "--topology",
        "2gen-1learn",
        "--profile",
        "quick",
        "--run-dir",
        run.to_str().expect("utf-8"),
        "--json",
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).expect("report.json")).expect("JSON");
    let printed: serde_json::Value = serde_json::from_str(&out).expect("--json prints report.json");
    assert_eq!(printed, report);
    let rows = report["rows"].as_array().expect("rows");
    let stages: Vec<&str> = rows.iter().map(|r| r["stage"].as_str().expect("stage")).collect();
    assert_eq!(stages, ["data", "mid", "sft", "dpo", "rl"]);
    let acc = |i: usize| rows[i]["eval"]["accuracy"].as_f64().expect("accuracy");
    let interval = |i: usize| rows[i]["eval"]["interval"].as_array().expect("interval")[1].as_f64().expect("hi");
    assert!(acc(1) > interval(0), "stage 1 ({}) must beat the base model's upper bound ({})", acc(1), interval(0));
    // Stage 1's rows hold every document whole: none is cut into pieces that train without their problem.
    let mid: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("mid/run.json")).expect("mid summary")).expect("JSON");
    assert!(mid["data"]["records"].as_u64().expect("records") > 0, "{mid}");
    assert_eq!(mid["data"]["overlong"], 0, "stage 1 cut documents: {mid}");
    let md = std::fs::read_to_string(run.join("report.md")).expect("report.md");
    assert!(md.contains("| stage | tier 1 |") && md.contains("| + RLVR |"), "{md}");
    // Stage 4's tiers are compared on the table's problems and 50 more held-out ones per tier.
    let rl_tiers: Vec<u64> =
        serde_json::from_str(&std::fs::read_to_string(run.join("rl_tiers.json")).expect("rl_tiers")).expect("JSON");
    assert_eq!(report["rl_tiers"]["tiers"], serde_json::json!(rl_tiers));
    assert_eq!(report["rl_tiers"]["delta"]["n"].as_u64(), Some(100 * rl_tiers.len() as u64), "{}", report["rl_tiers"]);
    assert!(md.contains("problems [95% paired] |"), "{md}");
    // The wall time names its machine: the same job takes ~3.5x as long on AVX2 as on AVX-512.
    let simd = report["machine"]["simd"].as_str().expect("machine.simd");
    assert!(["avx512", "avx2", "sse"].contains(&simd), "{}", report["machine"]);
    assert!(md.contains(&format!("threads, {simd}, nominal fp32 peak")), "{md}");
    // report.json's `stages`, in the shape other tools read.
    let stages = report["stages"].as_array().expect("stages");
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().expect("stage")).collect();
    assert_eq!(names, ["base", "mid", "sft", "dpo", "rl"]);
    for (s, r) in stages.iter().zip(rows) {
        assert_eq!(s["accuracy"]["overall"], r["eval"]["accuracy"], "{s}");
        assert_eq!(s["accuracy"]["1"], r["eval"]["tiers"]["1"]["accuracy"], "{s}");
    }
    // The plots exist, are PNGs, and report.md shows them.
    for f in ["accuracy", "loss", "rl"] {
        let png = std::fs::read(run.join(format!("plots/{f}.png"))).expect("plot");
        assert_eq!(&png[..4], b"\x89PNG", "{f}.png");
        assert!(md.contains(&format!("(plots/{f}.png)")), "report.md links {f}.png");
    }
    let metrics = std::fs::read_to_string(run.join("rl/metrics.jsonl")).expect("rl metrics");
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().expect("a step")).expect("JSON");
    assert!(line["temperature"].as_f64().is_some_and(|t| t > 0.0), "the sampled temperature is logged: {line}");
    let rl: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("rl/run.json")).expect("rl summary")).expect("JSON");
    assert!(rl["books"]["issued"].as_u64().expect("books") > 0, "stage 4 ran through the runtime: {rl}");
}

#[test]
fn a_subcommand_after_topology_or_nothing_at_all_is_explained() {
    let e = run_err(&[]);
    assert!(e.contains("--topology 4gen-1learn"), "{e}");
    let e = run_err(&["--topology", "2gen-1learn", "verify", "--gold", "1", "--response", "1"]);
    assert!(e.contains("main job"), "{e}");
    let e = run_err(&["--topology", "2gen-banana"]);
    assert!(e.contains("<N>gen-<M>learn"), "{e}");
    // A run folder started with another seed is refused before anything runs.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pipeline.json"),
        r#"{"topology":"2gen-1learn-1ver-1bal","profile":"quick","seed":7}"#,
    )
    .expect("write");
    let d = dir.path().to_str().expect("utf-8");
    let e = run_err(&["--topology", "2gen-1learn", "--profile", "quick", "--run-dir", d, "--resume"]);
    assert!(e.contains("was started with") && e.contains("\"seed\":7"), "{e}");
    assert!(!dir.path().join("data").exists(), "nothing ran");
}
