//! `x @ w.T` for a few rows of `x` (decoding), reading `w` `(n, k)` row by row exactly once.
//!
//! A general gemm packs the weight matrix on every call and pads the handful of rows to its micro-kernel
//! height; during decoding (1–16 rows per step) that costs more than the product. Here each output
//! column is a dot product of a contiguous weight row with each input row, split over the rayon pool.
//! Forward only: it serves frozen weights.

use super::{contiguous, Elem};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Rows up to which [`small_matmul`] beats the general gemm.
pub const SMALL_ROWS: usize = 4;

struct SmallMatmul;

pub(crate) fn dot<T: Elem>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

fn fwd<T: Elem>(x: &[T], w: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    const COLS: usize = 32;
    // Column-major result (n, m): each task owns whole output columns.
    let mut yt = vec![T::zero(); n * m];
    yt.par_chunks_mut(COLS * m).enumerate().for_each(|(c, block)| {
        for (j, col) in block.chunks_mut(m).enumerate() {
            let row = &w[(c * COLS + j) * k..][..k];
            for (i, o) in col.iter_mut().enumerate() {
                *o = dot(&x[i * k..(i + 1) * k], row);
            }
        }
    });
    if m == 1 {
        return yt;
    }
    let mut y = vec![T::zero(); n * m];
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * n + j] = v;
        }
    }
    y
}

impl CustomOp2 for SmallMatmul {
    fn name(&self) -> &'static str {
        "small-matmul"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("small_matmul: x is ({m}, {k}) but w is ({n}, {k2})");
        }
        let y = match s1 {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd(
                contiguous::<f32>(self.name(), s1, l1)?,
                contiguous::<f32>(self.name(), s2, l2)?,
                m,
                k,
                n,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(fwd(
                contiguous::<f64>(self.name(), s1, l1)?,
                contiguous::<f64>(self.name(), s2, l2)?,
                m,
                k,
                n,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, Shape::from((m, n))))
    }
}

/// `x` (m, k) times `w` (n, k) transposed → (m, n). No gradient: for frozen weights.
pub fn small_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &SmallMatmul)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_matmul_for_one_and_several_rows() -> Result<()> {
        let dev = Device::Cpu;
        for m in [1, 3, 16] {
            let x = Tensor::randn(0f32, 1.0, (m, 77), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (45, 77), &dev)?;
            let a = small_matmul(&x, &w)?;
            let b = x.matmul(&w.t()?)?;
            assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
        }
        Ok(())
    }
}
