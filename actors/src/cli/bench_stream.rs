//! `bench rl --stream` and `bench rl --simulate`: the streaming runtime (`--topology`) measured end to end
//! — learner idle fraction, rollouts/s, policy lag — over a grid of generator counts and `max_staleness`.
//!
//! `--stream` runs the tiny model on this machine (every group kept: the filters are off, since a random
//! model's groups are all wrong). `--simulate` replaces the model by stand-ins of fixed cost (a generator
//! takes `--gen-ms` per completion, the learner `--learn-ms` per step) and runs the real actors, queues,
//! filters, books and verifier at 64 and 256 generators; a run with zero costs measures the runtime's own
//! overhead per completion.

use crate::runtime::{Runtime, RuntimeSetup, Sampling, SimSampler, SimTrainer, StreamSummary};
use crate::topology::Topology;
use anyhow::Context;
use clap::Args;
use phi4r_learner::{StageConfig, WeightSync};
use phi4r_replay::{BalanceConfig, FilterConfig, PromptSource, TemperatureSchedule};
use serde_json::{json, Value};
use std::time::Duration;

/// Flags of the streaming benchmark.
#[derive(Debug, Args, Clone)]
pub struct StreamBenchArgs {
    /// Generator counts to run [default: 1,2,4 with --stream; 16,64,256 with --simulate].
    #[arg(long, value_delimiter = ',')]
    pub generators: Option<Vec<usize>>,
    /// `max_staleness` values to run.
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 2])]
    pub staleness: Vec<u64>,
    /// --stream: when generators take new weights (`rl.weight_sync`), one run per value.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [WeightSyncArg::BetweenBatches])]
    pub weight_sync: Vec<WeightSyncArg>,
    /// Learner steps per run [default: 6 with --stream, 20 with --simulate].
    #[arg(long)]
    pub stream_steps: Option<u64>,
    /// --simulate: milliseconds per completion of a generator stand-in.
    #[arg(long, default_value_t = 10.0)]
    pub gen_ms: f64,
    /// --simulate: milliseconds per learner step of the stand-in.
    #[arg(long, default_value_t = 200.0)]
    pub learn_ms: f64,
    /// --simulate: groups per learner step.
    #[arg(long, default_value_t = 128)]
    pub sim_batch_groups: usize,
    /// --simulate: probability that a stand-in completion is correct (the no-signal filter is on).
    #[arg(long, default_value_t = 0.5)]
    pub p_correct: f64,
    /// --stream: the generators' device when it is not the learner's (`--device`), e.g. `cpu` beside a
    /// `cuda:0` learner: each new version of the weights is copied there once (f32 on the CPU), and the
    /// rows give its bytes and seconds.
    #[arg(long)]
    pub generator_device: Option<phi4r_model::DeviceSpec>,
}

/// `rl.weight_sync` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightSyncArg {
    /// Between sampling batches.
    BetweenBatches,
    /// Between decoding steps (in flight).
    InFlight,
}

impl From<WeightSyncArg> for WeightSync {
    fn from(w: WeightSyncArg) -> Self {
        match w {
            WeightSyncArg::BetweenBatches => WeightSync::BetweenBatches,
            WeightSyncArg::InFlight => WeightSync::InFlight,
        }
    }
}

/// One run's row of the report.
fn row(topology: &Topology, staleness: u64, s: &StreamSummary) -> Value {
    json!({
        "generators": topology.generators, "max_staleness": staleness, "steps": s.steps,
        "token_lag_mean": s.mean_token_lag, "token_lag_mean_at_start": s.mean_token_lag_at_start,
        "switched_completions": s.switched_completions,
        "wall_s": s.wall_s, "rollouts_per_s": s.rollouts_per_s, "steps_per_s": s.steps_per_s,
        "learner_idle_fraction": s.learner_idle_fraction,
        "learner_idle_fraction_full": s.learner_idle_fraction_full,
        "policy_lag_mean": s.mean_policy_lag, "policy_lag_max": s.max_policy_lag,
        "completions": s.completions, "groups": s.groups, "books_balanced": s.books.balanced(),
        "overhead_us_per_completion": s.wall_s * 1e6 / s.completions.max(1) as f64,
        "weights_published": s.weights_published, "weights_bytes": s.weights_bytes,
        "weights_publish_s_mean": s.weights_publish_s_mean,
    })
}

fn run_one(setup: RuntimeSetup) -> anyhow::Result<StreamSummary> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move { Runtime::start(setup).await?.wait().await })
}

/// The streaming grid on the tiny model: `prompts` chat-templated synthetic prompts, G = 8, 128 new tokens,
/// 2 groups per step.
pub fn stream_grid(a: &StreamBenchArgs, threads: usize, size: &str) -> anyhow::Result<Value> {
    let cfg = super::bench::config(size)?;
    let tokenizer = super::generate::default_tokenizer(super::bench::VOCAB)?;
    let prompts = phi4r_learner::bench::bench_prompts(&tokenizer, 256, 4, 0)?;
    let steps = a.stream_steps.unwrap_or(6);
    let dev = crate::cli::device()?;
    let generator_device = match a.generator_device {
        Some(spec) => Some(spec.open().context("--generator-device")?).filter(|g| !g.same_device(&dev)),
        None => None,
    };
    let out = tempfile_dir()?;
    let mut rows = vec![];
    let grid = a.generators.as_deref().unwrap_or(&[1, 2, 4]).iter().flat_map(|&n| {
        a.staleness.iter().flat_map(move |&s| a.weight_sync.iter().map(move |&w| (n, s, WeightSync::from(w))))
    });
    for (n, s, w) in grid {
        {
            let setup = phi4r_learner::bench::GrpoBenchSetup {
                prompts: 2,
                group_size: 8,
                max_new_tokens: 128,
                ..Default::default()
            };
            let mut stage = phi4r_learner::bench::grpo_bench_config(&setup, 256, steps);
            stage.rl.max_staleness = s;
            stage.rl.weight_sync = w;
            stage.rl.balance = open_balance(2);
            stage.checkpoint_every = 1_000_000;
            // The run's --dtype on the learner's device (f32 on the CPU, bf16 on a GPU unless told).
            let model = phi4r_model::TrainableModel::init(&cfg, 0, crate::cli::dtype(&dev), &dev)?;
            let learner = phi4r_learner::Learner::new(model, stage, steps)?;
            // No stop ids: every completion runs to 128 tokens, as in `bench rl`.
            let sampler =
                phi4r_replay::GroupSampler::new(tokenizer.clone(), vec![], phi4r_verifier::Verifier::default(), 16)?;
            let topology = Topology::parse(&format!("{n}gen-1learn"))?;
            let mut setup = RuntimeSetup::real(
                topology.clone(),
                threads,
                learner,
                PromptSource::new(prompts.clone())?,
                sampler,
                out.path().join(format!("g{n}-s{s}-{w:?}")),
                None,
                indicatif::ProgressBar::hidden(),
            )?;
            setup.generator_device = generator_device.clone();
            let summary = run_one(setup)?;
            let mut r = row(&topology, s, &summary);
            r["weight_sync"] = serde_json::to_value(w)?;
            eprintln!("stream {n} generators, max_staleness {s}, {w:?}: {r}");
            rows.push(r);
        }
    }
    Ok(json!({"mode": "stream", "size": size, "params": cfg.num_params(), "threads": threads,
              "setup": {"group_size": 8, "prompts_per_batch": 2, "batch_groups": 2, "max_new_tokens": 128, "filters": "off"},
              "runs": rows}))
}

/// Every group kept, no re-balancing: the bench measures the pipeline, not the filters.
fn open_balance(batch_groups: usize) -> BalanceConfig {
    BalanceConfig {
        batch_groups,
        rebalance: false,
        max_pending_groups: batch_groups * 4,
        remember_easy: false,
        set_aside_hard: false,
        filter: FilterConfig { drop_no_signal: false, length_filter: false, ..FilterConfig::default() },
        ..BalanceConfig::default()
    }
}

fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("phi4r-bench-stream").tempdir()?)
}

/// The simulated grid: stand-ins of the given costs, the real runtime.
pub fn simulate_grid(a: &StreamBenchArgs, threads: usize) -> anyhow::Result<Value> {
    let steps = a.stream_steps.unwrap_or(20);
    let g = 8;
    let batch_groups = a.sim_batch_groups;
    let prompts: Vec<phi4r_replay::Prompt> = (0..4096u64)
        .map(|i| phi4r_replay::Prompt {
            id: phi4r_replay::PromptId(i + 1),
            ids: vec![1; 16],
            gold: (i % 97).to_string(),
            tier: 1,
        })
        .collect();
    let out = tempfile_dir()?;
    let demand = (batch_groups * g) as f64 / (a.learn_ms / 1000.0);
    let per_generator = if a.gen_ms > 0.0 { 1000.0 / a.gen_ms } else { f64::INFINITY };
    let mut rows = vec![];
    let run = |n: usize, s: u64, gen_ms: f64, learn_ms: f64| -> anyhow::Result<Value> {
        let mut stage = StageConfig::seed(phi4r_learner::Stage::Rl);
        stage.max_steps = Some(steps);
        stage.rl.group_size = g;
        stage.rl.prompts_per_step = 1;
        stage.rl.max_staleness = s;
        stage.rl.temperature = TemperatureSchedule::Constant { temperature: 1.0 };
        stage.rl.balance = BalanceConfig {
            batch_groups,
            max_pending_groups: batch_groups * 4,
            rebalance: false,
            remember_easy: false,
            set_aside_hard: false,
            ..BalanceConfig::default()
        };
        let topology = Topology::parse(&format!("{n}gen-1learn"))?;
        let setup = RuntimeSetup {
            topology: topology.clone(),
            threads,
            config: stage,
            learner: Box::new(SimTrainer {
                step: 0,
                total: steps,
                step_cost: Duration::from_secs_f64(learn_ms / 1000.0),
            }),
            easy: phi4r_replay::EasyMemory::new(),
            source: PromptSource::new(prompts.clone())?,
            generator_device: None,
            sampling: Sampling::Simulated(SimSampler {
                completion_cost: Duration::from_secs_f64(gen_ms / 1000.0),
                tokens: 100,
                p_correct: a.p_correct,
            }),
            verifier: phi4r_verifier::Verifier::default(),
            out: out.path().join(format!("sim-g{n}-s{s}-{gen_ms}-{learn_ms}")),
            stop_after: None,
            progress: indicatif::ProgressBar::hidden(),
        };
        let summary = run_one(setup)?;
        let mut r = row(&topology, s, &summary);
        r["gen_ms"] = gen_ms.into();
        r["learn_ms"] = learn_ms.into();
        r["capacity_over_demand"] = (n as f64 * 1000.0 / gen_ms.max(1e-9) / demand).into();
        eprintln!("simulate {n} generators, max_staleness {s}, {gen_ms} ms/completion, {learn_ms} ms/step: {r}");
        Ok(r)
    };
    for &n in a.generators.as_deref().unwrap_or(&[16, 64, 256]) {
        for &s in &a.staleness {
            rows.push(run(n, s, a.gen_ms, a.learn_ms)?);
        }
    }
    // The runtime's own cost: generators and learner that take no time.
    let overhead = [run(16, 2, 0.0, 0.0)?, run(256, 2, 0.0, 0.0)?];
    Ok(json!({
        "mode": "simulate", "threads": threads,
        "setup": {"group_size": g, "prompts_per_batch": 1, "batch_groups": batch_groups, "gen_ms": a.gen_ms,
                  "learn_ms": a.learn_ms, "p_correct": a.p_correct, "filters": "on (no-signal, length)", "steps": steps},
        "demand_completions_per_s": demand, "completions_per_s_per_generator": per_generator,
        "generators_to_match_demand": demand / per_generator,
        "runs": rows, "zero_cost": overhead,
    }))
}
