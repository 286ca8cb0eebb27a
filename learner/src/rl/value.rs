//! PPO's clipped value loss (the value-function clipping of OpenAI baselines' `ppo2`, kept by OpenRLHF and
//! verl): the new value may not move the loss more than `clip` away from the old value's.

use crate::error::Result;
use crate::rl::{aggregate, masked_mean_host, same_bt, LossAgg};
use candle_core::{DType, Tensor};

/// The value loss and its metric.
#[derive(Debug, Clone)]
pub struct ValueLossOutput {
    /// `0.5 ·` the aggregated clipped squared error (scalar, differentiable through `values`).
    pub loss: Tensor,
    /// Share of valid tokens where the clipped error was the larger one (verl `vf_clipfrac`).
    pub clip_fraction: f64,
}

/// Per token `max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)`, aggregated by `agg`, times 0.5.
///
/// ```text
/// # reference (OpenRLHF models/loss.py ValueLoss; verl core_algos.compute_value_loss):
/// values_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
/// surr1 = (values_clipped - returns) ** 2
/// surr2 = (values - returns) ** 2
/// loss = 0.5 * masked_mean(torch.max(surr1, surr2), action_mask)
/// vf_clipfrac = masked_mean(torch.gt(surr1, surr2).float(), action_mask)
/// ```
///
/// # Shapes
/// `values`, `old_values`, `returns`, `mask`: (b, t) f32 → scalar `loss`
pub fn value_loss_clipped(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip: f64,
    agg: LossAgg,
) -> Result<ValueLossOutput> {
    same_bt(
        "value_loss_clipped",
        ("values", values),
        &[("old_values", old_values), ("returns", returns), ("mask", mask)],
    )?;
    let (old_values, returns) = (old_values.detach(), returns.detach());
    let clipped = (&old_values + (values - &old_values)?.clamp(-clip, clip)?)?;
    let surr1 = (clipped - &returns)?.sqr()?;
    let surr2 = (values - &returns)?.sqr()?;
    let loss = (aggregate(&surr1.maximum(&surr2)?, mask, agg)? * 0.5)?;
    let clip_fraction = masked_mean_host(&surr1.gt(&surr2)?.to_dtype(DType::F32)?, mask)?;
    Ok(ValueLossOutput { loss, clip_fraction })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::rl::close;
    use candle_core::{Device, Var};

    // OpenRLHF ValueLoss by hand, clip 0.2: values [1, 0], old [0.5, 0], returns [2, 1], mask [1, 1]
    //   t0: clipped = 0.5 + clamp(0.5, ±0.2) = 0.7; surr1 = 1.69, surr2 = 1.0 -> 1.69 (clipped)
    //   t1: clipped = 0; surr1 = surr2 = 1.0 -> 1.0
    //   loss = 0.5 * (1.69 + 1.0) / 2 = 0.6725; clipfrac 1/2
    //   d loss / d values: t0 through the saturated clamp = 0; t1 = 0.5 * 2 (0 - 1) / 2 = -0.5
    #[test]
    fn value_loss_matches_openrlhf_by_hand() -> Result<()> {
        let dev = Device::Cpu;
        let values = Var::new(&[[1f32, 0.]], &dev)?;
        let old = Tensor::new(&[[0.5f32, 0.]], &dev)?;
        let returns = Tensor::new(&[[2f32, 1.]], &dev)?;
        let mask = Tensor::new(&[[1f32, 1.]], &dev)?;
        let out = value_loss_clipped(values.as_tensor(), &old, &returns, &mask, 0.2, LossAgg::TokenMean)?;
        close(out.loss.to_scalar::<f32>()?, 0.6725, 1e-6);
        close(out.clip_fraction as f32, 0.5, 1e-9);
        let grads = out.loss.backward()?;
        let g = grads.get(values.as_tensor()).ok_or_else(|| Error::input("test", "no grad"))?.to_vec2::<f32>()?;
        close(g[0][0], 0.0, 1e-6);
        close(g[0][1], -0.5, 1e-6);
        assert!(value_loss_clipped(
            values.as_tensor(),
            &old,
            &returns,
            &Tensor::new(&[1f32], &dev)?,
            0.2,
            LossAgg::TokenMean
        )
        .is_err());
        Ok(())
    }
}
