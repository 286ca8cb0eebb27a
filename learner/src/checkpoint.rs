//! Checkpoint folders for exact resume, each written atomically.
//!
//! ```text
//! OUT/
//!   latest                 "step-00000040": the newest complete checkpoint (replaced atomically)
//!   step-00000040/
//!     config.json          Hugging Face layout (phi4r_model::save): loads with --init or transformers
//!     model.safetensors
//!     tokenizer.json       when the learner has one
//!     optimizer.safetensors  AdamW moments (exp_avg.NAME, exp_avg_sq.NAME) and step count
//!     train_state.json     step, data cursor (epoch, position), seed, bad-step counts
//!     stage.toml           the stage config the run used (compared on resume)
//!     inputs.json          fingerprints of the data, tokenizer and reference (compared on resume)
//!     ref_logps.json       DPO only: the cached reference log-probs per pair
//! ```
//!
//! A checkpoint is filled in `OUT/.tmp-step-N`, synced, then renamed to `OUT/step-N`, and only then does
//! `latest` move: a crash at any point leaves the previous checkpoint complete and `latest` naming it.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// Points at the newest complete checkpoint.
pub const LATEST_FILE: &str = "latest";
/// Training state.
pub const STATE_FILE: &str = "train_state.json";
/// Optimizer moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The stage config.
pub const STAGE_CONFIG_FILE: &str = "stage.toml";
/// Fingerprints of what the stage trains on ([`crate::RunInputs`]).
pub const INPUTS_FILE: &str = "inputs.json";
/// Stage 4's memory of too-easy prompts ([`phi4r_replay::EasyMemory`]).
pub const EASY_FILE: &str = "easy.json";
/// DPO reference log-probs.
pub const REF_LOGPS_FILE: &str = "ref_logps.json";

const STEP_PREFIX: &str = "step-";

/// Folder name of the checkpoint at `step`.
pub fn step_dir_name(step: u64) -> String {
    format!("{STEP_PREFIX}{step:08}")
}

/// Writes checkpoint `step` under `root`: `fill` writes the files into an empty temporary folder, which then
/// replaces `root/step-N` and becomes `latest`. Afterwards only the newest `keep` step folders are kept
/// (0: all). Returns the checkpoint folder.
pub fn write_checkpoint(
    root: &Path,
    step: u64,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let name = step_dir_name(step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(&tmp)?;
    let dest = root.join(&name);
    if dest.exists() {
        // Same step saved twice (periodic, then end of stage): swap, never leaving a half folder.
        let old = root.join(format!(".old-{name}"));
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        fs::rename(&dest, &old).map_err(|e| Error::io(&dest, e))?;
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
    }
    sync_dir(root)?;
    phi4r_model::write_atomic(&root.join(LATEST_FILE), format!("{name}\n").as_bytes())?;
    if keep > 0 {
        prune(root, keep, step)?;
    }
    Ok(dest)
}

/// The checkpoint to resume from: `path` itself if it is a checkpoint folder, else the folder `path/latest`
/// names, else the newest complete `path/step-N`. `None` when there is none.
pub fn latest_checkpoint(path: &Path) -> Result<Option<PathBuf>> {
    if is_complete(path) {
        return Ok(Some(path.to_path_buf()));
    }
    let latest = path.join(LATEST_FILE);
    if let Ok(name) = fs::read_to_string(&latest) {
        let dir = path.join(name.trim());
        if is_complete(&dir) {
            return Ok(Some(dir));
        }
    }
    Ok(step_dirs(path)?.into_iter().rev().map(|(_, d)| d).find(|d| is_complete(d)))
}

/// A folder is a complete checkpoint when its state, optimizer and weights files exist (step folders
/// only appear by rename, whole; this also accepts a folder copied by hand).
fn is_complete(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file()
        && dir.join(OPTIMIZER_FILE).is_file()
        && dir.join(phi4r_model::WEIGHTS_FILE).is_file()
}

/// `step-N` folders under `root`, oldest first.
fn step_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix(STEP_PREFIX).and_then(|s| s.parse::<u64>().ok()) {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn prune(root: &Path, keep: usize, current: u64) -> Result<()> {
    let dirs = step_dirs(root)?;
    let excess = dirs.len().saturating_sub(keep);
    for (step, dir) in dirs.into_iter().take(excess) {
        if step != current {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path) -> Result<()> {
        for f in [STATE_FILE, OPTIMIZER_FILE, phi4r_model::WEIGHTS_FILE] {
            phi4r_model::write_atomic(&dir.join(f), b"x")?;
        }
        Ok(())
    }

    #[test]
    fn latest_moves_only_after_a_complete_write_and_old_ones_are_pruned() -> Result<()> {
        let root = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = root.path();
        assert_eq!(latest_checkpoint(root)?, None);
        write_checkpoint(root, 1, 2, fake)?;
        write_checkpoint(root, 2, 2, fake)?;
        let failed = write_checkpoint(root, 3, 2, |_| Err(Error::input("test", "disk full")));
        assert!(failed.is_err());
        assert_eq!(latest_checkpoint(root)?, Some(root.join("step-00000002")));
        write_checkpoint(root, 3, 2, fake)?;
        write_checkpoint(root, 3, 2, fake)?;
        let names: Vec<u64> = step_dirs(root)?.into_iter().map(|(s, _)| s).collect();
        assert_eq!(names, vec![2, 3]);
        assert_eq!(latest_checkpoint(&root.join("step-00000002"))?, Some(root.join("step-00000002")));
        // A stale pointer falls back to the newest complete folder.
        phi4r_model::write_atomic(&root.join(LATEST_FILE), b"step-00000009")?;
        assert_eq!(latest_checkpoint(root)?, Some(root.join("step-00000003")));
        assert!(!root.join(".tmp-step-00000003").exists());
        Ok(())
    }
}
