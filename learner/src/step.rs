//! One micro-batch's forward and backward, burn style: `step(batch) -> StepOutput { grads, stats }`
//! computes and returns; the [`crate::Learner`] accumulates, clips and applies.
//!
//! Each micro loss is scaled by its share of the whole optimizer step (tokens for LM, pairs for DPO), so
//! the accumulated gradients are those of the full-batch loss (see [`crate::grads`]).

use crate::batch::{LmBatch, PairBatch};
use crate::error::{Error, Result};
use crate::grads::Grads;
use crate::loss::{dpo_loss, lm_loss, sequence_logps};
use crate::rl::{
    aggregate, clipped_surrogate, k3_kl, masked_mean_host, truncated_is_weights, value_loss_clipped, Critic, LossAgg,
    RlAlgo, RlBatch,
};
use candle_core::{DType, Tensor, Var, D};
use phi4r_model::loss::token_logps;
use phi4r_model::Phi3;

/// Gradients and statistics of one micro-batch.
#[derive(Debug, Clone)]
pub struct StepOutput<S> {
    /// Gradients of the scaled micro loss, in variable order.
    pub grads: Grads,
    /// What the micro-batch measured.
    pub stats: S,
}

/// Statistics of an LM micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmStats {
    /// This micro-batch's term of the step loss: its token-mean NLL × its share of the step's trained tokens.
    pub loss: f64,
    /// Trained targets.
    pub loss_tokens: usize,
    /// Real input tokens.
    pub tokens: usize,
    /// Rows.
    pub sequences: usize,
}

/// Forward + backward of the LM loss on `batch`, where the whole optimizer step trains `step_loss_tokens`
/// targets.
///
/// # Shapes
/// `batch`: (b, t) → gradients of every var
pub fn lm_step(model: &Phi3, vars: &[Var], batch: &LmBatch, step_loss_tokens: usize) -> Result<StepOutput<LmStats>> {
    let (b, _) = batch.dims();
    let t = batch.tensors(model.device())?;
    let logits = model.forward(&t.input_ids, batch.layout())?;
    let share = batch.loss_tokens() as f64 / step_loss_tokens.max(1) as f64;
    let loss = (lm_loss(&logits, &t.targets, &t.loss_mask)? * share)?;
    let value = scalar(&loss)?;
    let grads = Grads::from_store(&loss.backward()?, vars);
    Ok(StepOutput {
        grads,
        stats: LmStats { loss: value, loss_tokens: batch.loss_tokens(), tokens: batch.tokens(), sequences: b },
    })
}

/// Statistics of a DPO micro-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DpoMicroStats {
    /// This micro-batch's term of the step loss: its mean DPO loss × its share of the step's pairs.
    pub loss: f64,
    /// Implicit reward of each chosen completion.
    pub chosen_rewards: Vec<f32>,
    /// Implicit reward of each rejected completion.
    pub rejected_rewards: Vec<f32>,
    /// Real input tokens, both sides.
    pub tokens: usize,
    /// Completion tokens, both sides.
    pub loss_tokens: usize,
}

/// Forward (chosen and rejected) + backward of the DPO loss on `pairs`, with the reference log-probs
/// given per row, where the whole optimizer step holds `step_pairs` pairs.
///
/// # Shapes
/// `pairs`: b pairs of (b, t_c) and (b, t_r); `ref_chosen`, `ref_rejected`: b
pub fn dpo_step(
    model: &Phi3,
    vars: &[Var],
    pairs: &PairBatch,
    ref_chosen: &[f32],
    ref_rejected: &[f32],
    beta: f64,
    step_pairs: usize,
) -> Result<StepOutput<DpoMicroStats>> {
    let b = pairs.len();
    if ref_chosen.len() != b || ref_rejected.len() != b {
        return Err(Error::input(
            "dpo_step",
            format!("{b} pairs, {} chosen and {} rejected reference log-probs", ref_chosen.len(), ref_rejected.len()),
        ));
    }
    let dev = model.device();
    let policy = |batch: &LmBatch| -> Result<Tensor> {
        let t = batch.tensors(dev)?;
        let logits = model.forward(&t.input_ids, batch.layout())?;
        sequence_logps(&logits, &t.targets, &t.loss_mask)
    };
    let policy_chosen = policy(pairs.chosen())?;
    let policy_rejected = policy(pairs.rejected())?;
    let ref_c = Tensor::from_slice(ref_chosen, b, dev)?;
    let ref_r = Tensor::from_slice(ref_rejected, b, dev)?;
    let out = dpo_loss(&policy_chosen, &policy_rejected, &ref_c, &ref_r, beta)?;
    let loss = (out.loss * (b as f64 / step_pairs.max(1) as f64))?;
    let value = scalar(&loss)?;
    let grads = Grads::from_store(&loss.backward()?, vars);
    Ok(StepOutput {
        grads,
        stats: DpoMicroStats {
            loss: value,
            chosen_rewards: out.chosen_rewards,
            rejected_rewards: out.rejected_rewards,
            tokens: pairs.chosen().tokens() + pairs.rejected().tokens(),
            loss_tokens: pairs.chosen().loss_tokens() + pairs.rejected().loss_tokens(),
        },
    })
}

/// PPO's inputs to a micro-batch beyond the [`RlBatch`]: the critic and the step's targets for this
/// micro-batch, row-major `(b·t)` over its target positions.
#[derive(Clone, Copy)]
pub struct PpoMicro<'a> {
    /// The value head.
    pub critic: &'a Critic,
    /// Per-token advantages (GAE, whitened over the step).
    pub advantages: &'a [f32],
    /// The critic's values at the start of the step.
    pub old_values: &'a [f32],
    /// GAE returns (the value targets).
    pub returns: &'a [f32],
    /// The value loss's clip around `old_values`.
    pub value_clip: f64,
}

/// The decoupled objective's inputs to a micro-batch ([`crate::rl::OffPolicy::Decoupled`]).
#[derive(Clone, Copy)]
pub struct ProximalMicro<'a> {
    /// The learner's log-probs at the start of the step (π_prox), row-major `(b·t)`: π_old of the ratio.
    pub logps: &'a [f32],
    /// Cap of the weight `π_prox / π_sampler`.
    pub cap: f64,
}

/// A stage-4 micro-batch's gradients (the policy's, and with PPO the value head's) and statistics.
#[derive(Debug, Clone)]
pub struct RlMicroOutput {
    /// Gradients of the policy's variables.
    pub grads: Grads,
    /// Gradients of the value head's variables (PPO).
    pub value_grads: Option<Grads>,
    /// What the micro-batch measured.
    pub stats: RlMicroStats,
}

/// What one stage-4 micro-batch measured (host numbers; rates are means over its completion tokens).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RlMicroStats {
    /// This micro-batch's share of the step loss (policy loss + `kl_coef` × KL).
    pub loss: f64,
    /// Its share of the clipped-surrogate loss alone.
    pub pg_loss: f64,
    /// Mean k3 KL to the reference per completion token (0 without a reference pass).
    pub kl: f64,
    /// Share of completion tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// Mean `old − new` log-prob per completion token (ratio drift from the sampler).
    pub approx_kl: f64,
    /// Mean entropy of the policy per completion token (nats).
    pub entropy: f64,
    /// Completion tokens.
    pub completion_tokens: usize,
    /// Real input tokens.
    pub tokens: usize,
    /// Completions.
    pub completions: usize,
    /// PPO: its share of the value loss (0 for GRPO).
    pub value_loss: f64,
    /// PPO: share of completion tokens where the clipped value error was the larger (0 for GRPO).
    pub value_clip_fraction: f64,
    /// Decoupled objective: share of completion tokens whose importance weight hit the cap (0 otherwise).
    pub is_capped_share: f64,
}

/// One stage-4 micro-batch: the policy's per-token log-probs of the completions, GRPO's clipped surrogate
/// against the sampler's log-probs (π_old), plus `kl_coef` × the k3 KL to `reference` (whose forward
/// runs only when `kl_coef > 0`), aggregated by `agg` and scaled by `share` (this micro-batch's share of
/// the step: tokens for token-mean, completions otherwise), then backward. With `ppo`, the advantages are
/// its per-token ones, and the critic's clipped value loss (on the detached final hidden state, so only
/// the head learns from it) joins the same backward.
///
/// ```text
/// # reference (TRL GRPOTrainer._compute_loss, with verl's clip-higher and agg_loss):
/// ratio = exp(logps - old_logps); pg = max(-A * ratio, -A * clamp(ratio, 1 - eps_low, 1 + eps_high))
/// loss = agg(pg + kl_coef * (exp(ref - logps) - (ref - logps) - 1), mask)
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rl_step(
    model: &Phi3,
    vars: &[Var],
    reference: Option<&Phi3>,
    batch: &RlBatch,
    algo: &RlAlgo,
    kl_coef: f64,
    agg: LossAgg,
    share: f64,
    ppo: Option<PpoMicro>,
    proximal: Option<ProximalMicro>,
) -> Result<RlMicroOutput> {
    let (b, t) = batch.lm().dims();
    let dev = model.device();
    let tensors = batch.lm().tensors(dev)?;
    let (hidden, logits) = tempered_forward(model, batch, &tensors)?;
    let logps = token_logps(&logits, &tensors.targets)?;
    let mask = &tensors.loss_mask;
    let sampler_logps = Tensor::from_slice(batch.old_logps(), (b, t), dev)?;
    let advantages = match &ppo {
        Some(p) => Tensor::from_slice(p.advantages, (b, t), dev)?,
        None => Tensor::from_slice(batch.advantages(), b, dev)?,
    };
    let (old_logps, is) = match proximal {
        Some(p) => {
            let prox = Tensor::from_slice(p.logps, (b, t), dev)?;
            let is = truncated_is_weights(&prox, &sampler_logps, mask, p.cap)?;
            (prox, Some(is))
        }
        None => (sampler_logps, None),
    };
    let pg =
        clipped_surrogate(&logps, &old_logps, &advantages, mask, algo.clip(), agg, is.as_ref().map(|w| &w.weights))?;
    let (loss, kl) = if kl_coef > 0.0 {
        let reference = reference.ok_or_else(|| {
            Error::input("rl_step", "rl.kl_coef > 0 needs a reference model (Learner::with_reference)")
        })?;
        let ref_logits = reference.forward(&tensors.input_ids, batch.lm().layout())?.detach();
        let ref_logits = tempered(&ref_logits, &row_temperatures(batch, dev)?)?;
        let ref_logps = token_logps(&ref_logits, &tensors.targets)?;
        let per_token_kl = k3_kl(&logps, &ref_logps)?;
        let kl = masked_mean_host(&per_token_kl, mask)?;
        ((&pg.loss + (aggregate(&per_token_kl, mask, agg)? * kl_coef)?)?, kl)
    } else {
        (pg.loss.clone(), 0.0)
    };
    let (loss, value_part) = match &ppo {
        Some(p) => {
            let values = p.critic.values(&hidden)?;
            let old = Tensor::from_slice(p.old_values, (b, t), dev)?;
            let returns = Tensor::from_slice(p.returns, (b, t), dev)?;
            let v = value_loss_clipped(&values, &old, &returns, mask, p.value_clip, agg)?;
            let part = (scalar(&v.loss)? * share, v.clip_fraction);
            ((loss + v.loss)?, Some(part))
        }
        None => (loss, None),
    };
    let loss = (loss * share)?;
    let pg_loss = scalar(&pg.loss)? * share;
    let (value_loss, value_clip_fraction) = value_part.unwrap_or((0.0, 0.0));
    // The step loss reported is the policy's (the value loss is its own metric).
    let value = scalar(&loss)? - value_loss;
    let entropy = masked_mean_entropy(&logits.detach(), mask)?;
    let store = loss.backward()?;
    let grads = Grads::from_store(&store, vars);
    let value_grads = ppo.map(|p| Grads::from_store(&store, &p.critic.vars()));
    Ok(RlMicroOutput {
        grads,
        value_grads,
        stats: RlMicroStats {
            loss: value,
            pg_loss,
            kl,
            clip_fraction: pg.clip_fraction,
            approx_kl: pg.approx_kl,
            entropy,
            completion_tokens: batch.completion_tokens(),
            tokens: batch.lm().tokens(),
            completions: b,
            value_loss,
            value_clip_fraction,
            is_capped_share: is.map_or(0.0, |w| w.clipped_share),
        },
    })
}

/// Each row's sampling temperature as a `(b, 1, 1)` tensor, to divide logits by.
fn row_temperatures(batch: &RlBatch, dev: &candle_core::Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(batch.temperatures(), (batch.len(), 1, 1), dev)?)
}

/// The policy's final hidden states `(b, t, h)` and its logits `(b, t, v)` at each row's sampling
/// temperature — the distribution the row's completion was drawn from.
pub(crate) fn tempered_forward(
    model: &Phi3,
    batch: &RlBatch,
    tensors: &crate::batch::LmTensors,
) -> Result<(Tensor, Tensor)> {
    let hidden = model.forward_hidden(&tensors.input_ids, batch.lm().layout())?;
    let logits = tempered(&model.lm_head(&hidden)?, &row_temperatures(batch, model.device())?)?;
    Ok((hidden, logits))
}

/// `logits / temps` in f32, whatever the model's dtype: a bf16 model (the GPU default) gives bf16 logits,
/// which are taken to f32 before the division (as `token_logps` would take them anyway), so the
/// temperature does not round in bf16 and the f32 row temperatures divide a tensor of their own dtype.
fn tempered(logits: &Tensor, temps: &Tensor) -> Result<Tensor> {
    Ok(logits.to_dtype(DType::F32)?.broadcast_div(temps)?)
}

/// Positions per chunk of the entropy metric, so its `(b, t, v)` temporaries stay a slice of the logits'
/// size at long sequence lengths and large vocabularies.
const ENTROPY_CHUNK: usize = 512;

/// Mean entropy over positions with mask 1 (0 for an empty mask), computed in chunks of positions.
fn masked_mean_entropy(logits: &Tensor, mask: &Tensor) -> Result<f64> {
    let (_, t, _) = logits.dims3()?;
    let mask = mask.to_dtype(DType::F32)?;
    let den = f64::from(mask.sum_all()?.to_scalar::<f32>()?);
    if den == 0.0 {
        return Ok(0.0);
    }
    let mut num = 0.0;
    for start in (0..t).step_by(ENTROPY_CHUNK) {
        let len = ENTROPY_CHUNK.min(t - start);
        let entropy = token_entropy(&logits.narrow(1, start, len)?)?;
        num += f64::from((entropy * mask.narrow(1, start, len)?)?.sum_all()?.to_scalar::<f32>()?);
    }
    Ok(num / den)
}

/// Entropy of the softmax of each row of `logits`, `−Σ p log p`.
///
/// # Shapes
/// `logits`: (b, t, v) → (b, t)
fn token_entropy(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    Ok((logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    // python: p = softmax([1, 2, 3]); -(p * log p).sum() = 0.832396
    //         uniform over 4: log(4) = 1.386294
    // Over 600 positions (two chunks), half masked out, mean of the masked-in ones.
    #[test]
    fn entropy_by_hand_across_chunks() -> Result<()> {
        let dev = Device::Cpu;
        let t = 600;
        let mut rows = Vec::with_capacity(t * 4);
        for i in 0..t {
            rows.extend(if i % 2 == 0 { [0f32, 0., 0., 0.] } else { [1f32, 2., 3., -1e9] });
        }
        let logits = Tensor::from_vec(rows, (1, t, 4), &dev)?;
        let even: Vec<f32> = (0..t).map(|i| if i % 2 == 0 { 1. } else { 0. }).collect();
        let odd: Vec<f32> = even.iter().map(|m| 1. - m).collect();
        let e = masked_mean_entropy(&logits, &Tensor::from_vec(even, (1, t), &dev)?)?;
        assert!((e - 1.386294).abs() < 1e-5, "{e}");
        let e = masked_mean_entropy(&logits, &Tensor::from_vec(odd, (1, t), &dev)?)?;
        assert!((e - 0.832396).abs() < 1e-5, "{e}");
        Ok(())
    }
}
