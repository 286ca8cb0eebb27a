//! Attention of a decoding step's few new queries over the KV cache, in one pass.
//!
//! The composed form costs two batched matmuls per layer whose batches are `(row, kv head)` pairs —
//! for batch 16 that is 64 tiny gemm calls each for `q·Kᵀ` and `p·V`, every one with its own packing
//! and thread dispatch — plus a scores tensor, a softmax and copies to move heads back behind time. Here
//! each `(row, head)` task computes its queries' scores over the allowed keys of the cache, the softmax
//! and the weighted sum of values directly into the `(b, t, heads·d)` output the `o_proj` reads.
//! Forward only: it serves frozen weights (sampling, reference models).

use super::matvec::dot;
use super::softmax::softmax_in_place;
use super::{contiguous, Elem, KeyRanges};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

struct CachedAttention {
    ranges: KeyRanges,
    /// Keys valid in the cache (cached + new).
    len: usize,
    scale: f64,
}

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    heads: usize,
    kv_heads: usize,
    t: usize,
    d: usize,
    cap: usize,
}

/// The inputs of every `(row, head)` task.
struct Task<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    n: &'a Dims,
    op: &'a CachedAttention,
    task: usize,
}

impl<T: Elem> WithSimd for Task<'_, T> {
    type Output = Vec<T>;

    /// Task (row, head): its queries' `(t, d)` outputs. Inlined into pulp's target-feature function, so
    /// these loops compile for AVX-512 / AVX2 (a closure passed to `dispatch` stays a separate baseline
    /// function).
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<T> {
        let Task { q, k, v, n, op, task } = self;
        let Dims { heads, kv_heads, t, d, cap, .. } = *n;
        let scale = T::from(op.scale).unwrap_or_else(T::one);
        let (bi, h) = (task / heads, task % heads);
        let kv = h / (heads / kv_heads);
        let keys = &k[(bi * kv_heads + kv) * cap * d..][..op.len * d];
        let vals = &v[(bi * kv_heads + kv) * cap * d..][..op.len * d];
        let mut out = vec![T::zero(); t * d];
        let mut scores = vec![T::zero(); op.len];
        for qi in 0..t {
            let query = &q[((bi * heads + h) * t + qi) * d..][..d];
            let (lo, hi) = op.ranges.ranges[bi * t + qi];
            let (lo, hi) = (lo as usize, (hi as usize).min(op.len - 1));
            let s = &mut scores[lo..=hi];
            for (j, o) in s.iter_mut().enumerate() {
                *o = dot(query, &keys[(lo + j) * d..][..d]) * scale;
            }
            softmax_in_place(s);
            let acc = &mut out[qi * d..(qi + 1) * d];
            for (j, &p) in s.iter().enumerate() {
                for (a, &x) in acc.iter_mut().zip(&vals[(lo + j) * d..][..d]) {
                    *a += p * x;
                }
            }
        }
        out
    }
}

fn fwd<T: Elem>(q: &[T], k: &[T], v: &[T], n: &Dims, op: &CachedAttention) -> Vec<T> {
    let Dims { b, heads, t, d, .. } = *n;
    // Task (row, head) writes out[row, :, head, :]: gather its slices afterwards would cost a copy, so
    // each task fills a (t, d) block and the blocks are scattered into (b, t, heads, d) below.
    let arch = pulp::Arch::new();
    let blocks: Vec<Vec<T>> =
        (0..b * heads).into_par_iter().map(|task| arch.dispatch(Task { q, k, v, n, op, task })).collect();
    let mut y = vec![T::zero(); b * t * heads * d];
    for (task, block) in blocks.iter().enumerate() {
        let (bi, h) = (task / heads, task % heads);
        for qi in 0..t {
            y[((bi * t + qi) * heads + h) * d..][..d].copy_from_slice(&block[qi * d..(qi + 1) * d]);
        }
    }
    y
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "cached-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, heads, t, d) = lq.shape().dims4()?;
        let (bk, kv_heads, cap, dk) = lk.shape().dims4()?;
        if bk != b || dk != d || lv.shape() != lk.shape() || kv_heads == 0 || heads % kv_heads != 0 {
            candle_core::bail!("cached_attention: q {:?}, k {:?}, v {:?}", lq.dims(), lk.dims(), lv.dims());
        }
        if self.len > cap || self.len == 0 || self.ranges.queries != t || self.ranges.ranges.len() != b * t {
            candle_core::bail!("cached_attention: {} keys, capacity {cap}, ranges for {t} queries", self.len);
        }
        let n = Dims { b, heads, kv_heads, t, d, cap };
        let y = match sq {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(fwd(
                contiguous::<f32>(self.name(), sq, lq)?,
                contiguous::<f32>(self.name(), sk, lk)?,
                contiguous::<f32>(self.name(), sv, lv)?,
                &n,
                self,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(fwd(
                contiguous::<f64>(self.name(), sq, lq)?,
                contiguous::<f64>(self.name(), sk, lk)?,
                contiguous::<f64>(self.name(), sv, lv)?,
                &n,
                self,
            )),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((y, Shape::from((b, t, heads * d))))
    }
}

/// `softmax(q·Kᵀ · scale, allowed keys) · V` over the first `len` positions of the cache.
///
/// # Shapes
/// `q`: (b, heads, t, d); `k`, `v`: the whole cache `(b, kv_heads, capacity, d)`; `ranges`: per
/// `(b, query)` key range → (b, t, heads·d). No gradient: for frozen weights.
pub fn cached_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    len: usize,
    ranges: &KeyRanges,
    scale: f64,
) -> Result<Tensor> {
    let op = CachedAttention { ranges: ranges.clone(), len, scale };
    q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)
}

#[cfg(test)]
mod tests {
    use super::super::masked_softmax;
    use super::*;
    use candle_core::Device;
    use std::sync::Arc;

    #[test]
    fn matches_matmul_softmax_matmul_over_the_cache_prefix() -> Result<()> {
        let dev = Device::Cpu;
        // 2 rows, 4 query heads sharing 2 kv heads, 3 new queries over 5 cached keys, capacity 9.
        let (b, heads, kv, t, d, cap, len) = (2, 4, 2, 3, 8, 9, 5);
        let q = Tensor::randn(0f64, 1.0, (b, heads, t, d), &dev)?;
        let k = Tensor::randn(0f64, 1.0, (b, kv, cap, d), &dev)?;
        let v = Tensor::randn(0f64, 1.0, (b, kv, cap, d), &dev)?;
        // Row 0 left-padded by one (keys 1..), row 1 full; the queries are positions 2..5.
        let ranges = KeyRanges { queries: t, ranges: Arc::new(vec![(1, 2), (1, 3), (1, 4), (0, 2), (0, 3), (0, 4)]) };
        let scale = 1.0 / (d as f64).sqrt();
        let got = cached_attention(&q, &k, &v, len, &ranges, scale)?;

        let rep = heads / kv;
        let kp = k.narrow(2, 0, len)?.contiguous()?;
        let vp = v.narrow(2, 0, len)?.contiguous()?;
        let qs = (q * scale)?.reshape((b, kv, rep * t, d))?;
        let scores = qs.matmul(&kp.t()?)?.reshape((b, heads, t, len))?;
        let p = masked_softmax(&scores, &ranges)?.reshape((b, kv, rep * t, len))?;
        let want = p.matmul(&vp)?.reshape((b, heads, t, d))?.transpose(1, 2)?.reshape((b, t, heads * d))?;
        let diff = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "differs by {diff}");
        Ok(())
    }
}
