//! Where the model's weights come from: a seeded random init or a checkpoint's tensors, either as
//! trainable `Var`s registered in a [`VarMap`] or as plain (frozen) tensors.
//!
//! candle's CPU `randn` cannot be seeded, so initialization draws from our own seeded generator: rand's
//! `StdRng` stream (ChaCha12), named as `rand_chacha::ChaCha12Rng` so that a large tensor is drawn in
//! parallel chunks, each from its own position in the stream, with exactly the values of one draw after
//! another (a Phi-4-mini-sized init took ~2 minutes on one core).

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng as StdRng;
use rayon::prelude::*;
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

/// 32-bit words of the stream one [`normal`] takes: two `f64`s, each from one `u64`.
const WORDS_PER_NORMAL: u128 = 4;

/// Values per parallel chunk of [`normals`].
const NORMAL_CHUNK: usize = 1 << 16;

/// `n` draws of `mean + stdev * normal(rng)`, equal to drawing them one after another, and `rng` left
/// where that would leave it; chunks of [`NORMAL_CHUNK`] values are drawn in parallel, each by a copy of
/// the generator set to its chunk's word position.
fn normals(rng: &mut StdRng, n: usize, mean: f32, stdev: f32) -> Vec<f32> {
    let start = rng.get_word_pos();
    let mut data = vec![0f32; n];
    let base = rng.clone();
    data.par_chunks_mut(NORMAL_CHUNK).enumerate().for_each(|(c, out)| {
        let mut r = base.clone();
        r.set_word_pos(start + (c * NORMAL_CHUNK) as u128 * WORDS_PER_NORMAL);
        for x in out {
            *x = mean + stdev * normal(&mut r);
        }
    });
    rng.set_word_pos(start + n as u128 * WORDS_PER_NORMAL);
    data
}

fn init_tensor(shape: &Shape, init: Init, rng: &mut StdRng, device: &Device) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let data: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => normals(rng, n, mean as f32, stdev as f32),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    /// The generator named here is rand's `StdRng` stream, so seeded inits keep their values.
    #[test]
    fn the_generator_is_std_rngs_stream() {
        let mut ours = StdRng::seed_from_u64(7);
        let mut std = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            assert_eq!(ours.next_u64(), std.next_u64());
        }
    }

    /// Parallel chunks draw exactly what one draw after another would, from any position in the stream
    /// (an odd word offset included), and leave the generator where the sequential draws would.
    #[test]
    fn parallel_normals_are_the_sequential_draws() {
        for (skip, n) in [(0, 0), (0, 1), (1, NORMAL_CHUNK - 1), (3, NORMAL_CHUNK), (2, 3 * NORMAL_CHUNK + 5)] {
            let mut seq = StdRng::seed_from_u64(11);
            for _ in 0..skip {
                seq.next_u32();
            }
            let mut par = seq.clone();
            let want: Vec<f32> = (0..n).map(|_| 0.5 + 0.02 * normal(&mut seq)).collect();
            let got = normals(&mut par, n, 0.5, 0.02);
            assert_eq!(got, want, "skip {skip}, n {n}");
            assert_eq!(par.next_u64(), seq.next_u64(), "the stream continues where it would: skip {skip}, n {n}");
        }
    }
}
