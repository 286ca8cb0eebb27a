//! The clipped surrogate policy loss of PPO (Schulman et al. 2017, eq. 7) and GRPO (DeepSeekMath eq. 3),
//! with DAPO's clip-higher (Yu et al. 2025, §3.1: a larger upper ε), its loss aggregations ([`LossAgg`]),
//! and the truncated importance-sampling correction (Yao et al. 2025, "Your Efficient RL Framework
//! Secretly Brings You Off-Policy RL Training") for the gap between the sampler's and the learner's
//! log-probs of the same weights.

use crate::error::{Error, Result};
use crate::rl::{masked_mean_host, same_bt};
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// How per-token losses become one scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAgg {
    /// `Σ_{i,t} m ℓ / Σ_{i,t} m`: every token of the batch weighs the same. DAPO's token-level loss
    /// (§3.3), verl `token-mean`.
    #[default]
    TokenMean,
    /// `mean_i (Σ_t m ℓ / Σ_t m)`: every sequence weighs the same (the original GRPO), verl
    /// `seq-mean-token-mean`. A sequence with no valid token counts as 0.
    SeqMean,
    /// `Σ_{i,t} m ℓ / b`: token sums, no per-length normalization (Dr. GRPO's remedy for the length bias),
    /// verl `seq-mean-token-sum`.
    TokenSum,
}

/// Aggregates a per-token loss over the positions where `mask` is 1.
///
/// ```text
/// # reference (verl core_algos.agg_loss):
/// token-mean:           (loss * mask).sum() / mask.sum()
/// seq-mean-token-mean:  ((loss * mask).sum(-1) / mask.sum(-1)).mean()
/// seq-mean-token-sum:   (loss * mask).sum(-1).mean()
/// ```
///
/// # Shapes
/// `per_token`, `mask`: (b, t) → scalar
pub fn aggregate(per_token: &Tensor, mask: &Tensor, agg: LossAgg) -> Result<Tensor> {
    let (b, _) = same_bt("aggregate", ("per_token", per_token), &[("mask", mask)])?;
    let mask = mask.to_dtype(per_token.dtype())?;
    let masked = (per_token * &mask)?;
    Ok(match agg {
        LossAgg::TokenMean => {
            let n = f64::from(mask.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?);
            (masked.sum_all()? / n.max(1.0))?
        }
        LossAgg::SeqMean => masked.sum(1)?.div(&mask.sum(1)?.maximum(1.0)?)?.mean_all()?,
        LossAgg::TokenSum => (masked.sum_all()? / b.max(1) as f64)?,
    })
}

/// The ratio clip range `[1 − low, 1 + high]`; DAPO's clip-higher raises `high` (0.28 in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    /// ε below 1.
    pub low: f64,
    /// ε above 1.
    pub high: f64,
}

impl Clip {
    /// The same ε on both sides.
    pub fn symmetric(eps: f64) -> Self {
        Clip { low: eps, high: eps }
    }
}

impl Default for Clip {
    fn default() -> Self {
        Clip::symmetric(0.2)
    }
}

/// The policy loss and its metrics.
#[derive(Debug, Clone)]
pub struct PolicyLossOutput {
    /// The aggregated loss (scalar, differentiable through `logps`).
    pub loss: Tensor,
    /// Share of valid tokens whose objective was clipped (`clip_low_fraction + clip_high_fraction`).
    pub clip_fraction: f64,
    /// Share clipped at `1 + high` (positive advantage, ratio above the range).
    pub clip_high_fraction: f64,
    /// Share clipped at `1 − low` (negative advantage, ratio below the range).
    pub clip_low_fraction: f64,
    /// Mean of `old_logp − logp` over valid tokens (verl `ppo_kl`), a drift monitor.
    pub approx_kl: f64,
}

/// The clipped surrogate, per token `max(−A·ρ, −A·clip(ρ, 1 − low, 1 + high))` with
/// `ρ = exp(logp − old_logp)`, times the optional truncated importance-sampling weights, aggregated by
/// `agg`. `old_logps` are π_old's (the sampler's stored log-probs, or the learner's recomputation of
/// them); `advantages` are per sequence (b) — GRPO — or per token (b, t) — PPO.
///
/// ```text
/// # reference (verl core_algos.compute_policy_loss_vanilla; TRL GRPOTrainer._compute_loss):
/// ratio = torch.exp(log_prob - old_log_prob)
/// pg_losses1 = -advantages * ratio
/// pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
/// pg_losses = torch.maximum(pg_losses1, pg_losses2)
/// pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
/// ppo_kl = masked_mean(-(log_prob - old_log_prob), response_mask)
/// if tis_imp_ratio is not None: pg_losses = pg_losses * tis_imp_ratio
/// loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
/// ```
///
/// # Shapes
/// `logps`, `old_logps`, `mask`, `is_weights`: (b, t) f32; `advantages`: (b) or (b, t) → scalar `loss`
pub fn clipped_surrogate(
    logps: &Tensor,
    old_logps: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip: Clip,
    agg: LossAgg,
    is_weights: Option<&Tensor>,
) -> Result<PolicyLossOutput> {
    let (b, t) = same_bt("clipped_surrogate", ("logps", logps), &[("old_logps", old_logps), ("mask", mask)])?;
    let advantages = match advantages.dims() {
        [n] if *n == b => advantages.unsqueeze(1)?.broadcast_as((b, t))?,
        [n, m] if (*n, *m) == (b, t) => advantages.clone(),
        other => {
            return Err(Error::input("clipped_surrogate", format!("logps is ({b}, {t}), advantages is {other:?}")));
        }
    }
    .detach();
    let log_ratio = (logps - old_logps.detach())?;
    let ratio = log_ratio.exp()?;
    let neg_adv = advantages.neg()?;
    let pg1 = (&neg_adv * &ratio)?;
    let pg2 = (&neg_adv * ratio.clamp(1.0 - clip.low, 1.0 + clip.high)?)?;
    let mut per_token = pg1.maximum(&pg2)?;
    if let Some(w) = is_weights {
        same_bt("clipped_surrogate", ("logps", logps), &[("is_weights", w)])?;
        per_token = (per_token * w.detach())?;
    }
    let loss = aggregate(&per_token, mask, agg)?;
    let ratio = ratio.detach();
    let high = (ratio.gt(1.0 + clip.high)?.to_dtype(DType::F32)? * advantages.gt(0.0)?.to_dtype(DType::F32)?)?;
    let low = (ratio.lt(1.0 - clip.low)?.to_dtype(DType::F32)? * advantages.lt(0.0)?.to_dtype(DType::F32)?)?;
    let (clip_high_fraction, clip_low_fraction) = (masked_mean_host(&high, mask)?, masked_mean_host(&low, mask)?);
    Ok(PolicyLossOutput {
        loss,
        clip_fraction: clip_high_fraction + clip_low_fraction,
        clip_high_fraction,
        clip_low_fraction,
        approx_kl: masked_mean_host(&log_ratio.neg()?, mask)?,
    })
}

/// Truncated importance-sampling weights and the share of valid tokens they cap.
#[derive(Debug, Clone)]
pub struct IsWeights {
    /// `min(exp(learner_old_logp − sampler_logp), cap)`, detached.
    pub weights: Tensor,
    /// Share of valid tokens whose ratio exceeded `cap`.
    pub clipped_share: f64,
}

/// Truncated importance sampling (TIS): the sampler (decoding kernels, KV cache, other precision) and the
/// learner give the same weights different log-probs; weighting each token's loss by
/// `min(π_learner_old / π_sampler, cap)` corrects the mismatch with bounded variance.
///
/// ```text
/// # reference (verl compute_policy_loss, tis_imp_ratio_cap):
/// tis_imp_ratio = torch.exp(old_log_prob - rollout_log_probs)
/// tis_imp_ratio = torch.clamp(tis_imp_ratio, max=tis_imp_ratio_cap)
/// ```
///
/// # Shapes
/// `learner_old_logps`, `sampler_logps`, `mask`: (b, t) f32 → `weights` (b, t)
pub fn truncated_is_weights(
    learner_old_logps: &Tensor,
    sampler_logps: &Tensor,
    mask: &Tensor,
    cap: f64,
) -> Result<IsWeights> {
    same_bt(
        "truncated_is_weights",
        ("learner_old_logps", learner_old_logps),
        &[("sampler_logps", sampler_logps), ("mask", mask)],
    )?;
    if !(cap.is_finite() && cap > 0.0) {
        return Err(Error::input("truncated_is_weights", format!("cap must be finite and > 0, got {cap}")));
    }
    let ratio = (learner_old_logps.detach() - sampler_logps.detach())?.exp()?;
    let clipped_share = masked_mean_host(&ratio.gt(cap)?.to_dtype(DType::F32)?, mask)?;
    Ok(IsWeights { weights: ratio.minimum(cap)?, clipped_share })
}

#[cfg(test)]
mod tests;
