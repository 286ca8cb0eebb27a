//! `phi4r-actors bench gpu`: the device check of the GPU learner, as JSON — the same seeded model on the
//! `--device` and on the CPU (logits in f32 and in bf16, every parameter's gradient, two training steps'
//! losses), then training tok/s with MFU against the device's peak and sampling tok/s at several batch
//! sizes, per model size. `scripts/gpu_check.sh` runs it on an NVIDIA GPU; with `--device cpu` it
//! compares the CPU with itself (what the test suite runs, so the command cannot rot while no GPU is
//! around).

use candle_core::{DType, Device, Tensor};
use clap::Args;
use phi4r_model::bench::{CpuPeak, Reps};
use phi4r_model::{AttentionLayout, ComputePool, Phi3, Phi3Config, TrainableModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct GpuBenchArgs {
    /// Preset of the parity checks (logits, gradients, training steps against the CPU).
    #[arg(long, default_value = "small")]
    parity_size: String,
    /// Comma-separated presets to time (training and sampling); `phi4-mini` is a randomly initialised
    /// model of Phi-4-mini's shape (3.8B parameters), vocabulary included.
    #[arg(long, default_value = "small,phi4-mini")]
    sizes: String,
    /// Rows per training step.
    #[arg(long, default_value_t = 16)]
    train_batch: usize,
    /// Tokens per training row.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Measured training steps per size (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Comma-separated sampling batch sizes.
    #[arg(long, default_value = "1,16,64")]
    sample_batches: String,
    /// New tokens per sampled sequence (32-token prompts; no early stop).
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// The device's dense bf16 peak in TFLOP/s, for MFU [default: 989.4, an H100/H200 SXM; on the CPU,
    /// the detected f32 peak].
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Skip the sizes above this many parameters for sampling (a 3.8B model's decode is timed by the
    /// training figure's forward already; sampling it at batch 64 is minutes of KV cache traffic).
    #[arg(long, default_value_t = 1_000_000_000)]
    sample_max_params: usize,
}

/// H100/H200 SXM dense bf16 tensor-core peak (NVIDIA's datasheet, without sparsity).
const H200_BF16_TFLOPS: f64 = 989.4;

pub fn run(a: GpuBenchArgs, pool: &ComputePool) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let peak_gflops = match (a.peak_tflops, dev.is_cpu()) {
        (Some(t), _) => t * 1e3,
        (None, false) => H200_BF16_TFLOPS * 1e3,
        (None, true) => CpuPeak::detect(pool.threads()).gflops,
    };
    let batches = a
        .sample_batches
        .split(',')
        .map(|b| {
            b.trim()
                .parse::<usize>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| anyhow::anyhow!("--sample-batches: `{b}` is not a batch size"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let parity = pool.install(|| parity(&super::bench::config(&a.parity_size)?, &dev))?;
    eprintln!("[bench gpu] parity ({}) in {:.1} s: {parity}", a.parity_size, t0.elapsed().as_secs_f64());
    let mut sizes = serde_json::Map::new();
    for size in a.sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let cfg = if size == "phi4-mini" { phi4r_model::Phi3Config::phi4_mini() } else { super::bench::config(size)? };
        let t0 = Instant::now();
        let reps = Reps { warmup: 1, measured: a.steps };
        let train =
            pool.install(|| super::bench::train_bench(&cfg, (a.train_batch, a.seq), reps, &dev, peak_gflops))?;
        let sample = if cfg.num_params() <= a.sample_max_params {
            let reps = Reps { warmup: 1, measured: 2 };
            pool.install(|| super::bench::sample_bench(&cfg, &batches, a.new_tokens, reps, &dev))?
        } else {
            json!({"skipped": format!("{} parameters > --sample-max-params", cfg.num_params())})
        };
        let entry =
            json!({"params": cfg.num_params(), "train": train, "sample": sample, "wall_s": t0.elapsed().as_secs_f64()});
        eprintln!("[bench gpu] {size}: {entry}");
        sizes.insert(size.to_string(), entry);
    }
    let report = json!({
        "device": format!("{dev:?}"),
        "dtype": crate::cli::dtype(&dev).as_str(),
        "threads": pool.threads(),
        "peak_gflops": peak_gflops,
        "parity": parity,
        "sizes": sizes,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Random ids `3..vocab` of `b` rows × `t` tokens.
fn random_ids(cfg: &Phi3Config, b: usize, t: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..b * t).map(|_| rng.random_range(3..cfg.vocab_size.max(4) as u32)).collect()
}

fn logits(model: &Phi3, ids: &[u32], b: usize, t: usize) -> anyhow::Result<Tensor> {
    let input = Tensor::from_vec(ids.to_vec(), (b, t), model.device())?;
    Ok(model.forward(&input, &AttentionLayout::full(b, t))?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
}

fn max_abs_diff(x: &Tensor, y: &Tensor) -> anyhow::Result<f64> {
    Ok((x - y)?.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The same seeded model (the init is drawn on the CPU, so it is identical on every device) on the CPU in
/// f32 and on `dev` in f32 and bf16: logits, the LM loss, every parameter's gradient, and the losses of
/// two learner steps.
fn parity(cfg: &Phi3Config, dev: &Device) -> anyhow::Result<Value> {
    let (b, t) = (4, 64);
    let ids = random_ids(cfg, b, t, 1);
    let cpu = TrainableModel::init(cfg, 0, DType::F32, &Device::Cpu)?;
    let reference = logits(&cpu.model, &ids, b, t)?;
    let scale = reference.abs()?.max_all()?.to_scalar::<f32>()? as f64;
    let mut out = serde_json::Map::new();
    for dtype in [DType::F32, DType::BF16] {
        let m = TrainableModel::init(cfg, 0, dtype, dev)?;
        let diff = max_abs_diff(&logits(&m.model, &ids, b, t)?, &reference)?;
        out.insert(format!("logits_max_abs_diff_{}", dtype.as_str()), json!(diff));
        out.insert(format!("logits_max_rel_diff_{}", dtype.as_str()), json!(diff / scale.max(1e-12)));
        out.insert(format!("gradients_{}", dtype.as_str()), gradients(&m, &ids, b, t)?);
    }
    out.insert("logits_max_abs".into(), json!(scale));
    // Two optimizer steps of the learner (forward, loss, backward, clipping, AdamW) on both devices:
    // the second loss shows the first update agrees too.
    let reps = Reps { warmup: 0, measured: 2 };
    let on_cpu = phi4r_learner::bench::time_train_steps(cpu, b, t, reps, 3)?;
    let on_dev = phi4r_learner::bench::time_train_steps(TrainableModel::init(cfg, 0, DType::F32, dev)?, b, t, reps, 3)?;
    out.insert(
        "train_steps_f32".into(),
        json!({"cpu_losses": [on_cpu.first_loss, on_cpu.final_loss], "device_losses": [on_dev.first_loss, on_dev.final_loss],
               "max_abs_diff": (on_cpu.first_loss - on_dev.first_loss).abs().max((on_cpu.final_loss - on_dev.final_loss).abs())}),
    );
    Ok(Value::Object(out))
}

/// The LM loss on `ids` and one backward: how many parameters got no gradient, a zero one, or a
/// non-finite one (all 0 when every weight trains).
fn gradients(m: &TrainableModel, ids: &[u32], b: usize, t: usize) -> anyhow::Result<Value> {
    let dev = m.model.device();
    let input = Tensor::from_vec(ids.to_vec(), (b, t), dev)?;
    let logits = m.model.forward(&input, &AttentionLayout::full(b, t))?;
    let targets = input.narrow(1, 1, t - 1)?;
    let logits = logits.narrow(1, 0, t - 1)?;
    let mask = Tensor::ones((b, t - 1), DType::F32, dev)?;
    let loss = phi4r_learner::lm_loss(&logits, &targets, &mask)?;
    let grads = loss.backward()?;
    let (mut missing, mut zero, mut non_finite) = (vec![], vec![], vec![]);
    let vars = m.vars();
    for (name, v) in &vars {
        match grads.get(v.as_tensor()) {
            None => missing.push(name.clone()),
            Some(g) => {
                let a = g.to_dtype(DType::F64)?.abs()?.sum_all()?.to_scalar::<f64>()?;
                if !a.is_finite() {
                    non_finite.push(name.clone());
                } else if a == 0.0 {
                    zero.push(name.clone());
                }
            }
        }
    }
    Ok(json!({"loss": loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, "parameters": vars.len(),
              "missing": missing, "zero": zero, "non_finite": non_finite}))
}
