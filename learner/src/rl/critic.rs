//! PPO's critic: a value head — one linear layer `h → 1` — on the policy's final hidden state, read
//! detached, so the value loss trains the head alone and the policy's trunk only sees the policy loss
//! (the trunk is shared, the gradients are not). It has its own AdamW and a constant learning rate
//! (`rl.algo.value_lr`), and its own files beside the Hugging Face checkpoint, so `model.safetensors`
//! stays loadable by transformers:
//!
//! ```text
//! step-N/value_head.safetensors       v_head.weight (1, h), v_head.bias (1), f32
//! step-N/value_optimizer.safetensors  its AdamW moments and step count
//! ```

use crate::error::{Error, Result};
use crate::grads::Grads;
use crate::optim::{AdamW, AdamWConfig};
use candle_core::{DType, Device, Tensor, Var};
use phi4r_model::write_atomic;
use std::path::Path;

/// The value head's weights.
pub const VALUE_HEAD_FILE: &str = "value_head.safetensors";
/// The value head's optimizer state.
pub const VALUE_OPTIMIZER_FILE: &str = "value_optimizer.safetensors";
const WEIGHT: &str = "v_head.weight";
const BIAS: &str = "v_head.bias";

/// The value head and its optimizer.
pub struct Critic {
    weight: Var,
    bias: Var,
    optimizer: AdamW,
}

impl Critic {
    /// A zero head over hidden size `hidden`: every value starts at 0, so the first advantages are the
    /// returns themselves (OpenRLHF initializes its critic from a reward model; there is none here).
    pub fn zeros(hidden: usize, device: &Device) -> Result<Self> {
        let weight = Var::zeros((1, hidden), DType::F32, device)?;
        let bias = Var::zeros(1, DType::F32, device)?;
        Self::with(weight, bias)
    }

    fn with(weight: Var, bias: Var) -> Result<Self> {
        let named = vec![(WEIGHT.to_string(), weight.clone()), (BIAS.to_string(), bias.clone())];
        let optimizer = AdamW::new(named, AdamWConfig::default())?;
        Ok(Critic { weight, bias, optimizer })
    }

    /// The head saved in `dir` ([`VALUE_HEAD_FILE`], with its optimizer state when
    /// [`VALUE_OPTIMIZER_FILE`] is there too), or `None` when `dir` has no value head. A head of another
    /// hidden size is an error naming the file.
    pub fn load(dir: &Path, hidden: usize, device: &Device) -> Result<Option<Self>> {
        let path = dir.join(VALUE_HEAD_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
        let mut take = |key: &str, dims: &[usize]| -> Result<Var> {
            let t = tensors.remove(key).ok_or_else(|| Error::checkpoint(&path, format!("missing `{key}`")))?;
            if t.dims() != dims {
                return Err(Error::checkpoint(&path, format!("`{key}` has shape {:?}, expected {dims:?}", t.dims())));
            }
            Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
        };
        let (weight, bias) = (take(WEIGHT, &[1, hidden])?, take(BIAS, &[1])?);
        let mut critic = Self::with(weight, bias)?;
        let opt = dir.join(VALUE_OPTIMIZER_FILE);
        if opt.is_file() {
            let bytes = std::fs::read(&opt).map_err(|e| Error::io(&opt, e))?;
            critic.optimizer.load_state_bytes(&bytes, device).map_err(|e| Error::checkpoint(&opt, e.to_string()))?;
        }
        Ok(Some(critic))
    }

    /// Writes [`VALUE_HEAD_FILE`] and [`VALUE_OPTIMIZER_FILE`] into `dir`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let named = [(WEIGHT, self.weight.as_tensor()), (BIAS, self.bias.as_tensor())];
        let bytes = safetensors::serialize(named, None).map_err(|e| Error::checkpoint(dir, e.to_string()))?;
        write_atomic(&dir.join(VALUE_HEAD_FILE), &bytes)?;
        write_atomic(&dir.join(VALUE_OPTIMIZER_FILE), &self.optimizer.state_bytes()?)?;
        Ok(())
    }

    /// Values of every position, from hidden states read detached (no gradient reaches the trunk).
    ///
    /// # Shapes
    /// `hidden`: (b, t, h) → (b, t) f32
    pub fn values(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let x = hidden.detach().to_dtype(DType::F32)?.reshape((b * t, h))?;
        let v = x.matmul(&self.weight.as_tensor().t()?)?.broadcast_add(self.bias.as_tensor())?;
        Ok(v.reshape((b, t))?)
    }

    /// The head's variables, in gradient order.
    pub fn vars(&self) -> Vec<Var> {
        vec![self.weight.clone(), self.bias.clone()]
    }

    /// One AdamW update at `lr` (no clipping: the head is two tensors and its loss is clipped).
    pub fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        self.optimizer.step(grads, lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn values_are_the_linear_head_and_round_trip_through_files() -> Result<()> {
        let dev = Device::Cpu;
        let critic = Critic::zeros(3, &dev)?;
        critic.weight.set(&Tensor::new(&[[1f32, -2., 0.5]], &dev)?)?;
        critic.bias.set(&Tensor::new(&[0.25f32], &dev)?)?;
        let hidden = Tensor::new(&[[[1f32, 1., 2.], [0., 1., 0.]]], &dev)?;
        // [1 - 2 + 1 + 0.25, 0 - 2 + 0 + 0.25]
        assert_eq!(critic.values(&hidden)?.to_vec2::<f32>()?, vec![vec![0.25, -1.75]]);
        let dir = tempfile::tempdir().map_err(|e| Error::io(Path::new("tempdir"), e))?;
        critic.save(dir.path())?;
        let back = Critic::load(dir.path(), 3, &dev)?.ok_or_else(|| Error::input("test", "no head"))?;
        assert_eq!(back.values(&hidden)?.to_vec2::<f32>()?, vec![vec![0.25, -1.75]]);
        assert!(Critic::load(dir.path(), 4, &dev).is_err(), "another hidden size is refused");
        assert!(Critic::load(&dir.path().join("none"), 3, &dev)?.is_none());
        Ok(())
    }
}
