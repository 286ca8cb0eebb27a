//! RMSNorm `y = x / sqrt(mean(x²) + eps) * w` with its backward:
//! `dx = r (g - x r² mean(g x))` with `g = dy w`, `r = 1 / sqrt(mean(x²) + eps)`, and
//! `dw = Σ_rows dy x r`.

use super::{contiguous, par_chunks_filled, par_chunks_filled_with, rows_per_task, with_data, Elem};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

struct RmsNorm {
    eps: f64,
}

fn inv_rms<T: Elem>(x: &[T], eps: T) -> T {
    let ms = x.iter().map(|&v| v * v).sum::<T>() / T::from(x.len()).unwrap_or_else(T::one);
    T::one() / (ms + eps).sqrt()
}

fn fwd<T: Elem>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let h = w.len();
    let eps = T::from(eps).unwrap_or_else(T::zero);
    let chunk = rows_per_task(h) * h;
    par_chunks_filled(x.len(), chunk, |c, ys| {
        for (yr, xr) in ys.chunks_mut(h).zip(x[chunk * c..].chunks(h)) {
            let r = inv_rms(xr, eps);
            for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
                *o = v * r * g;
            }
        }
    })
}

fn bwd<T: Elem>(x: &[T], w: &[T], dy: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    let h = w.len();
    let eps = T::from(eps).unwrap_or_else(T::zero);
    let inv_h = T::one() / T::from(h).unwrap_or_else(T::one);
    let chunk = rows_per_task(h) * h;
    let (dx, partials) = par_chunks_filled_with(x.len(), chunk, |c, dxs| {
        let (xs, dys) = (&x[chunk * c..], &dy[chunk * c..]);
        let mut dw = vec![T::zero(); h];
        for ((dxr, xr), dyr) in dxs.chunks_mut(h).zip(xs.chunks(h)).zip(dys.chunks(h)) {
            let r = inv_rms(xr, eps);
            let gx: T = xr.iter().zip(dyr).zip(w).map(|((&a, &d), &g)| d * g * a).sum();
            let c = r * r * gx * inv_h;
            // Iterators, not indices: without bounds checks the loop vectorizes.
            for ((((o, dw), &d), &a), &g) in dxr.iter_mut().zip(dw.iter_mut()).zip(dyr).zip(xr).zip(w) {
                *o = r * (d * g - a * c);
                *dw += d * a * r;
            }
        }
        dw
    });
    // Chunk order, in place: the same sums whatever the thread count.
    let dw = partials.into_iter().reduce(|mut a, b| {
        a.iter_mut().zip(&b).for_each(|(p, &q)| *p += q);
        a
    });
    (dx, dw.unwrap_or_else(|| vec![T::zero(); h]))
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = match s1 {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd(
                contiguous::<f32>(self.name(), s1, l1)?,
                contiguous::<f32>(self.name(), s2, l2)?,
                self.eps,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(fwd(
                contiguous::<f64>(self.name(), s1, l1)?,
                contiguous::<f64>(self.name(), s2, l2)?,
                self.eps,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        fn run<T: Elem>(x: &Tensor, w: &Tensor, dy: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
            let name = "rms-norm-bwd";
            let (dx, dw) = with_data::<T, _>(name, x, |xv| {
                with_data::<T, _>(name, w, |wv| with_data::<T, _>(name, dy, |dyv| Ok(bwd(xv, wv, dyv, eps))))
            })?;
            Ok((Tensor::from_vec(dx, x.shape(), x.device())?, Tensor::from_vec(dw, w.shape(), w.device())?))
        }
        let (dx, dw) = match x.dtype() {
            candle_core::DType::F64 => run::<f64>(x, w, dy, self.eps)?,
            _ => run::<f32>(x, w, dy, self.eps)?,
        };
        Ok((Some(dx), Some(dw)))
    }
}

/// RMSNorm over the last dimension. `x`: (.., h), `weight`: (h). Differentiable in both.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let h = x.dims().last().copied().unwrap_or(0);
    if weight.dims() != [h] {
        candle_core::bail!("rms_norm: weight {:?} does not match the last dim of x {:?}", weight.dims(), x.dims());
    }
    x.contiguous()?.apply_op2(&weight.contiguous()?, RmsNorm { eps })
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_fwd_and_grad;
    use super::*;
    use crate::ops::Kernels;
    use candle_core::{Device, Var};

    #[test]
    fn matches_composed_rms_norm_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        // One task's rows, and 2,200 rows: three tasks of 1,024, the last one short.
        for rows in [4, 1100] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (2, rows, 16), &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(1f64, 0.3, 16, &dev)?)?;
            let probe = Tensor::randn(0f64, 1.0, (2, rows, 16), &dev)?;
            let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?;
            let composed = crate::ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-5, Kernels::Composed)?;
            assert_same_fwd_and_grad(&fused, &composed, &probe, &[&x, &w], 1e-12, 1e-9)?;
        }
        Ok(())
    }

    /// The weight gradient sums per-chunk partials in chunk order, so it is bit-identical whatever the
    /// number of threads (and however rayon happens to split the work).
    #[test]
    fn weight_gradient_does_not_depend_on_the_thread_count() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3000, 16), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 16, &dev)?)?;
        let probe = Tensor::randn(0f32, 1.0, (3000, 16), &dev)?;
        let grad_w = |threads: usize| -> Result<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| {
                let g = (rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)? * &probe)?.sum_all()?.backward()?;
                g.get(w.as_tensor()).expect("w has a gradient").to_vec1::<f32>()
            })
        };
        let one = grad_w(1)?;
        for threads in [2, 3] {
            assert_eq!(grad_w(threads)?, one, "{threads} threads");
        }
        Ok(())
    }
}
