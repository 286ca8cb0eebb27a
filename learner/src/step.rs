//! One micro-batch's forward and backward, burn style: `step(batch) -> StepOutput { grads, stats }`
//! computes and returns; the [`crate::Learner`] accumulates, clips and applies.
//!
//! Each micro loss is scaled by its share of the whole optimizer step (tokens for LM, pairs for DPO), so
//! the accumulated gradients are those of the full-batch loss (see [`crate::grads`]).

use crate::batch::{LmBatch, PairBatch};
use crate::error::{Error, Result};
use crate::grads::Grads;
use crate::loss::{dpo_loss, lm_loss, sequence_logps};
use candle_core::{DType, Tensor, Var};
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

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
