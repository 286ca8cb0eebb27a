//! Token-level log-probabilities and the masked next-token cross-entropy every stage builds on.

use crate::ops::log_softmax_last_dim;
use candle_core::{DType, Result, Tensor, D};

/// Log-probability of each target token under `logits`.
///
/// # Shapes
/// `logits`: (b, t, v); `targets`: (b, t) u32 → (b, t) f32
pub fn token_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let (tb, tt) = targets.dims2()?;
    if (b, t) != (tb, tt) {
        candle_core::bail!("token_logps: logits ({b}, {t}, {v}) vs targets ({tb}, {tt})");
    }
    let logits = match logits.dtype() {
        DType::F16 | DType::BF16 => logits.to_dtype(DType::F32)?,
        _ => logits.clone(),
    };
    if crate::ops::Kernels::for_device(logits.device()).fused_for(&logits) {
        return crate::kernels::token_logps(&logits.reshape((b * t, v))?, targets)?.reshape((b, t));
    }
    let logp = log_softmax_last_dim(&logits)?;
    logp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)
}

/// Mean negative log-likelihood over positions where `mask` is 1 (token-mean).
///
/// Position `i` of `logits` predicts `targets[i]` (shift the inputs by one before calling).
///
/// # Shapes
/// `logits`: (b, t, v); `targets`: (b, t) u32; `mask`: (b, t) f32 → scalar
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let logps = token_logps(logits, targets)?;
    let mask = mask.to_dtype(logps.dtype())?;
    let n = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(1.0);
    (logps * mask)?.sum_all()? * (-1.0 / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    // torch:
    //   logits = torch.tensor([[[1., 2., 3.], [0., 0., 0.]]]); t = torch.tensor([[2, 0]])
    //   F.cross_entropy(logits[0], t[0]) -> 0.7531 (mean of 0.4076 and 1.0986)
    #[test]
    fn matches_torch_cross_entropy() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[[1f32, 2., 3.], [0., 0., 0.]]], &dev)?;
        let t = Tensor::new(&[[2u32, 0]], &dev)?;
        let all = masked_cross_entropy(&logits, &t, &Tensor::new(&[[1f32, 1.]], &dev)?)?.to_scalar::<f32>()?;
        assert!((all - 0.7531).abs() < 1e-4, "{all}");
        let first = masked_cross_entropy(&logits, &t, &Tensor::new(&[[1f32, 0.]], &dev)?)?.to_scalar::<f32>()?;
        assert!((first - 0.4076).abs() < 1e-4, "{first}");
        Ok(())
    }
}
