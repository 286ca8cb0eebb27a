//! The k3 estimator of KL(π_θ ‖ π_ref) per token (Schulman 2020, "Approximating KL Divergence"): unbiased,
//! always ≥ 0, low variance; the KL penalty of GRPO (DeepSeekMath eq. 4).

use crate::error::Result;
use crate::rl::same_bt;
use candle_core::Tensor;

/// Per-token `exp(ref − logp) − (ref − logp) − 1`, differentiable through `logps` (the reference is
/// detached). Aggregate it with [`crate::rl::aggregate`] and add `β ·` it to the policy loss.
///
/// ```text
/// # reference (TRL GRPOTrainer._compute_loss):
/// per_token_kl = torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
/// # verl kl_penalty "low_var_kl": the log-ratio clamped to [-20, 20], the result to [-10, 10]
/// ```
///
/// Clamped as verl does: unclamped, a token where the two models disagree wildly (a padding position
/// masked out later, say) overflows `exp` to inf, and inf · 0 in the masked mean is NaN, which would skip
/// the whole step.
///
/// # Shapes
/// `logps`, `ref_logps`: (b, t) f32 → (b, t)
pub fn k3_kl(logps: &Tensor, ref_logps: &Tensor) -> Result<Tensor> {
    same_bt("k3_kl", ("logps", logps), &[("ref_logps", ref_logps)])?;
    let d = (ref_logps.detach() - logps)?.clamp(-20f32, 20f32)?;
    Ok(((d.exp()? - &d)? - 1.0)?.clamp(-10f32, 10f32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::rl::close;
    use candle_core::{Device, Var};

    // torch: logp = [-1., -2.], ref = [-1.5, -1.]; d = ref - logp = [-0.5, 1.0]
    //   kl = exp(d) - d - 1 = [0.1065307, 0.7182818]
    //   d kl / d logp = 1 - exp(d) = [0.3934693, -1.7182818]
    #[test]
    fn k3_matches_trl_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let logp = Var::new(&[[-1.0f32, -2.0]], &dev)?;
        let kl = k3_kl(logp.as_tensor(), &Tensor::new(&[[-1.5f32, -1.0]], &dev)?)?;
        let v = kl.to_vec2::<f32>()?;
        close(v[0][0], 0.106_530_7, 1e-6);
        close(v[0][1], 0.718_281_8, 1e-6);
        let grads = kl.sum_all()?.backward()?;
        let g = grads.get(logp.as_tensor()).ok_or_else(|| Error::input("test", "no grad"))?.to_vec2::<f32>()?;
        close(g[0][0], 0.393_469_3, 1e-6);
        close(g[0][1], -1.718_281_8, 1e-6);
        assert_eq!(k3_kl(logp.as_tensor(), logp.as_tensor())?.to_vec2::<f32>()?, vec![vec![0.0, 0.0]]);
        assert!(k3_kl(logp.as_tensor(), &Tensor::new(&[-1.0f32, -2.0], &dev)?).is_err());
        // Wild disagreement stays finite (verl's clamps): exp(d) would overflow f32 at d = 100.
        let far = k3_kl(&Tensor::new(&[[-200.0f32, -1.0]], &dev)?, &Tensor::new(&[[-100.0f32, -300.0]], &dev)?)?;
        let v = far.to_vec2::<f32>()?;
        // d = 100 → 20 → e^20 − 21 → 10; d = −299 → −20 → e^−20 + 19 → 10.
        assert_eq!(v[0], vec![10.0, 10.0]);
        assert!(v[0].iter().all(|x| x.is_finite()));
        Ok(())
    }
}
