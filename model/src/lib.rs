//! The Phi-3 / Phi-4-mini model of phi4r, on candle.
//!
//! - [`Phi3Config`] (`config`): the Hugging Face `config.json`, presets, validation.
//! - [`Phi3`] (`phi3`): the decoder; training forward over padded or packed batches
//!   ([`AttentionLayout`]) and decoding over an explicit [`KvCache`].
//! - [`TrainableModel`] / [`load_frozen`] / [`save`] (`checkpoint`): Hugging Face checkpoint folders,
//!   written atomically.
//! - [`DeviceSpec`] (`device`): `cpu`, `cuda:N` or `auto`, with errors that say why CUDA is missing.
//! - [`Tokenizer`] (`tokenizer`): any `tokenizer.json`, and offline byte-level BPE training.
//! - [`ops`]: differentiable (training) and fused (frozen) kernels; [`loss`]: token log-probs and
//!   masked cross-entropy; [`ComputePool`] (`threads`): per-role rayon pools.
//! - [`bench`](mod@bench): the machine's fp32 peak, the PyTorch peer's results file and ratio helpers for
//!   `bench model`; the FLOP model is [`Phi3Config::forward_flops`].
//!
//! Depends on no other phi4r crate.
#![warn(missing_docs)]

mod atomic;
pub mod bench;
mod checkpoint;
mod config;
mod device;
mod error;
pub mod kernels;
mod kv_cache;
mod layout;
pub mod loss;
pub mod ops;
mod params;
mod phi3;
mod rope;
mod threads;
mod tokenizer;

pub use atomic::{write_atomic, write_atomic_with};
pub use checkpoint::{
    load_frozen, load_tokenizer, read_checkpoint, save, weights_from_bytes, weights_to_bytes, TrainableModel,
    CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
pub use config::{LongRope, Phi3Config, Preset};
pub use device::{DTypeSpec, DeviceSpec};
pub use error::{Error, Result};
pub use kv_cache::KvCache;
pub use layout::AttentionLayout;
pub use ops::Kernels;
pub use params::{frozen_builder, trainable_builder, Values};
pub use phi3::{LogitsAt, Phi3};
pub use rope::Rope;
pub use threads::{default_threads, ComputePool};
pub use tokenizer::{Tokenizer, EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS};
