//! Losses of stages 1–3 as plain functions over tensors: the masked next-token cross-entropy
//! ([`lm_loss`]), per-sequence log-probs ([`sequence_logps`]) and the sigmoid DPO loss ([`dpo_loss`]).

use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use phi4r_model::loss::{masked_cross_entropy, token_logps};

/// Token-mean negative log-likelihood over positions where `mask` is 1: the LM loss of stages 1 and 2.
///
/// Packing-aware through the mask: a packed row's mask is 0 where the next token starts another
/// document (see [`crate::LmBatch::from_packed`]), so documents are trained exactly as if unpacked.
/// With an all-zero mask the loss is 0.
///
/// ```text
/// # reference (PyTorch): token-mean over trained targets
/// nll = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
/// loss = (nll * mask).sum() / mask.sum()
/// ```
///
/// # Shapes
/// `logits`: (b, t, v); `targets`: (b, t) u32; `mask`: (b, t) f32 → scalar
pub fn lm_loss(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check_mask("lm_loss", logits, mask)?;
    Ok(masked_cross_entropy(logits, targets, mask)?)
}

/// Sum of target log-probs over positions where `mask` is 1, per sequence: DPO's `log π(y|x)` with the
/// mask covering the completion only.
///
/// ```text
/// # reference (TRL DPOTrainer.get_batch_logps, summed):
/// per_token_logps = torch.gather(logits.log_softmax(-1), 2, labels.unsqueeze(2)).squeeze(2)
/// logps = (per_token_logps * loss_mask).sum(-1)
/// ```
///
/// # Shapes
/// `logits`: (b, t, v); `targets`: (b, t) u32; `mask`: (b, t) f32 → (b) f32
pub fn sequence_logps(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check_mask("sequence_logps", logits, mask)?;
    let logps = token_logps(logits, targets)?;
    Ok((logps * mask.to_dtype(DType::F32)?)?.sum(1)?)
}

/// The DPO loss and its metrics for a batch of pairs.
#[derive(Debug, Clone)]
pub struct DpoOutput {
    /// Mean loss over the pairs (scalar, differentiable through the policy log-probs).
    pub loss: Tensor,
    /// Implicit reward of each chosen completion, `β (log π(y_c) − log π_ref(y_c))`.
    pub chosen_rewards: Vec<f32>,
    /// Implicit reward of each rejected completion, `β (log π(y_r) − log π_ref(y_r))`.
    pub rejected_rewards: Vec<f32>,
    /// Share of pairs whose chosen reward is strictly above the rejected one.
    pub reward_accuracy: f32,
    /// Mean of `chosen_reward − rejected_reward`.
    pub margin: f32,
}

/// Sigmoid DPO loss (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7), as TRL's
/// `DPOTrainer.dpo_loss` with `loss_type="sigmoid"` and no label smoothing:
///
/// ```text
/// logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
/// losses = -F.logsigmoid(beta * logits)
/// chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
/// rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
/// loss = losses.mean()
/// reward_accuracy = (chosen_rewards > rejected_rewards).float().mean()
/// margin = (chosen_rewards - rejected_rewards).mean()
/// ```
///
/// The reference log-probs carry no gradient (they are detached here in any case).
///
/// # Shapes
/// every input: (b) f32 summed sequence log-probs → `loss` scalar
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
) -> Result<DpoOutput> {
    let b = policy_chosen.dims1()?;
    for (name, t) in [("policy_rejected", policy_rejected), ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected)]
    {
        let n = t.dims1()?;
        if n != b {
            return Err(Error::input("dpo_loss", format!("policy_chosen has {b} pairs, {name} has {n}")));
        }
    }
    if b == 0 {
        return Err(Error::input("dpo_loss", "no pairs"));
    }
    let chosen_logratios = (policy_chosen - ref_chosen.detach())?;
    let rejected_logratios = (policy_rejected - ref_rejected.detach())?;
    let logits = (&chosen_logratios - &rejected_logratios)?;
    let loss = log_sigmoid(&(logits * beta)?)?.neg()?.mean_all()?;
    let chosen_rewards: Vec<f32> = (chosen_logratios.detach() * beta)?.to_dtype(DType::F32)?.to_vec1()?;
    let rejected_rewards: Vec<f32> = (rejected_logratios.detach() * beta)?.to_dtype(DType::F32)?.to_vec1()?;
    let (wins, margin_sum) = chosen_rewards
        .iter()
        .zip(&rejected_rewards)
        .fold((0usize, 0f64), |(w, m), (c, r)| (w + usize::from(c > r), m + f64::from(c - r)));
    Ok(DpoOutput {
        loss,
        reward_accuracy: wins as f32 / b as f32,
        margin: (margin_sum / b as f64) as f32,
        chosen_rewards,
        rejected_rewards,
    })
}

/// `log σ(x) = min(x, 0) − log(1 + e^{−|x|})`, stable for large |x| and differentiable.
fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let softplus_tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.minimum(0f64)? - softplus_tail)?)
}

fn check_mask(op: &'static str, logits: &Tensor, mask: &Tensor) -> Result<()> {
    let (b, t, _) = logits.dims3()?;
    let (mb, mt) = mask.dims2()?;
    if (b, t) != (mb, mt) {
        return Err(Error::input(op, format!("logits ({b}, {t}, v) vs mask ({mb}, {mt})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: f32, b: f32, tol: f32) {
        assert!((a - b).abs() < tol, "{a} vs {b}");
    }

    // torch:
    //   logits = torch.tensor([[[1., 2., 3.], [0., 0., 0.]]]); t = torch.tensor([[2, 0]])
    //   lp = logits.log_softmax(-1).gather(-1, t[..., None])[..., 0]  -> [[-0.4076, -1.0986]]
    //   (-lp * m).sum() / m.sum(): m = [1, 1] -> 0.7531; m = [0, 1] -> 1.0986
    //   (lp * m).sum(-1): m = [1, 1] -> -1.5062
    #[test]
    fn lm_loss_and_sequence_logps_match_torch() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[[1f32, 2., 3.], [0., 0., 0.]]], &dev)?;
        let t = Tensor::new(&[[2u32, 0]], &dev)?;
        let all = Tensor::new(&[[1f32, 1.]], &dev)?;
        close(lm_loss(&logits, &t, &all)?.to_scalar::<f32>()?, 0.7531, 1e-4);
        close(lm_loss(&logits, &t, &Tensor::new(&[[0f32, 1.]], &dev)?)?.to_scalar::<f32>()?, 1.0986, 1e-4);
        close(sequence_logps(&logits, &t, &all)?.to_vec1::<f32>()?[0], -1.5062, 1e-4);
        assert!(lm_loss(&logits, &t, &Tensor::new(&[[1f32, 1., 1.]], &dev)?).is_err());
        Ok(())
    }

    // python (same as TRL's sigmoid loss):
    //   pc, pr, rc, rr = [-1.0, -2.0], [-1.5, -1.0], [-1.2, -2.0], [-1.2, -1.5]; beta = 0.1
    //   losses = -logsigmoid(beta * ((pc - rc) - (pr - rr))) = [0.668460, 0.718460]; mean 0.693460
    //   chosen_rewards = [0.02, 0.0]; rejected_rewards = [-0.03, 0.05]; accuracy 0.5; margin 0.0
    //   d loss / d pc = -beta * sigmoid(-beta * logits) / 2 = [-0.0243751, -0.0256249]
    #[test]
    fn dpo_loss_matches_trl() -> Result<()> {
        let dev = Device::Cpu;
        let pc = Var::new(&[-1.0f32, -2.0], &dev)?;
        let pr = Tensor::new(&[-1.5f32, -1.0], &dev)?;
        let rc = Tensor::new(&[-1.2f32, -2.0], &dev)?;
        let rr = Tensor::new(&[-1.2f32, -1.5], &dev)?;
        let out = dpo_loss(pc.as_tensor(), &pr, &rc, &rr, 0.1)?;
        close(out.loss.to_scalar::<f32>()?, 0.693460, 1e-5);
        for (a, b) in out.chosen_rewards.iter().zip([0.02, 0.0]) {
            close(*a, b, 1e-6);
        }
        for (a, b) in out.rejected_rewards.iter().zip([-0.03, 0.05]) {
            close(*a, b, 1e-6);
        }
        close(out.reward_accuracy, 0.5, 1e-6);
        close(out.margin, 0.0, 1e-6);
        let grads = out.loss.backward()?;
        let g = grads.get(pc.as_tensor()).ok_or_else(|| Error::input("test", "no grad"))?.to_vec1::<f32>()?;
        close(g[0], -0.0243751, 1e-6);
        close(g[1], -0.0256249, 1e-6);
        Ok(())
    }

    #[test]
    fn dpo_loss_is_stable_for_large_margins() -> Result<()> {
        let dev = Device::Cpu;
        let z = Tensor::new(&[0f32, 0.], &dev)?;
        let big = Tensor::new(&[1e4f32, -1e4], &dev)?;
        // logits = [1e4, -1e4] * beta 1 -> losses [0, 1e4]
        let out = dpo_loss(&big, &z, &z, &z, 1.0)?;
        close(out.loss.to_scalar::<f32>()?, 5e3, 1e-2);
        Ok(())
    }
}
