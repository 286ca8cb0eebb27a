//! Softmax restricted to each query row's allowed keys.

use super::{contiguous, par_chunks_filled, rows_per_task, Elem};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use std::sync::Arc;

/// For each (batch row, query), the inclusive range `lo..=hi` of key indices it may attend to. Causal
/// attention over padded or packed rows always allows a contiguous range (a document starts at `lo`;
/// a padding query sees itself only), so no `(t, t)` mask is ever built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRanges {
    /// Queries per batch row.
    pub queries: usize,
    /// `(lo, hi)` per `(b, query)`, row-major.
    pub ranges: Arc<Vec<(u32, u32)>>,
}

/// Softmax of `s` in place, stable against large values.
#[inline(always)]
pub(crate) fn softmax_in_place<T: Elem>(s: &mut [T]) {
    let max = s.iter().fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
    for o in s.iter_mut() {
        *o = (*o - max).fast_exp();
    }
    let inv = T::one() / s.iter().fold(T::zero(), |a, &v| a + v);
    for o in s.iter_mut() {
        *o *= inv;
    }
}

struct MaskedSoftmax {
    ranges: KeyRanges,
    heads: usize,
}

fn fwd<T: Elem>(x: &[T], keys: usize, heads: usize, r: &KeyRanges) -> Vec<T> {
    let q = r.queries;
    let chunk = rows_per_task(keys);
    par_chunks_filled(x.len(), keys * chunk, |c, ys| {
        for (i, (yr, xr)) in ys.chunks_mut(keys).zip(x[keys * chunk * c..].chunks(keys)).enumerate() {
            let row = c * chunk + i;
            let (b, qi) = (row / (heads * q), row % q);
            let (lo, hi) = r.ranges[b * q + qi];
            let (lo, hi) = (lo as usize, (hi as usize).min(keys - 1));
            yr[lo..=hi].copy_from_slice(&xr[lo..=hi]);
            softmax_in_place(&mut yr[lo..=hi]);
        }
    })
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let keys = l.dims().last().copied().unwrap_or(1);
        let y = match s {
            CpuStorage::F32(_) => {
                f32::to_cpu_storage_owned(fwd(contiguous::<f32>(self.name(), s, l)?, keys, self.heads, &self.ranges))
            }
            CpuStorage::F64(_) => {
                f64::to_cpu_storage_owned(fwd(contiguous::<f64>(self.name(), s, l)?, keys, self.heads, &self.ranges))
            }
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxBwd)?))
    }
}

/// `dx = y * (dy - sum(dy * y))` per row; zero where `y` is (masked keys).
struct SoftmaxBwd;

fn bwd<T: Elem>(y: &[T], dy: &[T], keys: usize) -> Vec<T> {
    let chunk = rows_per_task(keys) * keys;
    par_chunks_filled(y.len(), chunk, |c, dxs| {
        let (ys, dys) = (&y[chunk * c..], &dy[chunk * c..]);
        for ((dxr, yr), dyr) in dxs.chunks_mut(keys).zip(ys.chunks(keys)).zip(dys.chunks(keys)) {
            let dot: T = yr.iter().zip(dyr).map(|(&a, &b)| a * b).sum();
            for ((o, &a), &b) in dxr.iter_mut().zip(yr).zip(dyr) {
                *o = a * (b - dot);
            }
        }
    })
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "masked-softmax-bwd"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let keys = l1.dims().last().copied().unwrap_or(1);
        let out = match s1 {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(bwd(
                contiguous::<f32>(self.name(), s1, l1)?,
                contiguous::<f32>(self.name(), s2, l2)?,
                keys,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(bwd(
                contiguous::<f64>(self.name(), s1, l1)?,
                contiguous::<f64>(self.name(), s2, l2)?,
                keys,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Softmax over the last dimension of `scores` `(b, h, q, k)`, restricted per `(b, q)` to the key range
/// in `ranges`; other keys get probability 0. Differentiable.
pub fn masked_softmax(scores: &Tensor, ranges: &KeyRanges) -> Result<Tensor> {
    let (b, h, q, _k) = scores.dims4()?;
    if ranges.queries != q || ranges.ranges.len() != b * q {
        candle_core::bail!(
            "masked_softmax: ranges for {} x {} queries, scores are {:?}",
            ranges.ranges.len() / ranges.queries.max(1),
            ranges.queries,
            scores.dims()
        );
    }
    scores.contiguous()?.apply_op1(MaskedSoftmax { ranges: ranges.clone(), heads: h })
}

#[cfg(test)]
mod tests {
    use super::super::testing::assert_same_fwd_and_grad;
    use super::*;
    use crate::ops::softmax_last_dim;
    use candle_core::{Device, Var};

    #[test]
    fn matches_composed_softmax_with_an_additive_mask() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, k) = (2, 3, 5);
        let small: Vec<(u32, u32)> =
            vec![(0, 0), (0, 1), (2, 2), (2, 3), (2, 4), (0, 0), (1, 1), (1, 2), (1, 3), (4, 4)];
        // 4,200 rows: two tasks of 3,276, the last one short.
        let many: Vec<(u32, u32)> = (0..2 * 700u32).map(|i| (i % 3, i % 3 + (i / 3) % (5 - i % 3))).collect();
        for ranges in [small, many] {
            let q = ranges.len() / b;
            let mut mask = vec![f64::NEG_INFINITY; b * q * k];
            for (i, &(lo, hi)) in ranges.iter().enumerate() {
                for j in lo..=hi {
                    mask[i * k + j as usize] = 0.0;
                }
            }
            let mask = Tensor::from_vec(mask, (b, 1, q, k), &dev)?;
            let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (b, h, q, k), &dev)?)?;
            let w = Tensor::randn(0f64, 1.0, (b, h, q, k), &dev)?;
            let r = KeyRanges { queries: q, ranges: Arc::new(ranges) };
            let fused = masked_softmax(x.as_tensor(), &r)?;
            let composed = softmax_last_dim(&x.as_tensor().broadcast_add(&mask)?)?;
            assert_same_fwd_and_grad(&fused, &composed, &w, &[&x], 1e-12, 1e-12)?;
        }
        Ok(())
    }
}
