//! Errors of the replay crate: a config key that is out of range or inconsistent with another, or a
//! collection (sampling, decoding) that failed.

/// What can go wrong in the replay crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A config key is out of range or inconsistent with another key.
    #[error("config key `{key}`: {reason}")]
    Config {
        /// The key, dotted (`filter.max_length_cv`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Sampling or decoding a step's completions failed (the message names the call and its cause).
    #[error("{0}")]
    Input(String),
}

/// Result of the replay crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A config error for `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { key: key.into(), reason: reason.into() }
    }
}
