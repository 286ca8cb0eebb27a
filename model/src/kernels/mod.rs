//! Fused CPU kernels with a backward, as candle custom ops: each is one multithreaded pass over memory
//! where the composed version makes many (and allocates a temporary for each).
//!
//! - [`masked_softmax`]: softmax over each row's allowed key range (causal, padding, packed documents,
//!   sliding window) without materializing a mask.
//! - [`rms_norm`]: RMSNorm with gradients for both input and weight.
//! - [`qkv_rope`]: split of the fused `qkv_proj` output into heads with rotary embeddings applied.
//! - [`swiglu`]: `silu(gate) * up` over the fused `gate_up_proj` output.
//! - [`small_matmul`]: `x @ w.T` for the few rows of a decoding step (frozen weights, no backward).
//! - [`token_logps`]: log-softmax gathered at the targets (the cross-entropy core) over the vocabulary.
//!
//! Each has a test against the composed version (forward to 1e-5, gradients to 1e-4). They run on the
//! CPU in f32 or f64; [`crate::Kernels::Composed`] remains for other devices and for debugging.

mod logps;
mod matvec;
mod rms_norm;
mod rope;
mod softmax;
mod swiglu;

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
