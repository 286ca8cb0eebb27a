//! Errors of the rollout crate.

/// What can go wrong while generating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sampling parameter is out of range; names the key.
    #[error("sampling config `{key}`: {reason}")]
    Config {
        /// The key (`temperature`, `top_p`, ...).
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bad generation input (empty prompt, ids out of range, ...).
    #[error("generate: {0}")]
    Input(String),
    /// Error from the model.
    #[error(transparent)]
    Model(#[from] phi4r_model::Error),
    /// Error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result of the rollout crate.
pub type Result<T> = std::result::Result<T, Error>;
