//! `phi4r-actors stage rl`: stage 4 (GRPO) as the stage-4 learner actor over a compute thread, each step
//! synchronous and on-policy ([`phi4r_learner::rl::rl_sync_step`]). Loads the prompts, the policy, the
//! frozen reference and the resume guard, then hands over to the stage-4 learner actor (`rl_learner`), or with `--topology` to [`crate::runtime`].

use crate::compute::Compute;
use crate::generator::{GeneratorActor, GeneratorSetup};
use crate::messages::LearnerMsg;
use crate::rl_learner::{RlLearnerActor, RlLearnerArgs};
use anyhow::Context;
use phi4r_data::{prompt_ids, ChatTemplate, JsonlReader, ProblemAnswer};
use phi4r_learner::{Learner, RunInputs, StageConfig};
use phi4r_model::TrainableModel;
use phi4r_replay::GroupSampler;
use phi4r_replay::{Prompt, PromptId, PromptSource};
use ractor::Actor;
use std::path::PathBuf;

/// Rows per generation batch (whole groups at a time).
pub const GENERATION_ROWS: usize = 64;

/// The flags stage rl reads (the rest of `stage`'s are for stages 1–3).
pub struct RlArgs {
    pub prompts: Option<PathBuf>,
    pub init: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    pub force_resume: bool,
    pub reference: Option<PathBuf>,
    pub skip_bad_lines: bool,
    pub stop_after: Option<u64>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub topology: Option<crate::topology::Topology>,
    pub control_addr: std::net::SocketAddr,
    /// `--cluster-listen`, `--cookie-file` and TLS.
    pub cluster: super::ClusterFlags,
}

/// The prompts of `path`, chat-templated and tokenized; a prompt that leaves no room for
/// `max_new_tokens` in `seq_len` is skipped and counted. Ids are line numbers (1-based), so the too-easy
/// memory stays valid across runs over the same file.
pub fn load_prompts(
    path: &std::path::Path,
    cfg: &StageConfig,
    tokenizer: &phi4r_model::Tokenizer,
    skip_bad_lines: bool,
) -> anyhow::Result<(Vec<Prompt>, usize)> {
    let template = ChatTemplate::default();
    let mut reader = JsonlReader::<ProblemAnswer>::open(path)?.skip_bad_lines(skip_bad_lines);
    let (mut prompts, mut too_long) = (Vec::new(), 0);
    for (i, rec) in reader.by_ref().enumerate() {
        let p = rec?;
        let ids = prompt_ids(&template, tokenizer, &p.problem)?;
        if ids.len() + cfg.rl.max_new_tokens > cfg.seq_len {
            too_long += 1;
            continue;
        }
        prompts.push(Prompt { id: PromptId(i as u64 + 1), ids, gold: p.answer, tier: p.tier.unwrap_or(0) });
    }
    Ok((prompts, too_long))
}

pub fn run(a: RlArgs, cfg: StageConfig, threads: usize) -> anyhow::Result<()> {
    let prompts_path = a.prompts.clone().context("stage rl needs --prompts FILE ({\"problem\",\"answer\"} JSONL)")?;
    #[cfg(not(feature = "cluster"))]
    anyhow::ensure!(
        a.cluster.cluster_listen.is_none(),
        "--cluster-listen: this build has no cluster layer (build with the default `cluster` feature)"
    );
    // A topology file may place the learner and the generators on devices of their own; each falls back
    // to --device.
    let devices = a.topology.as_ref().map(|t| t.devices).unwrap_or_default();
    let open = |spec: Option<phi4r_model::DeviceSpec>, key: &str| -> anyhow::Result<Option<candle_core::Device>> {
        spec.map(|s| s.open().with_context(|| format!("--topology: devices.{key}"))).transpose()
    };
    let dev = match open(devices.learner, "learner")? {
        Some(d) => d,
        None => crate::cli::device()?,
    };
    let generator_device = open(devices.generator, "generator")?.filter(|g| !g.same_device(&dev));
    let dtype = crate::cli::dtype(&dev);
    let init = TrainableModel::load(&a.init, dtype, &dev).with_context(|| format!("--init {}", a.init.display()))?;
    let tokenizer = phi4r_model::load_tokenizer(&a.init, init.model.config())?
        .with_context(|| format!("--init {} has no tokenizer.json", a.init.display()))?;
    // What a cluster node needs to rebuild the model and the sampler.
    #[cfg(feature = "cluster")]
    let (config_json, tokenizer_json) = (init.model.config().to_json_value().to_string(), tokenizer.to_json()?);
    let (prompts, too_long) = load_prompts(&prompts_path, &cfg, &tokenizer, a.skip_bad_lines)
        .with_context(|| format!("--prompts {}", prompts_path.display()))?;
    eprintln!("{}", serde_json::json!({"stage": "rl", "prompts": prompts.len(), "too_long": too_long}));
    let source = PromptSource::new(prompts).with_context(|| format!("--prompts {}", prompts_path.display()))?;
    let stop_ids = ChatTemplate::default().stop_ids(&tokenizer);
    let sampler = GroupSampler::new(tokenizer.clone(), stop_ids, phi4r_verifier::Verifier::default(), GENERATION_ROWS)?;
    let reference = a.reference.clone().unwrap_or_else(|| a.init.clone());
    let reference_weights = reference.join(phi4r_model::WEIGHTS_FILE);
    let inputs = RunInputs::fingerprint(&[prompts_path.as_path()], &tokenizer, Some(&reference_weights))?;
    let (resumed, forced) = super::guarded_resume(&a.out, a.resume, a.force_resume, &cfg, &inputs)?;
    let total = cfg.max_steps.context("stage rl needs max_steps (the number of steps)")?;
    let mut learner = match &resumed {
        Some(path) => Learner::resume(path, cfg.clone(), dtype, &dev)?,
        None => {
            let hidden = init.model.config().hidden_size;
            let learner = Learner::new(init, cfg.clone(), total)?.with_tokenizer(tokenizer);
            // PPO from a checkpoint that has a value head (an earlier PPO run) starts from it.
            match phi4r_learner::Critic::load(&a.init, hidden, &dev)? {
                Some(critic) => learner.with_critic(critic),
                None => learner,
            }
        }
    }
    .with_inputs(inputs);
    if forced.iter().any(|c| c.key == "data") {
        // The too-easy memory holds record indices of the old prompts file.
        learner.record_easy(phi4r_replay::EasyMemory::new());
    }
    if cfg.rl.kl_coef > 0.0 {
        // The KL anchor; with kl_coef = 0 no reference pass runs, so none is loaded.
        let frozen = phi4r_model::load_frozen(&reference, dtype, &dev)
            .with_context(|| format!("--ref {}", reference.display()))?;
        learner = learner.with_reference(frozen);
    }
    let start_step = learner.state().step;
    if resumed.is_some() {
        super::trim_metrics(&a.out, start_step)?;
    }
    let total = learner.state().total_steps;
    let out_dir = a.out.clone();
    if let Some(topology) = a.topology.clone() {
        let progress = super::stage_progress("rl", total, start_step)?;
        let mut setup = crate::runtime::RuntimeSetup::real(
            topology,
            threads,
            learner,
            source,
            sampler,
            a.out.clone(),
            a.stop_after,
            progress,
        )?;
        setup.generator_device = generator_device;
        #[cfg(feature = "cluster")]
        let cluster = match (&a.cluster.cluster_listen, &a.cluster.cookie_file) {
            (Some(listen), Some(cookie)) => Some(crate::cluster::ClusterConfig {
                listen: *listen,
                cookie: crate::cluster::read_cookie(cookie)?,
                tls: match (&a.cluster.cluster_tls_cert, &a.cluster.cluster_tls_key) {
                    (Some(cert), Some(key)) => Some(crate::cluster::tls::acceptor(cert, key)?),
                    _ => None,
                },
                config_json: config_json.clone(),
                tokenizer_json: tokenizer_json.clone(),
                generation_rows: GENERATION_ROWS,
            }),
            _ => None,
        };
        #[cfg(not(feature = "cluster"))]
        let cluster = None;
        let summary = stream(setup, start_step >= total, a.control_addr, cluster)?;
        return super::write_summary(&out_dir, &summary);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let summary = rt.block_on(async move {
        super::serve_metrics(a.metrics_addr)?;
        let progress = super::stage_progress("rl", total, start_step)?;
        // The generator and the learner take turns (synchronous on-policy), so each gets every thread.
        let compute = Compute::spawn(learner, threads)?;
        let pad_id = sampler.pad_id();
        let gen_compute =
            Compute::spawn_role("generator", GeneratorSetup { source, sampler, config: cfg.clone() }, threads)?;
        let (generator, generator_handle) = Actor::spawn(None, GeneratorActor, gen_compute).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let args = RlLearnerArgs {
            compute,
            generator: generator.clone(),
            pad_id,
            out: a.out.clone(),
            progress,
            done: tx,
            stop_after: a.stop_after,
        };
        let (learner, handle) = Actor::spawn(None, RlLearnerActor, args).await?;
        if start_step >= total {
            learner.send_message(LearnerMsg::Stop)?;
        } else {
            learner.send_message(LearnerMsg::Step)?;
        }
        let result = rx.await.map_err(|_| anyhow::anyhow!("the rl learner actor stopped without a result"))?;
        handle.await?;
        generator.stop(None);
        generator_handle.await?;
        result.map_err(|e| anyhow::anyhow!("stage rl stopped: {e}"))
    })?;
    super::write_summary(&out_dir, &summary)
}

/// Runs stage 4 through the streaming runtime with a control endpoint on `control_addr`; Ctrl-C or
/// SIGTERM checkpoints and ends the run cleanly.
fn stream(
    setup: crate::runtime::RuntimeSetup,
    already_done: bool,
    control_addr: std::net::SocketAddr,
    cluster: Option<ClusterConfig>,
) -> anyhow::Result<crate::runtime::StreamSummary> {
    let out = setup.out.clone();
    #[cfg(feature = "cluster")]
    let params = crate::runtime::SampleParams::from_config(&setup.config);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let run = crate::runtime::Runtime::start(setup).await?;
        let handle = run.handle();
        if already_done {
            handle.stop()?;
        }
        let control = crate::control::serve(handle.clone(), control_addr, &out).await?;
        eprintln!(
            "{}",
            serde_json::json!({"control": control.info.addr, "control_file": out.join(crate::control::CONTROL_FILE)})
        );
        #[cfg(feature = "cluster")]
        let cluster = match cluster {
            Some(cfg) => {
                let listen = cfg.listen;
                let c = crate::cluster::serve(&handle, cfg, params).await?;
                eprintln!("{}", serde_json::json!({"cluster_listen": listen}));
                Some(c)
            }
            None => None,
        };
        #[cfg(not(feature = "cluster"))]
        let _ = cluster;
        let signals = handle.clone();
        let watcher = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::warn!("signal received: checkpointing and stopping after the step in progress");
            let _ = signals.stop();
        });
        let summary = run.wait().await;
        watcher.abort();
        #[cfg(feature = "cluster")]
        if let Some(c) = cluster {
            c.shutdown().await;
        }
        control.shutdown();
        summary
    })
}

#[cfg(feature = "cluster")]
use crate::cluster::ClusterConfig;
/// Without the cluster layer, `--cluster-listen` is refused before anything starts.
#[cfg(not(feature = "cluster"))]
type ClusterConfig = std::convert::Infallible;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
