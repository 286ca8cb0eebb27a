//! Checkpoints in Hugging Face layout: `config.json`, `model.safetensors` (HF tensor names, `format: pt`
//! metadata so transformers accepts it), `tokenizer.json`. Every file is written atomically.

use crate::atomic::{write_atomic, write_atomic_with};
use crate::config::Phi3Config;
use crate::error::{Error, Result};
use crate::ops::Kernels;
use crate::params::{frozen_builder, trainable_builder, Values};
use crate::phi3::Phi3;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

/// File names inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// Weights file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A model whose weights are trainable `Var`s, with the `VarMap` an optimizer needs.
pub struct TrainableModel {
    /// The model (Var-backed, composed differentiable kernels).
    pub model: Phi3,
    /// Every trainable variable by HF name.
    pub varmap: VarMap,
}

impl TrainableModel {
    /// Random init (normal(0, 0.02) for matrices, ones for norms, as transformers), seeded.
    pub fn init(cfg: &Phi3Config, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = trainable_builder(Values::Seeded(seed), &varmap, dtype, device);
        let model = Phi3::new(cfg, vb, Kernels::for_device(device))?;
        Ok(TrainableModel { model, varmap })
    }

    /// Loads a checkpoint folder for training.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let (cfg, tensors) = read_checkpoint(dir, device)?;
        let varmap = VarMap::new();
        let vb = trainable_builder(Values::Tensors(tensors), &varmap, dtype, device);
        let model = Phi3::new(&cfg, vb, Kernels::for_device(device)).map_err(|e| in_dir(e, dir))?;
        Ok(TrainableModel { model, varmap })
    }

    /// An independent copy: new variables holding copies of these values (a data-parallel replica).
    pub fn deep_copy(&self) -> Result<Self> {
        let tensors: HashMap<String, Tensor> =
            self.vars().into_iter().map(|(name, v)| Ok((name, v.as_tensor().copy()?))).collect::<Result<_>>()?;
        let varmap = VarMap::new();
        let (dtype, device) = (self.model.dtype(), self.model.device().clone());
        let vb = trainable_builder(Values::Tensors(tensors), &varmap, dtype, &device);
        let model = Phi3::new(self.model.config(), vb, self.model.kernels())?;
        Ok(TrainableModel { model, varmap })
    }

    /// All trainable variables (for an optimizer), sorted by name so the order is reproducible.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let data = match self.varmap.data().lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

fn in_dir(e: Error, dir: &Path) -> Error {
    match e {
        Error::Candle(c) => Error::input("load checkpoint", format!("{}: {c}", dir.display())),
        other => other,
    }
}

/// Reads `config.json` and `model.safetensors` from `dir`.
pub fn read_checkpoint(dir: &Path, device: &Device) -> Result<(Phi3Config, HashMap<String, Tensor>)> {
    let cfg = Phi3Config::from_file(&dir.join(CONFIG_FILE))?;
    let wpath = dir.join(WEIGHTS_FILE);
    if !wpath.exists() {
        return Err(Error::io(&wpath, std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found")));
    }
    let tensors = candle_core::safetensors::load(&wpath, device)
        .map_err(|e| Error::input("load checkpoint", format!("{}: {e}", wpath.display())))?;
    Ok((cfg, tensors))
}

/// Loads a checkpoint as a frozen model (no gradient) for sampling or as a reference.
pub fn load_frozen(dir: &Path, dtype: DType, device: &Device) -> Result<Phi3> {
    let (cfg, tensors) = read_checkpoint(dir, device)?;
    Phi3::new(&cfg, frozen_builder(Values::Tensors(tensors), dtype, device), Kernels::for_device(device))
        .map_err(|e| in_dir(e, dir))
}

/// Loads `tokenizer.json` from a checkpoint folder, if present, and checks it fits the model.
pub fn load_tokenizer(dir: &Path, cfg: &Phi3Config) -> Result<Option<Tokenizer>> {
    let p = dir.join(TOKENIZER_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let tok = Tokenizer::from_file(&p)?;
    tok.check_fits(cfg.vocab_size)?;
    Ok(Some(tok))
}

/// A frozen model of architecture `cfg` from [`weights_to_bytes`]'s bytes (weights sent over the network).
pub fn weights_from_bytes(cfg: &Phi3Config, bytes: &[u8], dtype: DType, device: &Device) -> Result<Phi3> {
    let tensors = candle_core::safetensors::load_buffer(bytes, device)?;
    Phi3::new(cfg, frozen_builder(Values::Tensors(tensors), dtype, device), Kernels::for_device(device))
}

/// The safetensors bytes of `model`'s weights (HF names, `format: pt` metadata).
pub fn weights_to_bytes(model: &Phi3) -> Result<Vec<u8>> {
    let named = model.named_weights();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(named.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| Error::input("save checkpoint", e.to_string()))
}

/// Writes `config.json`, `model.safetensors` and (if given) `tokenizer.json` into `dir`, each atomically.
pub fn save(model: &Phi3, tokenizer: Option<&Tokenizer>, dir: &Path) -> Result<()> {
    if let Some(t) = tokenizer {
        t.check_fits(model.config().vocab_size)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let named = model.named_weights();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let wpath = dir.join(WEIGHTS_FILE);
    write_atomic_with(&wpath, |tmp| {
        safetensors::serialize_to_file(named.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), tmp)
            .map_err(|e| Error::input("save checkpoint", format!("{}: {e}", tmp.display())))
    })?;
    let cfg_text = serde_json::to_string_pretty(&model.config().to_json_value())
        .map_err(|e| Error::Json { path: dir.join(CONFIG_FILE), source: e })?;
    write_atomic(&dir.join(CONFIG_FILE), cfg_text.as_bytes())?;
    if let Some(t) = tokenizer {
        t.save(&dir.join(TOKENIZER_FILE))?;
    }
    Ok(())
}
