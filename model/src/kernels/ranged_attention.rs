//! Attention over a whole sequence (training, reference and scoring forwards) that computes only the
//! key spans its queries may see.
//!
//! The composed version multiplies every query by every key of the row (`(t, t)` scores per head, then
//! the masked softmax, then `(t, t) · V`), and its backward does four more full `(t, t)` products. With
//! causal attention half of that is masked away; with packed rows (stage 1: two or three documents to a
//! 448-token row) more, each query seeing only its own document. Here queries go in tiles of [`TILE`];
//! a tile multiplies only the keys from the first key any of its queries may see to the last, so the
//! work follows the mask. The probabilities of the forward are kept (compact, per tile) for the
//! backward, which is the standard one: `dV += Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`,
//! `dQ = dS K`, `dK += dSᵀ Q`, each product a `gemm` over the tile's key span.

use super::softmax::softmax_in_place;
use super::{contiguous, with_data, Elem, KeyRanges};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::any::Any;
use std::sync::Mutex;

/// Queries per tile: small enough that a causal tile wastes little (half a tile of keys per query on
/// average), large enough that each product is a real matrix product.
const TILE: usize = 32;

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    heads: usize,
    kv_heads: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn tiles(&self) -> usize {
        self.t.div_ceil(TILE)
    }
}

/// `dst (m×n) = beta · a (m×k) · b (k×n)`, plus `dst` when `accumulate`; each operand given as a slice
/// with its row and column strides. Bounds are checked, so the call is safe.
#[allow(clippy::too_many_arguments, unsafe_code)]
fn gemm_into<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    (a, a_rs, a_cs): (&[T], usize, usize),
    (b, b_rs, b_cs): (&[T], usize, usize),
    beta: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols.max(1) - 1) * cs;
    assert!(last(m, dst_rs, n, 1) < dst.len(), "gemm_into: dst out of bounds");
    if k > 0 {
        assert!(last(m, a_rs, k, a_cs) < a.len(), "gemm_into: lhs out of bounds");
        assert!(last(k, b_rs, n, b_cs) < b.len(), "gemm_into: rhs out of bounds");
    }
    // SAFETY: every element gemm reads or writes lies within the slices (checked above: the largest
    // offset of each operand is inside it), `dst` is borrowed mutably and so aliases neither operand,
    // and `T` is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The key span `(first, count)` each `(batch row, tile)` needs: from the lowest `lo` to the highest
/// `hi` of its queries, row after row of `r.queries` queries.
fn spans(r: &KeyRanges) -> Vec<(usize, usize)> {
    let t = r.queries.max(1);
    r.ranges
        .chunks_exact(t)
        .flat_map(|row| row.chunks(TILE))
        .map(|tile| {
            let lo = tile.iter().map(|&(lo, _)| lo as usize).min().unwrap_or(0);
            let hi = tile.iter().map(|&(_, hi)| hi as usize).max().unwrap_or(0);
            (lo, hi + 1 - lo)
        })
        .collect()
}

/// Offsets of each `(rep head, tile)` probability block inside one task's buffer, and its length.
fn prob_offsets(spans: &[(usize, usize)], n: &Dims) -> (Vec<usize>, usize) {
    let per_head: usize = spans.iter().enumerate().map(|(ti, &(_, c))| tile_rows(ti, n) * c).sum();
    let mut offs = Vec::with_capacity(n.rep() * spans.len());
    for hr in 0..n.rep() {
        let mut o = hr * per_head;
        for (ti, &(_, c)) in spans.iter().enumerate() {
            offs.push(o);
            o += tile_rows(ti, n) * c;
        }
    }
    (offs, n.rep() * per_head)
}

fn tile_rows(ti: usize, n: &Dims) -> usize {
    TILE.min(n.t - ti * TILE)
}

/// One task: batch row `bi`, kv head `g` and the `rep` query heads that share it. Writes their outputs
/// `(rep, t, d)` into `out` and returns the probabilities.
#[allow(clippy::too_many_arguments)]
fn fwd_task<T: Elem>(
    (bi, g): (usize, usize),
    out: &mut [T],
    (q, k, v): (&[T], &[T], &[T]),
    r: &KeyRanges,
    spans: &[(usize, usize)],
    n: &Dims,
    scale: T,
) -> Vec<T> {
    let (t, d, rep) = (n.t, n.d, n.rep());
    let (offs, len) = prob_offsets(spans, n);
    let mut p = vec![T::zero(); len];
    let kv = (bi * n.kv_heads + g) * t * d;
    let (kt, vt) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
    for hr in 0..rep {
        let qh = ((bi * n.heads + g * rep + hr) * t) * d;
        for (ti, &(s0, c)) in spans.iter().enumerate() {
            let (i0, rows) = (ti * TILE, tile_rows(ti, n));
            let pt = &mut p[offs[hr * spans.len() + ti]..][..rows * c];
            gemm_into((rows, c, d), pt, c, false, (&q[qh + i0 * d..], d, 1), (&kt[s0 * d..], 1, d), scale);
            for (i, row) in pt.chunks_mut(c).enumerate() {
                let (lo, hi) = r.ranges[bi * t + i0 + i];
                let (lo, hi) = (lo as usize - s0, hi as usize - s0);
                row[..lo].fill(T::zero());
                row[hi + 1..].fill(T::zero());
                softmax_in_place(&mut row[lo..=hi]);
            }
            let o = &mut out[(hr * t + i0) * d..];
            gemm_into((rows, d, c), o, d, false, (pt, c, 1), (&vt[s0 * d..], d, 1), T::one());
        }
    }
    p
}

/// Gradients of one task: `dq` `(rep, t, d)`, `dk` and `dv` `(t, d)` of its kv head.
#[allow(clippy::too_many_arguments)]
fn bwd_task<T: Elem>(
    (bi, g): (usize, usize),
    (dq, dk, dv): (&mut [T], &mut [T], &mut [T]),
    (q, k, v, dout): (&[T], &[T], &[T], &[T]),
    p: &[T],
    spans: &[(usize, usize)],
    n: &Dims,
    scale: T,
) {
    let (t, d, rep) = (n.t, n.d, n.rep());
    let (offs, _) = prob_offsets(spans, n);
    let kv = (bi * n.kv_heads + g) * t * d;
    let (kt, vt) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
    let mut ds = vec![T::zero(); TILE * t];
    for hr in 0..rep {
        let qh = ((bi * n.heads + g * rep + hr) * t) * d;
        for (ti, &(s0, c)) in spans.iter().enumerate() {
            let (i0, rows) = (ti * TILE, tile_rows(ti, n));
            let pt = &p[offs[hr * spans.len() + ti]..][..rows * c];
            let (qt, dot) = (&q[qh + i0 * d..], &dout[qh + i0 * d..]);
            // dV[s0..s0+c] += Pᵀ dO
            gemm_into((c, d, rows), &mut dv[s0 * d..], d, true, (pt, 1, c), (dot, d, 1), T::one());
            // dP = dO Vᵀ, then dS = P ∘ (dP − rowsum(P ∘ dP)) · scale in place
            let st = &mut ds[..rows * c];
            gemm_into((rows, c, d), st, c, false, (dot, d, 1), (&vt[s0 * d..], 1, d), T::one());
            for (srow, prow) in st.chunks_mut(c).zip(pt.chunks(c)) {
                let dotp: T = srow.iter().zip(prow).map(|(&a, &b)| a * b).sum();
                for (s, &pv) in srow.iter_mut().zip(prow) {
                    *s = pv * (*s - dotp) * scale;
                }
            }
            // dQ = dS K, dK[s0..s0+c] += dSᵀ Q
            gemm_into(
                (rows, d, c),
                &mut dq[(hr * t + i0) * d..],
                d,
                false,
                (st, c, 1),
                (&kt[s0 * d..], d, 1),
                T::one(),
            );
            gemm_into((c, d, rows), &mut dk[s0 * d..], d, true, (st, 1, c), (qt, d, 1), T::one());
        }
    }
}

struct RangedAttention {
    ranges: KeyRanges,
    /// [`spans`] of `ranges`, for the forward and the backward.
    spans: Vec<(usize, usize)>,
    scale: f64,
    /// The forward's probabilities per task (`Vec<Vec<T>>` of the forward's element type), for the
    /// backward, which takes them.
    saved: Mutex<Option<Box<dyn Any + Send>>>,
}

impl RangedAttention {
    fn forward<T: Elem>(&self, (q, k, v): (&[T], &[T], &[T]), n: &Dims) -> (Vec<T>, Vec<Vec<T>>) {
        let spans = &self.spans;
        let per_task = n.rep() * n.t * n.d;
        let scale = T::from(self.scale).unwrap_or_else(T::one);
        let mut out = vec![T::zero(); n.b * n.heads * n.t * n.d];
        let probs = out
            .par_chunks_mut(per_task.max(1))
            .enumerate()
            .with_max_len(1)
            .map(|(task, o)| {
                let (bi, g) = (task / n.kv_heads, task % n.kv_heads);
                let sp = &spans[bi * n.tiles()..(bi + 1) * n.tiles()];
                fwd_task((bi, g), o, (q, k, v), &self.ranges, sp, n, scale)
            })
            .collect();
        (out, probs)
    }

    fn run<T: Elem>(&self, (q, k, v): (&[T], &[T], &[T]), n: &Dims) -> Vec<T> {
        let (out, probs) = self.forward((q, k, v), n);
        if let Ok(mut s) = self.saved.lock() {
            *s = Some(Box::new(probs));
        }
        out
    }

    #[allow(clippy::type_complexity)]
    fn backward<T: Elem>(&self, (q, k, v, dout): (&[T], &[T], &[T], &[T]), n: &Dims) -> (Vec<T>, Vec<T>, Vec<T>) {
        let saved = self.saved.lock().ok().and_then(|mut s| s.take()).and_then(|p| p.downcast::<Vec<Vec<T>>>().ok());
        // Kept by the forward; recomputed if this op's forward ran in the other precision (never in
        // practice) or the backward runs twice.
        let probs = match saved {
            Some(p) => *p,
            None => self.forward((q, k, v), n).1,
        };
        let spans = &self.spans;
        let (qn, kn) = (n.rep() * n.t * n.d, n.t * n.d);
        let mut dq = vec![T::zero(); n.b * n.heads * n.t * n.d];
        let mut dk = vec![T::zero(); n.b * n.kv_heads * kn];
        let mut dv = vec![T::zero(); n.b * n.kv_heads * kn];
        let scale = T::from(self.scale).unwrap_or_else(T::one);
        dq.par_chunks_mut(qn.max(1))
            .zip(dk.par_chunks_mut(kn.max(1)))
            .zip(dv.par_chunks_mut(kn.max(1)))
            .zip(probs.par_iter())
            .enumerate()
            .with_max_len(1)
            .for_each(|(task, (((dq, dk), dv), p))| {
                let (bi, g) = (task / n.kv_heads, task % n.kv_heads);
                let sp = &spans[bi * n.tiles()..(bi + 1) * n.tiles()];
                bwd_task((bi, g), (dq, dk, dv), (q, k, v, dout), p, sp, n, scale);
            });
        (dq, dk, dv)
    }
}

fn dims(lq: &Layout, lk: &Layout, lv: &Layout, r: &KeyRanges) -> Result<Dims> {
    let (b, heads, t, d) = lq.shape().dims4()?;
    let (bk, kv_heads, tk, dk) = lk.shape().dims4()?;
    if bk != b || tk != t || dk != d || lv.shape() != lk.shape() || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!("ranged_attention: q {:?}, k {:?}, v {:?}", lq.dims(), lk.dims(), lv.dims());
    }
    if r.queries != t || r.ranges.len() != b * t {
        candle_core::bail!("ranged_attention: ranges for {} queries, q is {:?}", r.ranges.len(), lq.dims());
    }
    Ok(Dims { b, heads, kv_heads, t, d })
}

impl CustomOp3 for RangedAttention {
    fn name(&self) -> &'static str {
        "ranged-attention"
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
        let n = dims(lq, lk, lv, &self.ranges)?;
        let name = self.name();
        let y = match sq {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(self.run(
                (contiguous::<f32>(name, sq, lq)?, contiguous::<f32>(name, sk, lk)?, contiguous::<f32>(name, sv, lv)?),
                &n,
            )),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(self.run(
                (contiguous::<f64>(name, sq, lq)?, contiguous::<f64>(name, sk, lk)?, contiguous::<f64>(name, sv, lv)?),
                &n,
            )),
            _ => candle_core::bail!("{name}: only f32 and f64 are supported"),
        };
        Ok((y, lq.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = dims(q.layout(), k.layout(), v.layout(), &self.ranges)?;
        let name = self.name();
        let (dq, dk, dv) = match q.dtype() {
            candle_core::DType::F32 => {
                let (a, b, c) = grads::<f32>(self, (q, k, v, grad), &n)?;
                (
                    Tensor::from_vec(a, q.shape(), q.device())?,
                    Tensor::from_vec(b, k.shape(), k.device())?,
                    Tensor::from_vec(c, v.shape(), v.device())?,
                )
            }
            candle_core::DType::F64 => {
                let (a, b, c) = grads::<f64>(self, (q, k, v, grad), &n)?;
                (
                    Tensor::from_vec(a, q.shape(), q.device())?,
                    Tensor::from_vec(b, k.shape(), k.device())?,
                    Tensor::from_vec(c, v.shape(), v.device())?,
                )
            }
            other => candle_core::bail!("{name}: {other:?} is not supported"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[allow(clippy::type_complexity)]
fn grads<T: Elem>(
    op: &RangedAttention,
    (q, k, v, g): (&Tensor, &Tensor, &Tensor, &Tensor),
    n: &Dims,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let name = op.name();
    with_data::<T, _>(name, q, |q| {
        with_data::<T, _>(name, k, |k| {
            with_data::<T, _>(name, v, |v| with_data::<T, _>(name, g, |g| Ok(op.backward((q, k, v, g), n))))
        })
    })
}

/// `softmax(q·Kᵀ · scale over each query's key range) · V` for a whole sequence, differentiable in all
/// three inputs.
///
/// # Shapes
/// `q`: (b, heads, t, d); `k`, `v`: (b, kv_heads, t, d) (heads a multiple of kv_heads; query head `h`
/// reads kv head `h / (heads / kv_heads)`, as transformers' `repeat_kv`); `ranges`: per `(b, query)`
/// the inclusive key range `lo ≤ hi < t` → (b, heads, t, d).
pub fn ranged_attention(q: &Tensor, k: &Tensor, v: &Tensor, ranges: &KeyRanges, scale: f64) -> Result<Tensor> {
    let t = q.dim(2)?;
    if let Some(&(lo, hi)) = ranges.ranges.iter().find(|&&(lo, hi)| lo > hi || hi as usize >= t) {
        candle_core::bail!("ranged_attention: key range {lo}..={hi} for {t} keys");
    }
    let op = RangedAttention { ranges: ranges.clone(), spans: spans(ranges), scale, saved: Mutex::new(None) };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use super::super::masked_softmax;
    use super::super::testing::assert_same_fwd_and_grad;
    use super::*;
    use candle_core::{DType, Device, Var};
    use std::sync::Arc;

    /// The composed attention the model ran before: full `(t, t)` scores, masked softmax, `· V`.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, r: &KeyRanges, scale: f64) -> Result<Tensor> {
        let (b, heads, t, d) = q.dims4()?;
        let kv = k.dim(1)?;
        let qs = (q * scale)?.reshape((b, kv, heads / kv * t, d))?;
        let scores = qs.matmul(&k.t()?)?.reshape((b, heads, t, t))?;
        let p = masked_softmax(&scores, r)?.reshape((b, kv, heads / kv * t, t))?;
        p.matmul(v)?.reshape((b, heads, t, d))
    }

    /// Causal ranges over packed documents of the given lengths per row (the last one padding: each
    /// padding query sees itself only).
    fn packed(rows: &[&[usize]], pad: &[usize]) -> KeyRanges {
        let mut ranges = Vec::new();
        let mut t = 0;
        for (docs, &p) in rows.iter().zip(pad) {
            let mut start = 0u32;
            for &len in docs.iter() {
                for i in 0..len as u32 {
                    ranges.push((start, start + i));
                }
                start += len as u32;
            }
            for i in 0..p as u32 {
                ranges.push((start + i, start + i));
            }
            t = start as usize + p;
        }
        KeyRanges { queries: t, ranges: Arc::new(ranges) }
    }

    #[test]
    fn matches_the_full_product_with_gradients_on_packed_padded_rows() -> Result<()> {
        let dev = Device::Cpu;
        // Tiles of 32 cross document boundaries (row 0: 20 + 50 + 3; row 1: one 70-token document and 3
        // padding positions); 4 query heads share 2 kv heads.
        let r = packed(&[&[20, 50, 3], &[70]], &[0, 3]);
        let (b, heads, kv, t, d) = (2, 4, 2, r.queries, 8);
        let q = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, heads, t, d), &dev)?)?;
        let k = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, kv, t, d), &dev)?)?;
        let v = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, kv, t, d), &dev)?)?;
        let w = Tensor::randn(0f64, 1.0, (b, heads, t, d), &dev)?;
        let scale = 1.0 / (d as f64).sqrt();
        let fused = ranged_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &r, scale)?;
        let want = composed(q.as_tensor(), k.as_tensor(), v.as_tensor(), &r, scale)?;
        assert_same_fwd_and_grad(&fused, &want, &w, &[&q, &k, &v], 1e-12, 1e-12)
    }

    #[test]
    fn f32_matches_and_a_sliding_window_range_is_honoured() -> Result<()> {
        let dev = Device::Cpu;
        // One row of 45 queries, each seeing at most the 7 keys up to itself (a sliding window), so
        // tiles start past key 0.
        let t = 45;
        let r = KeyRanges { queries: t, ranges: Arc::new((0..t as u32).map(|i| (i.saturating_sub(6), i)).collect()) };
        let (heads, d) = (2, 4);
        let q = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev)?;
        let got = ranged_attention(&q, &k, &v, &r, 0.5)?.to_dtype(DType::F64)?;
        let want = composed(&q, &k, &v, &r, 0.5)?.to_dtype(DType::F64)?;
        let diff = super::super::testing::max_diff(&got, &want)?;
        assert!(diff < 1e-5, "differs by {diff}");
        Ok(())
    }

    #[test]
    fn a_range_past_the_keys_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 1, 2, 4), DType::F32, &dev)?;
        let r = KeyRanges { queries: 2, ranges: Arc::new(vec![(0, 0), (0, 2)]) };
        let err = ranged_attention(&q, &q, &q, &r, 1.0).expect_err("key 2 of 2");
        assert!(err.to_string().contains("0..=2 for 2 keys"), "{err}");
        Ok(())
    }
}
