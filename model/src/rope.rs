//! Rotary position embeddings, computed as transformers computes them
//! (`modeling_rope_utils.py`: `_compute_default_rope_parameters`, `_compute_longrope_parameters`, and
//! `Phi3RotaryEmbedding` with its per-call short/long factor choice).

use crate::config::Phi3Config;
use candle_core::{Device, Result, Tensor};

/// Inverse frequencies and attention scaling for one model.
#[derive(Debug, Clone)]
pub struct Rope {
    short_inv_freq: Vec<f64>,
    long_inv_freq: Option<Vec<f64>>,
    attention_scaling: f64,
    original_max_position_embeddings: usize,
}

impl Rope {
    /// Frequencies for `cfg` (`rotary_dim = head_dim * partial_rotary_factor`).
    pub fn new(cfg: &Phi3Config) -> Self {
        let dim = cfg.rotary_dim();
        let base: Vec<f64> = (0..dim).step_by(2).map(|i| cfg.rope_theta.powf(i as f64 / dim as f64)).collect();
        match &cfg.rope_scaling {
            None => Rope {
                short_inv_freq: base.iter().map(|b| 1.0 / b).collect(),
                long_inv_freq: None,
                attention_scaling: 1.0,
                original_max_position_embeddings: cfg.original_max_position_embeddings,
            },
            Some(s) => {
                // transformers: factor = max_position_embeddings / original_max_position_embeddings, and
                // attention_factor = sqrt(1 + ln(factor) / ln(original)) unless given explicitly.
                let orig = cfg.original_max_position_embeddings as f64;
                let factor = cfg.max_position_embeddings as f64 / orig;
                let attention_scaling = s.attention_factor.unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / orig.ln()).sqrt()
                });
                let inv = |f: &[f64]| base.iter().zip(f).map(|(b, e)| 1.0 / (e * b)).collect::<Vec<_>>();
                Rope {
                    short_inv_freq: inv(&s.short_factor),
                    long_inv_freq: Some(inv(&s.long_factor)),
                    attention_scaling,
                    original_max_position_embeddings: cfg.original_max_position_embeddings,
                }
            }
        }
    }

    /// The multiplier applied to cos and sin (1 without longrope).
    pub fn attention_scaling(&self) -> f64 {
        self.attention_scaling
    }

    /// `cos` and `sin` of every position, flat `(n, r/2)` f32 values; see [`Self::cos_sin`].
    pub fn cos_sin_values(&self, positions: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let max_pos = positions.iter().copied().max().unwrap_or(0) as usize;
        let inv = match &self.long_inv_freq {
            Some(long) if max_pos + 1 > self.original_max_position_embeddings => long,
            _ => &self.short_inv_freq,
        };
        let mut cos = Vec::with_capacity(positions.len() * inv.len());
        let mut sin = Vec::with_capacity(positions.len() * inv.len());
        for &p in positions {
            for f in inv {
                // transformers computes the angle in f32; so do we, for bit-closeness at long positions.
                let angle = (p as f32 * *f as f32) as f64;
                cos.push((angle.cos() * self.attention_scaling) as f32);
                sin.push((angle.sin() * self.attention_scaling) as f32);
            }
        }
        (cos, sin)
    }

    /// `cos` and `sin` of every position, shaped (n, r/2) in f32. As in transformers, the long factors
    /// are used for the whole call when its largest position + 1 exceeds `original_max_position_embeddings`.
    pub fn cos_sin(&self, positions: &[u32], device: &Device) -> Result<(Tensor, Tensor)> {
        let (cos, sin) = self.cos_sin_values(positions);
        let half = self.short_inv_freq.len();
        let n = positions.len();
        Ok((Tensor::from_vec(cos, (n, half), device)?, Tensor::from_vec(sin, (n, half), device)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LongRope;

    #[test]
    fn longrope_switches_factors_and_scales_attention() {
        let mut cfg = Phi3Config::tiny();
        cfg.max_position_embeddings = 4096 * 32;
        cfg.rope_scaling =
            Some(LongRope { short_factor: vec![1.0; 32], long_factor: vec![4.0; 32], attention_factor: None });
        let r = Rope::new(&cfg);
        let expect = (1.0f64 + (32f64).ln() / (4096f64).ln()).sqrt();
        assert!((r.attention_scaling() - expect).abs() < 1e-12);
        let dev = Device::Cpu;
        let (c_short, _) = r.cos_sin(&[1], &dev).expect("cos");
        let (c_long, _) = r.cos_sin(&[1, 5000], &dev).expect("cos");
        let s = c_short.to_vec2::<f32>().expect("vec");
        let l = c_long.to_vec2::<f32>().expect("vec");
        // Frequency 1 of position 1: cos(1 / 4096^(2/64)) short vs cos(1 / (4 * ...)) long.
        let base = 10000f64.powf(2.0 / 64.0);
        assert!((s[0][1] as f64 - (1.0 / base).cos() * expect).abs() < 1e-6);
        assert!((l[0][1] as f64 - (1.0 / (4.0 * base)).cos() * expect).abs() < 1e-6);
    }
}
