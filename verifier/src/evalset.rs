//! Reading the evaluation sets of `shared/data/eval/` (JSONL, one problem per line).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One problem of an evaluation file (the fields the verifier uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvalRecord {
    /// Unique id within the file.
    pub id: String,
    /// The gold answer.
    pub answer: String,
    /// The reference solution, where the source has one.
    #[serde(default)]
    pub solution: Option<String>,
}

/// Read every record of a JSONL evaluation file.
pub fn load_eval_file(path: &Path) -> Result<Vec<EvalRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: EvalRecord = serde_json::from_str(line).map_err(|e| Error::Record {
            path: PathBuf::from(path),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}
