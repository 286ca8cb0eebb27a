//! The non-linear pieces of the transformer, in two implementations:
//!
//! * [`Kernels::Fused`] (default on CPU): phi4r's own fused kernels ([`crate::kernels`]), each a
//!   candle custom op *with a backward*, for training and sampling alike.
//! * [`Kernels::Composed`]: built from primitive candle ops, every one of which has a backward: the
//!   reference the fused kernels are tested against, the path on non-CPU devices, and a debugging switch
//!   (`PHI4R_KERNELS=composed`).
//!
//! candle-nn's own fused CPU ops (`ops::rms_norm`, `ops::softmax_last_dim`, `rotary_emb::*`) are not
//! used: they record no backward and would silently cut the graph.

use candle_core::{DType, Result, Tensor, D};

/// Which implementation of the non-linear ops a forward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Primitive, differentiable candle ops.
    Composed,
    /// phi4r's fused CPU kernels with a backward.
    Fused,
}

impl Kernels {
    /// The kernels for `device`: fused on the CPU unless `PHI4R_KERNELS=composed`; composed elsewhere.
    pub fn for_device(device: &candle_core::Device) -> Self {
        let composed = std::env::var("PHI4R_KERNELS").is_ok_and(|v| v == "composed");
        if device.is_cpu() && !composed {
            Kernels::Fused
        } else {
            Kernels::Composed
        }
    }

    /// Whether the fused kernels can run on `t` (CPU, f32 or f64).
    pub(crate) fn fused_for(self, t: &Tensor) -> bool {
        self == Kernels::Fused && t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight` (transformers' `Phi3RMSNorm`).
///
/// # Shapes
/// `x`: (.., h), `weight`: (h) → (.., h)
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, k: Kernels) -> Result<Tensor> {
    match k {
        Kernels::Fused if k.fused_for(x) => crate::kernels::rms_norm(x, weight, eps),
        _ => {
            // Half precisions accumulate in f32; f32 and f64 stay as they are.
            let dtype = x.dtype();
            let xf = match dtype {
                DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
                _ => x.clone(),
            };
            let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            xf.broadcast_mul(&inv)?.to_dtype(dtype)?.broadcast_mul(weight)
        }
    }
}

/// Softmax over the last dimension, stable against large logits (composed, differentiable).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// Log-softmax over the last dimension (differentiable).
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    let lse = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    diff.broadcast_sub(&lse)
}

/// Applies rotary embeddings to the first `2 * cos.dim(-1)` dims of each head, leaving the rest.
///
/// Non-interleaved halves, as transformers' `rotate_half`:
/// `[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]`.
///
/// # Shapes
/// `x`: (b, h, t, d), `cos`/`sin`: (b, 1, t, r/2) → (b, h, t, d)
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = cos.dim(D::Minus1)?;
    let r = 2 * half;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let o2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    if r == d {
        Tensor::cat(&[o1, o2], D::Minus1)
    } else {
        let pass = x.narrow(D::Minus1, r, d - r)?;
        Tensor::cat(&[o1, o2, pass], D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The vendored candle writes narrow gradients into one buffer per narrowed tensor (in place after
    /// the first); overlapping, disjoint and whole-tensor narrows, and a gradient from another op, must
    /// all still add up.
    #[test]
    fn gradients_of_several_narrows_of_one_tensor_add_up() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::new(&[[1f32, 2.0, 3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]], &dev)?;
        let t = x.as_tensor();
        let y = (t.narrow(1, 0, 2)?.sum_all()?
            + (t.narrow(1, 2, 2)? * 2.0)?.sum_all()?
            + (t.narrow(1, 1, 3)? * 3.0)?.sum_all()?
            + (t.narrow(0, 1, 1)? * 10.0)?.sum_all()?
            + t.narrow(1, 0, 6)?.sum_all()?
            + t.sqr()?.sum_all()?)?;
        let g = y.backward()?.get(t).expect("x has a gradient").to_vec2::<f32>()?;
        let x = t.to_vec2::<f32>()?;
        for (r, row) in g.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let expect = [1.0, 4.0, 5.0, 5.0, 0.0, 0.0][c] + if r == 1 { 10.0 } else { 0.0 } + 1.0 + 2.0 * x[r][c];
                assert_eq!(v, expect, "d/dx[{r}][{c}]");
            }
        }
        Ok(())
    }

    /// The vendored candle computes the gradient of a transposed matmul operand (`x @ w.t()`) in the
    /// layout of the tensor it views; values must equal those of a contiguous operand.
    #[test]
    fn gradients_through_a_transposed_matmul_operand_match_a_contiguous_one() -> Result<()> {
        let dev = Device::Cpu;
        for (xs, ws) in [(vec![5, 7], vec![3, 7]), (vec![2, 3, 5, 4], vec![2, 3, 6, 4])] {
            let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, xs, &dev)?)?;
            let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, ws, &dev)?)?;
            let r = w.dims().len();
            let c = Tensor::randn(0f32, 1.0, x.as_tensor().matmul(&w.t()?)?.shape(), &dev)?;
            let via_view = (x.as_tensor().matmul(&w.t()?)? * &c)?.sum_all()?.backward()?;
            let wt = w.as_tensor().transpose(r - 2, r - 1)?.contiguous()?;
            let via_copy = (x.as_tensor().matmul(&wt)? * &c)?.sum_all()?.backward()?;
            let max_diff =
                |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar() };
            let gw = via_view.get(&w).expect("w has a gradient");
            assert_eq!(gw.dims(), w.dims());
            assert!(gw.is_contiguous(), "the weight gradient needs no copy");
            assert!(max_diff(gw, via_copy.get(&w).expect("w has a gradient"))? < 1e-5);
            assert!(max_diff(via_view.get(&x).expect("x"), via_copy.get(&x).expect("x"))? < 1e-5);
        }
        Ok(())
    }

    /// The vendored candle runs the batches of a batched matmul on the pool's threads, one whole gemm
    /// each, when there are enough of them; the result must equal the product batch by batch.
    #[test]
    fn batched_matmul_on_a_pool_equals_the_product_batch_by_batch() -> Result<()> {
        let dev = Device::Cpu;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool");
        // 6 batches (split over the 2 threads), 3 (one gemm at a time, parallel inside), with a
        // transposed rhs as attention's `q @ k.t()`, also as a 4-d (b, heads) batch; and empty outputs.
        let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        for (b, m, k, n) in [(6, 5, 7, 3), (3, 33, 17, 9), (8, 1, 4, 2), (4, 0, 3, 5)] {
            let x = Tensor::randn(0f32, 1.0, (b, m, k), &dev)?;
            let y = Tensor::randn(0f32, 1.0, (b, n, k), &dev)?;
            let got = pool.install(|| x.matmul(&y.t()?))?;
            let want = Tensor::cat(&(0..b).map(|i| x.get(i)?.matmul(&y.get(i)?.t()?)).collect::<Result<Vec<_>>>()?, 0)?
                .reshape((b, m, n))?;
            assert_eq!(got.dims(), &[b, m, n]);
            assert_eq!(values(&got)?, values(&want)?, "({b}, {m}, {k}, {n})");
            if b % 2 == 0 {
                let x4 = x.reshape((2, b / 2, m, k))?;
                let got4 = pool.install(|| x4.matmul(&y.reshape((2, b / 2, n, k))?.t()?))?;
                assert_eq!(values(&got4)?, values(&want)?, "4-d ({b}, {m}, {k}, {n})");
            }
        }
        Ok(())
    }

    #[test]
    fn fused_and_composed_agree() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (3, 5, 16), &dev)?;
        let w = Tensor::randn(1f32, 0.1, 16, &dev)?;
        let a = rms_norm(&x, &w, 1e-5, Kernels::Composed)?;
        let b = candle_nn::ops::rms_norm(&x, &w, 1e-5)?;
        assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
        let b = candle_nn::ops::softmax_last_dim(&x)?;
        let a = softmax_last_dim(&x)?;
        assert!((a - &b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
        let ls = log_softmax_last_dim(&x)?.exp()?;
        assert!((ls - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }

    #[test]
    fn rotary_matches_rotate_half_formula() -> Result<()> {
        let dev = Device::Cpu;
        // d = 6, rotary dims r = 4 (partial rotary), half = 2.
        let x = Tensor::arange(0f32, 6.0, &dev)?.reshape((1, 1, 1, 6))?;
        let cos = Tensor::new(&[0.5f32, 0.25], &dev)?.reshape((1, 1, 1, 2))?;
        let sin = Tensor::new(&[0.1f32, 0.2], &dev)?.reshape((1, 1, 1, 2))?;
        let y = apply_rotary(&x, &cos, &sin)?.flatten_all()?.to_vec1::<f32>()?;
        // x1 = [0, 1], x2 = [2, 3]
        let want =
            [0.0 * 0.5 - 2.0 * 0.1, 1.0 * 0.25 - 3.0 * 0.2, 2.0 * 0.5 + 0.0 * 0.1, 3.0 * 0.25 + 1.0 * 0.2, 4.0, 5.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        Ok(())
    }
}
