//! `phi4r-actors bench model`: training-step and sampling throughput as JSON, with the PyTorch peer's
//! figures and the ratios when a peer results file (../shared/peers/trl_bench.py output) is given.

use candle_core::{Device, Tensor};
use clap::{Args, Subcommand};
use phi4r_model::bench::{best_ratio, median, ratio, CpuPeak, PeerResults, Reps};
use phi4r_model::{ComputePool, Phi3Config, TrainableModel};
use phi4r_rollout::{generate, SamplingConfig, StopRule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Training step (the learner's own step: forward, LM loss, backward, clipping, AdamW; batch 16 x seq
    /// 256) and sampling
    /// (16 prompts x 32 tokens -> 128 new tokens; and batch 1) for each size.
    Model(ModelBenchArgs),
    /// Verifications per second on one thread over MATH-500 and GSM8K, plus pathological inputs.
    Verifier(VerifierBenchArgs),
    /// One GRPO iteration end to end (2 prompts x 8 completions of 128 new tokens, verify, one
    /// `Learner::rl_step`), each phase timed; with --peer, TRL GRPOTrainer's part-e figures and the ratio.
    Rl(RlBenchArgs),
    /// The GPU learner's device check: the same seeded model on --device and on the CPU (logits in f32
    /// and bf16, every parameter's gradient, two training steps), then training tok/s with MFU and
    /// sampling tok/s at batch 1, 16 and 64, for `small` and a Phi-4-mini-shaped model
    /// (scripts/gpu_check.sh).
    Gpu(super::bench_gpu::GpuBenchArgs),
}

#[derive(Debug, Args)]
pub struct RlBenchArgs {
    /// Print JSON only (no human summary on stderr).
    #[arg(long)]
    json: bool,
    /// Preset (vocabulary 1024, random init, with the embedded tokenizer trained at that size).
    #[arg(long, default_value = "tiny")]
    size: String,
    /// Measured iterations [default: the peer's count with --peer, else 6].
    #[arg(long)]
    steps: Option<usize>,
    /// Unmeasured iterations before them [default: the peer's count with --peer, else 2].
    #[arg(long)]
    warmup: Option<usize>,
    /// Prompts per iteration.
    #[arg(long, default_value_t = 2)]
    prompts: usize,
    /// Completions per prompt (G).
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// New tokens of every completion (no stop token: each runs to this length).
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// KL coefficient to the initial weights (TRL's beta; the peer runs 0, so no reference pass).
    #[arg(long, default_value_t = 0.0)]
    kl_coef: f64,
    /// Prompts are the bare expressions of the synthetic task's tiers 1 to N, chat-templated (tiers 1-4:
    /// ~16 tokens, as the peer's prompts).
    #[arg(long, default_value_t = 4)]
    tiers: usize,
    /// Seed of the prompts and the sampling streams.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A results JSON written by ../shared/peers/trl_bench.py (part e) to compare against.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Instead of one iteration: the streaming runtime (`--topology`) on this model over a grid of
    /// generator counts and max_staleness (learner idle fraction, rollouts/s, policy lag).
    #[arg(long, conflicts_with = "simulate")]
    stream: bool,
    /// Instead of one iteration: the streaming runtime with stand-ins of fixed cost for the model, at
    /// up to 256 generators, plus the runtime's own overhead per completion.
    #[arg(long)]
    simulate: bool,
    #[command(flatten)]
    grid: super::bench_stream::StreamBenchArgs,
}

#[derive(Debug, Args)]
pub struct VerifierBenchArgs {
    /// Folder with math500.jsonl and gsm8k_test.jsonl.
    #[arg(long, default_value = "../shared/data/eval")]
    eval_dir: PathBuf,
    /// Math-Verify's figures on the same data (JSON from scripts/mathverify_bench.py) to compare against.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Folder of the graders' ported test suites (`graders/`, `rl/`): agreement per suite is reported
    /// beside speed.
    #[arg(long, default_value = "verifier/tests/fixtures")]
    agreement_dir: PathBuf,
}

fn verifier_bench(a: VerifierBenchArgs) -> anyhow::Result<()> {
    let report = phi4r_verifier::bench::run(&a.eval_dir)?;
    let mut v = serde_json::to_value(&report)?;
    if let Some(p) = &a.peer {
        let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--peer {}: {e}", p.display()))?;
        let peer: std::collections::BTreeMap<String, Value> =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--peer {}: {e}", p.display()))?;
        let ratios = phi4r_verifier::bench::speed_ratios(&report, &peer);
        let mut by_set = serde_json::Map::new();
        for r in &ratios {
            by_set.insert(r.name.clone(), serde_json::to_value(r)?);
        }
        v["ratio"] = Value::Object(by_set);
        v["peer"] = serde_json::to_value(&peer)?;
    }
    let cases = phi4r_verifier::agreement::load_groups(&a.agreement_dir, &["graders", "rl"])
        .map_err(|e| anyhow::anyhow!("--agreement-dir {}: {e}", a.agreement_dir.display()))?;
    let agreement = phi4r_verifier::agreement::agreement(&phi4r_verifier::Verifier::default(), &cases);
    v["agreement"] = json!({"suites": agreement.suites, "groups": agreement.groups});
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct ModelBenchArgs {
    /// Print JSON only (no human summary on stderr).
    #[arg(long)]
    json: bool,
    /// Comma-separated presets.
    #[arg(long, default_value = "tiny,small")]
    sizes: String,
    /// Measured training steps per size [default: the peer's count with --peer, else 3].
    #[arg(long)]
    steps: Option<usize>,
    /// Unmeasured training steps before them [default: the peer's count with --peer, else 1].
    #[arg(long)]
    warmup: Option<usize>,
    /// Measured sampling runs per batch size [default: the peer's count with --peer, else 2]. The
    /// warm-up runs before them are the peer's with --peer, else 1.
    #[arg(long)]
    runs: Option<usize>,
    /// A results JSON written by ../shared/peers/trl_bench.py (parts a,b) to compare against.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Comma-separated sampling batch sizes (each at most 16).
    #[arg(long, default_value = "16,1")]
    sample_batches: String,
    /// Skip the training step (sampling only).
    #[arg(long)]
    no_train: bool,
    /// Skip sampling (training step only).
    #[arg(long)]
    no_sample: bool,
}

const BATCH: usize = 16;
const SEQ: usize = 256;
const PROMPT: usize = 32;
const NEW: usize = 128;
pub(super) const VOCAB: usize = 1024;
/// Repetitions without a peer file: one warm-up, then 3 training steps / 2 sampling runs.
const TRAIN_REPS: Reps = Reps { warmup: 1, measured: 3 };
const SAMPLE_REPS: Reps = Reps { warmup: 1, measured: 2 };

pub fn run(cmd: BenchCmd, pool: &ComputePool) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Model(a) => model_bench(a, pool),
        BenchCmd::Verifier(a) => verifier_bench(a),
        BenchCmd::Rl(a) => rl_bench(a, pool),
        BenchCmd::Gpu(a) => super::bench_gpu::run(a, pool),
    }
}

pub(super) fn config(size: &str) -> anyhow::Result<Phi3Config> {
    let mut cfg = Phi3Config::preset(size.parse()?);
    cfg.vocab_size = VOCAB;
    Ok(cfg)
}

/// Achieved GFLOP/s of a 1024^3 f32 matmul on the pool: what candle's gemm reaches on this machine.
fn matmul_gflops(dev: &Device) -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let _ = a.matmul(&b)?;
    let mut ts = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let _ = a.matmul(&b)?;
        ts.push(t0.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / median(&ts) / 1e9)
}

/// The learner's own step on `b` rows × `t` random tokens of a seeded `cfg` model in the run's `--dtype`
/// (`bench model` at 16 × 256, `bench gpu` at its `--train-batch` × `--seq`); MFU against `peak_gflops`.
pub(super) fn train_bench(
    cfg: &Phi3Config,
    (b, t): (usize, usize),
    reps: Reps,
    dev: &Device,
    peak_gflops: f64,
) -> anyhow::Result<Value> {
    let t0 = Instant::now();
    let dtype = crate::cli::dtype(dev);
    let model = TrainableModel::init(cfg, 0, dtype, dev)?;
    let init_s = t0.elapsed().as_secs_f64();
    let timing = phi4r_learner::bench::time_train_steps(model, b, t, reps, 1)?;
    let s = median(&timing.sec_per_step_all);
    let flops = 3.0 * cfg.forward_flops(b, t);
    Ok(json!({
        "batch": b, "seq": t, "params": cfg.num_params(), "dtype": dtype.as_str(), "init_s": init_s,
        "steps_measured": reps.measured, "warmup": reps.warmup, "step": "phi4r_learner::Learner::train_step",
        "sec_per_step_median": s, "sec_per_step_all": timing.sec_per_step_all,
        "tokens_per_s": (b * t) as f64 / s,
        "model_gflops_per_step": flops / 1e9,
        "achieved_gflops": flops / s / 1e9,
        "mfu": flops / s / 1e9 / peak_gflops,
        "first_loss": timing.first_loss,
        "final_loss": timing.final_loss,
        "skipped_steps": timing.skipped,
    }))
}

/// Sampling of a seeded `cfg` model in the run's `--dtype`: `PROMPT`-token random prompts, exactly `new`
/// new tokens each, at every batch size of `batches` (`bench model`: 16 and 1 with 128 tokens, as the
/// peer; `bench gpu`: 1, 16 and 64).
pub(super) fn sample_bench(
    cfg: &Phi3Config,
    batches: &[usize],
    new: usize,
    reps: Reps,
    dev: &Device,
) -> anyhow::Result<Value> {
    let model = TrainableModel::init(cfg, 0, crate::cli::dtype(dev), dev)?.model.frozen()?;
    let mut rng = StdRng::seed_from_u64(2);
    let rows = batches.iter().copied().max().unwrap_or(1);
    let vocab = cfg.vocab_size.max(4) as u32;
    let prompts: Vec<Vec<u32>> = (0..rows).map(|_| (0..PROMPT).map(|_| rng.random_range(3..vocab)).collect()).collect();
    // As the peer: do_sample, temperature 1, no top-k / top-p, exactly `new` new tokens.
    let scfg = SamplingConfig { temperature: 1.0, max_new_tokens: new, min_new_tokens: new, ..Default::default() };
    let mut out = serde_json::Map::new();
    for &b in batches {
        let mut ts = vec![];
        for i in 0..reps.warmup + reps.measured {
            let t0 = Instant::now();
            let g = generate(&model, &prompts[..b], &scfg, &StopRule::default())?;
            let dt = t0.elapsed().as_secs_f64();
            anyhow::ensure!(g.iter().all(|g| g.tokens.len() == new), "generation ended early");
            if i >= reps.warmup {
                ts.push(dt);
            }
        }
        let s = median(&ts);
        out.insert(
            format!("batch{b}"),
            json!({"batch": b, "prompt_len": PROMPT, "new_tokens": new, "warmup": reps.warmup, "sec_median": s, "sec_all": ts,
                   "gen_tokens_per_s": (b * new) as f64 / s, "ms_per_decode_step": 1000.0 * s / new as f64}),
        );
    }
    // The decoding weights' storage (`PHI4R_DECODE_WEIGHTS`): the side-by-side comparison is at f32.
    let store = phi4r_model::kernels::DecodeWeights::from_env()?;
    out.insert("decode_weights".into(), json!(format!("{store:?}").to_lowercase()));
    Ok(Value::Object(out))
}

/// Seconds of every measured repetition in one of our JSON parts.
fn secs(v: Option<&Value>) -> Vec<f64> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// Our figures beside the peer's for one size: throughputs, the median ratios and the fastest-repetition
/// ratios.
fn compare(size: &str, entry: &Value, peer: &PeerResults) -> Value {
    let train = peer.train(size);
    let (b16, b1) = (peer.sample(size, 16), peer.sample(size, 1));
    let ours = |p: &str| entry.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    json!({
        "peer": {
            "train_tokens_per_s": train.as_ref().map(|t| t.tokens_per_s),
            "sample_batch16_tokens_per_s": b16.as_ref().map(|s| s.gen_tokens_per_s),
            "sample_batch1_tokens_per_s": b1.as_ref().map(|s| s.gen_tokens_per_s),
        },
        "ratio": {
            "train": train.as_ref().and_then(|t| ratio(ours("/train/tokens_per_s"), t.tokens_per_s)),
            "sample_batch16": b16.as_ref().and_then(|s| ratio(ours("/sample/batch16/gen_tokens_per_s"), s.gen_tokens_per_s)),
            "sample_batch1": b1.as_ref().and_then(|s| ratio(ours("/sample/batch1/gen_tokens_per_s"), s.gen_tokens_per_s)),
        },
        // The same comparison on each side's fastest repetition: less sensitive to a burst of load from
        // other tenants of the machine during one side's turn.
        "ratio_best": {
            "train": train.as_ref().and_then(|t| best_ratio(&secs(entry.pointer("/train/sec_per_step_all")), &t.sec_per_step_all)),
            "sample_batch16": b16.as_ref().and_then(|s| best_ratio(&secs(entry.pointer("/sample/batch16/sec_all")), &s.sec_all)),
            "sample_batch1": b1.as_ref().and_then(|s| best_ratio(&secs(entry.pointer("/sample/batch1/sec_all")), &s.sec_all)),
        },
    })
}

fn model_bench(a: ModelBenchArgs, pool: &ComputePool) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let peer = a.peer.as_deref().map(PeerResults::load).transpose().map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
    let batches = a
        .sample_batches
        .split(',')
        .map(|b| match b.trim().parse::<usize>() {
            Ok(b) if (1..=BATCH).contains(&b) => Ok(b),
            _ => Err(anyhow::anyhow!("--sample-batches: `{b}` is not a batch size from 1 to {BATCH}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let peak = CpuPeak::detect(pool.threads());
    let mut sizes = serde_json::Map::new();
    for size in a.sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let cfg = config(size)?;
        let peer_reps = |part: &str| peer.as_ref().and_then(|p| p.reps(size, part));
        let train = if a.no_train {
            Value::Null
        } else {
            let reps = Reps::resolve(a.warmup, a.steps, peer_reps("a"), TRAIN_REPS);
            pool.install(|| train_bench(&cfg, (BATCH, SEQ), reps, &dev, peak.gflops))?
        };
        let sample = if a.no_sample {
            Value::Null
        } else {
            let reps = Reps::resolve(None, a.runs, peer_reps("b"), SAMPLE_REPS);
            pool.install(|| sample_bench(&cfg, &batches, NEW, reps, &dev))?
        };
        let mut entry = json!({"train": train, "sample": sample});
        if let Some(p) = &peer {
            let c = compare(size, &entry, p);
            for key in ["peer", "ratio", "ratio_best"] {
                entry[key] = c[key].clone();
            }
        }
        if !a.json {
            eprintln!(
                "{size}: train {:.0} tok/s, sample b16 {:.0} tok/s, b1 {:.0} tok/s",
                entry["train"]["tokens_per_s"].as_f64().unwrap_or(0.0),
                entry["sample"]["batch16"]["gen_tokens_per_s"].as_f64().unwrap_or(0.0),
                entry["sample"]["batch1"]["gen_tokens_per_s"].as_f64().unwrap_or(0.0)
            );
        }
        sizes.insert(size.to_string(), entry);
    }
    let mut report = json!({
        "threads": pool.threads(),
        "dtype": crate::cli::dtype(&dev).as_str(),
        "device": format!("{dev:?}"),
        "fp32_peak": peak,
        "matmul_1024_gflops": pool.install(|| matmul_gflops(&dev))?,
        "sizes": sizes,
    });
    if let Some(p) = &peer {
        report["peer_file"] = p.raw();
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Without a peer file: the peer's own part-e counts for `tiny` (8 trainer steps, the first 2 left out).
const RL_REPS: Reps = Reps { warmup: 2, measured: 6 };

fn rl_bench(a: RlBenchArgs, pool: &ComputePool) -> anyhow::Result<()> {
    if a.stream || a.simulate {
        let report = if a.stream {
            super::bench_stream::stream_grid(&a.grid, pool.threads(), &a.size)?
        } else {
            super::bench_stream::simulate_grid(&a.grid, pool.threads())?
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    use phi4r_learner::bench::{bench_prompts, time_grpo_iterations, GrpoBenchSetup, GrpoPhases};
    let dev = crate::cli::device()?;
    let peer = a.peer.as_deref().map(PeerResults::load).transpose().map_err(|e| anyhow::anyhow!("--peer: {e}"))?;
    let peer_e = peer.as_ref().and_then(|p| p.grpo(&a.size));
    if let (Some(p), None) = (&a.peer, &peer_e) {
        anyhow::bail!("--peer {}: no part e result for `{}`", p.display(), a.size);
    }
    let reps = Reps::resolve(a.warmup, a.steps, peer_e.as_ref().map(|e| e.reps()), RL_REPS);
    let cfg = config(&a.size)?;
    let tokenizer = super::generate::default_tokenizer(VOCAB)?;
    let setup = GrpoBenchSetup {
        prompts: a.prompts,
        group_size: a.group_size,
        max_new_tokens: a.max_new_tokens,
        kl_coef: a.kl_coef,
        seed: a.seed,
        ..GrpoBenchSetup::default()
    };
    let prompts = bench_prompts(&tokenizer, a.prompts * (reps.warmup + reps.measured), a.tiers, a.seed)?;
    let verifier = phi4r_verifier::Verifier::default();
    // No stop ids: every completion is max_new_tokens long (the peer's random model stops early
    // rarely: its mean completion is ~115 of 128 tokens, and TRL pads the batch to the longest).
    let rows = a.prompts * a.group_size;
    // One group a generation batch, as a generator runs them: on the CPU the batches decode side by side,
    // one per compute thread (`GroupSampler::sample_unscored`); TRL's `generate` takes all 16 rows at once.
    let sampler = phi4r_replay::GroupSampler::new(tokenizer.clone(), vec![], verifier.clone(), a.group_size)?;
    let rescore = |groups: &[phi4r_replay::Group]| -> Result<usize, String> {
        let mut correct = 0;
        for g in groups {
            for c in &g.completions {
                let text = tokenizer.decode(&c.tokens).map_err(|e| e.to_string())?;
                correct += usize::from(verifier.verify_with(&g.prompt.gold, &text, c.truncated).correct);
            }
        }
        Ok(correct)
    };
    let model = TrainableModel::init(&cfg, 0, crate::cli::dtype(&dev), &dev)?;
    let timing = pool.install(|| time_grpo_iterations(model, &sampler, &rescore, &prompts, &setup, reps))?;
    let all = timing.all(|p| p.iteration_s);
    let best = all.iter().copied().fold(f64::INFINITY, f64::min);
    let m: GrpoPhases = timing.phase_medians();
    // The peer's split: generate-and-score, then the rest of the step (loss forward, backward, AdamW).
    let train_part = timing.median(|p| p.iteration_s - p.sample_and_score_s);
    let sampled_tokens = (rows * a.max_new_tokens) as f64;
    let mut report = json!({
        "size": a.size, "threads": pool.threads(), "dtype": crate::cli::dtype(&dev).as_str(), "device": format!("{dev:?}"),
        "params": cfg.num_params(),
        "setup": {"prompts": a.prompts, "tiers": a.tiers, "group_size": a.group_size, "max_new_tokens": a.max_new_tokens,
                  "forced_length": true, "kl_coef": a.kl_coef, "lr": setup.lr, "micro_batch": rows,
                  "loss_agg": "token_mean", "clip": [0.2, 0.2], "temperature": 1.0,
                  "step": "GroupSampler::sample + RlBatch::from_groups + Learner::rl_step"},
        "warmup": reps.warmup, "iterations_measured": reps.measured,
        "grpo_iteration_s": {"median": m.iteration_s, "best": best, "all": all},
        "phases_median_s": m,
        "train_part_s_median": train_part,
        "sampled_tokens_per_s": sampled_tokens / m.sampling_s,
        "prompt_tokens_mean": timing.prompt_tokens_mean,
        "completion_tokens_mean": timing.completion_tokens_mean,
        "reward_mean": timing.reward_mean,
        "skipped": timing.skipped,
        "iterations": timing.iterations,
    });
    if let Some(e) = &peer_e {
        let peer_best = e.measured_steps().iter().copied().fold(f64::INFINITY, f64::min);
        let speedup = |theirs: Option<f64>, ours: f64| theirs.and_then(|t| ratio(t, ours));
        report["peer"] = json!({
            "sec_per_step_median": e.sec_per_step_median, "sec_per_step_best": peer_best,
            "sec_per_step_measured": e.measured_steps(), "generate_s_median": e.generate_s_median,
            "generate_and_score_s_median": e.generate_and_score_s_median,
            "train_part_s_median": e.train_part_s_median,
            "completion_len_mean": median(&e.mean_completion_len_per_step),
            "profiling_medians": e.profiling_medians,
        });
        // Speed-ups (peer seconds / ours): above 1 we are faster.
        report["ratio"] = json!({
            "median": ratio(e.sec_per_step_median, m.iteration_s),
            "best": ratio(peer_best, best),
            "generation": speedup(e.generate_s_median, m.sampling_s),
            "train_part": speedup(e.train_part_s_median, train_part),
        });
    }
    if !a.json {
        eprintln!(
            "{}: GRPO iteration median {:.3} s, best {:.3} s (sampling {:.3}, scoring {:.4}, update {:.3} = fwd+bwd {:.3} + optimizer {:.3})",
            a.size, m.iteration_s, best, m.sampling_s, m.scoring_s, m.update_s, m.policy_fwd_bwd_s, m.optimizer_s
        );
        if let Some(r) = report.get("ratio") {
            eprintln!("vs TRL: {r}");
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
