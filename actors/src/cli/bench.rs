//! `phi4r-actors bench model`: training-step and sampling throughput as JSON, with the PyTorch peer's
//! figures and the ratios when a peer results file (../shared/peers/trl_bench.py output) is given.

use candle_core::{DType, Device, Tensor};
use clap::{Args, Subcommand};
use phi4r_model::{loss, AttentionLayout, ComputePool, Phi3Config, TrainableModel};
use phi4r_rollout::{generate, SamplingConfig, StopRule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Training step (forward + cross-entropy + backward + AdamW, batch 16 x seq 256) and sampling
    /// (16 prompts x 32 tokens -> 128 new tokens; and batch 1) for each size.
    Model(ModelBenchArgs),
    /// Verifications per second on one thread over MATH-500 and GSM8K, plus pathological inputs.
    Verifier(VerifierBenchArgs),
}

#[derive(Debug, Args)]
pub struct VerifierBenchArgs {
    /// Folder with math500.jsonl and gsm8k_test.jsonl.
    #[arg(long, default_value = "../shared/data/eval")]
    eval_dir: PathBuf,
    /// Math-Verify's figures on the same data (JSON from scripts/mathverify_bench.py) to compare against.
    #[arg(long)]
    peer: Option<PathBuf>,
}

fn verifier_bench(a: VerifierBenchArgs) -> anyhow::Result<()> {
    let report = phi4r_verifier::bench::run(&a.eval_dir)?;
    let mut v = serde_json::to_value(&report)?;
    if let Some(p) = &a.peer {
        let peer: Value = serde_json::from_str(
            &std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--peer {}: {e}", p.display()))?,
        )?;
        let mut ratios = serde_json::Map::new();
        for set in &report.sets {
            let theirs = peer.pointer(&format!("/{}/verifications_per_s", set.name)).and_then(Value::as_f64);
            if let Some(t) = theirs.filter(|t| *t > 0.0) {
                ratios.insert(set.name.clone(), json!({"phi4r": set.verifications_per_sec, "math_verify": t, "ratio": set.verifications_per_sec / t}));
            }
        }
        v["peer"] = peer;
        v["ratio"] = Value::Object(ratios);
    }
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
const VOCAB: usize = 1024;
/// Repetitions without a peer file: one warm-up, then 3 training steps / 2 sampling runs.
const TRAIN_REPS: Reps = Reps { warmup: 1, measured: 3 };
const SAMPLE_REPS: Reps = Reps { warmup: 1, measured: 2 };

pub fn run(cmd: BenchCmd, pool: &ComputePool) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Model(a) => model_bench(a, pool),
        BenchCmd::Verifier(a) => verifier_bench(a),
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

fn config(size: &str) -> anyhow::Result<Phi3Config> {
    let mut cfg = Phi3Config::preset(size.parse()?);
    cfg.vocab_size = VOCAB;
    Ok(cfg)
}

/// Forward FLOPs of one (b, t) batch: 2 per multiply-add of every matmul, attention computed densely.
fn forward_flops(cfg: &Phi3Config, b: usize, t: usize) -> f64 {
    let (h, i, l) = (cfg.hidden_size as f64, cfg.intermediate_size as f64, cfg.num_hidden_layers as f64);
    let attn_proj = h * cfg.qkv_dim() as f64 + (cfg.num_attention_heads * cfg.head_dim()) as f64 * h;
    let mlp = h * 2.0 * i + i * h;
    let per_token = 2.0 * (l * (attn_proj + mlp) + h * cfg.vocab_size as f64);
    let attn_scores = 2.0 * 2.0 * l * (cfg.num_attention_heads * cfg.head_dim()) as f64 * t as f64 * t as f64;
    (b * t) as f64 * per_token + b as f64 * attn_scores
}

/// The machine's nominal fp32 peak for `threads` cores, from /proc/cpuinfo: clock × FMA width.
fn fp32_peak(threads: usize) -> Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| info.lines().find(|l| l.starts_with(k)).and_then(|l| l.split(':').nth(1)).map(str::trim);
    let mhz: f64 = field("cpu MHz").and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let flags = field("flags").unwrap_or("");
    let intel = field("vendor_id") == Some("GenuineIntel");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    // Two FMA pipes: 8 lanes each with AVX2 (and on AMD's AVX-512, executed as 2 x 256 bit), 16 on
    // Intel's AVX-512; an FMA is 2 FLOPs.
    let per_cycle = if has("avx512f") && intel {
        64.0
    } else if has("avx2") && has("fma") {
        32.0
    } else {
        8.0
    };
    json!({
        "gflops": threads as f64 * mhz * 1e-3 * per_cycle,
        "cpu_mhz": mhz,
        "flops_per_cycle_per_core": per_cycle,
        "model": field("model name"),
    })
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
    Ok(2.0 * (n * n * n) as f64 / median(&mut ts) / 1e9)
}

/// Unmeasured and measured repetitions of one benchmark part.
#[derive(Debug, Clone, Copy)]
struct Reps {
    warmup: usize,
    measured: usize,
}

impl Reps {
    /// Explicit counts win; then the peer's own counts for this size and part (`steps_config` in its
    /// results), so both sides time the same number of repetitions; then `default`.
    fn resolve(warmup: Option<usize>, measured: Option<usize>, peer: Option<&Value>, key: &str, default: Reps) -> Reps {
        let theirs = |i: usize| peer.and_then(|p| p.pointer(&format!("{key}/{i}"))).and_then(Value::as_u64);
        Reps {
            warmup: warmup.or(theirs(0).map(|x| x as usize)).unwrap_or(default.warmup),
            measured: measured.or(theirs(1).map(|x| x as usize)).unwrap_or(default.measured).max(1),
        }
    }
}

fn train_bench(cfg: &Phi3Config, reps: Reps, dev: &Device, peak_gflops: f64) -> anyhow::Result<Value> {
    let tm = TrainableModel::init(cfg, 0, DType::F32, dev)?;
    // The learner's own AdamW (the one the stages run), with PyTorch's defaults.
    let vars: Vec<_> = tm.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = phi4r_learner::AdamW::new(tm.vars(), phi4r_learner::AdamWConfig::default())?;
    let mut rng = StdRng::seed_from_u64(1);
    let tokens: Vec<u32> = (0..BATCH * (SEQ + 1)).map(|_| rng.random_range(3..VOCAB as u32)).collect();
    let all = Tensor::from_vec(tokens, (BATCH, SEQ + 1), dev)?;
    let input = all.narrow(1, 0, SEQ)?.contiguous()?;
    let target = all.narrow(1, 1, SEQ)?.contiguous()?;
    let mask = Tensor::ones((BATCH, SEQ), DType::F32, dev)?;
    let layout = AttentionLayout::full(BATCH, SEQ);
    let (mut total, mut fwd, mut bwd, mut adam) = (vec![], vec![], vec![], vec![]);
    let mut last_loss = 0f32;
    for i in 0..reps.warmup + reps.measured {
        let t0 = Instant::now();
        let logits = tm.model.forward(&input, &layout)?;
        let l = loss::masked_cross_entropy(&logits, &target, &mask)?;
        last_loss = l.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = l.backward()?;
        let t2 = Instant::now();
        opt.step(&phi4r_learner::Grads::from_store(&grads, &vars), 1e-4)?;
        let t3 = Instant::now();
        if i >= reps.warmup {
            total.push((t3 - t0).as_secs_f64());
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            adam.push((t3 - t2).as_secs_f64());
        }
    }
    let s = median(&mut total);
    let flops = 3.0 * forward_flops(cfg, BATCH, SEQ);
    Ok(json!({
        "batch": BATCH, "seq": SEQ, "params": cfg.num_params(), "steps_measured": reps.measured,
        "warmup": reps.warmup,
        "sec_per_step_median": s, "sec_per_step_all": total.clone(),
        "tokens_per_s": (BATCH * SEQ) as f64 / s,
        "fwd_s_median": median(&mut fwd), "bwd_s_median": median(&mut bwd), "adamw_s_median": median(&mut adam),
        "model_gflops_per_step": flops / 1e9,
        "achieved_gflops": flops / s / 1e9,
        "mfu": flops / s / 1e9 / peak_gflops,
        "final_loss": last_loss,
    }))
}

fn sample_bench(cfg: &Phi3Config, batches: &[usize], reps: Reps, dev: &Device) -> anyhow::Result<Value> {
    let model = TrainableModel::init(cfg, 0, DType::F32, dev)?.model.frozen()?;
    let mut rng = StdRng::seed_from_u64(2);
    let prompts: Vec<Vec<u32>> =
        (0..BATCH).map(|_| (0..PROMPT).map(|_| rng.random_range(3..VOCAB as u32)).collect()).collect();
    // As the peer: do_sample, temperature 1, no top-k / top-p, exactly 128 new tokens.
    let scfg = SamplingConfig { temperature: 1.0, max_new_tokens: NEW, min_new_tokens: NEW, ..Default::default() };
    let mut out = serde_json::Map::new();
    for &b in batches {
        let mut ts = vec![];
        for i in 0..reps.warmup + reps.measured {
            let t0 = Instant::now();
            let g = generate(&model, &prompts[..b], &scfg, &StopRule::default())?;
            let dt = t0.elapsed().as_secs_f64();
            anyhow::ensure!(g.iter().all(|g| g.tokens.len() == NEW), "generation ended early");
            if i >= reps.warmup {
                ts.push(dt);
            }
        }
        let s = median(&mut ts);
        out.insert(
            format!("batch{b}"),
            json!({"batch": b, "prompt_len": PROMPT, "new_tokens": NEW, "warmup": reps.warmup, "sec_median": s, "sec_all": ts,
                   "gen_tokens_per_s": (b * NEW) as f64 / s, "ms_per_decode_step": 1000.0 * s / NEW as f64}),
        );
    }
    // The decoding weights' storage (`PHI4R_DECODE_WEIGHTS`): the side-by-side comparison is at f32.
    let store = phi4r_model::kernels::DecodeWeights::from_env()?;
    out.insert("decode_weights".into(), json!(format!("{store:?}").to_lowercase()));
    Ok(Value::Object(out))
}

/// The shortest of a list of seconds.
fn fastest(secs: Option<&Value>) -> Option<f64> {
    secs?.as_array()?.iter().filter_map(Value::as_f64).filter(|s| *s > 0.0).min_by(f64::total_cmp)
}

/// Peer's fastest repetition / ours (same work on both sides, so the inverse ratio of times is the
/// throughput ratio).
fn best_ratio(ours: Option<&Value>, peer: Option<&Value>) -> Value {
    match (fastest(ours), fastest(peer)) {
        (Some(a), Some(b)) => json!(b / a),
        _ => Value::Null,
    }
}

fn ratio(ours: &Value, peer: Option<&Value>) -> Value {
    match (ours.as_f64(), peer.and_then(Value::as_f64)) {
        (Some(a), Some(b)) if b > 0.0 => json!(a / b),
        _ => Value::Null,
    }
}

fn model_bench(a: ModelBenchArgs, pool: &ComputePool) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let peer: Option<Value> = match &a.peer {
        Some(p) => Some(serde_json::from_str(
            &std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--peer {}: {e}", p.display()))?,
        )?),
        None => None,
    };
    let batches = a
        .sample_batches
        .split(',')
        .map(|b| match b.trim().parse::<usize>() {
            Ok(b) if (1..=BATCH).contains(&b) => Ok(b),
            _ => Err(anyhow::anyhow!("--sample-batches: `{b}` is not a batch size from 1 to {BATCH}")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let peak = fp32_peak(pool.threads());
    let peak_gflops = peak["gflops"].as_f64().unwrap_or(f64::NAN);
    let mut sizes = serde_json::Map::new();
    for size in a.sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let cfg = config(size)?;
        let train = if a.no_train {
            Value::Null
        } else {
            let reps = Reps::resolve(a.warmup, a.steps, peer.as_ref(), &format!("/steps_config/{size}/a"), TRAIN_REPS);
            pool.install(|| train_bench(&cfg, reps, &dev, peak_gflops))?
        };
        let sample = if a.no_sample {
            Value::Null
        } else {
            let reps = Reps::resolve(None, a.runs, peer.as_ref(), &format!("/steps_config/{size}/b"), SAMPLE_REPS);
            pool.install(|| sample_bench(&cfg, &batches, reps, &dev))?
        };
        let mut entry = json!({"train": train, "sample": sample});
        if let Some(p) = &peer {
            let pa = p.pointer(&format!("/results/a:{size}"));
            let pb = p.pointer(&format!("/results/b:{size}"));
            entry["peer"] = json!({
                "train_tokens_per_s": pa.and_then(|x| x.get("tokens_per_s")),
                "sample_batch16_tokens_per_s": pb.and_then(|x| x.pointer("/batch16/gen_tokens_per_s")),
                "sample_batch1_tokens_per_s": pb.and_then(|x| x.pointer("/batch1/gen_tokens_per_s")),
            });
            entry["ratio"] = json!({
                "train": ratio(&entry["train"]["tokens_per_s"], pa.and_then(|x| x.get("tokens_per_s"))),
                "sample_batch16": ratio(&entry["sample"]["batch16"]["gen_tokens_per_s"], pb.and_then(|x| x.pointer("/batch16/gen_tokens_per_s"))),
                "sample_batch1": ratio(&entry["sample"]["batch1"]["gen_tokens_per_s"], pb.and_then(|x| x.pointer("/batch1/gen_tokens_per_s"))),
            });
            // The same comparison on each side's fastest repetition: less sensitive to a burst of load
            // from other tenants of the machine during one side's turn.
            entry["ratio_best"] = json!({
                "train": best_ratio(entry["train"].get("sec_per_step_all"), pa.and_then(|x| x.get("sec_per_step_all"))),
                "sample_batch16": best_ratio(entry["sample"].pointer("/batch16/sec_all"), pb.and_then(|x| x.pointer("/batch16/sec_all"))),
                "sample_batch1": best_ratio(entry["sample"].pointer("/batch1/sec_all"), pb.and_then(|x| x.pointer("/batch1/sec_all"))),
            });
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
    let report = json!({
        "threads": pool.threads(),
        "dtype": "f32",
        "device": format!("{dev:?}"),
        "fp32_peak": peak,
        "matmul_1024_gflops": pool.install(|| matmul_gflops(&dev))?,
        "sizes": sizes,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_ratio_compares_the_fastest_repetitions() {
        assert_eq!(best_ratio(Some(&json!([2.0, 1.0, 3.0])), Some(&json!([4.0, 1.5]))), json!(1.5));
        assert_eq!(best_ratio(Some(&json!([])), Some(&json!([1.0]))), Value::Null);
        assert_eq!(best_ratio(None, Some(&json!([1.0]))), Value::Null);
    }

    #[test]
    fn repetitions_follow_flags_then_the_peer_then_the_default() {
        let peer = json!({"steps_config": {"tiny": {"a": [2, 5], "b": [1, 3]}}});
        let key = "/steps_config/tiny/a";
        let r = Reps::resolve(None, None, Some(&peer), key, TRAIN_REPS);
        assert_eq!((r.warmup, r.measured), (2, 5));
        let r = Reps::resolve(Some(0), None, Some(&peer), key, TRAIN_REPS);
        assert_eq!((r.warmup, r.measured), (0, 5));
        let r = Reps::resolve(None, Some(7), Some(&peer), key, TRAIN_REPS);
        assert_eq!((r.warmup, r.measured), (2, 7));
        // A size the peer did not run, and no peer at all: the defaults.
        let r = Reps::resolve(None, None, Some(&peer), "/steps_config/small/a", TRAIN_REPS);
        assert_eq!((r.warmup, r.measured), (1, 3));
        let r = Reps::resolve(None, None, None, key, SAMPLE_REPS);
        assert_eq!((r.warmup, r.measured), (1, 2));
        // At least one measured repetition.
        assert_eq!(Reps::resolve(None, Some(0), None, key, TRAIN_REPS).measured, 1);
    }
}
