//! `phi4r-actors stage mid|sft|dpo|rl`: one stage of the recipe as a learner actor fed by a dataset actor
//! (stages 1–3), or, for rl, a learner actor that samples, verifies and balances its own groups each step
//! (synchronous on-policy GRPO; `crate::rl_learner`).

pub mod rl;

use crate::compute::Compute;
use crate::dataset::DatasetActor;
use crate::learner::{LearnerActor, LearnerArgs};
use crate::messages::{DatasetMsg, LearnerMsg};
use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use phi4r_data::ChatTemplate;
use phi4r_learner::{
    latest_checkpoint, resume_changes, Change, Learner, RlAlgo, RunInputs, Stage, StageConfig, StageFeed,
};
use phi4r_model::TrainableModel;
use ractor::Actor;
use std::path::PathBuf;

/// The stage to run.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StageName {
    /// Stage 1: mid-training on packed rollouts.
    Mid,
    /// Stage 2: SFT, unpacked.
    Sft,
    /// Stage 3: rollout DPO against a frozen reference.
    Dpo,
    /// Stage 4: RLVR with GRPO on sampled, verified groups (needs --prompts instead of --data).
    Rl,
}

/// Stage 4's policy-gradient algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlgoName {
    /// GRPO: group-relative advantages, no critic.
    Grpo,
    /// PPO: a value head and GAE.
    Ppo,
}

#[derive(Debug, Args)]
pub struct StageArgs {
    /// Which stage.
    #[arg(value_enum)]
    stage: StageName,
    /// Stage config (TOML; default: configs/stages/STAGE.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A profile of the config to apply (e.g. `cpu`).
    #[arg(long)]
    profile: Option<String>,
    /// Training data: {"prompt","completion"} JSONL (mid, sft) or {"prompt","chosen","rejected"} (dpo).
    #[arg(long, required_unless_present = "prompts")]
    data: Option<PathBuf>,
    /// Stage rl: {"problem","answer"[,"tier"]} JSONL to draw prompts from (e.g. `data synth`'s
    /// stage4.jsonl).
    #[arg(long, conflicts_with = "data")]
    prompts: Option<PathBuf>,
    /// Checkpoint to start from (HF layout with tokenizer.json).
    #[arg(long)]
    init: PathBuf,
    /// Output folder: step checkpoints, metrics.jsonl, summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Continue from the latest checkpoint in --out. Refused when the effective config (bookkeeping keys
    /// aside) or the data, tokenizer or reference differ from the checkpoint's; each difference is named.
    #[arg(long)]
    resume: bool,
    /// With --resume: continue even though the config or inputs differ from the checkpoint's (the
    /// differences are printed; the result is no longer the straight run's).
    #[arg(long, requires = "resume")]
    force_resume: bool,
    /// Frozen reference model for dpo and rl (default: --init).
    #[arg(long = "ref")]
    reference: Option<PathBuf>,
    /// Skip malformed data lines with a counted warning instead of failing.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Override the config's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's max_steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Override the config's learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Override the config's batch_size (sequences per optimizer step).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the config's micro_batch (sequences per forward/backward; divides batch_size).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Override the config's seq_len (stage mid: packed row length; sft and dpo: truncation; rl: prompt
    /// + completion).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Stage rl: the algorithm. `ppo` replaces the config's `rl.algo` with PPO's defaults (value head,
    /// GAE γ = λ = 1, value clip 0.5, value lr 1e-3) unless the config already chose PPO; `grpo` keeps a
    /// GRPO config as is.
    #[arg(long, value_enum)]
    algo: Option<AlgoName>,
    /// Checkpoint and exit after this many steps (the schedule is unchanged; `--resume` continues).
    #[arg(long)]
    stop_after: Option<u64>,
    /// Serve Prometheus metrics on this loopback address (e.g. 127.0.0.1:9100). With --topology, the
    /// control endpoint serves them at /metrics instead.
    #[arg(long, conflicts_with = "topology")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Stage rl: stream rollouts through the actor runtime with this topology (e.g. 4gen-1learn, or a
    /// TOML file); without it, each step samples then trains, synchronously and reproducibly.
    #[arg(long)]
    topology: Option<crate::topology::Topology>,
    /// With --topology: the control endpoint's address (`ctl`, /metrics); port 0 picks a free port. Off
    /// loopback, every request needs the token of control.json.
    #[arg(long, default_value = "127.0.0.1:0", requires = "topology")]
    control_addr: std::net::SocketAddr,
    #[command(flatten)]
    cluster: ClusterFlags,
}

/// Stage 4's scale-out flags (the main job takes them too and hands them to its stage 4).
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterFlags {
    /// With --topology: accept generator nodes (`phi4r-actors node --join`) on this address, e.g.
    /// 127.0.0.1:7400 (a private address for other machines). The cookie authenticates; add
    /// --cluster-tls-cert/--cluster-tls-key to encrypt.
    #[arg(long, requires_all = ["topology", "cookie_file"])]
    pub cluster_listen: Option<std::net::SocketAddr>,
    /// The cluster's shared secret: the first line of this file (every node uses the same file).
    #[arg(long, requires = "cluster_listen")]
    pub cookie_file: Option<PathBuf>,
    /// TLS on cluster links: the learner's certificate chain (PEM); nodes then need `--tls-ca`.
    #[arg(long, requires_all = ["cluster_listen", "cluster_tls_key"])]
    pub cluster_tls_cert: Option<PathBuf>,
    /// The private key of --cluster-tls-cert (PEM).
    #[arg(long, requires = "cluster_tls_cert")]
    pub cluster_tls_key: Option<PathBuf>,
}

impl ClusterFlags {
    /// The flags as command-line arguments (the main job passes them to `stage rl`).
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![];
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(value) = value {
                v.extend([flag.to_string(), value]);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        push("--cluster-listen", self.cluster_listen.map(|a| a.to_string()));
        push("--cookie-file", path(&self.cookie_file));
        push("--cluster-tls-cert", path(&self.cluster_tls_cert));
        push("--cluster-tls-key", path(&self.cluster_tls_key));
        v
    }
}

impl From<StageArgs> for rl::RlArgs {
    fn from(a: StageArgs) -> Self {
        rl::RlArgs {
            prompts: a.prompts,
            init: a.init,
            out: a.out,
            resume: a.resume,
            force_resume: a.force_resume,
            reference: a.reference,
            skip_bad_lines: a.skip_bad_lines,
            stop_after: a.stop_after,
            metrics_addr: a.metrics_addr,
            topology: a.topology,
            control_addr: a.control_addr,
            cluster: a.cluster,
        }
    }
}

/// Serves Prometheus metrics on `addr` (loopback only), inside the stage's tokio runtime.
pub(crate) fn serve_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        anyhow::ensure!(addr.ip().is_loopback(), "--metrics-addr must be a loopback address");
        metrics_exporter_prometheus::PrometheusBuilder::new().with_http_listener(addr).install()?;
        crate::metrics_catalog::describe();
    }
    Ok(())
}

/// The stage's progress bar over `total` steps, starting at `start` (hidden when stderr is not a
/// terminal).
pub(crate) fn stage_progress(prefix: &'static str, total: u64, start: u64) -> anyhow::Result<ProgressBar> {
    let progress = ProgressBar::new(total);
    progress.set_style(ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
    )?);
    progress.set_prefix(prefix);
    progress.set_position(start);
    Ok(progress)
}

/// After a resume from the checkpoint at `step`, drops the `metrics.jsonl` lines of later steps: they
/// were lost with the process and are about to be run again, so each step keeps exactly one line.
pub(crate) fn trim_metrics(out: &std::path::Path, step: u64) -> anyhow::Result<()> {
    let path = out.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let keep = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_u64()).is_none_or(|s| s <= step)
    };
    let kept: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    if kept.len() < text.lines().count() {
        let mut body = kept.join("\n");
        body.push('\n');
        phi4r_model::write_atomic(&path, body.as_bytes())?;
    }
    Ok(())
}

/// With `--resume`, the checkpoint to continue from, checked against this run's effective config and
/// inputs ([`resume_changes`]): a difference is refused with each key named, unless `force`, which prints
/// and returns them. Without a checkpoint in `out`, says so and starts fresh.
pub(crate) fn guarded_resume(
    out: &std::path::Path,
    resume: bool,
    force: bool,
    cfg: &StageConfig,
    inputs: &RunInputs,
) -> anyhow::Result<(Option<PathBuf>, Vec<Change>)> {
    if !resume {
        return Ok((None, vec![]));
    }
    let Some(dir) = latest_checkpoint(out)? else {
        eprintln!("--resume: no checkpoint in {}, starting fresh", out.display());
        return Ok((None, vec![]));
    };
    let changes = resume_changes(&dir, cfg, inputs)?;
    if !changes.is_empty() {
        if !force {
            return Err(phi4r_learner::Error::ResumeMismatch { dir, changes }.into());
        }
        for c in &changes {
            eprintln!("--force-resume: {c}");
        }
    }
    Ok((Some(dir), changes))
}

pub fn run(a: StageArgs, threads: usize) -> anyhow::Result<()> {
    let stage = match a.stage {
        StageName::Mid => Stage::Mid,
        StageName::Sft => Stage::Sft,
        StageName::Dpo => Stage::Dpo,
        StageName::Rl => Stage::Rl,
    };
    let config_path =
        a.config.clone().unwrap_or_else(|| PathBuf::from(format!("configs/stages/{}.toml", stage.name())));
    let mut cfg = StageConfig::load(&config_path, a.profile.as_deref())?;
    if cfg.stage != stage {
        anyhow::bail!("{}: key `stage` is {:?}, but the command runs {:?}", config_path.display(), cfg.stage, stage);
    }
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if a.max_steps.is_some() {
        cfg.max_steps = a.max_steps;
    }
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    if let Some(b) = a.batch_size {
        cfg.batch_size = b;
    }
    if let Some(m) = a.micro_batch {
        cfg.micro_batch = m;
    }
    if let Some(l) = a.seq_len {
        cfg.seq_len = l;
    }
    match (a.algo, cfg.rl.algo) {
        (Some(AlgoName::Ppo), RlAlgo::Grpo { .. }) => cfg.rl.algo = RlAlgo::ppo(),
        (Some(AlgoName::Grpo), RlAlgo::Ppo { .. }) => cfg.rl.algo = RlAlgo::default(),
        _ => {}
    }
    if a.algo.is_some() && stage != Stage::Rl {
        anyhow::bail!("--algo is for stage rl");
    }
    cfg.validate()?;
    if stage == Stage::Rl {
        return rl::run(a.into(), cfg, threads);
    }
    let data = a.data.clone().with_context(|| format!("stage {} needs --data", stage.name()))?;
    let dev = crate::cli::device()?;
    let dtype = crate::cli::dtype(&dev);
    let init = TrainableModel::load(&a.init, dtype, &dev).with_context(|| format!("--init {}", a.init.display()))?;
    let tokenizer = phi4r_model::load_tokenizer(&a.init, init.model.config())?
        .with_context(|| format!("--init {} has no tokenizer.json", a.init.display()))?;
    let (feed, report) = StageFeed::load(&data, &cfg, &tokenizer, &ChatTemplate::default(), a.skip_bad_lines)
        .with_context(|| format!("--data {}", data.display()))?;
    eprintln!("{}", serde_json::json!({"stage": stage.name(), "data": report}));
    if let Some(w) = report.overlong_warning(stage, cfg.seq_len) {
        eprintln!("warning: --data {}: {w}", data.display());
    }
    let total = cfg.total_steps(report.items_per_epoch);
    let reference = (stage == Stage::Dpo).then(|| a.reference.clone().unwrap_or_else(|| a.init.clone()));
    let reference_weights = reference.as_ref().map(|r| r.join(phi4r_model::WEIGHTS_FILE));
    let inputs = RunInputs::fingerprint(&[data.as_path()], &tokenizer, reference_weights.as_deref())?
        .with_items_sha256(feed.items_sha256());
    let (resumed, forced) = guarded_resume(&a.out, a.resume, a.force_resume, &cfg, &inputs)?;
    let mut learner = match &resumed {
        Some(path) => Learner::resume(path, cfg.clone(), dtype, &dev)?,
        None => Learner::new(init, cfg.clone(), total)?.with_tokenizer(tokenizer),
    }
    .with_inputs(inputs);
    if forced.iter().any(|c| c.key == "data" || c.key == "reference") {
        // Cached reference log-probs are keyed by pair index: stale for other pairs or another reference.
        learner.forget_reference_cache();
    }
    if let Some(rpath) = &reference {
        learner = learner.with_reference(phi4r_model::load_frozen(rpath, dtype, &dev)?);
    }
    let cursor = learner.state().cursor;
    let start_step = learner.state().step;
    if resumed.is_some() {
        trim_metrics(&a.out, start_step)?;
    }
    // The schedule's length is the checkpoint's (a forced resume with new max_steps/epochs keeps it).
    let total = learner.state().total_steps;
    let finished = learner.is_finished();
    let out_dir = a.out.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let summary = rt.block_on(async move {
        serve_metrics(a.metrics_addr)?;
        let progress = stage_progress(stage.name(), total, start_step)?;
        let compute = Compute::spawn(learner, threads)?;
        let (dataset, dataset_handle) = Actor::spawn(None, DatasetActor, feed).await?;
        dataset.send_message(DatasetMsg::Seek(cursor))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let args = LearnerArgs {
            compute,
            dataset: dataset.clone(),
            out: a.out.clone(),
            progress,
            done: tx,
            stop_after: a.stop_after,
        };
        let (learner, learner_handle) = Actor::spawn(None, LearnerActor, args).await?;
        // A finished run resumed again only rewrites its final checkpoint: no step past the schedule.
        learner.send_message(if finished { LearnerMsg::Stop } else { LearnerMsg::Step })?;
        let result = rx.await.map_err(|_| anyhow::anyhow!("the learner actor stopped without a result"))?;
        learner_handle.await?;
        dataset.stop(None);
        dataset_handle.await?;
        result.map_err(|e| anyhow::anyhow!("stage {} stopped: {e}", stage.name()))
    })?;
    // The data report (records, documents cut or truncated to seq_len, packing) goes with the summary.
    let mut summary = serde_json::to_value(&summary)?;
    summary["data"] = serde_json::to_value(&report)?;
    write_summary(&out_dir, &summary)
}

/// Writes a stage's summary to `OUT/summary.json` (atomically) and prints it on stdout.
pub(crate) fn write_summary(out_dir: &std::path::Path, summary: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summary)?;
    phi4r_model::write_atomic(&out_dir.join("summary.json"), text.as_bytes())?;
    println!("{text}");
    Ok(())
}
