//! The Hugging Face `Phi3Config`, read from and written to `config.json`.
//!
//! Field names are exactly those of transformers' `configuration_phi3.py`
//! (<https://github.com/huggingface/transformers/blob/main/src/transformers/models/phi3/configuration_phi3.py>).
//! Reading is lenient (unknown fields are ignored: real configs carry many we do not use); every field we
//! use is validated and an error names it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// RoPE scaling. Only `longrope` (alias `su`, its name in early Phi-3 configs) changes the frequencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongRope {
    /// Per-frequency divisors used while the sequence fits in `original_max_position_embeddings`.
    pub short_factor: Vec<f64>,
    /// Per-frequency divisors used beyond it.
    pub long_factor: Vec<f64>,
    /// Explicit attention scaling; `None` derives it from the context extension ratio as transformers does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
}

/// The Phi-3 / Phi-4-mini architecture hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Phi3Config {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width (each half of `gate_up_proj`).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Longest context the model is configured for.
    pub max_position_embeddings: usize,
    /// Context length the model was pretrained with (longrope switches factors beyond it).
    pub original_max_position_embeddings: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Share of each head's dimensions that is rotated (Phi-4-mini: 0.75).
    pub partial_rotary_factor: f64,
    /// `longrope` scaling, if any.
    pub rope_scaling: Option<LongRope>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Whether `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    pub eos_token_id: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Sliding attention window (None: full causal attention).
    pub sliding_window: Option<usize>,
}

/// Named presets (`--preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// hidden 128, 4 layers, 4 heads, intermediate 512 (~1M parameters at a 512-token vocabulary: the main
    /// job's default, DESIGN §7).
    Micro,
    /// hidden 256, 4 layers, 4 heads, intermediate 1024.
    Tiny,
    /// hidden 512, 8 layers, 8 heads, intermediate 2048.
    Small,
    /// The shape of microsoft/Phi-4-mini (3.8B parameters).
    Phi4Mini,
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "micro" => Ok(Preset::Micro),
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            "phi4-mini" => Ok(Preset::Phi4Mini),
            other => Err(Error::config(
                "preset",
                format!("unknown preset `{other}` (expected micro, tiny, small or phi4-mini)"),
            )),
        }
    }
}

impl Phi3Config {
    /// A preset configuration.
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Micro => Self::micro(),
            Preset::Tiny => Self::tiny(),
            Preset::Small => Self::small(),
            Preset::Phi4Mini => Self::phi4_mini(),
        }
    }

    fn base(vocab: usize, hidden: usize, layers: usize, heads: usize, inter: usize) -> Self {
        Phi3Config {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: heads,
            max_position_embeddings: 4096,
            original_max_position_embeddings: 4096,
            rope_theta: 10_000.0,
            partial_rotary_factor: 1.0,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: false,
            bos_token_id: None,
            eos_token_id: vec![],
            pad_token_id: None,
            sliding_window: None,
        }
    }

    /// `micro`: hidden 128, 4 layers, 4 heads, intermediate 512, vocab 1024 (`model init --tokenizer`
    /// resizes the vocabulary to the tokenizer's).
    pub fn micro() -> Self {
        Self::base(1024, 128, 4, 4, 512)
    }

    /// `tiny`: hidden 256, 4 layers, 4 heads, intermediate 1024, vocab 1024 (the peer benchmark's shape).
    pub fn tiny() -> Self {
        Self::base(1024, 256, 4, 4, 1024)
    }

    /// `small`: hidden 512, 8 layers, 8 heads, intermediate 2048, vocab 1024.
    pub fn small() -> Self {
        Self::base(1024, 512, 8, 8, 2048)
    }

    /// The shape of Phi-4-mini: vocab 200064, hidden 3072, 32 layers, 24 heads, 8 kv heads,
    /// intermediate 8192, partial rotary 0.75, tied embeddings, longrope to 131072 positions.
    ///
    /// The longrope factors here are neutral (1.0); a real checkpoint's `config.json` carries its own.
    pub fn phi4_mini() -> Self {
        let mut c = Self::base(200_064, 3072, 32, 24, 8192);
        c.num_key_value_heads = 8;
        c.partial_rotary_factor = 0.75;
        c.tie_word_embeddings = true;
        c.max_position_embeddings = 131_072;
        c.original_max_position_embeddings = 4096;
        c.sliding_window = Some(262_144);
        c.bos_token_id = Some(199_999);
        c.eos_token_id = vec![199_999];
        c.pad_token_id = Some(199_999);
        let half = c.rotary_dim() / 2;
        c.rope_scaling =
            Some(LongRope { short_factor: vec![1.0; half], long_factor: vec![1.0; half], attention_factor: None });
        c
    }

    /// Dimensions per attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Rotated dimensions per head (`head_dim * partial_rotary_factor`, truncated as Python's `int()`).
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim() as f64 * self.partial_rotary_factor) as usize
    }

    /// Output width of the fused `qkv_proj`.
    pub fn qkv_dim(&self) -> usize {
        (self.num_attention_heads + 2 * self.num_key_value_heads) * self.head_dim()
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let per_layer = h * self.qkv_dim() + self.num_attention_heads * self.head_dim() * h + h * 2 * i + i * h + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * per_layer + h + head
    }

    /// Forward FLOPs of one `(b, t)` batch: 2 per multiply-add of every matmul (projections, MLP,
    /// `lm_head`), attention scores and their weighted sum computed densely (`2 · 2 · l · heads · head_dim
    /// · t²` per row). A training step (forward + backward) is about 3× this.
    ///
    /// ```
    /// let c = phi4r_model::Phi3Config::tiny();
    /// // Linear in the batch, and more than linear in t (attention).
    /// assert_eq!(c.forward_flops(2, 64), 2.0 * c.forward_flops(1, 64));
    /// assert!(c.forward_flops(1, 128) > 2.0 * c.forward_flops(1, 64));
    /// ```
    pub fn forward_flops(&self, b: usize, t: usize) -> f64 {
        let (h, i, l) = (self.hidden_size as f64, self.intermediate_size as f64, self.num_hidden_layers as f64);
        let attn_width = (self.num_attention_heads * self.head_dim()) as f64;
        let attn_proj = h * self.qkv_dim() as f64 + attn_width * h;
        let mlp = h * 2.0 * i + i * h;
        let per_token = 2.0 * (l * (attn_proj + mlp) + h * self.vocab_size as f64);
        let attn_scores = 2.0 * 2.0 * l * attn_width * t as f64 * t as f64;
        (b * t) as f64 * per_token + b as f64 * attn_scores
    }

    /// Checks every field we rely on; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
            ("original_max_position_embeddings", self.original_max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "hidden_size",
                format!("{} is not divisible by num_attention_heads = {}", self.hidden_size, self.num_attention_heads),
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(Error::config(
                "num_key_value_heads",
                format!(
                    "num_attention_heads = {} is not a multiple of num_key_value_heads = {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0) {
            return Err(Error::config(
                "partial_rotary_factor",
                format!("{} is not in (0, 1]", self.partial_rotary_factor),
            ));
        }
        let rd = self.rotary_dim();
        if rd == 0 || !rd.is_multiple_of(2) {
            return Err(Error::config(
                "partial_rotary_factor",
                format!("rotary dimension head_dim * factor = {rd} must be even and positive"),
            ));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return Err(Error::config("rope_theta", "must be positive"));
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err(Error::config("rms_norm_eps", "must be positive"));
        }
        if let Some(s) = &self.rope_scaling {
            for (field, f) in
                [("rope_scaling.short_factor", &s.short_factor), ("rope_scaling.long_factor", &s.long_factor)]
            {
                if f.len() != rd / 2 {
                    return Err(Error::config(field, format!("has {} entries, rotary_dim / 2 = {}", f.len(), rd / 2)));
                }
                if f.iter().any(|x| x.is_nan() || *x <= 0.0) {
                    return Err(Error::config(field, "entries must be positive"));
                }
            }
        }
        for (field, id) in [("bos_token_id", self.bos_token_id), ("pad_token_id", self.pad_token_id)] {
            if let Some(id) = id {
                if id as usize >= self.vocab_size {
                    return Err(Error::config(field, format!("{id} >= vocab_size {}", self.vocab_size)));
                }
            }
        }
        if let Some(id) = self.eos_token_id.iter().find(|id| **id as usize >= self.vocab_size) {
            return Err(Error::config("eos_token_id", format!("{id} >= vocab_size {}", self.vocab_size)));
        }
        Ok(())
    }

    /// Parses a Hugging Face `config.json` text and validates it.
    ///
    /// Accepts `rope_scaling` with `type` or `rope_type`, transformers 5's `rope_parameters`, and
    /// `eos_token_id` as a number or a list. Unknown fields are ignored.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::config("<json>", e.to_string()))?;
        Self::from_json_value(&v)
    }

    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Config { field, reason } => Error::config(field, format!("{reason} (in {})", path.display())),
            other => other,
        })
    }

    fn from_json_value(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::config("<root>", "config.json must be a JSON object"))?;
        if let Some(mt) = obj.get("model_type").and_then(Value::as_str) {
            if mt != "phi3" {
                return Err(Error::config("model_type", format!("`{mt}` is not `phi3`")));
            }
        }
        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(Error::config("hidden_act", format!("`{act}` is not supported (Phi-3 uses silu)")));
            }
        }
        let req = |k: &str| -> Result<usize> {
            match obj.get(k) {
                None | Some(Value::Null) => Err(Error::config(k, "missing")),
                Some(x) => x
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| Error::config(k, format!("expected a non-negative integer, found {x}"))),
            }
        };
        let opt_usize = |k: &str| -> Result<Option<usize>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| Error::config(k, format!("expected a non-negative integer, found {x}"))),
            }
        };
        let opt_f64 = |o: &serde_json::Map<String, Value>, k: &str, field: &str| -> Result<Option<f64>> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => {
                    x.as_f64().map(Some).ok_or_else(|| Error::config(field, format!("expected a number, found {x}")))
                }
            }
        };
        let opt_bool = |k: &str| -> Result<Option<bool>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => {
                    x.as_bool().map(Some).ok_or_else(|| Error::config(k, format!("expected a boolean, found {x}")))
                }
            }
        };
        let heads = req("num_attention_heads")?;
        let max_pos = opt_usize("max_position_embeddings")?.unwrap_or(4096);
        // transformers 5 folds rope_theta / rope_scaling into `rope_parameters`.
        let rope_params = obj.get("rope_parameters").and_then(Value::as_object);
        let scaling_obj = match obj.get("rope_scaling") {
            Some(Value::Object(m)) => Some(("rope_scaling", m)),
            Some(Value::Null) | None => rope_params.map(|m| ("rope_parameters", m)),
            Some(other) => {
                return Err(Error::config("rope_scaling", format!("expected an object or null, found {other}")))
            }
        };
        let mut rope_theta = opt_f64(obj, "rope_theta", "rope_theta")?;
        let mut partial = opt_f64(obj, "partial_rotary_factor", "partial_rotary_factor")?;
        if let Some(rp) = rope_params {
            rope_theta = rope_theta.or(opt_f64(rp, "rope_theta", "rope_parameters.rope_theta")?);
            partial = partial.or(opt_f64(rp, "partial_rotary_factor", "rope_parameters.partial_rotary_factor")?);
        }
        let mut original_max = opt_usize("original_max_position_embeddings")?;
        let rope_scaling = match scaling_obj {
            None => None,
            Some((name, m)) => {
                let kind = m.get("rope_type").or_else(|| m.get("type")).and_then(Value::as_str).unwrap_or("default");
                match kind {
                    "default" => None,
                    "longrope" | "su" => {
                        let factors = |k: &str| -> Result<Vec<f64>> {
                            let field = format!("{name}.{k}");
                            let arr = m
                                .get(k)
                                .and_then(Value::as_array)
                                .ok_or_else(|| Error::config(&field, "missing (required by longrope)"))?;
                            arr.iter()
                                .map(|x| {
                                    x.as_f64().ok_or_else(|| Error::config(&field, format!("non-numeric entry {x}")))
                                })
                                .collect()
                        };
                        if original_max.is_none() {
                            original_max =
                                m.get("original_max_position_embeddings").and_then(Value::as_u64).map(|n| n as usize);
                        }
                        Some(LongRope {
                            short_factor: factors("short_factor")?,
                            long_factor: factors("long_factor")?,
                            attention_factor: opt_f64(m, "attention_factor", &format!("{name}.attention_factor"))?,
                        })
                    }
                    other => {
                        return Err(Error::config(
                            format!("{name}.rope_type"),
                            format!("`{other}` is not supported (supported: default, longrope, su)"),
                        ))
                    }
                }
            }
        };
        let id = |k: &str| -> Result<Option<u32>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => Ok(a.first().and_then(Value::as_u64).map(|n| n as u32)),
                Some(x) => x
                    .as_u64()
                    .map(|n| Some(n as u32))
                    .ok_or_else(|| Error::config(k, format!("expected a token id, found {x}"))),
            }
        };
        let eos = match obj.get("eos_token_id") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|n| n as u32)
                        .ok_or_else(|| Error::config("eos_token_id", format!("expected a token id, found {x}")))
                })
                .collect::<Result<_>>()?,
            Some(x) => vec![x
                .as_u64()
                .ok_or_else(|| Error::config("eos_token_id", format!("expected a token id, found {x}")))?
                as u32],
        };
        let cfg = Phi3Config {
            vocab_size: req("vocab_size")?,
            hidden_size: req("hidden_size")?,
            intermediate_size: req("intermediate_size")?,
            num_hidden_layers: req("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: opt_usize("num_key_value_heads")?.unwrap_or(heads),
            max_position_embeddings: max_pos,
            original_max_position_embeddings: original_max.unwrap_or(max_pos),
            rope_theta: rope_theta.unwrap_or(10_000.0),
            partial_rotary_factor: partial.unwrap_or(1.0),
            rope_scaling,
            rms_norm_eps: opt_f64(obj, "rms_norm_eps", "rms_norm_eps")?.unwrap_or(1e-5),
            tie_word_embeddings: opt_bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id: id("bos_token_id")?,
            eos_token_id: eos,
            pad_token_id: id("pad_token_id")?,
            sliding_window: opt_usize("sliding_window")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `config.json` transformers writes for this model (legacy `rope_theta`/`rope_scaling` keys,
    /// which both transformers 4.x and 5.x read).
    pub fn to_json_value(&self) -> Value {
        let eos: Value = match self.eos_token_id.as_slice() {
            [] => Value::Null,
            [one] => (*one).into(),
            many => many.to_vec().into(),
        };
        let rope_scaling = match &self.rope_scaling {
            None => Value::Null,
            Some(s) => {
                let mut m = serde_json::json!({
                    "type": "longrope",
                    "rope_type": "longrope",
                    "short_factor": s.short_factor,
                    "long_factor": s.long_factor,
                });
                if let Some(a) = s.attention_factor {
                    m["attention_factor"] = a.into();
                }
                m
            }
        };
        serde_json::json!({
            "architectures": ["Phi3ForCausalLM"],
            "model_type": "phi3",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "original_max_position_embeddings": self.original_max_position_embeddings,
            "rope_theta": self.rope_theta,
            "partial_rotary_factor": self.partial_rotary_factor,
            "rope_scaling": rope_scaling,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "sliding_window": self.sliding_window,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "embd_pdrop": 0.0,
            "resid_pdrop": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": "float32",
        })
    }
}

/// Serde helper so run configs can embed a model config by value.
impl Serialize for Phi3Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json_value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Phi3Config {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Phi3Config::from_json_value(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_count_parameters() {
        for p in [Preset::Tiny, Preset::Small, Preset::Phi4Mini] {
            Phi3Config::preset(p).validate().expect("preset is valid");
        }
        let phi4 = Phi3Config::phi4_mini();
        assert_eq!(phi4.head_dim(), 128);
        assert_eq!(phi4.rotary_dim(), 96);
        // Phi-4-mini has 3.84B parameters.
        let n = phi4.num_params() as f64 / 1e9;
        assert!((3.7..3.9).contains(&n), "{n}");
    }

    #[test]
    fn forward_flops_match_a_hand_count() {
        // vocab 10, hidden 4, 1 layer, 2 heads (head_dim 2, qkv width 12), intermediate 8:
        // projections 4·12 + 4·4 = 64, MLP 4·16 + 8·4 = 96, lm_head 4·10 = 40 multiply-adds per token,
        // so 2·200 = 400 FLOPs per token; attention 2·2·1·4·t² = 16·t² per row. b=1, t=3: 1200 + 144.
        let c = Phi3Config::base(10, 4, 1, 2, 8);
        assert_eq!(c.forward_flops(1, 3), 1344.0);
        assert_eq!(c.forward_flops(2, 3), 2688.0);
    }

    #[test]
    fn round_trips_through_json() {
        let c = Phi3Config::phi4_mini();
        let back = Phi3Config::from_json_value(&c.to_json_value()).expect("parses");
        assert_eq!(c, back);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = Phi3Config::tiny().to_json_value();
        v["num_attention_heads"] = 3.into();
        let e = Phi3Config::from_json_value(&v).unwrap_err().to_string();
        assert!(e.contains("hidden_size") && e.contains("not divisible"), "{e}");

        let mut v = Phi3Config::tiny().to_json_value();
        v.as_object_mut().expect("object").remove("vocab_size");
        let e = Phi3Config::from_json_value(&v).unwrap_err().to_string();
        assert!(e.contains("vocab_size") && e.contains("missing"), "{e}");

        let mut v = Phi3Config::tiny().to_json_value();
        v["num_key_value_heads"] = 3.into();
        let e = Phi3Config::from_json_value(&v).unwrap_err().to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");

        let mut v = Phi3Config::tiny().to_json_value();
        v["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]});
        let e = Phi3Config::from_json_value(&v).unwrap_err().to_string();
        assert!(e.contains("rope_scaling.short_factor"), "{e}");

        let mut v = Phi3Config::tiny().to_json_value();
        v["rope_scaling"] = serde_json::json!({"type": "yarn"});
        let e = Phi3Config::from_json_value(&v).unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type") && e.contains("yarn"), "{e}");
    }

    #[test]
    fn accepts_type_or_rope_type_and_rope_parameters_and_unknown_fields() {
        let mut v = Phi3Config::tiny().to_json_value();
        v["some_future_field"] = "x".into();
        v["rope_scaling"] =
            serde_json::json!({"type": "su", "short_factor": vec![1.0; 32], "long_factor": vec![2.0; 32]});
        let c = Phi3Config::from_json_value(&v).expect("parses");
        assert_eq!(c.rope_scaling.as_ref().map(|s| s.long_factor[0]), Some(2.0));

        let mut v = Phi3Config::tiny().to_json_value();
        let o = v.as_object_mut().expect("object");
        o.remove("rope_theta");
        o.remove("rope_scaling");
        o.insert("rope_parameters".into(), serde_json::json!({"rope_type": "default", "rope_theta": 5000.0}));
        let c = Phi3Config::from_json_value(&v).expect("parses");
        assert_eq!(c.rope_theta, 5000.0);
        assert!(c.rope_scaling.is_none());
    }
}
