//! Stage 4 (RLVR): the math as pure functions, the `[rl]` config ([`RlConfig`]), the batches
//! [`crate::Learner::rl_step`] consumes ([`RlBatch`]), and the synchronous on-policy step (`sync`:
//! [`phi4r_replay::collect_groups`] then [`train_collected`]). GRPO and PPO ([`Critic`], [`ppo_targets`])
//! are wired, with several updates per batch (`rl.epochs`, `rl.mini_batches`) and overlong handling
//! ([`Overlong`]) and the decoupled / truncated-IS objective ([`OffPolicy`]).
//!
//! - [`grpo_advantages`] (`advantage`): group-relative advantages, `(r − mean) / (std + ε)` or, with
//!   [`AdvNorm::None`], Dr. GRPO's `r − mean`.
//! - [`gae`], [`outcome_rewards`], [`whiten`] (`gae`): PPO's generalized advantage estimate with the ±1
//!   reward on the final token.
//! - [`k3_kl`] (`kl`): the per-token k3 estimator of KL(π_θ ‖ π_ref).
//! - [`clipped_surrogate`], [`truncated_is_weights`], [`aggregate`] (`policy_loss`): PPO/GRPO's clipped
//!   objective with clip-higher ([`Clip`]), the three [`LossAgg`] aggregations, and the truncated
//!   importance-sampling correction for sampler/learner log-prob mismatch.
//! - [`value_loss_clipped`] (`value`): PPO's clipped value loss.
//! - [`overlong_penalty`], [`Overlong`] (`overlong`): DAPO's soft overlong punishment, or masking
//!   truncated completions from the loss.
//!
//! Per-token losses take candle tensors and stay differentiable through `logps` / `values`; the old,
//! sampler and reference log-probs and the advantages are detached. Shape letters: `b` batch, `t` time
//! (completion tokens), `g` group size.

mod advantage;
mod batch;
mod config;
mod critic;
mod gae;
mod kl;
mod overlong;
mod policy_loss;
mod sync;
mod value;

pub use advantage::{grpo_advantages, AdvNorm};
pub use batch::{OverlongStats, RlBatch, RlRow};
pub use config::{OffPolicy, RlAlgo, RlConfig, WeightSync};
pub use critic::{Critic, VALUE_HEAD_FILE, VALUE_OPTIMIZER_FILE};
pub use gae::{explained_variance, gae, outcome_rewards, ppo_targets, whiten};
pub use kl::k3_kl;
pub use overlong::{overlong_penalty, Overlong, OverlongOutcome};
pub use policy_loss::{aggregate, clipped_surrogate, truncated_is_weights, Clip, IsWeights, LossAgg, PolicyLossOutput};
pub use sync::{rl_sync_step, train_collected, train_groups, RlStepReport, RlTrainReport};
pub use value::{value_loss_clipped, ValueLossOutput};

use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// `(b, t)` of `x`, after checking that every other tensor in `others` has the same shape.
fn same_bt(op: &'static str, x: (&str, &Tensor), others: &[(&str, &Tensor)]) -> Result<(usize, usize)> {
    let (b, t) = x.1.dims2()?;
    for (name, o) in others {
        let dims = o.dims();
        if dims != [b, t] {
            return Err(Error::input(op, format!("{} is ({b}, {t}), {name} is {dims:?}", x.0)));
        }
    }
    Ok((b, t))
}

/// `Σ x·mask / Σ mask` as a host number (0 when the mask is empty): for metrics, never differentiated.
pub(crate) fn masked_mean_host(x: &Tensor, mask: &Tensor) -> Result<f64> {
    let mask = mask.to_dtype(DType::F32)?;
    let den = f64::from(mask.sum_all()?.to_scalar::<f32>()?);
    if den == 0.0 {
        return Ok(0.0);
    }
    let num = f64::from((x.detach().to_dtype(DType::F32)? * &mask)?.sum_all()?.to_scalar::<f32>()?);
    Ok(num / den)
}

#[cfg(test)]
fn close(a: f32, b: f32, tol: f32) {
    assert!((a - b).abs() < tol, "{a} vs {b}");
}
