//! Stage configs (`configs/stages/{mid,sft,dpo,rl}.toml`): the seed recipe's GPU-scale defaults at the top
//! level and named profiles (`[profiles.cpu]`) that override some keys for smaller machines.
//!
//! Loading starts from [`StageConfig::seed`] for the file's `stage`, overlays the file's keys, then the
//! chosen profile's. Unknown keys are rejected and every error names the key (`profiles.cpu.lr`) and, when
//! it can, its line in the file.

use crate::error::{Error, Result};
use crate::optim::AdamWConfig;
use crate::rl::RlConfig;
use crate::schedule::{Decay, LrSchedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which objective a stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage 1: next-token LM on completions over packed rows.
    Mid,
    /// Stage 2: LM on completion tokens of unpacked examples (the end token is trained).
    Sft,
    /// Stage 3: DPO on (correct, incorrect) rollout pairs against a frozen reference.
    Dpo,
    /// Stage 4: RLVR (GRPO) on sampled, verified groups, anchored to a frozen reference ([`RlConfig`]).
    Rl,
}

impl Stage {
    /// Whether the stage trains on packed rows.
    pub fn packed(self) -> bool {
        matches!(self, Stage::Mid)
    }

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Mid => "mid",
            Stage::Sft => "sft",
            Stage::Dpo => "dpo",
            Stage::Rl => "rl",
        }
    }
}

/// Hyper-parameters of one training stage. Frozen after [`StageConfig::load`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The objective.
    pub stage: Stage,
    /// Tokens per row: the packed row length (mid) or the longest example (sft, dpo).
    pub seq_len: usize,
    /// Sequences per optimizer step (DPO: pairs), whatever the micro-batch: 128 in the seed.
    pub batch_size: usize,
    /// Sequences (DPO: pairs) per forward/backward; must divide `batch_size` (the rest is accumulation).
    pub micro_batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Floor of the decay as a share of `lr`.
    pub min_lr_ratio: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Optional cap on optimizer steps (budgeted runs); absent = `epochs` passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Share of the steps spent in linear warmup.
    pub warmup_ratio: f64,
    /// Decay after warmup.
    pub decay: Decay,
    /// Decoupled AdamW weight decay (matrices only).
    pub weight_decay: f64,
    /// AdamW β1.
    pub adam_beta1: f64,
    /// AdamW β2.
    pub adam_beta2: f64,
    /// AdamW ε.
    pub adam_eps: f64,
    /// Global gradient-norm clip (`inf` disables clipping).
    pub max_grad_norm: f64,
    /// DPO temperature β (dpo only).
    pub beta: f64,
    /// Save a checkpoint every this many optimizer steps (0: only at the end of the stage).
    pub checkpoint_every: u64,
    /// Step checkpoints kept in the output folder, newest first (0: keep all).
    pub keep_checkpoints: usize,
    /// Consecutive non-finite steps that stop the stage.
    pub max_bad_steps: usize,
    /// Seed of every random draw of the stage (data order per epoch; rl: prompt draws and sampling).
    pub seed: u64,
    /// Stage 4 (`rl`) only: group size, sampling, algorithm, KL, filters and balance (`[rl]`). For rl,
    /// `max_steps` is the number of steps, `micro_batch` counts completions per forward/backward, and
    /// `batch_size` / `epochs` are unused.
    #[serde(default)]
    pub rl: RlConfig,
}

impl Default for StageConfig {
    /// The seed's stage-1 defaults.
    fn default() -> Self {
        StageConfig::seed(Stage::Mid)
    }
}

impl StageConfig {
    /// The Phi-4-Mini-Reasoning seed defaults of `stage` at GPU scale (DESIGN §1).
    pub fn seed(stage: Stage) -> Self {
        let base = StageConfig {
            stage,
            seq_len: 16_384,
            batch_size: 128,
            micro_batch: 2,
            lr: 1e-5,
            min_lr_ratio: 0.0,
            epochs: 5,
            max_steps: None,
            warmup_ratio: 0.1,
            decay: Decay::Cosine,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            beta: 0.1,
            checkpoint_every: 200,
            keep_checkpoints: 2,
            max_bad_steps: 5,
            seed: 42,
            rl: RlConfig::default(),
        };
        match stage {
            Stage::Mid => base,
            Stage::Sft => StageConfig { seq_len: 20_480, micro_batch: 1, ..base },
            Stage::Dpo => StageConfig { lr: 5e-7, epochs: 1, micro_batch: 1, ..base },
            // verl / DAPO run GRPO at a constant learning rate without warmup.
            Stage::Rl => StageConfig {
                seq_len: 25_600,
                micro_batch: 1,
                lr: 5e-7,
                epochs: 1,
                max_steps: Some(1_000),
                warmup_ratio: 0.0,
                decay: Decay::Constant,
                checkpoint_every: 50,
                ..base
            },
        }
    }

    /// Loads a stage file and applies `profile` (a `[profiles.NAME]` table) if given, then validates.
    pub fn load(path: &Path, profile: Option<&str>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path, profile)
    }

    /// As [`StageConfig::load`] from text; `path` only labels errors.
    pub fn from_toml_str(text: &str, path: &Path, profile: Option<&str>) -> Result<Self> {
        let err = |key: &str, section: Option<&str>, reason: String| Error::Config {
            path: path.to_path_buf(),
            key: section.map_or_else(|| key.to_string(), |s| format!("{s}.{key}")),
            line: find_key_line(text, section, key),
            reason,
        };
        let mut file: toml::Table = toml::from_str(text).map_err(|e| Error::ConfigSyntax {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            reason: e.message().to_string(),
        })?;
        let profiles = match file.remove("profiles") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(err("profiles", None, "must be a table of tables ([profiles.NAME])".into())),
        };
        let stage: Stage = match file.get("stage") {
            None => return Err(err("stage", None, "missing (one of \"mid\", \"sft\", \"dpo\", \"rl\")".into())),
            Some(v) => {
                v.clone().try_into().map_err(|e: toml::de::Error| err("stage", None, e.message().to_string()))?
            }
        };
        let mut merged = toml::Table::try_from(StageConfig::seed(stage))
            .map_err(|e| err("stage", None, format!("cannot build defaults: {e}")))?;
        deep_extend(&mut merged, file);
        let mut section = None;
        let mut overrides = toml::Table::new();
        if let Some(name) = profile {
            let key = format!("profiles.{name}");
            match profiles.get(name) {
                Some(toml::Value::Table(t)) => overrides = t.clone(),
                Some(_) => return Err(err(&key, None, "must be a table".into())),
                None => {
                    let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                    return Err(err(&key, None, format!("no such profile (available: {known:?})")));
                }
            }
            if overrides.contains_key("stage") {
                return Err(err("stage", Some(&key), "a profile cannot change the stage".into()));
            }
            section = Some(key);
        }
        deep_extend(&mut merged, overrides.clone());
        // Through text so toml's error carries a span we can turn back into the key.
        let merged_text = toml::to_string(&merged).map_err(|e| err("stage", None, e.to_string()))?;
        let cfg: StageConfig = toml::from_str(&merged_text).map_err(|e| {
            let key = e.span().map(|s| key_at(&merged_text, s.start)).unwrap_or_default();
            let from_profile = has_dotted(&overrides, &key);
            err(&key, section.as_deref().filter(|_| from_profile), e.message().to_string())
        })?;
        cfg.validate().map_err(|e| match e {
            Error::Config { key, reason, .. } => {
                let from_profile = has_dotted(&overrides, &key);
                err(&key, section.as_deref().filter(|_| from_profile), reason)
            }
            other => other,
        })?;
        Ok(cfg)
    }

    /// Rejects out-of-range values and bad combinations; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, key: &str, reason: &str| if ok { Ok(()) } else { Err(Error::config(key, reason)) };
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        check(self.seq_len >= 2, "seq_len", "must be at least 2")?;
        check(self.batch_size >= 1, "batch_size", "must be at least 1")?;
        check(self.micro_batch >= 1, "micro_batch", "must be at least 1")?;
        if !self.batch_size.is_multiple_of(self.micro_batch) {
            return Err(Error::config(
                "micro_batch",
                format!("{} does not divide batch_size {}", self.micro_batch, self.batch_size),
            ));
        }
        check(finite_pos(self.lr), "lr", "must be a finite number > 0")?;
        check((0.0..=1.0).contains(&self.min_lr_ratio), "min_lr_ratio", "must be in [0, 1]")?;
        check(self.epochs >= 1, "epochs", "must be at least 1")?;
        check(self.max_steps != Some(0), "max_steps", "must be at least 1 (leave it out for no cap)")?;
        check((0.0..1.0).contains(&self.warmup_ratio), "warmup_ratio", "must be in [0, 1)")?;
        check(self.weight_decay.is_finite() && self.weight_decay >= 0.0, "weight_decay", "must be ≥ 0")?;
        check((0.0..1.0).contains(&self.adam_beta1), "adam_beta1", "must be in [0, 1)")?;
        check((0.0..1.0).contains(&self.adam_beta2), "adam_beta2", "must be in [0, 1)")?;
        check(finite_pos(self.adam_eps), "adam_eps", "must be a finite number > 0")?;
        check(self.max_grad_norm > 0.0, "max_grad_norm", "must be > 0 (inf disables clipping)")?;
        check(finite_pos(self.beta), "beta", "must be a finite number > 0")?;
        check(self.max_bad_steps >= 1, "max_bad_steps", "must be at least 1")?;
        if self.stage == Stage::Rl {
            check(self.max_steps.is_some(), "max_steps", "is required for stage rl (the number of RL steps)")?;
            self.rl.validate()?;
            if self.rl.max_new_tokens >= self.seq_len {
                return Err(Error::config(
                    "rl.max_new_tokens",
                    format!("{} leaves no room for the prompt in seq_len {}", self.rl.max_new_tokens, self.seq_len),
                ));
            }
        }
        Ok(())
    }

    /// Micro-batches per optimizer step.
    pub fn accumulation_steps(&self) -> usize {
        self.batch_size / self.micro_batch.max(1)
    }

    /// Optimizer steps for `items_per_epoch` sequences (DPO: pairs) per epoch: `ceil(items / batch_size)`
    /// per epoch (a short last batch is trained), times `epochs`, capped by `max_steps`.
    pub fn total_steps(&self, items_per_epoch: usize) -> u64 {
        let per_epoch = items_per_epoch.div_ceil(self.batch_size.max(1)) as u64;
        let all = per_epoch * self.epochs as u64;
        self.max_steps.map_or(all, |m| all.min(m))
    }

    /// The learning-rate schedule over `total_steps`.
    pub fn schedule(&self, total_steps: u64) -> LrSchedule {
        LrSchedule {
            peak_lr: self.lr,
            total_steps,
            warmup_ratio: self.warmup_ratio,
            decay: self.decay,
            min_lr_ratio: self.min_lr_ratio,
        }
    }

    /// The optimizer's hyper-parameters.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
        }
    }
}

/// The stage files shipped in `configs/stages/`, by stage.
pub fn stage_file(configs_dir: &Path, stage: Stage) -> PathBuf {
    configs_dir.join("stages").join(format!("{}.toml", stage.name()))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key of the `key = value` line holding byte `offset` (prefixed by its `[table]` header).
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or_default();
    let key = line.split('=').next().unwrap_or_default().trim().trim_matches('"').to_string();
    let header = text[..start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.split(']').next()).map(|h| h.trim().to_string()));
    match header {
        Some(h) if !line.trim_start().starts_with('[') => format!("{h}.{key}"),
        _ => key,
    }
}

/// Whether `table` holds the dotted `key` (`rl.group_size`) or a table on its path.
fn has_dotted(table: &toml::Table, key: &str) -> bool {
    let mut t = table;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        match t.get(*part) {
            None => return false,
            Some(toml::Value::Table(inner)) if i + 1 < parts.len() => t = inner,
            Some(_) => return true,
        }
    }
    true
}

/// Overlays `over` on `base`, merging nested tables key by key (so `[profiles.cpu.rl]` changes only the
/// keys it names). A tagged table whose `kind` changes (e.g. `rl.temperature` from `linear` to
/// `constant`) is replaced whole: the old variant's fields would not belong to the new one.
fn deep_extend(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if o.get("kind").is_none_or(|kind| b.get("kind") == Some(kind)) =>
            {
                deep_extend(b, o)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// 1-based line of the dotted `key` (`rl.group_size`) inside `[section]` (`None`: the top level): the
/// last part under the header of the rest.
fn find_key_line(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    match key.rsplit_once('.') {
        Some((prefix, last)) => {
            let full = section.map_or_else(|| prefix.to_string(), |s| format!("{s}.{prefix}"));
            find_plain_key_line(text, Some(&full), last).or_else(|| find_plain_key_line(text, section, key))
        }
        None => find_plain_key_line(text, section, key),
    }
}

/// 1-based line of `key = ...` inside `[section]` (`None`: the top level).
fn find_plain_key_line(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = Some(header.trim().to_string());
            continue;
        }
        let k = line.split('=').next().unwrap_or_default().trim().trim_matches('"');
        if line.contains('=') && k == key && current.as_deref() == section {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
stage = "mid"
seq_len = 1024
lr = 1e-5

[profiles.cpu]
seq_len = 256
batch_size = 32
micro_batch = 16
lr = 2e-3
"#;

    fn load(text: &str, profile: Option<&str>) -> Result<StageConfig> {
        StageConfig::from_toml_str(text, Path::new("mid.toml"), profile)
    }

    #[test]
    fn profile_overrides_file_which_overrides_seed() -> Result<()> {
        let plain = load(FILE, None)?;
        assert_eq!((plain.seq_len, plain.batch_size, plain.lr), (1024, 128, 1e-5));
        let cpu = load(FILE, Some("cpu"))?;
        assert_eq!((cpu.seq_len, cpu.batch_size, cpu.micro_batch, cpu.lr), (256, 32, 16, 2e-3));
        assert_eq!(cpu.accumulation_steps(), 2);
        let dpo = load("stage = \"dpo\"", None)?;
        assert_eq!(dpo, StageConfig::seed(Stage::Dpo));
        Ok(())
    }

    fn key_and_line(e: Error) -> (String, Option<usize>) {
        match e {
            Error::Config { key, line, .. } => (key, line),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let unknown = load("stage = \"mid\"\nlrr = 1.0\n", None).expect_err("unknown key");
        assert_eq!(key_and_line(unknown), ("lrr".into(), Some(2)));
        let typed = load("stage = \"sft\"\n\nlr = \"fast\"\n", None).expect_err("bad type");
        assert_eq!(key_and_line(typed), ("lr".into(), Some(3)));
        let in_profile = load(&format!("{FILE}epochs = 0\n"), Some("cpu")).expect_err("bad profile value");
        assert_eq!(key_and_line(in_profile), ("profiles.cpu.epochs".into(), Some(11)));
        let combo = load("stage = \"mid\"\nbatch_size = 10\nmicro_batch = 4\n", None).expect_err("combo");
        assert_eq!(key_and_line(combo), ("micro_batch".into(), Some(3)));
        let missing = load("seq_len = 4\n", None).expect_err("no stage");
        assert_eq!(key_and_line(missing).0, "stage");
        let no_profile = load(FILE, Some("gpu")).expect_err("no profile");
        assert_eq!(key_and_line(no_profile).0, "profiles.gpu");
        let bad_stage = load("stage = \"ppo\"\n", None).expect_err("bad stage");
        assert_eq!(key_and_line(bad_stage), ("stage".into(), Some(1)));
        let syntax = load("stage = \"mid\"\nlr = = 1\n", None).expect_err("syntax");
        assert!(matches!(syntax, Error::ConfigSyntax { line: 2, .. }), "{syntax}");
        let shown = load(&format!("{FILE}epochs = 0\n"), Some("cpu")).expect_err("display").to_string();
        assert_eq!(shown, "mid.toml: config key `profiles.cpu.epochs` (line 11): must be at least 1");
    }

    const RL: &str = r#"
stage = "rl"
seq_len = 2048

[rl]
group_size = 4
kl_coef = 0.04

[rl.balance]
batch_groups = 2
max_pending_groups = 8

[profiles.cpu]
lr = 1e-5

[profiles.cpu.rl]
max_new_tokens = 256
"#;

    #[test]
    fn rl_sections_merge_key_by_key_and_errors_name_nested_keys() {
        let cpu = load(RL, Some("cpu")).expect("rl loads");
        assert_eq!((cpu.rl.group_size, cpu.rl.kl_coef, cpu.rl.max_new_tokens), (4, 0.04, 256));
        assert_eq!((cpu.rl.balance.batch_groups, cpu.rl.prompts_per_step), (2, RlConfig::default().prompts_per_step));
        assert_eq!(cpu.lr, 1e-5);
        let unknown = load(&RL.replace("kl_coef", "kl_coeff"), None).expect_err("unknown rl key");
        assert_eq!(key_and_line(unknown), ("rl.kl_coeff".into(), Some(7)));
        let range = load(&RL.replace("group_size = 4", "group_size = 1"), None).expect_err("bad G");
        assert_eq!(key_and_line(range), ("rl.group_size".into(), Some(6)));
        let in_profile =
            load(&RL.replace("max_new_tokens = 256", "max_new_tokens = 4096"), Some("cpu")).expect_err("too long");
        assert_eq!(key_and_line(in_profile), ("profiles.cpu.rl.max_new_tokens".into(), Some(17)));
        let nested = load(&RL.replace("max_pending_groups = 8", "max_pending_groups = 1"), None).expect_err("pool");
        assert_eq!(key_and_line(nested), ("rl.balance.max_pending_groups".into(), Some(11)));
        // A profile that switches a tagged table's kind replaces it (linear's start/end/steps do not
        // leak into constant), and PPO's fields replace GRPO's.
        let switched = format!(
            "{RL}\n[profiles.cpu.rl.temperature]\nkind = \"constant\"\ntemperature = 0.7\n[profiles.cpu.rl.algo]\nkind = \"ppo\"\neps_low = 0.2\neps_high = 0.2\ngamma = 1.0\nlambda = 0.95\nvalue_clip = 0.5\nvalue_lr = 1e-3\n"
        );
        let c = load(&switched, Some("cpu")).expect("switched kinds load");
        assert_eq!(c.rl.temperature, phi4r_replay::TemperatureSchedule::Constant { temperature: 0.7 });
        assert!(matches!(c.rl.algo, crate::rl::RlAlgo::Ppo { lambda, .. } if lambda == 0.95));
        // Every stage's config round-trips through TOML with its [rl] section (the resume guard's form).
        let text = toml::to_string(&cpu).expect("serialize");
        assert_eq!(toml::from_str::<StageConfig>(&text).expect("parse"), cpu);
    }

    #[test]
    fn total_steps_round_up_per_epoch_and_respect_the_cap() {
        let c = StageConfig { batch_size: 32, epochs: 3, ..StageConfig::seed(Stage::Sft) };
        assert_eq!(c.total_steps(65), 9);
        assert_eq!(StageConfig { max_steps: Some(5), ..c }.total_steps(65), 5);
    }

    #[test]
    fn shipped_stage_files_parse_with_every_profile() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for stage in [Stage::Mid, Stage::Sft, Stage::Dpo, Stage::Rl] {
            let path = stage_file(&dir, stage);
            let gpu = StageConfig::load(&path, None)?;
            assert_eq!(gpu.stage, stage);
            let cpu = StageConfig::load(&path, Some("cpu"))?;
            assert!(cpu.seq_len < gpu.seq_len, "{}: the cpu profile scales down", path.display());
        }
        Ok(())
    }
}
