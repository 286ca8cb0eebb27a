//! SwiGLU over the fused `gate_up_proj` output: `[g | u] -> silu(g) * u`, with the backward
//! `dg = dy u σ(g)(1 + g(1 - σ(g)))`, `du = dy silu(g)`.

use super::{contiguous, par_chunks_filled, rows_per_task, Elem};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};

struct SwiGlu;

#[inline(always)]
fn sigmoid<T: Elem>(x: T) -> T {
    T::one() / (T::one() + (-x).fast_exp())
}

fn fwd<T: Elem>(x: &[T], i: usize) -> Vec<T> {
    let rows = rows_per_task(i);
    par_chunks_filled(x.len() / 2, i * rows, |c, ys| {
        for (yr, xr) in ys.chunks_mut(i).zip(x[2 * i * rows * c..].chunks(2 * i)) {
            let (g, u) = xr.split_at(i);
            for ((o, &g), &u) in yr.iter_mut().zip(g).zip(u) {
                *o = g * sigmoid(g) * u;
            }
        }
    })
}

fn bwd<T: Elem>(x: &[T], dy: &[T], i: usize) -> Vec<T> {
    let rows = rows_per_task(i);
    par_chunks_filled(x.len(), 2 * i * rows, |c, dxs| {
        let (xs, dys) = (&x[2 * i * rows * c..], &dy[i * rows * c..]);
        for ((dxr, xr), dyr) in dxs.chunks_mut(2 * i).zip(xs.chunks(2 * i)).zip(dys.chunks(i)) {
            let (g, u) = xr.split_at(i);
            let (dg, du) = dxr.split_at_mut(i);
            // Iterators, not indices: without bounds checks the loop vectorizes.
            for ((((dg, du), &g), &u), &d) in dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(dyr) {
                let s = sigmoid(g);
                *du = d * g * s;
                *dg = d * u * s * (T::one() + g * (T::one() - s));
            }
        }
    })
}

impl CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut dims = l.dims().to_vec();
        let i = dims.last().copied().unwrap_or(0) / 2;
        if let Some(last) = dims.last_mut() {
            *last = i;
        }
        let y = match s {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd(contiguous::<f32>(self.name(), s, l)?, i)),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(fwd(contiguous::<f64>(self.name(), s, l)?, i)),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        // An op over the storages, so neither input is copied out into a Vec first.
        Ok(Some(x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &SwiGluBwd)?))
    }
}

/// The backward as an op of `(x, dy)` → `dx`.
struct SwiGluBwd;

impl CustomOp2 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "swiglu-bwd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let i = l1.dims().last().copied().unwrap_or(0) / 2;
        if l2.shape().elem_count() * 2 != l1.shape().elem_count() {
            candle_core::bail!("{}: x {:?} but dy {:?}", self.name(), l1.dims(), l2.dims());
        }
        let dx = match s1 {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(bwd(
                contiguous::<f32>(self.name(), s1, l1)?,
                contiguous::<f32>(self.name(), s2, l2)?,
                i,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(bwd(
                contiguous::<f64>(self.name(), s1, l1)?,
                contiguous::<f64>(self.name(), s2, l2)?,
                i,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((dx, l1.shape().clone()))
    }
}

/// `[gate | up]` along the last dim (`2 i`) → `silu(gate) * up` (`i`). Differentiable.
pub fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    let w = gate_up.dims().last().copied().unwrap_or(0);
    if w % 2 != 0 {
        candle_core::bail!("swiglu: last dim {w} is odd");
    }
    gate_up.contiguous()?.apply_op1(SwiGlu)
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_fwd_and_grad;
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn matches_composed_silu_times_up_with_gradient() -> Result<()> {
        let dev = Device::Cpu;
        // One task's rows, and 4,000 rows: two tasks of 3,276, the last one short.
        for rows in [4, 2000] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (2, rows, 10), &dev)?)?;
            let w = Tensor::randn(0f64, 1.0, (2, rows, 5), &dev)?;
            let f = swiglu(x.as_tensor())?;
            let c = (x.as_tensor().narrow(D::Minus1, 5, 5)? * x.as_tensor().narrow(D::Minus1, 0, 5)?.silu()?)?;
            assert_same_fwd_and_grad(&f, &c, &w, &[&x], 1e-12, 1e-12)?;
        }
        Ok(())
    }
}
