//! Where the model's weights come from: a seeded random init or a checkpoint's tensors, either as
//! trainable `Var`s registered in a [`VarMap`] or as plain (frozen) tensors.
//!
//! candle's CPU `randn` cannot be seeded, so initialization draws from our own `StdRng`.

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Mutex;

/// Source of values for each named parameter.
pub enum Values {
    /// Draw from each parameter's init hint with a seeded RNG.
    Seeded(u64),
    /// Take each parameter from this map (a checkpoint); a missing or mis-shaped tensor is an error
    /// naming it.
    Tensors(HashMap<String, Tensor>),
}

/// A `VarBuilder` backend over [`Values`], registering `Var`s in a `VarMap` when trainable.
struct ParamSource {
    values: Mutex<(Values, Option<StdRng>)>,
    varmap: Option<VarMap>,
}

/// A builder whose parameters are trainable `Var`s, registered in `varmap`.
pub fn trainable_builder(values: Values, varmap: &VarMap, dtype: DType, device: &Device) -> VarBuilder<'static> {
    builder(values, Some(varmap.clone()), dtype, device)
}

/// A builder whose parameters are plain tensors that record no gradient.
pub fn frozen_builder(values: Values, dtype: DType, device: &Device) -> VarBuilder<'static> {
    builder(values, None, dtype, device)
}

fn builder(values: Values, varmap: Option<VarMap>, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let rng = match &values {
        Values::Seeded(s) => Some(StdRng::seed_from_u64(*s)),
        Values::Tensors(_) => None,
    };
    let src = ParamSource { values: Mutex::new((values, rng)), varmap };
    VarBuilder::from_backend(Box::new(src), dtype, device.clone())
}

/// Standard normal via Box-Muller (rand_distr is kept out of this crate: it pins a different rand).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn init_tensor(shape: &Shape, init: Init, rng: &mut StdRng, device: &Device) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let data: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => (0..n).map(|_| mean as f32 + stdev as f32 * normal(rng)).collect(),
        Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo as f32..up as f32)).collect(),
        Init::Kaiming { .. } => candle_core::bail!("kaiming init is not used by this model"),
    };
    Tensor::from_vec(data, shape.clone(), device)
}

impl SimpleBackend for ParamSource {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(vm) = &self.varmap {
            // A second request for a name (tied embeddings) must return the very same Var.
            if let Some(v) = vm.data().lock().map_err(|_| candle_core::Error::msg("varmap lock poisoned"))?.get(name) {
                return Ok(v.as_tensor().clone());
            }
        }
        let mut guard = self.values.lock().map_err(|_| candle_core::Error::msg("parameter source lock poisoned"))?;
        let (values, rng) = &mut *guard;
        let value = match values {
            Values::Tensors(map) => {
                let t = map.get(name).ok_or_else(|| {
                    candle_core::Error::msg(format!(
                        "checkpoint is missing tensor `{name}` (expected shape {:?})",
                        s.dims()
                    ))
                })?;
                if t.dims() != s.dims() {
                    candle_core::bail!("tensor `{name}` has shape {:?}, the config implies {:?}", t.dims(), s.dims());
                }
                t.to_device(dev)?.to_dtype(dtype)?
            }
            Values::Seeded(_) => {
                let rng = rng.as_mut().ok_or_else(|| candle_core::Error::msg("seeded source without rng"))?;
                init_tensor(&s, h, rng, dev)?.to_dtype(dtype)?
            }
        };
        match &self.varmap {
            Some(vm) => {
                let var = Var::from_tensor(&value)?;
                let t = var.as_tensor().clone();
                vm.data()
                    .lock()
                    .map_err(|_| candle_core::Error::msg("varmap lock poisoned"))?
                    .insert(name.to_string(), var);
                Ok(t)
            }
            None => Ok(value.detach()),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let guard = self.values.lock().map_err(|_| candle_core::Error::msg("parameter source lock poisoned"))?;
        match &guard.0 {
            Values::Tensors(map) => match map.get(name) {
                Some(t) => t.to_device(dev)?.to_dtype(dtype),
                None => candle_core::bail!("checkpoint is missing tensor `{name}`"),
            },
            Values::Seeded(_) => candle_core::bail!("no shape known for `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match self.values.lock() {
            Ok(g) => match &g.0 {
                Values::Tensors(map) => map.contains_key(name),
                Values::Seeded(_) => true,
            },
            Err(_) => false,
        }
    }
}
