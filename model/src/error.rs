//! Errors of the model crate: each variant names what a reader needs to act on (field, tensor, id, path).

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `config.json` field is missing, malformed or inconsistent with another field.
    #[error("config field `{field}`: {reason}")]
    Config {
        /// The Hugging Face field name (`hidden_size`, `rope_scaling.long_factor`, ...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor expected in a checkpoint is absent.
    #[error("checkpoint is missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// Hugging Face tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor in a checkpoint has the wrong shape for the config.
    #[error("tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    TensorShape {
        /// Hugging Face tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A token id is not below the model's vocabulary size.
    #[error("token id {id} at position {position} is out of range for vocab_size {vocab_size}")]
    TokenOutOfRange {
        /// The offending id.
        id: u32,
        /// Flat index of the id in the input.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The tokenizer produces ids the model cannot embed.
    #[error("tokenizer has {tokenizer_vocab} tokens but the model's vocab_size is {model_vocab}")]
    TokenizerTooLarge {
        /// Size of the tokenizer's vocabulary including added tokens.
        tokenizer_vocab: usize,
        /// `vocab_size` of the model config.
        model_vocab: usize,
    },
    /// A device request (`--device`) cannot be met or parsed.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The request as given.
        spec: String,
        /// Why it cannot be met.
        reason: String,
    },
    /// Shapes of inputs handed to a model function do not agree.
    #[error("bad input to {op}: {reason}")]
    Input {
        /// The function that rejected its input.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Tokenizer loading, training or encoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// File-system error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// JSON error with the file involved.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result of the model crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A config error for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { field: field.into(), reason: reason.into() }
    }

    /// An input error raised by `op`.
    pub fn input(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Input { op, reason: reason.into() }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
