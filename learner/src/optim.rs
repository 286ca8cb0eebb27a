//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), step for step as `torch.optim.AdamW`,
//! with its state (moments and step count) saved and loaded for exact resume — candle-nn's `AdamW` keeps
//! its state private.
//!
//! Weight decay applies to matrices (rank ≥ 2: projections, embeddings, `lm_head`) and never to RMSNorm
//! gains, as nanoGPT's `configure_optimizers` does.
//!
//! Mixed precision: a variable in bf16 or f16 (the model's compute dtype, e.g. bf16 on CUDA) gets an f32
//! **master copy** here, and its moments are f32 too. Each update runs on the master and then writes it
//! rounded into the variable, so updates smaller than the low-precision spacing (lr 1e-5 on a weight of
//! 0.1 is below bf16's 2^-10 relative step) accumulate instead of vanishing — `torch.autocast` with
//! f32 parameters, or DeepSpeed's bf16 optimizer, keeps the same split. The masters travel with the
//! state (`master.<name>`), so resume is exact.

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
    /// The f32 master of a bf16/f16 variable (None: the variable is its own master).
    master: Option<Tensor>,
}

/// Whether a variable of this dtype trains through an f32 master copy.
fn needs_master(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
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
const MASTER: &str = "master.";

impl AdamW {
    /// An optimizer with zero moments over `vars` (name, variable); gradients are passed in this order.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                // Low-precision variables: an f32 master, and f32 moments beside it.
                let master = needs_master(var.dtype()).then(|| var.as_tensor().to_dtype(DType::F32)).transpose()?;
                let like = master.as_ref().unwrap_or(var.as_tensor());
                // Two storages: the fused update reads both moments at once.
                let (exp_avg, exp_avg_sq) = (like.zeros_like()?, like.zeros_like()?);
                Ok(Slot { decay: var.rank() >= 2, exp_avg, exp_avg_sq, name, var, master })
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

    /// Variables trained through an f32 master copy (the bf16/f16 ones).
    pub fn master_count(&self) -> usize {
        self.slots.iter().filter(|s| s.master.is_some()).count()
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

    /// The state as safetensors bytes: `exp_avg.<name>` and `exp_avg_sq.<name>` per variable (and
    /// `master.<name>`, the f32 master of a low-precision one), the step count in the metadata.
    pub fn state_bytes(&self) -> Result<Vec<u8>> {
        let mut named: Vec<(String, &Tensor)> = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            named.push((format!("{EXP_AVG}{}", s.name), &s.exp_avg));
            named.push((format!("{EXP_AVG_SQ}{}", s.name), &s.exp_avg_sq));
            if let Some(m) = &s.master {
                named.push((format!("{MASTER}{}", s.name), m));
            }
        }
        let meta = HashMap::from([(STEP_KEY.to_string(), self.step.to_string())]);
        safetensors::serialize(named.iter().map(|(n, t)| (n.as_str(), *t)), Some(meta))
            .map_err(|e| Error::input("AdamW::state_bytes", e.to_string()))
    }

    /// Restores the state written by [`AdamW::state_bytes`]; every variable must have both moments with
    /// its shape. A low-precision variable takes its f32 master from the state when the state has one
    /// (and the master is then written into the variable); a state without one (written by an f32 run)
    /// keeps the master made from the variable.
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
        // `required`: a missing key is an error; else None.
        let mut take = |key: String, like: &Tensor, required: bool| -> Result<Option<Tensor>> {
            let Some(t) = tensors.remove(&key) else {
                return if required { Err(bad(format!("missing `{key}`"))) } else { Ok(None) };
            };
            if t.dims() != like.dims() {
                return Err(bad(format!("`{key}` has shape {:?}, the variable {:?}", t.dims(), like.dims())));
            }
            Ok(Some(t.to_dtype(like.dtype())?))
        };
        let mut restored = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            // The moments take the master's dtype (f32) for a low-precision variable.
            let like = s.master.as_ref().unwrap_or(s.var.as_tensor());
            let master = match &s.master {
                Some(m) => take(format!("{MASTER}{}", s.name), m, false)?,
                None => None,
            };
            let m = take(format!("{EXP_AVG}{}", s.name), like, true)?;
            let v = take(format!("{EXP_AVG_SQ}{}", s.name), like, true)?;
            if let (Some(m), Some(v)) = (m, v) {
                restored.push((m, v, master));
            }
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("`{extra}` matches no variable")));
        }
        for (s, (m, v, master)) in self.slots.iter_mut().zip(restored) {
            s.exp_avg = m;
            s.exp_avg_sq = v;
            if let Some(master) = master {
                s.var.set(&master.to_dtype(s.var.dtype())?)?;
                s.master = Some(master);
            }
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
    let theta = slot.master.as_ref().unwrap_or(slot.var.as_tensor());
    let theta = if decay != 0.0 { (theta * (1.0 - lr * decay))? } else { theta.clone() };
    let next = (theta - ((&slot.exp_avg / denom)? * step_size)?)?;
    match &mut slot.master {
        Some(master) => {
            slot.var.set(&next.to_dtype(slot.var.dtype())?)?;
            *master = next;
        }
        None => slot.var.set(&next)?,
    }
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
    fn bf16_variables_train_through_an_f32_master() -> Result<()> {
        // A bf16 weight of 1.0 has a spacing of 2^-7: an update of 1e-4 per step rounds away in bf16
        // arithmetic, but accumulates in the f32 master and shows up in the variable once it adds up.
        let dev = Device::Cpu;
        let p = Var::from_tensor(&Tensor::new(&[[1.0f32, -1.0]], &dev)?.to_dtype(DType::BF16)?)?;
        let mut opt = AdamW::new(vec![("w".into(), p.clone())], AdamWConfig::default())?;
        assert_eq!(opt.master_count(), 1);
        let g = || -> Result<Grads> {
            Ok(Grads::from_tensors(vec![Some(Tensor::new(&[[1f32, -1.0]], &dev)?.to_dtype(DType::BF16)?)]))
        };
        for _ in 0..100 {
            opt.step(&g()?, 1e-4)?;
        }
        assert_eq!(p.dtype(), DType::BF16, "the variable keeps its dtype");
        let got = p.as_tensor().to_dtype(DType::F32)?.to_vec2::<f32>()?;
        // Adam's step is ~lr per step: 100 steps of 1e-4 move the master by ~0.01 -> 0.99 / -0.99.
        assert!((got[0][0] - 0.99).abs() < 4e-3 && (got[0][1] + 0.99).abs() < 4e-3, "{got:?}");
        // The same in plain bf16 arithmetic (no master) would not move at all: 1.0 - 1e-4 rounds to 1.0.
        let plain =
            (Tensor::new(&[1f32], &dev)?.to_dtype(DType::BF16)? - 1e-4)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        assert_eq!(plain, [1.0]);
        // Resume is exact: the master travels with the state, and a fresh optimizer over a bf16 variable
        // restores it (the variable is rewritten from it).
        let bytes = opt.state_bytes()?;
        let q = Var::from_tensor(&Tensor::new(&[[0f32, 0.0]], &dev)?.to_dtype(DType::BF16)?)?;
        let mut other = AdamW::new(vec![("w".into(), q.clone())], AdamWConfig::default())?;
        other.load_state_bytes(&bytes, &dev)?;
        assert_eq!(other.state_bytes()?, bytes);
        assert_eq!(q.as_tensor().to_dtype(DType::F32)?.to_vec2::<f32>()?, got);
        opt.step(&g()?, 1e-4)?;
        other.step(&g()?, 1e-4)?;
        assert_eq!(other.state_bytes()?, opt.state_bytes()?, "one more step agrees bit for bit");
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
