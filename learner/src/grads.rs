//! Gradients of one optimizer step: collected per micro-batch, accumulated, checked for NaN/inf and
//! clipped by their global L2 norm.
//!
//! **Accumulation rule.** A step's loss is the token-mean over *all* its micro-batches. Each micro-batch's
//! loss is the sum of its per-token NLL divided by the token count of the whole step (equivalently: its own
//! token-mean scaled by its share of the step's tokens), so the summed gradients equal the gradient of the
//! full-batch token-mean exactly, whatever the split. DPO uses the same rule with pairs in place of tokens.

use crate::error::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use candle_core::{DType, Var};

/// One gradient per trainable variable, in the optimizer's variable order (`None`: the variable got no
/// gradient, so the optimizer leaves it alone, as PyTorch does for `grad is None`).
#[derive(Debug, Clone)]
pub struct Grads {
    grads: Vec<Option<Tensor>>,
}

impl Grads {
    /// Takes the gradients of `vars` out of a backward pass.
    pub fn from_store(store: &GradStore, vars: &[Var]) -> Self {
        Grads { grads: vars.iter().map(|v| store.get(v.as_tensor()).map(|g| g.detach())).collect() }
    }

    /// Gradients from explicit tensors (tests, other optimizers).
    pub fn from_tensors(grads: Vec<Option<Tensor>>) -> Self {
        Grads { grads }
    }

    /// The gradients, in variable order.
    pub fn tensors(&self) -> &[Option<Tensor>] {
        &self.grads
    }

    /// Adds `other` (same variable order) into `self`.
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        if other.grads.len() != self.grads.len() {
            return Err(Error::input(
                "Grads::accumulate",
                format!("{} gradients into {}", other.grads.len(), self.grads.len()),
            ));
        }
        for (acc, g) in self.grads.iter_mut().zip(other.grads) {
            *acc = match (acc.take(), g) {
                (Some(a), Some(g)) => Some((a + g)?),
                (a, g) => a.or(g),
            };
        }
        Ok(())
    }

    /// Global L2 norm over every gradient, accumulated in f64. NaN or infinite if any entry is.
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0f64;
        for g in self.grads.iter().flatten() {
            sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(sq.sqrt())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.grads.iter_mut().flatten() {
            *g = (&*g * factor)?;
        }
        Ok(())
    }
}

/// Clips `grads` in place to global L2 norm `max_norm` and returns the norm before clipping, as
/// `torch.nn.utils.clip_grad_norm_`: `coef = min(1, max_norm / (total_norm + 1e-6))`.
///
/// A non-finite norm is returned as is and the gradients are left untouched: the caller skips the step
/// (see [`is_finite_step`]).
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let total = grads.global_norm()?;
    if total.is_finite() {
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            grads.scale(coef)?;
        }
    }
    Ok(total)
}

/// Whether a step may update the weights: its loss and its gradient norm are both finite (a single NaN or
/// inf in any gradient makes the global norm non-finite).
pub fn is_finite_step(loss: f64, grad_norm: f64) -> bool {
    loss.is_finite() && grad_norm.is_finite()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).expect("tensor")
    }

    // torch: g = [3, 4] and [12]; clip_grad_norm_(params, 6.5) -> total 13, coef 6.5 / (13 + 1e-6)
    #[test]
    fn clips_by_global_norm_like_torch() -> Result<()> {
        let mut g = Grads::from_tensors(vec![Some(t(&[3., 4.])), None, Some(t(&[12.]))]);
        let total = clip_grad_norm(&mut g, 6.5)?;
        assert!((total - 13.0).abs() < 1e-9);
        assert!((g.global_norm()? - 6.5).abs() < 1e-5);
        let small = clip_grad_norm(&mut g, 100.0)?;
        assert!((small - 6.5).abs() < 1e-5, "below the limit nothing changes");
        Ok(())
    }

    #[test]
    fn any_nan_or_inf_makes_the_step_bad() -> Result<()> {
        let g = Grads::from_tensors(vec![Some(t(&[1., f32::NAN]))]);
        assert!(!is_finite_step(1.0, g.global_norm()?));
        let g = Grads::from_tensors(vec![Some(t(&[f32::INFINITY]))]);
        assert!(!is_finite_step(1.0, g.global_norm()?));
        assert!(!is_finite_step(f64::NAN, 1.0));
        assert!(is_finite_step(1.0, 1.0));
        Ok(())
    }

    #[test]
    fn accumulation_adds_and_keeps_missing_gradients_missing() -> Result<()> {
        let mut a = Grads::from_tensors(vec![Some(t(&[1., 2.])), None, None]);
        a.accumulate(Grads::from_tensors(vec![Some(t(&[0.5, 0.5])), Some(t(&[1.])), None]))?;
        assert_eq!(a.tensors()[0].as_ref().map(|g| g.to_vec1::<f32>()).transpose()?, Some(vec![1.5, 2.5]));
        assert!(a.tensors()[1].is_some());
        assert!(a.tensors()[2].is_none());
        Ok(())
    }
}
