//! Errors of the learner crate: each variant names what a reader needs to act on (config key, file,
//! step, shapes).

use std::path::PathBuf;

/// Everything that can go wrong while configuring, running or checkpointing a training stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stage config key is missing, malformed, unknown or inconsistent with another key.
    #[error("{}: config key `{key}`{}: {reason}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Config {
        /// The config file (empty when the config did not come from a file).
        path: PathBuf,
        /// The key, dotted (`lr`, `profiles.cpu.micro_batch`).
        key: String,
        /// 1-based line of the key in the file, when known.
        line: Option<usize>,
        /// What is wrong with it.
        reason: String,
    },
    /// A stage config file is not valid TOML.
    #[error("{}:{line}: {reason}", path.display())]
    ConfigSyntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What the TOML parser says.
        reason: String,
    },
    /// Inputs handed to a learner function do not agree (shapes, lengths, missing reference).
    #[error("bad input to {op}: {reason}")]
    Input {
        /// The function that rejected its input.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `max_bad_steps` optimizer steps in a row had a non-finite loss or gradient; the weights are those of
    /// the last good step and no checkpoint was written after it.
    #[error("{count} bad steps in a row (non-finite loss or gradient), the last at step {step}: stopping the stage")]
    TooManyBadSteps {
        /// Consecutive bad steps.
        count: usize,
        /// The step counter at the last bad step.
        step: u64,
    },
    /// A checkpoint folder is missing, incomplete, or does not fit the model / config it is resumed into.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--resume` would continue a checkpoint with a different config or different inputs.
    #[error("checkpoint {} was written by a different run; refusing to resume (pass --force-resume to accept):\n  {}", dir.display(), changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    ResumeMismatch {
        /// The checkpoint folder.
        dir: PathBuf,
        /// Each difference.
        changes: Vec<crate::inputs::Change>,
    },
    /// File-system error with the path involved.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Error from the model crate (checkpoint IO, forward).
    #[error(transparent)]
    Model(#[from] phi4r_model::Error),
    /// Error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result of the learner crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A config error for `key` that did not come from a file.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { path: PathBuf::new(), key: key.into(), line: None, reason: reason.into() }
    }

    /// An input error raised by `op`.
    pub fn input(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Input { op, reason: reason.into() }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A checkpoint error on `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), reason: reason.into() }
    }
}
