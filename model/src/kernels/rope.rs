//! The attention input in one pass: split the fused `qkv_proj` output into heads, move heads before time,
//! and rotate the first `r` dims of every q and k head (transformers' `rotate_half` convention:
//! `[x1, x2] -> [x1 c - x2 s, x2 c + x1 s]`). The backward rotates the gradient back (`-θ`) and undoes
//! the split, so no intermediate of the composed version (narrows, products, concatenations, copies)
//! is ever allocated.

use super::{contiguous, par_chunks_filled, Elem};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use std::sync::Arc;

/// Head counts and the rotation tables of one call.
#[derive(Clone)]
struct QkvRope {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// `cos` and `sin` per `(b, t)` position, `half` values each (f64 for both element types).
    cos: Arc<Vec<f64>>,
    sin: Arc<Vec<f64>>,
    half: usize,
}

impl QkvRope {
    fn total_heads(&self) -> usize {
        self.heads + 2 * self.kv_heads
    }

    /// Which projection head the blocked slab `slab` holds, and its batch row: q heads first
    /// (`b × heads` slabs), then k, then v.
    fn slab_head(&self, slab: usize, b: usize) -> (usize, usize) {
        if slab < b * self.heads {
            (slab / self.heads, slab % self.heads)
        } else if slab < b * (self.heads + self.kv_heads) {
            let s = slab - b * self.heads;
            (s / self.kv_heads, self.heads + s % self.kv_heads)
        } else {
            let s = slab - b * (self.heads + self.kv_heads);
            (s / self.kv_heads, self.heads + self.kv_heads + s % self.kv_heads)
        }
    }

    /// The blocked slab of projection head `head` in batch row `bi` (inverse of [`Self::slab_head`]).
    fn head_slab(&self, bi: usize, head: usize, b: usize) -> usize {
        if head < self.heads {
            bi * self.heads + head
        } else if head < self.heads + self.kv_heads {
            b * self.heads + bi * self.kv_heads + (head - self.heads)
        } else {
            b * (self.heads + self.kv_heads) + bi * self.kv_heads + (head - self.heads - self.kv_heads)
        }
    }

    /// Copies one head row `from` into `target`, rotating its first `2 half` dims by the angles of
    /// position row `row` (by `-θ` when `sign` is -1) if `rotate`, else copying it as it is.
    fn put<T: Elem>(&self, target: &mut [T], from: &[T], row: usize, rotate: bool, sign: T) {
        if !rotate {
            target.copy_from_slice(from);
            return;
        }
        let half = self.half;
        let cs = &self.cos[row * half..(row + 1) * half];
        let sn = &self.sin[row * half..(row + 1) * half];
        // Iterators, not indices: without bounds checks the loop vectorizes.
        let (from1, from2) = from[..2 * half].split_at(half);
        let (t1, t2) = target[..2 * half].split_at_mut(half);
        for ((((o1, o2), (&x1, &x2)), &c), &s) in
            t1.iter_mut().zip(t2.iter_mut()).zip(from1.iter().zip(from2)).zip(cs).zip(sn)
        {
            let (c, s) = (T::from(c).unwrap_or_else(T::one), T::from(s).unwrap_or_else(T::zero) * sign);
            *o1 = x1 * c - x2 * s;
            *o2 = x2 * c + x1 * s;
        }
        target[2 * half..].copy_from_slice(&from[2 * half..]);
    }

    /// The `(b, t, H*d)` projection → the `(H, b, t, d)`-blocked heads, q and k rotated by `+θ`.
    fn forward<T: Elem>(&self, src: &[T], b: usize, t: usize) -> Vec<T> {
        let (d, hs) = (self.head_dim, self.total_heads());
        // One task per (block, batch row, head): a contiguous (t, d) slab of the blocked layout.
        par_chunks_filled(src.len(), t * d, |slab, dst| {
            let (bi, head) = self.slab_head(slab, b);
            let rotate = head < self.heads + self.kv_heads;
            for (ti, target) in dst.chunks_mut(d).enumerate() {
                let row = bi * t + ti;
                self.put(target, &src[row * hs * d + head * d..][..d], row, rotate, T::one());
            }
        })
    }

    /// The inverse: blocked gradient slabs → the `(b, t, H*d)` layout, q and k rotated back by `-θ`, in
    /// one pass (each task writes one whole projection row).
    fn backward<T: Elem>(&self, src: &[T], b: usize, t: usize) -> Vec<T> {
        let (d, hs) = (self.head_dim, self.total_heads());
        par_chunks_filled(src.len(), hs * d, |row, dst| {
            let (bi, ti) = (row / t, row % t);
            for (head, target) in dst.chunks_mut(d).enumerate() {
                let slab = self.head_slab(bi, head, b);
                let rotate = head < self.heads + self.kv_heads;
                self.put(target, &src[slab * t * d + ti * d..][..d], row, rotate, -T::one());
            }
        })
    }
}

impl CustomOp1 for QkvRope {
    fn name(&self) -> &'static str {
        "qkv-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, _) = l.shape().dims3()?;
        let out = match s {
            CpuStorage::F32(_) => f32::to_cpu_storage_owned(self.forward(contiguous::<f32>(self.name(), s, l)?, b, t)),
            CpuStorage::F64(_) => f64::to_cpu_storage_owned(self.forward(contiguous::<f64>(self.name(), s, l)?, b, t)),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((out, Shape::from(l.shape().elem_count())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, t, _) = arg.dims3()?;
        // An op over the gradient's storage, so it is not copied out into a Vec first.
        let dx = grad.contiguous()?.apply_op1_no_bwd(&QkvRopeBwd { op: self, b, t })?;
        Ok(Some(dx.reshape(arg.shape())?))
    }
}

/// The backward: the flat `(q, k, v)` gradient → the `qkv` gradient (`b`, `t` of the forward).
struct QkvRopeBwd<'a> {
    op: &'a QkvRope,
    b: usize,
    t: usize,
}

impl CustomOp1 for QkvRopeBwd<'_> {
    fn name(&self) -> &'static str {
        "qkv-rope-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t) = (self.b, self.t);
        let dx = match s {
            CpuStorage::F32(_) => {
                f32::to_cpu_storage_owned(self.op.backward(contiguous::<f32>(self.name(), s, l)?, b, t))
            }
            CpuStorage::F64(_) => {
                f64::to_cpu_storage_owned(self.op.backward(contiguous::<f64>(self.name(), s, l)?, b, t))
            }
            _ => candle_core::bail!("{}: only f32 and f64 are supported", self.name()),
        };
        Ok((dx, l.shape().clone()))
    }
}

/// Splits `qkv` `(b, t, (heads + 2 kv_heads) * d)` into `q` `(b, heads, t, d)`, `k` and `v`
/// `(b, kv_heads, t, d)` (all contiguous), rotating q and k by `cos`/`sin` `(b * t, r / 2)` (f32, any
/// multiplier already applied). Differentiable in `qkv`.
pub fn qkv_rope(
    qkv: &Tensor,
    heads: usize,
    kv_heads: usize,
    cos: &[f32],
    sin: &[f32],
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, t, width) = qkv.dims3()?;
    let hs = heads + 2 * kv_heads;
    if width % hs != 0 {
        candle_core::bail!("qkv_rope: width {width} is not a multiple of {hs} heads");
    }
    let d = width / hs;
    let half = cos.len() / (b * t).max(1);
    if cos.len() != b * t * half || sin.len() != cos.len() || 2 * half > d {
        candle_core::bail!("qkv_rope: {} cos values for {b}x{t} positions and head_dim {d}", cos.len());
    }
    let op = QkvRope {
        heads,
        kv_heads,
        head_dim: d,
        cos: Arc::new(cos.iter().map(|&c| c as f64).collect()),
        sin: Arc::new(sin.iter().map(|&s| s as f64).collect()),
        half,
    };
    let flat = qkv.contiguous()?.apply_op1(op)?;
    let nq = b * heads * t * d;
    let nk = b * kv_heads * t * d;
    let q = flat.narrow(0, 0, nq)?.reshape((b, heads, t, d))?;
    let k = flat.narrow(0, nq, nk)?.reshape((b, kv_heads, t, d))?;
    let v = flat.narrow(0, nq + nk, nk)?.reshape((b, kv_heads, t, d))?;
    Ok((q, k, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::apply_rotary;
    use candle_core::{Device, Var};

    #[test]
    fn matches_split_transpose_and_composed_rotary_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let (b, t, nh, nkv, d, half) = (2, 5, 4, 2, 6, 2);
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (b, t, (nh + 2 * nkv) * d), &dev)?)?;
        let cos: Vec<f32> = (0..b * t * half).map(|i| (i as f32 * 0.37).cos() * 1.1).collect();
        let sin: Vec<f32> = (0..b * t * half).map(|i| (i as f32 * 0.37).sin() * 1.1).collect();
        let (q, k, v) = qkv_rope(x.as_tensor(), nh, nkv, &cos, &sin)?;
        let ct = Tensor::from_vec(cos.clone(), (b, 1, t, half), &dev)?.to_dtype(candle_core::DType::F64)?;
        let st = Tensor::from_vec(sin.clone(), (b, 1, t, half), &dev)?.to_dtype(candle_core::DType::F64)?;
        let xt = x.as_tensor();
        let q2 = apply_rotary(&xt.narrow(2, 0, nh * d)?.reshape((b, t, nh, d))?.transpose(1, 2)?, &ct, &st)?;
        let k2 = apply_rotary(&xt.narrow(2, nh * d, nkv * d)?.reshape((b, t, nkv, d))?.transpose(1, 2)?, &ct, &st)?;
        let v2 = xt.narrow(2, (nh + nkv) * d, nkv * d)?.reshape((b, t, nkv, d))?.transpose(1, 2)?;
        for (a, c) in [(&q, &q2), (&k, &k2), (&v, &v2)] {
            assert!((a - c)?.abs()?.max_all()?.to_scalar::<f64>()? < 1e-6);
        }
        let wq = Tensor::randn(0f64, 1.0, q.shape(), &dev)?;
        let wk = Tensor::randn(0f64, 1.0, k.shape(), &dev)?;
        let wv = Tensor::randn(0f64, 1.0, v.shape(), &dev)?;
        let lf = ((q * &wq)?.sum_all()? + (k * &wk)?.sum_all()? + (v * &wv)?.sum_all()?)?;
        let lc = ((q2 * &wq)?.sum_all()? + (k2 * &wk)?.sum_all()? + (v2 * &wv)?.sum_all()?)?;
        let (gf, gc) = (lf.backward()?, lc.backward()?);
        let d = (gf.get(xt).expect("grad") - gc.get(xt).expect("grad"))?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(d < 1e-6, "{d}");
        Ok(())
    }
}
