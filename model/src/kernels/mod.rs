//! Fused CPU kernels with a backward, as candle custom ops: each is one multithreaded pass over memory
//! where the composed version makes many (and allocates a temporary for each).
//!
//! - [`masked_softmax`]: softmax over each row's allowed key range (causal, padding, packed documents,
//!   sliding window) without materializing a mask.
//! - [`rms_norm`]: RMSNorm with gradients for both input and weight.
//! - [`qkv_rope`]: split of the fused `qkv_proj` output into heads with rotary embeddings applied.
//! - [`swiglu`]: `silu(gate) * up` over the fused `gate_up_proj` output.
//! - [`ranged_attention`]: attention over a whole sequence computing only the key spans each tile of
//!   queries may see (causal, packed documents, padding), with its backward.
//! - [`cached_attention`]: a decoding step's attention over the KV cache (frozen weights, no backward).
//! - [`small_matmul`]: `x @ w.T` for the few rows of a decoding step (frozen weights, no backward).
//! - [`token_logps`]: log-softmax gathered at the targets (the cross-entropy core) over the vocabulary.
//!
//! Each has a test against the composed version (forward to 1e-5, gradients to 1e-4). They run on the
//! CPU in f32 or f64; [`crate::Kernels::Composed`] remains for other devices and for debugging.

mod cached_attention;
mod logps;
mod matvec;
mod ranged_attention;
mod rms_norm;
mod rope;
mod softmax;
mod swiglu;

pub use cached_attention::cached_attention;
pub use logps::token_logps;
pub use matvec::{packed_matmul, small_matmul, DecodeWeights, PackedWeight, SMALL_ROWS};
pub use ranged_attention::ranged_attention;
pub use rms_norm::rms_norm;
pub use rope::qkv_rope;
pub use softmax::{masked_softmax, KeyRanges};
pub use swiglu::swiglu;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor, WithDType};
use rayon::prelude::*;

/// Float element types the kernels support.
pub(crate) trait Elem:
    WithDType + num_traits::Float + num_traits::NumAssign + Send + Sync + std::iter::Sum
{
    /// `e^self`: [`exp_f32`] for f32 (branch-free, so loops over it vectorize), `exp` for f64 (the
    /// precision the kernel tests check gradients at).
    fn fast_exp(self) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn fast_exp(self) -> f32 {
        exp_f32(self)
    }
}

impl Elem for f64 {
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
}

/// `e^x` in f32 without a libm call: Cephes' `expf` (range reduction by `ln 2` in two parts, degree-6
/// polynomial, exponent assembled from bits), relative error below 3e-7. Inputs are clamped to
/// [-87.3, 88]: below, the result is the smallest normal float instead of a subnormal or 0; above, 1.6e38
/// instead of overflowing. NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_55, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The contiguous slice of `s` described by `l`.
pub(crate) fn contiguous<'a, T: WithDType>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// Runs `f` on the contiguous CPU data of `t` in place, without copying it out into a `Vec` (a
/// non-contiguous `t` is made contiguous first). For backward passes, which get tensors, not storages,
/// and for the learner's fused optimizer update.
pub fn with_data<T: WithDType, R>(op: &str, t: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cpu(c) => f(contiguous::<T>(op, c, l)?),
        _ => candle_core::bail!("{op}: the fused kernels run on the CPU"),
    }
}

/// A vector of `len` elements computed in parallel chunks of `chunk` elements: `fill(i, out)` writes
/// chunk `i` (`out` is `chunk` long, shorter for the last), which starts zeroed.
///
/// The zeroing is done by the task that writes the chunk, in its own cache, just before `fill`, instead
/// of by the allocator on one thread over the whole buffer (`vec![0; len]` of reused memory is a
/// `memset` pass over DRAM on the calling thread: ~4% of a `tiny` training step, serial).
pub(crate) fn par_chunks_filled<T: Elem>(len: usize, chunk: usize, fill: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    par_chunks_filled_with(len, chunk, fill).0
}

/// [`par_chunks_filled`] where each chunk also returns a value (a partial sum, say), collected in
/// chunk order.
#[allow(unsafe_code)]
pub(crate) fn par_chunks_filled_with<T: Elem, R: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [T]) -> R + Sync,
) -> (Vec<T>, Vec<R>) {
    let mut v: Vec<T> = Vec::with_capacity(len);
    let per_chunk = v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .map(|(i, c)| {
            for x in c.iter_mut() {
                x.write(T::zero());
            }
            // SAFETY: every element of `c` was initialized just above, and `MaybeUninit<T>` has the
            // layout of `T`, so the cast is a valid `&mut [T]` of the same length over the same memory.
            let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
            fill(i, c)
        })
        .collect();
    // SAFETY: the chunks cover `0..len` of the spare capacity and every one was initialized above (a
    // panic in `fill` propagates before this line, leaving the length 0).
    unsafe { v.set_len(len) };
    (v, per_chunk)
}

/// Rows per rayon task: enough work per task to amortize scheduling.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
}

#[cfg(test)]
mod exp_tests {
    use super::exp_f32;

    #[test]
    fn exp_f32_is_within_3e7_relative_of_exp_and_keeps_nan() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f64 / 200_000.0;
            let want = x.exp();
            let got = exp_f32(x as f32) as f64;
            // Relative to exp of the f32 input actually passed.
            let want_f = (x as f32 as f64).exp();
            worst = worst.max(((got - want_f) / want_f).abs());
            assert!(want.is_finite());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(f32::NEG_INFINITY) < 1.2e-38);
        assert!(exp_f32(1000.0).is_finite());
    }
}

/// Shared checks of the kernel tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Result, Tensor, Var};

    /// Largest absolute difference of two f64 tensors.
    pub fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()
    }

    /// Asserts that `fused` and `composed` agree to `fwd_tol`, and that the gradients of
    /// `sum(out * probe)` with respect to each of `vars` agree to `grad_tol` and are not all zero.
    pub fn assert_same_fwd_and_grad(
        fused: &Tensor,
        composed: &Tensor,
        probe: &Tensor,
        vars: &[&Var],
        fwd_tol: f64,
        grad_tol: f64,
    ) -> Result<()> {
        let d = max_diff(fused, composed)?;
        assert!(d < fwd_tol, "forward differs by {d}");
        let gf = (fused * probe)?.sum_all()?.backward()?;
        let gc = (composed * probe)?.sum_all()?.backward()?;
        for (i, v) in vars.iter().enumerate() {
            let (a, b) =
                (gf.get(v.as_tensor()).expect("fused gradient"), gc.get(v.as_tensor()).expect("composed gradient"));
            let d = max_diff(a, b)?;
            assert!(d < grad_tol, "gradient of input {i} differs by {d}");
            assert!(a.abs()?.sum_all()?.to_scalar::<f64>()? > 0.0, "gradient of input {i} is zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod fill_tests {
    use super::{par_chunks_filled, par_chunks_filled_with};

    #[test]
    fn chunks_cover_the_vector_in_order_starting_zeroed() {
        for (len, chunk) in [(0, 4), (1, 4), (10, 4), (12, 4), (10_000, 333)] {
            let (v, seen) = par_chunks_filled_with::<f32, (usize, usize, bool)>(len, chunk, |i, c| {
                let zeroed = c.iter().all(|&x| x == 0.0);
                for (j, x) in c.iter_mut().enumerate() {
                    *x = (i * chunk + j) as f32;
                }
                (i, c.len(), zeroed)
            });
            assert_eq!(v, (0..len).map(|x| x as f32).collect::<Vec<_>>(), "len {len} chunk {chunk}");
            assert_eq!(seen.len(), len.div_ceil(chunk));
            for (k, &(i, n, zeroed)) in seen.iter().enumerate() {
                assert_eq!(i, k);
                assert_eq!(n, chunk.min(len - k * chunk));
                assert!(zeroed, "chunk {k} did not start zeroed");
            }
        }
        // Untouched elements stay zero.
        assert_eq!(par_chunks_filled::<f64>(5, 2, |_, _| {}), vec![0.0; 5]);
    }
}
