//! `x @ w.T` for a few rows of `x` (decoding), reading `w` `(n, k)` row by row exactly once.
//!
//! A general gemm packs the weight matrix on every call and pads the handful of rows to its micro-kernel
//! height; during decoding (1–16 rows per step) that costs more than the product. Here each output
//! column is a dot product of a contiguous weight row with each input row, split over the rayon pool.
//! Forward only: it serves frozen weights.

use super::{contiguous, Elem};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

/// Rows up to which [`small_matmul`] beats the general gemm.
pub const SMALL_ROWS: usize = 16;

struct SmallMatmul;

/// Output columns per rayon task.
const COLS: usize = 32;

#[inline(always)]
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
    transpose_back(yt, m, n)
}

/// `(n, m)` column-major results to the `(m, n)` row-major output.
fn transpose_back<T: Copy>(yt: Vec<T>, m: usize, n: usize) -> Vec<T> {
    if m == 1 {
        return yt;
    }
    let mut y = yt.clone();
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * n + j] = v;
        }
    }
    y
}

/// `MR` rows of `x` against `NR` weight rows, in SIMD registers: `MR * NR` vector accumulators, each
/// loaded weight vector used `MR` times and each input vector `NR` times.
#[inline(always)]
fn tile<S: Simd, const MR: usize, const NR: usize>(simd: S, x: [&[f32]; MR], w: [&[f32]; NR]) -> [[f32; NR]; MR] {
    let zero = simd.splat_f32s(0.0);
    let mut xv = [(&[][..], &[][..]); MR];
    for i in 0..MR {
        xv[i] = S::as_simd_f32s(x[i]);
    }
    let mut wvs = [(&[][..], &[][..]); NR];
    for j in 0..NR {
        wvs[j] = S::as_simd_f32s(w[j]);
    }
    let chunks = wvs[0].0.len();
    let mut acc = [[zero; NR]; MR];
    for c in 0..chunks {
        let mut wv = [zero; NR];
        for j in 0..NR {
            wv[j] = wvs[j].0[c];
        }
        for i in 0..MR {
            let a = xv[i].0[c];
            for j in 0..NR {
                acc[i][j] = simd.mul_add_f32s(a, wv[j], acc[i][j]);
            }
        }
    }
    let mut out = [[0f32; NR]; MR];
    for i in 0..MR {
        for j in 0..NR {
            let mut tail = 0f32;
            for (&a, &b) in xv[i].1.iter().zip(wvs[j].1) {
                tail += a * b;
            }
            out[i][j] = simd.reduce_sum_f32s(acc[i][j]) + tail;
        }
    }
    out
}

/// One task of the f32 kernel: output columns `col0..col0 + cols` for every row, column-major into `yt`.
struct F32Block<'a> {
    x: &'a [f32],
    w: &'a [f32],
    m: usize,
    k: usize,
    col0: usize,
    yt: &'a mut [f32],
}

impl F32Block<'_> {
    #[inline(always)]
    fn rows<S: Simd, const MR: usize, const NR: usize>(&mut self, simd: S, i0: usize, j: usize) {
        let (k, m) = (self.k, self.m);
        let mut x: [&[f32]; MR] = [&[]; MR];
        for (i, r) in x.iter_mut().enumerate() {
            *r = &self.x[(i0 + i) * k..][..k];
        }
        let mut w: [&[f32]; NR] = [&[]; NR];
        for (jj, r) in w.iter_mut().enumerate() {
            *r = &self.w[(self.col0 + j + jj) * k..][..k];
        }
        let out = tile::<S, MR, NR>(simd, x, w);
        for (i, row) in out.iter().enumerate() {
            for (jj, &v) in row.iter().enumerate() {
                self.yt[(j + jj) * m + i0 + i] = v;
            }
        }
    }

    #[inline(always)]
    fn cols<S: Simd, const NR: usize>(&mut self, simd: S, j: usize) {
        let mut i0 = 0;
        while i0 < self.m {
            match self.m - i0 {
                1 => self.rows::<S, 1, NR>(simd, i0, j),
                2 => self.rows::<S, 2, NR>(simd, i0, j),
                3 => self.rows::<S, 3, NR>(simd, i0, j),
                _ => self.rows::<S, 4, NR>(simd, i0, j),
            }
            i0 += 4;
        }
    }
}

impl WithSimd for F32Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, simd: S) {
        let cols = self.yt.len() / self.m;
        let mut j = 0;
        while j + 4 <= cols {
            self.cols::<S, 4>(simd, j);
            j += 4;
        }
        while j < cols {
            self.cols::<S, 1>(simd, j);
            j += 1;
        }
    }
}

/// The f32 kernel with explicit SIMD (AVX-512 / AVX2 chosen at run time by `pulp`).
fn fwd_f32(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let arch = pulp::Arch::new();
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(COLS * m).enumerate().for_each(|(c, block)| {
        arch.dispatch(F32Block { x, w, m, k, col0: c * COLS, yt: block });
    });
    transpose_back(yt, m, n)
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
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd_f32(
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
        for m in [1, 2, 3, 5, 16] {
            let x = Tensor::randn(0f32, 1.0, (m, 77), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (45, 77), &dev)?;
            let (x64, w64) = (x.to_dtype(candle_core::DType::F64)?, w.to_dtype(candle_core::DType::F64)?);
            let c = small_matmul(&x64, &w64)?.to_dtype(candle_core::DType::F32)?;
            let a = small_matmul(&x, &w)?;
            let b = x.matmul(&w.t()?)?;
            assert!((&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
            assert!((a - c)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-4);
        }
        Ok(())
    }
}
