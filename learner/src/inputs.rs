//! What a stage trains on besides its config, fingerprinted, and the guard that keeps `--resume` exact:
//! a checkpoint records its effective [`StageConfig`] (`stage.toml`) and its [`RunInputs`]
//! (`inputs.json`: the data files' and the tokenizer's SHA-256, and the DPO reference's weights); resuming
//! with anything different would silently train another run, so [`resume_changes`] names each difference
//! and the caller refuses it unless told to accept it (`--force-resume`).

use crate::checkpoint::{INPUTS_FILE, STAGE_CONFIG_FILE};
use crate::config::StageConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Config keys that change how a run is kept, not what it computes: changing them on resume is allowed.
pub const BOOKKEEPING_KEYS: [&str; 3] = ["checkpoint_every", "keep_checkpoints", "max_bad_steps"];

/// A file's size and SHA-256 (its path is recorded for the reader, not compared: a moved file is the
/// same input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFingerprint {
    /// Where the file was read.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its contents, lower-case hex.
    pub sha256: String,
}

impl FileFingerprint {
    /// Reads `path` once (streaming) and fingerprints it.
    pub fn of(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FileFingerprint { path: path.to_path_buf(), bytes, sha256: hex(&hasher.finalize()) })
    }

    fn short(&self) -> String {
        format!("sha256 {} ({} bytes, {})", &self.sha256[..12.min(self.sha256.len())], self.bytes, self.path.display())
    }
}

/// The inputs of a stage besides its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInputs {
    /// The training data file(s), in the order they are read.
    pub data: Vec<FileFingerprint>,
    /// SHA-256 of the tokenizer that tokenized the data (its canonical JSON).
    pub tokenizer_sha256: String,
    /// The frozen reference's weights (`model.safetensors`), for stages that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<FileFingerprint>,
    /// SHA-256 of the tokenized, packed items the stage trains on ([`crate::StageFeed::items_sha256`]):
    /// catches a change of tokenization, chat template or packing code that the file hashes cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_sha256: Option<String>,
}

impl RunInputs {
    /// Fingerprints `data` files, the tokenizer and (if any) the reference's weights file.
    pub fn fingerprint(data: &[&Path], tokenizer: &phi4r_model::Tokenizer, reference: Option<&Path>) -> Result<Self> {
        Ok(RunInputs {
            data: data.iter().map(|p| FileFingerprint::of(p)).collect::<Result<_>>()?,
            tokenizer_sha256: hex(&Sha256::digest(tokenizer.to_json()?.as_bytes())),
            reference: reference.map(FileFingerprint::of).transpose()?,
            items_sha256: None,
        })
    }

    /// Adds the fingerprint of the tokenized items ([`crate::StageFeed::items_sha256`]).
    pub fn with_items_sha256(mut self, sha256: String) -> Self {
        self.items_sha256 = Some(sha256);
        self
    }
}

/// One difference between a checkpoint and the run that would resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The config key (`lr`), or `data`, `tokenizer`, `reference`.
    pub key: String,
    /// Its value in the checkpoint.
    pub checkpoint: String,
    /// Its value now.
    pub now: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {} in the checkpoint, {} now", self.key, self.checkpoint, self.now)
    }
}

/// The differences between checkpoint `dir` (its `stage.toml` and `inputs.json`) and a run with `config`
/// and `inputs`, bookkeeping keys ([`BOOKKEEPING_KEYS`]) aside. Empty: resuming continues the same run.
///
/// A checkpoint written before inputs were recorded has no `inputs.json`: that is reported as one change
/// (`inputs`), since nothing proves the data is the same.
pub fn resume_changes(dir: &Path, config: &StageConfig, inputs: &RunInputs) -> Result<Vec<Change>> {
    let cfg_path = dir.join(STAGE_CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let saved: StageConfig = toml::from_str(&text).map_err(|e| Error::checkpoint(&cfg_path, e.to_string()))?;
    let mut changes = config_changes(&saved, config)?;
    let inputs_path = dir.join(INPUTS_FILE);
    if !inputs_path.is_file() {
        changes.push(Change {
            key: "inputs".into(),
            checkpoint: format!("not recorded (no {INPUTS_FILE})"),
            now: "fingerprinted".into(),
        });
        return Ok(changes);
    }
    let bytes = std::fs::read(&inputs_path).map_err(|e| Error::io(&inputs_path, e))?;
    let saved: RunInputs =
        serde_json::from_slice(&bytes).map_err(|e| Error::checkpoint(&inputs_path, e.to_string()))?;
    changes.extend(input_changes(&saved, inputs));
    Ok(changes)
}

/// Key-by-key differences of two configs, bookkeeping keys aside.
pub fn config_changes(saved: &StageConfig, now: &StageConfig) -> Result<Vec<Change>> {
    let table = |c: &StageConfig| match toml::Value::try_from(c) {
        Ok(toml::Value::Table(t)) => Ok(t),
        Ok(_) => Err(Error::input("config_changes", "a stage config serializes to a table")),
        Err(e) => Err(Error::input("config_changes", e.to_string())),
    };
    let (a, b) = (flatten(table(saved)?), flatten(table(now)?));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&toml::Value>| v.map_or_else(|| "absent".to_string(), ToString::to_string);
    Ok(keys
        .into_iter()
        .filter(|k| !BOOKKEEPING_KEYS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| Change { key: k.clone(), checkpoint: show(a.get(k)), now: show(b.get(k)) })
        .collect())
}

/// Nested tables (`[rl]`, `[rl.balance]`) as dotted keys (`rl.balance.batch_groups`), so a change names
/// the one key that changed.
fn flatten(table: toml::Table) -> toml::Table {
    fn go(prefix: &str, table: toml::Table, out: &mut toml::Table) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => go(&key, t, out),
                other => {
                    out.insert(key, other);
                }
            }
        }
    }
    let mut out = toml::Table::new();
    go("", table, &mut out);
    out
}

fn input_changes(saved: &RunInputs, now: &RunInputs) -> Vec<Change> {
    let mut out = Vec::new();
    let same = |a: &FileFingerprint, b: &FileFingerprint| a.bytes == b.bytes && a.sha256 == b.sha256;
    let files = |v: &[FileFingerprint]| v.iter().map(FileFingerprint::short).collect::<Vec<_>>().join(", ");
    if saved.data.len() != now.data.len() || saved.data.iter().zip(&now.data).any(|(a, b)| !same(a, b)) {
        out.push(Change { key: "data".into(), checkpoint: files(&saved.data), now: files(&now.data) });
    }
    if saved.tokenizer_sha256 != now.tokenizer_sha256 {
        out.push(Change {
            key: "tokenizer".into(),
            checkpoint: format!("sha256 {}", saved.tokenizer_sha256),
            now: format!("sha256 {}", now.tokenizer_sha256),
        });
    }
    if let (Some(a), Some(b)) = (&saved.items_sha256, &now.items_sha256) {
        if a != b {
            out.push(Change {
                key: "items".into(),
                checkpoint: format!("tokenized items sha256 {a}"),
                now: format!("sha256 {b} (tokenization, chat template or packing differ)"),
            });
        }
    }
    let reference_same = match (&saved.reference, &now.reference) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    };
    if !reference_same {
        let show = |r: &Option<FileFingerprint>| r.as_ref().map_or_else(|| "none".to_string(), FileFingerprint::short);
        out.push(Change { key: "reference".into(), checkpoint: show(&saved.reference), now: show(&now.reference) });
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stage;

    fn fp(sha: &str) -> FileFingerprint {
        FileFingerprint { path: "d.jsonl".into(), bytes: 10, sha256: sha.into() }
    }

    #[test]
    fn names_each_changed_key_and_ignores_bookkeeping() -> Result<()> {
        let a = StageConfig::seed(Stage::Sft);
        let mut b = a.clone();
        assert!(config_changes(&a, &b)?.is_empty());
        b.lr = 2e-5;
        b.seed = 7;
        b.checkpoint_every = 3;
        b.max_steps = Some(9);
        b.rl.balance.batch_groups = 3;
        let keys: Vec<String> = config_changes(&a, &b)?.into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec!["lr", "max_steps", "rl.balance.batch_groups", "seed"]);
        let c = config_changes(&a, &b)?.into_iter().find(|c| c.key == "max_steps").expect("max_steps");
        assert_eq!((c.checkpoint.as_str(), c.now.as_str()), ("absent", "9"));
        Ok(())
    }

    #[test]
    fn a_changed_data_file_tokenizer_or_reference_is_a_change_and_a_moved_one_is_not() {
        let saved =
            RunInputs { data: vec![fp("aa")], tokenizer_sha256: "t".into(), reference: None, items_sha256: None };
        let mut moved = saved.clone();
        moved.data[0].path = "elsewhere/d.jsonl".into();
        assert!(input_changes(&saved, &moved).is_empty());
        let now = RunInputs {
            data: vec![fp("bb")],
            tokenizer_sha256: "u".into(),
            reference: Some(fp("cc")),
            items_sha256: None,
        };
        let keys: Vec<String> = input_changes(&saved, &now).into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec!["data", "tokenizer", "reference"]);
        // Same files, but the tokenized items differ (a code change): named as `items`; a checkpoint
        // without the items hash compares the files only.
        let a = saved.clone().with_items_sha256("x".into());
        let keys: Vec<String> =
            input_changes(&a, &saved.clone().with_items_sha256("y".into())).into_iter().map(|c| c.key).collect();
        assert_eq!(keys, vec!["items"]);
        assert!(input_changes(&saved, &a).is_empty());
    }

    #[test]
    fn fingerprints_file_contents() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").map_err(|e| Error::io(&p, e))?;
        let f = FileFingerprint::of(&p)?;
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(f.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(f.bytes, 3);
        Ok(())
    }
}
