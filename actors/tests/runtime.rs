//! The streaming stage-4 runtime in-process, on a random-init tiny model: `2gen-1learn` trains for a few
//! updates, is driven through its HTTP control endpoint (scale to 3 generators, swap the reward policy,
//! refuse bad requests), survives a generator that panics mid-batch, and stops cleanly; then the books
//! balance, the swap applied from one scoring on, and the policy version moved. A second test runs the
//! binary with `--topology`, stops it with SIGINT, and resumes.

phi4r_e2e::use_binary!();
use phi4r_actors::control::{self, ControlInfo};
use phi4r_actors::runtime::{Runtime, RuntimeHandle, RuntimeSetup, Status};
use phi4r_actors::topology::Topology;
use phi4r_learner::{Learner, StageConfig};
use phi4r_model::TrainableModel;
use std::path::Path;
use std::time::Duration;

const CONFIG: &str = r#"
stage = "rl"
seq_len = 160
micro_batch = 8
lr = 1e-5
max_steps = 1000
checkpoint_every = 1000

[rl]
group_size = 4
prompts_per_step = 2
max_new_tokens = 12
kl_coef = 0.0
max_staleness = 1
# A random-init model's completions all run to the limit: train them (the default masks them).
overlong = { kind = "off" }

[rl.balance]
batch_groups = 2
max_pending_groups = 8
"#;

fn setup(dir: &Path) -> (String, String) {
    phi4r_e2e::rl_fixture(bin(), dir)
}

fn runtime_setup(init: &str, prompts: &str, out: &Path, topology: &str) -> RuntimeSetup {
    runtime_setup_with(CONFIG, init, prompts, out, topology)
}

fn runtime_setup_with(config: &str, init: &str, prompts: &str, out: &Path, topology: &str) -> RuntimeSetup {
    let cfg = StageConfig::from_toml_str(config, Path::new("test.toml"), None).expect("config");
    let dev = candle_core::Device::Cpu;
    let model = TrainableModel::load(Path::new(init), candle_core::DType::F32, &dev).expect("model");
    let tokenizer = phi4r_model::load_tokenizer(Path::new(init), model.model.config()).expect("tok").expect("tok");
    let (items, _) =
        phi4r_actors::cli::stage::rl::load_prompts(Path::new(prompts), &cfg, &tokenizer, false).expect("prompts");
    let source = phi4r_replay::PromptSource::new(items).expect("source");
    let stop = phi4r_data::ChatTemplate::default().stop_ids(&tokenizer);
    let sampler = phi4r_replay::GroupSampler::new(tokenizer.clone(), stop, phi4r_verifier::Verifier::default(), 64)
        .expect("sampler");
    let learner = Learner::new(model, cfg, 1000).expect("learner").with_tokenizer(tokenizer);
    RuntimeSetup::real(
        Topology::parse(topology).expect("topology"),
        2,
        learner,
        source,
        sampler,
        out.to_path_buf(),
        None,
        indicatif::ProgressBar::hidden(),
    )
    .expect("setup")
}

/// Polls `status` until `ok` holds (fails after two minutes: a hang, not a timing goal).
async fn wait_for(run: &RuntimeHandle, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = run.status().await.expect("status");
        if ok(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP request to the control endpoint, off the async threads.
async fn http(info: &ControlInfo, method: &'static str, path: &'static str, body: &str) -> (u16, serde_json::Value) {
    let (info, body) = (info.clone(), body.to_string());
    let (code, text) =
        tokio::task::spawn_blocking(move || phi4r_actors::cli::ctl::request(&info, method, path, &body).expect("http"))
            .await
            .expect("join");
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

#[test]
fn in_flight_weight_updates_switch_mid_sequence_and_lower_the_token_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (init, prompts) = setup(dir.path());
    let out = dir.path().join("run");
    let config = CONFIG
        .replace("max_staleness = 1\n", "max_staleness = 1\nweight_sync = \"in_flight\"\n")
        .replace("max_new_tokens = 12", "max_new_tokens = 32");
    assert!(config.contains("in_flight"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    rt.block_on(async {
        let run =
            Runtime::start(runtime_setup_with(&config, &init, &prompts, &out, "2gen-1learn")).await.expect("start");
        let h = run.handle();
        let s = wait_for(&h, "a mid-sequence switch and 3 updates", |s| {
            s.switched_completions > 0 && s.policy_version >= 3
        })
        .await;
        assert!(s.switched_completions <= s.completions, "{s:#?}");
        h.stop().expect("stop");
        let summary = run.wait().await.expect("the run ends cleanly");
        assert!(summary.books.balanced(), "{:?}", summary.books);
        assert_eq!(summary.books.in_flight, 0);
        assert!(summary.max_policy_lag <= 1, "staleness is judged on the first token: {summary:?}");
        assert!(
            summary.mean_token_lag <= summary.mean_token_lag_at_start,
            "tokens sampled after a switch are fresher than their completion's first token: {summary:?}"
        );
        assert_eq!(
            summary.switched_completions > 0,
            summary.mean_token_lag < summary.mean_token_lag_at_start,
            "{summary:?}"
        );
    });
}

#[test]
fn a_streamed_run_scales_swaps_survives_a_generator_panic_and_keeps_its_books() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (init, prompts) = setup(dir.path());
    let out = dir.path().join("run");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    rt.block_on(async {
        let run = Runtime::start(runtime_setup(&init, &prompts, &out, "2gen-1learn")).await.expect("start");
        let h = run.handle();
        let server = control::serve(h.clone(), "127.0.0.1:0".parse().expect("addr"), &out).await.expect("serve");
        let info = ControlInfo::read(&out).expect("control.json");
        assert_eq!(info.addr, server.info.addr);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("control.json")).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "control.json is private");
        }

        let s = wait_for(&h, "a first update", |s| s.policy_version >= 1).await;
        assert_eq!(s.actors.iter().filter(|a| a.role == "generator").count(), 2, "{s:#?}");
        // Every actor says what it is doing; the learner and the generators in their own words.
        let state_of =
            |role: &str| s.actors.iter().filter(|a| a.role == role).map(|a| a.state.clone()).collect::<Vec<_>>();
        assert!(
            state_of("learner")
                .iter()
                .all(|st| ["waiting for a batch", "training", "checkpointing"].contains(&st.as_str())),
            "{s:#?}"
        );
        assert!(
            state_of("generator")
                .iter()
                .all(|st| ["leasing", "sampling", "handing over", "idle"].contains(&st.as_str())),
            "{s:#?}"
        );

        // Bad requests change nothing.
        let bad_token = ControlInfo { token: "nope".into(), ..info.clone() };
        assert_eq!(http(&bad_token, "POST", "/pause", "").await.0, 401);
        let (code, body) = http(&info, "POST", "/reward-policy", "binery").await;
        assert_eq!(code, 400, "{body}");
        assert!(body["error"].as_str().expect("error").contains("binary, zero_one"), "{body}");
        assert_eq!(http(&info, "POST", "/scale", r#"{"role":"learners","n":2}"#).await.0, 400);
        assert_eq!(http(&info, "POST", "/frobnicate", "").await.0, 404);
        let s = h.status().await.expect("status");
        assert_eq!((s.reward_policy_id, s.state.as_str()), (0, "running"));

        // Scale to 3 generators while training.
        let (code, body) = http(&info, "POST", "/scale", r#"{"role":"generators","n":3}"#).await;
        assert_eq!((code, body["generators"].as_u64()), (200, Some(3)), "{body}");
        wait_for(&h, "3 generators", |s| s.actors.iter().filter(|a| a.role == "generator").count() == 3).await;

        // Swap the reward policy on every verifier.
        let (code, body) = http(&info, "POST", "/reward-policy", "zero_one").await;
        assert_eq!((code, body["reward_policy_id"].as_u64()), (200, Some(1)), "{body}");

        // A generator panics mid-batch (after sampling, before handing over): it is restarted and its
        // prompts are re-queued; training goes on.
        h.shared().panic_next_batch.store(true, std::sync::atomic::Ordering::SeqCst);
        let s = wait_for(&h, "a restart", |s| s.actors.iter().any(|a| a.role == "generator" && a.restarts > 0)).await;
        assert!(s.books.requeued > 0, "the panicked batch's prompts are re-queued: {s:#?}");
        let v = s.policy_version;
        wait_for(&h, "updates after the fault", |s| s.policy_version >= v + 2).await;

        let (code, _) = http(&info, "POST", "/checkpoint", "").await;
        assert_eq!(code, 200);
        let (code, metrics) = http(&info, "GET", "/metrics", "").await;
        assert_eq!(code, 200);
        let metrics = metrics.as_str().expect("text").to_string();
        for name in ["phi4r_learner_steps_total", "phi4r_generator_completions_total", "phi4r_rl_policy_lag"] {
            assert!(metrics.contains(name), "/metrics lacks {name}");
        }
        check_exposition(&metrics);

        let (code, _) = http(&info, "POST", "/stop", "").await;
        assert_eq!(code, 200);
        let summary = run.wait().await.expect("the run ends cleanly");
        server.shutdown();

        let b = &summary.books;
        assert!(b.balanced(), "issued = scored + requeued + dropped + in flight: {b:?}");
        assert_eq!(b.in_flight, 0, "{b:?}");
        assert!(b.requeued > 0 && summary.restarts >= 1, "{summary:?}");
        assert!(summary.steps >= 3, "{summary:?}");
        assert!(summary.max_policy_lag <= 1, "max_staleness = 1: {summary:?}");
        let g = &summary.groups;
        let dropped: u64 = g.dropped.values().sum();
        assert_eq!(g.seen, g.trained + g.pending + g.buffered + dropped, "every group's fate is known: {g:?}");
        let ranges = h.shared().reward_policy_ranges();
        let (old, new) = (ranges[&0], ranges[&1]);
        assert!(old.1 < new.0, "every scoring before the swap used policy 0, every one after it policy 1: {ranges:?}");
        assert!(summary.checkpoint.is_some());
    });
}

#[cfg(unix)]
#[test]
fn sigint_checkpoints_and_resume_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (init, prompts) = setup(dir.path());
    let cfg = dir.path().join("rl.toml");
    std::fs::write(&cfg, CONFIG.replace("max_steps = 1000", "max_steps = 6")).expect("config");
    let out = dir.path().join("run");
    let args = |topology: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--device",
            "cpu",
            "--threads",
            "2",
            "stage",
            "rl",
            "--topology",
            topology,
            "--config",
            cfg.to_str().expect("utf-8"),
            "--prompts",
            &prompts,
            "--init",
            &init,
            "--out",
            out.to_str().expect("utf-8"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let argv = args("2gen-1learn", &[]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let child = phi4r_e2e::command(bin(), &argv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for a first metrics line, then SIGINT.
    let metrics = out.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(true, |t| t.lines().count() < 1) {
        assert!(std::time::Instant::now() < deadline, "no step within two minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "SIGINT ends cleanly: {}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary");
    let steps = summary["steps"].as_u64().expect("steps");
    assert!((1..6).contains(&steps), "{summary}");
    assert!(summary["books"]["in_flight"] == 0, "{summary}");
    let latest = std::fs::read_to_string(out.join("latest")).expect("a checkpoint was written");
    assert_eq!(latest.trim(), format!("step-{steps:08}"));

    // The rest of the run with two data-parallel learner replicas (M = 2) from the same checkpoint.
    let argv = args("2gen-2learn", &["--resume"]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let summary: serde_json::Value = serde_json::from_str(&run_ok(&argv)).expect("summary");
    assert_eq!(summary["steps"].as_u64(), Some(6 - steps), "resume runs the remaining steps: {summary}");
    assert!(summary["groups"]["trained"].as_u64() > Some(0), "the replicas trained: {summary}");
    assert_eq!(std::fs::read_to_string(out.join("latest")).expect("latest").trim(), "step-00000006");
}

/// Every family of a `/metrics` scrape has help text; with `PHI4R_PROMTOOL` set (`.ci/run` sets it),
/// `promtool check metrics` passes on the scrape.
fn check_exposition(scrape: &str) {
    for line in scrape.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("# TYPE name kind");
        assert!(scrape.contains(&format!("# HELP {name} ")), "{name} has no # HELP line");
    }
    if let Some(promtool) = std::env::var_os("PHI4R_PROMTOOL") {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("PHI4R_PROMTOOL runs");
        child.stdin.take().expect("stdin").write_all(scrape.as_bytes()).expect("write the scrape");
        let out = child.wait_with_output().expect("promtool ends");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
