//! Fused CPU kernels with a backward, as candle custom ops: each is one multithreaded pass over memory
//! where the composed version makes many (and allocates a temporary for each).
//!
//! - [`masked_softmax`]: softmax over each row's allowed key range (causal, padding, packed documents,
//!   sliding window) without materializing a mask.
//! - [`rms_norm`]: RMSNorm with gradients for both input and weight.
//! - [`qkv_rope`]: split of the fused `qkv_proj` output into heads with rotary embeddings applied.
//! - [`swiglu`]: `silu(gate) * up` over the fused `gate_up_proj` output.
//! - [`cached_attention`]: a decoding step's attention over the KV cache (frozen weights, no backward).
//! - [`small_matmul`]: `x @ w.T` for the few rows of a decoding step (frozen weights, no backward).
//! - [`token_logps`]: log-softmax gathered at the targets (the cross-entropy core) over the vocabulary.
//!
//! Each has a test against the composed version (forward to 1e-5, gradients to 1e-4). They run on the
//! CPU in f32 or f64; [`crate::Kernels::Composed`] remains for other devices and for debugging.

mod cached_attention;
mod logps;
mod matvec;
mod rms_norm;
mod rope;
mod softmax;
mod swiglu;

pub use cached_attention::cached_attention;
pub use logps::token_logps;
pub use matvec::{small_matmul, SMALL_ROWS};
pub use rms_norm::rms_norm;
pub use rope::qkv_rope;
pub use softmax::{masked_softmax, KeyRanges};
pub use swiglu::swiglu;

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// Float element types the kernels support.
pub(crate) trait Elem:
    WithDType + num_traits::Float + num_traits::NumAssign + Send + Sync + std::iter::Sum
{
}
impl Elem for f32 {}
impl Elem for f64 {}

/// The contiguous slice of `s` described by `l`.
pub(crate) fn contiguous<'a, T: WithDType>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

/// Rows per rayon task: enough work per task to amortize scheduling.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
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
