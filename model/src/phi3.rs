//! The Phi-3 decoder (Hugging Face `Phi3ForCausalLM`, also the architecture of Phi-4-mini), written on
//! candle for training as well as decoding.
//!
//! Follows transformers' `modeling_phi3.py`
//! (<https://github.com/huggingface/transformers/blob/main/src/transformers/models/phi3/modular_phi3.py>):
//! fused `qkv_proj` with grouped-query attention, partial rotary embeddings (with longrope), fused
//! `gate_up_proj` SwiGLU MLP, RMSNorm, optional tied embeddings.
//!
//! Unlike candle-transformers' `phi3`, the model is immutable: training forward returns logits for every
//! position (padded or packed batches), and decoding takes an explicit [`KvCache`].

use crate::config::Phi3Config;
use crate::error::{Error, Result};
use crate::kernels::{
    cached_attention, masked_softmax, packed_matmul, qkv_rope, ranged_attention, small_matmul, swiglu, DecodeWeights,
    KeyRanges, PackedWeight, SMALL_ROWS,
};
use crate::kv_cache::KvCache;
use crate::layout::AttentionLayout;
use crate::ops::{self, Kernels};
use crate::rope::Rope;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

use std::sync::{Arc, OnceLock};

const WEIGHT_INIT: Init = Init::Randn { mean: 0.0, stdev: 0.02 };

/// A linear layer's weight, `(out, in)` as torch stores it.
///
/// A frozen CPU weight (sampling, reference models) multiplies the few rows of a decoding step with
/// [`packed_matmul`] over a copy packed once for it (f64: [`small_matmul`]), which streams each weight row
/// once; a general gemm re-packs the whole transposed matrix on every call and pads the rows to its
/// micro-kernel, which for one row costs more than the product.
#[derive(Clone)]
struct Weight {
    w: Tensor,
    frozen_cpu: bool,
    /// The f32 weight packed for decoding, made on the first small-row product (so a frozen model that
    /// only ever runs large batches, such as the DPO reference, never holds a second copy). Frozen
    /// weights are never written in place, so it cannot go stale: new policy weights make a new model
    /// (`Phi3::frozen`, `load_frozen`) with its own.
    packed: Arc<OnceLock<PackedWeight>>,
}

impl Weight {
    fn new(w: Tensor) -> candle_core::Result<Self> {
        let frozen_cpu = !w.is_variable() && w.device().is_cpu() && w.is_contiguous();
        Ok(Weight { w, frozen_cpu, packed: Arc::default() })
    }

    fn packed(&self) -> candle_core::Result<&PackedWeight> {
        if let Some(p) = self.packed.get() {
            return Ok(p);
        }
        let p = PackedWeight::from_tensor_with(&self.w, DecodeWeights::from_env()?)?;
        Ok(self.packed.get_or_init(|| p))
    }
}

/// `x @ w.T` for `x` of any rank.
fn linear(x: &Tensor, w: &Weight) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = *dims.last().unwrap_or(&1);
    let rows = x.elem_count() / inner.max(1);
    let x2 = x.reshape((rows, inner))?;
    let small = w.frozen_cpu && rows <= SMALL_ROWS;
    let y = if small && x.dtype() == DType::F32 && w.w.dtype() == DType::F32 {
        packed_matmul(&x2, w.packed()?)?
    } else if small && matches!(x.dtype(), DType::F64) {
        small_matmul(&x2, &w.w)?
    } else {
        x2.matmul(&w.w.t()?)?
    };
    let mut out = dims;
    if let Some(l) = out.last_mut() {
        *l = w.w.dim(0)?;
    }
    y.reshape(out)
}

/// Rotary tables of one forward call: raw values per `(b, t)` position for the fused kernel, and
/// `(b, 1, t, r/2)` tensors for the composed path.
struct RopeTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
    tensors: Option<(Tensor, Tensor)>,
}

/// Which keys each query may attend to.
enum AttnMask {
    /// Additive `(b, 1, t, l)` mask (composed kernels).
    Dense(Tensor),
    /// Per-query key ranges (fused kernels).
    Ranges(KeyRanges),
}

/// Which logits a cached forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsAt {
    /// Only the last position of each row: `(b, v)`.
    Last,
    /// Every position: `(b, t, v)`.
    All,
}

struct Attention {
    qkv_proj: Weight,
    o_proj: Weight,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Phi3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Attention {
            qkv_proj: Weight::new(vb.get_with_hints((cfg.qkv_dim(), h), "qkv_proj.weight", WEIGHT_INIT)?)?,
            o_proj: Weight::new(vb.get_with_hints(
                (h, cfg.num_attention_heads * cfg.head_dim()),
                "o_proj.weight",
                WEIGHT_INIT,
            )?)?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// # Shapes
    /// `x`: (b, t, h); `cos`/`sin`: (b, 1, t, r/2); `mask`: (b, 1, t, l) with `l = offset + t` when
    /// `cache` is given, else `t` → (b, t, h)
    fn forward(
        &self,
        x: &Tensor,
        rope: &RopeTables,
        mask: &AttnMask,
        cache: Option<(&Tensor, &Tensor, usize)>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let qkv = linear(x, &self.qkv_proj)?;
        let (q, key, value) = match &rope.tensors {
            None => qkv_rope(&qkv, nh, nkv, &rope.cos, &rope.sin)?,
            Some((cos, sin)) => {
                let q = qkv.narrow(2, 0, nh * d)?.reshape((b, t, nh, d))?.transpose(1, 2)?;
                let key = qkv.narrow(2, nh * d, nkv * d)?.reshape((b, t, nkv, d))?.transpose(1, 2)?;
                let value = qkv.narrow(2, (nh + nkv) * d, nkv * d)?.reshape((b, t, nkv, d))?.transpose(1, 2)?;
                (ops::apply_rotary(&q, cos, sin)?, ops::apply_rotary(&key, cos, sin)?, value)
            }
        };
        let (key, value) = match cache {
            None => {
                if let AttnMask::Ranges(r) = mask {
                    // A whole sequence: only the key spans each tile of queries may see.
                    let out = ranged_attention(&q, &key, &value, r, 1.0 / (d as f64).sqrt())?;
                    return linear(&out.transpose(1, 2)?.reshape((b, t, nh * d))?, &self.o_proj);
                }
                (key.contiguous()?, value.contiguous()?)
            }
            Some((kc, vc, offset)) => {
                kc.slice_set(&key.contiguous()?, 2, offset)?;
                vc.slice_set(&value.contiguous()?, 2, offset)?;
                if let (AttnMask::Ranges(r), true) = (mask, self.o_proj.frozen_cpu) {
                    // Frozen decoding: one pass over the cache instead of per-(row, kv head) matmuls.
                    let out = cached_attention(&q, kc, vc, offset + t, r, 1.0 / (d as f64).sqrt())?;
                    return linear(&out, &self.o_proj);
                }
                (kc.narrow(2, 0, offset + t)?, vc.narrow(2, 0, offset + t)?)
            }
        };
        let l = key.dim(2)?;
        let rep = nh / nkv;
        // Grouped-query attention without copying keys: the `rep` query heads that share a kv head
        // (transformers' repeat_kv maps head i to kv head i / rep) become extra rows of one matmul.
        let q = (q.contiguous()? * (1.0 / (d as f64).sqrt()))?.reshape((b, nkv, rep * t, d))?;
        let scores = q.matmul(&key.t()?)?.reshape((b, nh, t, l))?;
        let probs = match mask {
            AttnMask::Dense(m) => ops::softmax_last_dim(&scores.broadcast_add(m)?)?,
            AttnMask::Ranges(r) => masked_softmax(&scores, r)?,
        };
        let probs = probs.reshape((b, nkv, rep * t, l))?;
        let out = probs.matmul(&value)?.reshape((b, nh, t, d))?.transpose(1, 2)?.reshape((b, t, nh * d))?;
        linear(&out, &self.o_proj)
    }
}

struct Mlp {
    gate_up_proj: Weight,
    down_proj: Weight,
    intermediate: usize,
    fused: bool,
}

impl Mlp {
    fn new(cfg: &Phi3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_up_proj: Weight::new(vb.get_with_hints((2 * i, h), "gate_up_proj.weight", WEIGHT_INIT)?)?,
            down_proj: Weight::new(vb.get_with_hints((h, i), "down_proj.weight", WEIGHT_INIT)?)?,
            intermediate: i,
            fused: false,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let gu = linear(x, &self.gate_up_proj)?;
        if self.fused {
            return linear(&swiglu(&gu)?, &self.down_proj);
        }
        let gate = gu.narrow(D::Minus1, 0, self.intermediate)?;
        let up = gu.narrow(D::Minus1, self.intermediate, self.intermediate)?;
        linear(&(up * gate.silu()?)?, &self.down_proj)
    }
}

struct DecoderLayer {
    input_layernorm: Tensor,
    self_attn: Attention,
    post_attention_layernorm: Tensor,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &Phi3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(DecoderLayer {
            input_layernorm: vb.get_with_hints(h, "input_layernorm.weight", Init::Const(1.0))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: vb.get_with_hints(h, "post_attention_layernorm.weight", Init::Const(1.0))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }
}

/// A Phi-3 causal language model. Immutable: weights are tensors (trainable `Var`s or frozen copies).
pub struct Phi3 {
    cfg: Phi3Config,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    lm_head: Weight,
    rope: Rope,
    kernels: Kernels,
    device: Device,
    dtype: DType,
}

impl Phi3 {
    /// Builds the model from `vb`, whose tensor names are the Hugging Face ones
    /// (`model.layers.{i}.self_attn.qkv_proj.weight`, ...). `kernels` must be
    /// [`Kernels::Composed`] if gradients are wanted.
    pub fn new(cfg: &Phi3Config, vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        cfg.validate()?;
        let m = vb.pp("model");
        let embed_tokens = m.get_with_hints((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight", WEIGHT_INIT)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            layers.push(DecoderLayer::new(cfg, m.pp("layers").pp(i))?);
        }
        let norm = m.get_with_hints(cfg.hidden_size, "norm.weight", Init::Const(1.0))?;
        let lm_head = Weight::new(if cfg.tie_word_embeddings {
            embed_tokens.clone()
        } else {
            vb.get_with_hints((cfg.vocab_size, cfg.hidden_size), "lm_head.weight", WEIGHT_INIT)?
        })?;
        let model = Phi3 {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: Rope::new(cfg),
            kernels,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        };
        Ok(model.with_kernels(kernels))
    }

    /// The same weights with other kernels (e.g. [`Kernels::Composed`] to debug a fused kernel).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        let fused = kernels.fused_for(&self.embed_tokens);
        for l in &mut self.layers {
            l.mlp.fused = fused;
        }
        self
    }

    /// The kernels this model runs.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The configuration.
    pub fn config(&self) -> &Phi3Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every weight with its Hugging Face name (tied `lm_head` omitted).
    pub fn named_weights(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed_tokens.clone())];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), l.input_layernorm.clone()));
            out.push((format!("{p}.self_attn.qkv_proj.weight"), l.self_attn.qkv_proj.w.clone()));
            out.push((format!("{p}.self_attn.o_proj.weight"), l.self_attn.o_proj.w.clone()));
            out.push((format!("{p}.post_attention_layernorm.weight"), l.post_attention_layernorm.clone()));
            out.push((format!("{p}.mlp.gate_up_proj.weight"), l.mlp.gate_up_proj.w.clone()));
            out.push((format!("{p}.mlp.down_proj.weight"), l.mlp.down_proj.w.clone()));
        }
        out.push(("model.norm.weight".to_string(), self.norm.clone()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.w.clone()));
        }
        out
    }

    /// A deep copy of the weights that records no gradient: the form for sampling and for frozen
    /// reference models. Later updates of `self` do not reach it.
    pub fn frozen(&self) -> Result<Phi3> {
        self.frozen_on(&self.device)
    }

    /// [`Phi3::frozen`] on `device` (a GPU learner's weights for a CPU generator, or the reverse): one
    /// copy of every weight, with the kernels of that device. A copy to the CPU from another device is
    /// f32 (a bf16 GPU learner's CPU generators sample with the CPU's fused f32 kernels).
    pub fn frozen_on(&self, device: &Device) -> Result<Phi3> {
        let same = device.same_device(&self.device);
        let dtype = if !same && device.is_cpu() { DType::F32 } else { self.dtype };
        let tensors = self
            .named_weights()
            .into_iter()
            .map(|(n, t)| {
                Ok((n, if same { t.detach().copy()? } else { t.detach().to_device(device)?.to_dtype(dtype)? }))
            })
            .collect::<Result<_>>()?;
        let vb = crate::params::frozen_builder(crate::params::Values::Tensors(tensors), dtype, device);
        let kernels = if same { self.kernels } else { Kernels::for_device(device) };
        Phi3::new(&self.cfg, vb, kernels)
    }

    /// Bytes of every weight (what [`Phi3::frozen_on`] copies).
    pub fn weight_bytes(&self) -> usize {
        self.named_weights().iter().map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    /// Errors unless every id is below `vocab_size`.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().position(|&id| id as usize >= self.cfg.vocab_size) {
            None => Ok(()),
            Some(position) => {
                Err(Error::TokenOutOfRange { id: ids[position], position, vocab_size: self.cfg.vocab_size })
            }
        }
    }

    fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let flat = input_ids.flatten_all()?;
        self.check_ids(&flat.to_vec1::<u32>()?)?;
        Ok(self.embed_tokens.index_select(&flat, 0)?.reshape((b, t, self.cfg.hidden_size))?)
    }

    fn rope_tables(&self, positions: &[u32], b: usize, t: usize) -> Result<RopeTables> {
        let (cos, sin) = self.rope.cos_sin_values(positions);
        let tensors = if self.kernels.fused_for(&self.embed_tokens) {
            None
        } else {
            let half = cos.len() / (b * t).max(1);
            let cos_t = Tensor::from_slice(&cos, (b, 1, t, half), &self.device)?.to_dtype(self.dtype)?;
            let sin_t = Tensor::from_slice(&sin, (b, 1, t, half), &self.device)?.to_dtype(self.dtype)?;
            Some((cos_t, sin_t))
        };
        Ok(RopeTables { cos, sin, tensors })
    }

    /// Training forward: logits for every position.
    ///
    /// # Shapes
    /// `input_ids`: (b, t) u32; `layout` describes padding / packing of the same (b, t) → (b, t, v)
    pub fn forward(&self, input_ids: &Tensor, layout: &AttentionLayout) -> Result<Tensor> {
        let hidden = self.forward_hidden(input_ids, layout)?;
        Ok(linear(&hidden, &self.lm_head)?)
    }

    /// Training forward up to the final norm: hidden states `(b, t, h)`.
    pub fn forward_hidden(&self, input_ids: &Tensor, layout: &AttentionLayout) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if layout.dims() != (b, t) {
            return Err(Error::input(
                "Phi3::forward",
                format!("layout is {:?} but input_ids is ({b}, {t})", layout.dims()),
            ));
        }
        let mut x = self.embed(input_ids)?;
        let rope = self.rope_tables(&layout.position_ids(), b, t)?;
        let mask = if self.kernels.fused_for(&self.embed_tokens) {
            AttnMask::Ranges(layout.key_ranges(self.cfg.sliding_window))
        } else {
            AttnMask::Dense(layout.additive_mask(self.cfg.sliding_window, &self.device)?.to_dtype(self.dtype)?)
        };
        for l in &self.layers {
            x = self.layer_forward(l, &x, &rope, &mask, None)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps, self.kernels)?)
    }

    /// Projects hidden states to vocabulary logits with `lm_head`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(linear(hidden, &self.lm_head)?)
    }

    fn layer_forward(
        &self,
        l: &DecoderLayer,
        x: &Tensor,
        rope: &RopeTables,
        mask: &AttnMask,
        cache: Option<(&Tensor, &Tensor, usize)>,
    ) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps;
        let h = ops::rms_norm(x, &l.input_layernorm, eps, self.kernels)?;
        let x = (x + l.self_attn.forward(&h, rope, mask, cache)?)?;
        let h = ops::rms_norm(&x, &l.post_attention_layernorm, eps, self.kernels)?;
        Ok((&x + l.mlp.forward(&h)?)?)
    }

    /// Decoding forward over an explicit cache: appends `t` tokens per row and returns their logits.
    ///
    /// `valid` marks real tokens (`(b, t)` row-major, 1 = real, 0 = padding); rows whose prompts are
    /// shorter are left-padded in the first call. Positions count real tokens only.
    ///
    /// # Shapes
    /// `input_ids`: (b, t) u32 → (b, v) for [`LogitsAt::Last`], (b, t, v) for [`LogitsAt::All`]
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        valid: &[u8],
        cache: &mut KvCache,
        at: LogitsAt,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if cache.batch() != b || cache.keys.len() != self.layers.len() {
            return Err(Error::input(
                "forward_cached",
                format!("cache is for batch {}, input has {b} rows", cache.batch()),
            ));
        }
        let mut x = self.embed(input_ids)?;
        let offset = cache.len;
        let positions = cache.admit(t, valid)?;
        let rope = self.rope_tables(&positions, b, t)?;
        let ranges = match self.kernels.fused_for(&self.embed_tokens) {
            true => cache.key_ranges(t, self.cfg.sliding_window),
            false => None,
        };
        let mask = match ranges {
            Some(r) => AttnMask::Ranges(r),
            None => AttnMask::Dense(cache.mask(t, self.cfg.sliding_window, &self.device)?.to_dtype(self.dtype)?),
        };
        for (i, l) in self.layers.iter().enumerate() {
            x = self.layer_forward(l, &x, &rope, &mask, Some((&cache.keys[i], &cache.values[i], offset)))?;
        }
        cache.len += t;
        let x = match at {
            LogitsAt::Last => x.narrow(1, t - 1, 1)?,
            LogitsAt::All => x,
        };
        let x = ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps, self.kernels)?;
        let logits = linear(&x, &self.lm_head)?;
        Ok(match at {
            LogitsAt::Last => logits.squeeze(1)?,
            LogitsAt::All => logits,
        })
    }
}
