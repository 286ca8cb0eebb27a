//! Log-softmax over the vocabulary gathered at the target ids, `logp[i] = x[i, t_i] - logsumexp(x[i])`,
//! with its backward `dx[i, j] = g[i] (1[j = t_i] - softmax(x[i])_j)`. The log-sum-exp is recovered from
//! the result in the backward (`x[i, t_i] - logp[i]`), so nothing is stored or recomputed twice.

use super::{contiguous, par_chunks_filled, rows_per_task, with_data, Elem};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::Arc;

struct TokenLogps {
    targets: Arc<Vec<u32>>,
}

fn lse<T: Elem>(x: &[T]) -> T {
    let max = x.iter().fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
    max + x.iter().fold(T::zero(), |s, &v| s + (v - max).fast_exp()).ln()
}

fn fwd<T: Elem>(x: &[T], v: usize, targets: &[u32]) -> Vec<T> {
    x.par_chunks(v).zip(targets.par_iter()).map(|(row, &t)| row[t as usize] - lse(row)).collect()
}

fn bwd<T: Elem>(x: &[T], v: usize, targets: &[u32], logp: &[T], g: &[T]) -> Vec<T> {
    let rows = rows_per_task(v);
    par_chunks_filled(x.len(), v * rows, |c, dxs| {
        for (i, (dxr, xr)) in dxs.chunks_mut(v).zip(x[v * rows * c..].chunks(v)).enumerate() {
            let r = c * rows + i;
            let t = targets[r] as usize;
            let lse = xr[t] - logp[r];
            let gr = g[r];
            for (o, &val) in dxr.iter_mut().zip(xr) {
                *o = -gr * (val - lse).fast_exp();
            }
            dxr[t] += gr;
        }
    })
}

impl CustomOp1 for TokenLogps {
    fn name(&self) -> &'static str {
        "token-logps"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l.shape().dims2()?;
        let out = match s {
            CpuStorage::F32(_) => {
                f32::to_cpu_storage_owned(fwd(contiguous::<f32>(self.name(), s, l)?, v, &self.targets))
            }
            CpuStorage::F64(_) => {
                f64::to_cpu_storage_owned(fwd(contiguous::<f64>(self.name(), s, l)?, v, &self.targets))
            }
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((out, Shape::from(n)))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        fn run<T: Elem>(x: &Tensor, res: &Tensor, g: &Tensor, targets: &[u32]) -> Result<Tensor> {
            let (_, v) = x.dims2()?;
            let name = "token-logps-bwd";
            let dx = with_data::<T, _>(name, x, |xv| {
                with_data::<T, _>(name, res, |rv| with_data::<T, _>(name, g, |gv| Ok(bwd(xv, v, targets, rv, gv))))
            })?;
            Tensor::from_vec(dx, x.shape(), x.device())
        }
        Ok(Some(match x.dtype() {
            candle_core::DType::F64 => run::<f64>(x, res, g, &self.targets)?,
            _ => run::<f32>(x, res, g, &self.targets)?,
        }))
    }
}

/// `logits` (n, v), `targets` (n) u32 → (n): log-probability of each target. Differentiable in `logits`.
pub fn token_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    let targets: Vec<u32> = targets.flatten_all()?.to_vec1()?;
    if targets.len() != n {
        candle_core::bail!("token_logps: {n} rows of logits but {} targets", targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token_logps: target id {t} is out of range for vocab {v}");
    }
    logits.contiguous()?.apply_op1(TokenLogps { targets: Arc::new(targets) })
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_fwd_and_grad;
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn matches_composed_log_softmax_gather_and_gradient() -> Result<()> {
        let dev = Device::Cpu;
        // One task's rows, and 1,600 rows: two tasks of 1,489, the last one short.
        for rows in [7u32, 1600] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 3.0, (rows as usize, 11), &dev)?)?;
            let t = Tensor::new((0..rows).map(|i| (i * 7 + i / 3) % 11).collect::<Vec<u32>>(), &dev)?;
            let w = Tensor::randn(0f64, 1.0, rows as usize, &dev)?;
            let fused = token_logps(x.as_tensor(), &t)?;
            let composed =
                crate::ops::log_softmax_last_dim(x.as_tensor())?.gather(&t.unsqueeze(1)?, D::Minus1)?.squeeze(1)?;
            assert_same_fwd_and_grad(&fused, &composed, &w, &[&x], 1e-12, 1e-12)?;
        }
        Ok(())
    }
}
