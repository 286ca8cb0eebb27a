//! The training figure of `phi4r-actors bench model`: the learner's own optimizer step
//! ([`Learner::train_step`]: forward, masked LM loss, backward, global-norm clipping, the finite check and
//! AdamW), timed on random tokens, so the speed the README reports is the product's, not a loop of the
//! benchmark's own.

use crate::batch::LmBatch;
use crate::config::{Stage, StageConfig};
use crate::error::Result;
use crate::learner::Learner;
use crate::schedule::Decay;
use phi4r_model::bench::Reps;
use phi4r_model::TrainableModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// What the timed steps did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainTiming {
    /// Seconds of each measured step.
    pub sec_per_step_all: Vec<f64>,
    /// Loss of the first step (warm-up included).
    pub first_loss: f64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Steps skipped for a non-finite loss or gradient (0 in a healthy run).
    pub skipped: usize,
}

/// The stage config of the timed step: one micro-batch of `b` rows of `t` tokens, lr 1e-4 constant, the
/// stage defaults otherwise (gradient clipping at 1.0, AdamW as the stages run it).
pub fn bench_config(b: usize, t: usize) -> StageConfig {
    StageConfig {
        seq_len: t,
        batch_size: b,
        micro_batch: b,
        lr: 1e-4,
        warmup_ratio: 0.0,
        decay: Decay::Constant,
        ..StageConfig::seed(Stage::Sft)
    }
}

/// Runs `reps.warmup` untimed and `reps.measured` timed [`Learner::train_step`]s of `model` on one
/// batch of `b` rows × `t` random tokens (ids `3..vocab`, every position a target).
pub fn time_train_steps(model: TrainableModel, b: usize, t: usize, reps: Reps, seed: u64) -> Result<TrainTiming> {
    let vocab = model.model.config().vocab_size as u32;
    let total = (reps.warmup + reps.measured) as u64;
    let mut learner = Learner::new(model, bench_config(b, t), total)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let rows: Vec<(Vec<u32>, Vec<u8>)> =
        (0..b).map(|_| ((0..t).map(|_| rng.random_range(3..vocab.max(4))).collect(), vec![1u8; t])).collect();
    let batch = [LmBatch::from_padded(&rows, 0)?];
    let mut timing = TrainTiming { sec_per_step_all: vec![], first_loss: f64::NAN, final_loss: f64::NAN, skipped: 0 };
    for i in 0..reps.warmup + reps.measured {
        let t0 = Instant::now();
        let ev = learner.train_step(&batch)?;
        let dt = t0.elapsed().as_secs_f64();
        if i >= reps.warmup {
            timing.sec_per_step_all.push(dt);
        }
        if i == 0 {
            timing.first_loss = ev.loss;
        }
        timing.final_loss = ev.loss;
        timing.skipped += usize::from(ev.skipped);
    }
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn times_the_learners_step_and_trains() -> Result<()> {
        let mut cfg = phi4r_model::Phi3Config::tiny();
        (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (64, 32, 64, 1);
        let model = TrainableModel::init(&cfg, 0, DType::F32, &Device::Cpu)?;
        let reps = Reps { warmup: 1, measured: 3 };
        let t = time_train_steps(model, 2, 16, reps, 1)?;
        assert_eq!(t.sec_per_step_all.len(), 3);
        assert!(t.sec_per_step_all.iter().all(|s| *s > 0.0));
        assert_eq!(t.skipped, 0);
        // Four real steps on one fixed batch lower its loss.
        assert!(t.final_loss < t.first_loss, "{} -> {}", t.first_loss, t.final_loss);
        Ok(())
    }
}
