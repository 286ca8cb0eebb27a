//! Errors of the verifier crate.
//!
//! Bad model output is never an error: it is a [`crate::Verdict`] with an
//! [`crate::Outcome`]. `Error` is for the system around the verifier: reading the
//! evaluation files of the benchmark and malformed JSONL records.

use std::path::PathBuf;

/// Errors of the I/O-facing parts of the crate ([`crate::bench`], [`crate::jsonl`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of a JSONL file is not valid JSON or misses a field.
    #[error("{path}:{line}: {message}")]
    Record {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
