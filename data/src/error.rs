//! Errors of the data crate: each variant names what a reader needs to act on (file, line, field, key).

use std::path::PathBuf;

/// Everything that can go wrong while generating, loading, tokenizing or packing data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A JSONL line is not valid JSON or does not match the expected record.
    #[error("{path}:{line}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Line {
        /// The file (or the label given to a reader).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field at fault (`answer`, `messages[1].content`), when it can be told.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A config key has a bad value.
    #[error("config key `{key}`: {reason}")]
    Config {
        /// The key (`slip_rate`, `tiers[2].max_value`, ...).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A function got input it cannot work with.
    #[error("bad input to {op}: {reason}")]
    Input {
        /// The function that rejected its input.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// File-system error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Error from the model crate (tokenizer, atomic writes).
    #[error(transparent)]
    Model(#[from] phi4r_model::Error),
}

/// Result of the data crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A config error for `key`.
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { key: key.into(), reason: reason.into() }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_error_names_file_line_and_field() {
        let e =
            Error::Line { path: "a.jsonl".into(), line: 3, field: Some("answer".into()), message: "missing".into() };
        assert_eq!(e.to_string(), "a.jsonl:3: field `answer`: missing");
        let e = Error::Line { path: "a.jsonl".into(), line: 4, field: None, message: "bad json".into() };
        assert_eq!(e.to_string(), "a.jsonl:4: bad json");
    }
}
