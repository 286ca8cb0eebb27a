//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), step for step as `torch.optim.AdamW`,
//! with its state (moments and step count) saved and loaded for exact resume — candle-nn's `AdamW` keeps
//! its state private.
//!
//! Weight decay applies to matrices (rank ≥ 2: projections, embeddings, `lm_head`) and never to RMSNorm
//! gains, as nanoGPT's `configure_optimizers` does.

use crate::error::{Error, Result};
use crate::grads::Grads;
use candle_core::{DType, Device, Tensor, Var};
use phi4r_model::kernels::with_data;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// AdamW hyper-parameters other than the learning rate (which the schedule sets every step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: each step `p -= lr * weight_decay * p` (matrices only).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults except weight decay, which is 0 as in transformers' `TrainingArguments`.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over a fixed, named list of variables.
pub struct AdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    step: u64,
}

const STEP_KEY: &str = "step";
const EXP_AVG: &str = "exp_avg.";
const EXP_AVG_SQ: &str = "exp_avg_sq.";

impl AdamW {
    /// An optimizer with zero moments over `vars` (name, variable); gradients are passed in this order.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                // Two storages: the fused update reads both moments at once.
                let (exp_avg, exp_avg_sq) = (var.zeros_like()?, var.zeros_like()?);
                Ok(Slot { decay: var.rank() >= 2, exp_avg, exp_avg_sq, name, var })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { slots, cfg, step: 0 })
    }

    /// The variables, in gradient order.
    pub fn vars(&self) -> Vec<Var> {
        self.slots.iter().map(|s| s.var.clone()).collect()
    }

    /// Updates applied so far (the bias-correction step).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// One update with learning rate `lr`, as `torch.optim.AdamW.step` (non-amsgrad, non-fused):
    ///
    /// ```text
    /// p.mul_(1 - lr * wd)
    /// m.lerp_(g, 1 - beta1); v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    /// denom = (v.sqrt() / sqrt(1 - beta2**t)).add_(eps)
    /// p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))
    /// ```
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        if grads.tensors().len() != self.slots.len() {
            return Err(Error::input(
                "AdamW::step",
                format!("{} gradients for {} variables", grads.tensors().len(), self.slots.len()),
            ));
        }
        self.step += 1;
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.cfg;
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        let step_size = lr / (1.0 - beta1.powi(t));
        let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let hyper = Hyper { lr, beta1, beta2, eps, decay: weight_decay, step_size, bc2_sqrt };
        // Variables are independent: update them in parallel (on the caller's rayon pool).
        self.slots.par_iter_mut().zip(grads.tensors().par_iter()).try_for_each(|(slot, g)| match g {
            Some(g) => update(slot, g, &hyper),
            None => Ok(()),
        })
    }

    /// The state as safetensors bytes: `exp_avg.<name>` and `exp_avg_sq.<name>` per variable, the step
    /// count in the metadata.
    pub fn state_bytes(&self) -> Result<Vec<u8>> {
        let mut named: Vec<(String, &Tensor)> = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            named.push((format!("{EXP_AVG}{}", s.name), &s.exp_avg));
            named.push((format!("{EXP_AVG_SQ}{}", s.name), &s.exp_avg_sq));
        }
        let meta = HashMap::from([(STEP_KEY.to_string(), self.step.to_string())]);
        safetensors::serialize(named.iter().map(|(n, t)| (n.as_str(), *t)), Some(meta))
            .map_err(|e| Error::input("AdamW::state_bytes", e.to_string()))
    }

    /// Restores the state written by [`AdamW::state_bytes`]; every variable must have both moments with
    /// its shape.
    pub fn load_state_bytes(&mut self, bytes: &[u8], device: &Device) -> Result<()> {
        let bad = |reason: String| Error::input("AdamW::load_state", reason);
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let step = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STEP_KEY))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("metadata has no `{STEP_KEY}`")))?;
        let mut tensors = candle_core::safetensors::load_buffer(bytes, device)?;
        let mut take = |key: String, like: &Var| -> Result<Tensor> {
            let t = tensors.remove(&key).ok_or_else(|| bad(format!("missing `{key}`")))?;
            if t.dims() != like.dims() {
                return Err(bad(format!("`{key}` has shape {:?}, the variable {:?}", t.dims(), like.dims())));
            }
            Ok(t.to_dtype(like.dtype())?)
        };
        let mut restored = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            restored.push((
                take(format!("{EXP_AVG}{}", s.name), &s.var)?,
                take(format!("{EXP_AVG_SQ}{}", s.name), &s.var)?,
            ));
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("`{extra}` matches no variable")));
        }
        for (s, (m, v)) in self.slots.iter_mut().zip(restored) {
            s.exp_avg = m;
            s.exp_avg_sq = v;
        }
        self.step = step;
        Ok(())
    }
}

/// The per-step scalars of one update.
#[derive(Clone, Copy)]
struct Hyper {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    decay: f64,
    step_size: f64,
    bc2_sqrt: f64,
}

/// Updates one variable with gradient `g`; `h.decay` is the configured weight decay, applied to the
/// variables that take it.
fn update(slot: &mut Slot, g: &Tensor, h: &Hyper) -> Result<()> {
    let g = g.to_dtype(slot.exp_avg.dtype())?;
    let h = Hyper { decay: if slot.decay { h.decay } else { 0.0 }, ..*h };
    if slot.var.device().is_cpu() && slot.var.dtype() == DType::F32 {
        return fused_update(slot, &g, &h);
    }
    let Hyper { lr, beta1, beta2, eps, decay, step_size, bc2_sqrt } = h;
    slot.exp_avg = ((&slot.exp_avg * beta1)? + (&g * (1.0 - beta1))?)?;
    slot.exp_avg_sq = ((&slot.exp_avg_sq * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
    let denom = ((slot.exp_avg_sq.sqrt()? / bc2_sqrt)? + eps)?;
    let theta = slot.var.as_tensor();
    let theta = if decay != 0.0 { (theta * (1.0 - lr * decay))? } else { theta.clone() };
    let next = (theta - ((&slot.exp_avg / denom)? * step_size)?)?;
    slot.var.set(&next)?;
    Ok(())
}

/// The whole update of one f32 CPU variable in a single pass over its four arrays (the composed form is
/// ten tensor ops, each a pass over memory and an allocation): the same arithmetic, rounded to f32 after
/// each operation as the composed ops do.
fn fused_update(slot: &mut Slot, g: &Tensor, h: &Hyper) -> Result<()> {
    const OP: &str = "AdamW::step";
    let shape = slot.var.shape().clone();
    let (b1, nb1, b2, nb2) = (h.beta1 as f32, (1.0 - h.beta1) as f32, h.beta2 as f32, (1.0 - h.beta2) as f32);
    let (bc2, eps, keep, step) = (h.bc2_sqrt as f32, h.eps as f32, (1.0 - h.lr * h.decay) as f32, h.step_size as f32);
    // The four arrays are read where they are (no copies out); the three results are new vectors.
    let (next, m, v) = with_data::<f32, _>(OP, slot.var.as_tensor(), |theta| {
        with_data(OP, g, |g: &[f32]| {
            with_data(OP, &slot.exp_avg, |m: &[f32]| {
                with_data(OP, &slot.exp_avg_sq, |v: &[f32]| {
                    let m: Vec<f32> = m.iter().zip(g).map(|(&mi, &gi)| mi * b1 + gi * nb1).collect();
                    let v: Vec<f32> = v.iter().zip(g).map(|(&vi, &gi)| vi * b2 + gi * gi * nb2).collect();
                    let next = theta
                        .iter()
                        .zip(&m)
                        .zip(&v)
                        .map(|((&p, &mi), &vi)| {
                            let denom = vi.sqrt() / bc2 + eps;
                            // keep is exactly 1 without decay, so the product leaves p unchanged.
                            p * keep - (mi / denom) * step
                        })
                        .collect();
                    Ok((next, m, v))
                })
            })
        })
    })?;
    let dev = slot.var.device().clone();
    slot.exp_avg = Tensor::from_vec(m, shape.clone(), &dev)?;
    slot.exp_avg_sq = Tensor::from_vec(v, shape.clone(), &dev)?;
    slot.var.set(&Tensor::from_vec(next, shape, &dev)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // torch:
    //   p = torch.nn.Parameter(torch.tensor([[1.0, -2.0]])); opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.01)
    //   for g in ([[0.5, -0.1]], [[-0.2, 0.3]]): p.grad = torch.tensor(g); opt.step()
    //   after step 1: p = [[0.899, -1.898]]; after step 2: p = [[0.8635404, -1.9455210]]
    //   exp_avg = [[0.025, 0.021]], exp_avg_sq = [[2.8975e-4, 9.999e-5]]
    #[test]
    fn matches_torch_adamw_two_steps() -> Result<()> {
        let dev = Device::Cpu;
        let p = Var::new(&[[1.0f32, -2.0]], &dev)?;
        let norm = Var::new(&[1.0f32, 1.0], &dev)?;
        let cfg = AdamWConfig { weight_decay: 0.01, ..Default::default() };
        let mut opt = AdamW::new(vec![("w".into(), p.clone()), ("norm".into(), norm.clone())], cfg)?;
        for g in [[0.5f32, -0.1], [-0.2, 0.3]] {
            let grads =
                Grads::from_tensors(vec![Some(Tensor::new(&[g], &dev)?), Some(Tensor::new(&[0f32, 0.], &dev)?)]);
            opt.step(&grads, 0.1)?;
        }
        let got = p.as_tensor().to_vec2::<f32>()?;
        for (a, b) in got[0].iter().zip([0.863_540_4_f32, -1.945_521]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(norm.as_tensor().to_vec1::<f32>()?, vec![1.0, 1.0], "norm gains are not decayed");
        Ok(())
    }

    #[test]
    fn fused_f32_update_matches_the_composed_ops() -> Result<()> {
        // f64 variables take the composed path; the same values in f32 take the fused one.
        let dev = Device::Cpu;
        let init = Tensor::randn(0f64, 1.0, (7, 33), &dev)?;
        let p64 = Var::from_tensor(&init)?;
        let p32 = Var::from_tensor(&init.to_dtype(DType::F32)?)?;
        let cfg = AdamWConfig { weight_decay: 0.1, ..Default::default() };
        let mut a = AdamW::new(vec![("w".into(), p64.clone())], cfg)?;
        let mut b = AdamW::new(vec![("w".into(), p32.clone())], cfg)?;
        for i in 0..5 {
            let g = Tensor::randn(0f64, 1.0 + i as f64, (7, 33), &dev)?;
            a.step(&Grads::from_tensors(vec![Some(g.clone())]), 1e-2)?;
            b.step(&Grads::from_tensors(vec![Some(g.to_dtype(DType::F32)?)]), 1e-2)?;
        }
        let diff = (p64.as_tensor() - p32.as_tensor().to_dtype(DType::F64)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-5, "fused f32 and composed f64 differ by {diff}");
        let moved = (p32.as_tensor().to_dtype(DType::F64)? - &init)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(moved > 1e-3, "the update moved the weights by only {moved}");
        Ok(())
    }

    #[test]
    fn state_round_trips_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let p = Var::new(&[[1.0f32, -2.0]], &dev)?;
        let mut opt = AdamW::new(vec![("w".into(), p.clone())], AdamWConfig::default())?;
        opt.step(&Grads::from_tensors(vec![Some(Tensor::new(&[[0.5f32, -0.1]], &dev)?)]), 0.1)?;
        let bytes = opt.state_bytes()?;
        let mut other = AdamW::new(vec![("w".into(), p.clone())], AdamWConfig::default())?;
        other.load_state_bytes(&bytes, &dev)?;
        assert_eq!(other.steps(), 1);
        assert_eq!(other.state_bytes()?, bytes);
        let mut wrong = AdamW::new(vec![("v".into(), p)], AdamWConfig::default())?;
        assert!(wrong.load_state_bytes(&bytes, &dev).is_err());
        Ok(())
    }
}
