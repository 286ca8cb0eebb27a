//! Choosing the next token from a row of logits: temperature, top-k, top-p, and the log-probability
//! of the choice both under the sampling distribution and under the unmodified policy.

use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Sampling parameters (transformers' `generate` names and meanings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
    /// End-of-sequence tokens cannot end a sequence before this many new tokens (HF `min_new_tokens`).
    pub min_new_tokens: usize,
    /// Stop when the generated text contains one of these strings.
    pub stop_strings: Vec<String>,
    /// Seed of the per-row random streams.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            min_new_tokens: 0,
            stop_strings: vec![],
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Config { key: "temperature", reason: format!("{} must be >= 0", self.temperature) });
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Config { key: "top_p", reason: format!("{} is not in (0, 1]", self.top_p) });
        }
        if self.max_new_tokens == 0 {
            return Err(Error::Config { key: "max_new_tokens", reason: "must be positive".into() });
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(Error::Config { key: "min_new_tokens", reason: "exceeds max_new_tokens".into() });
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(Error::Config {
                key: "stop_strings",
                reason: "an empty stop string would stop at once".into(),
            });
        }
        Ok(())
    }
}

/// One sampled token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    /// The token id.
    pub token: u32,
    /// Its log-probability under the distribution it was drawn from (after temperature, top-k, top-p;
    /// 0 for greedy).
    pub logprob: f32,
    /// Its log-probability under the raw policy (softmax of the logits at temperature 1).
    pub policy_logprob: f32,
}

fn log_softmax_at(logits: &[f32], idx: usize, scale: f32) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
    let sum: f32 = logits.iter().map(|&x| (x * scale - max).exp()).sum();
    logits[idx] * scale - max - sum.ln()
}

/// Draws the next token from one row of logits. Tokens in `banned` get probability 0 (used for
/// `min_new_tokens`).
pub fn sample(logits: &[f32], cfg: &SamplingConfig, banned: &[u32], rng: &mut impl Rng) -> Sampled {
    let allowed = |i: usize| !banned.contains(&(i as u32));
    if cfg.temperature == 0.0 {
        let mut best = None::<(usize, f32)>;
        for (i, &x) in logits.iter().enumerate() {
            if allowed(i) && best.is_none_or(|(_, b)| x > b) {
                best = Some((i, x));
            }
        }
        let token = best.map_or(0, |(i, _)| i);
        return Sampled { token: token as u32, logprob: 0.0, policy_logprob: log_softmax_at(logits, token, 1.0) };
    }
    let inv_t = 1.0 / cfg.temperature;
    // Candidates with their scaled logits; banned tokens never enter.
    let mut cand: Vec<(u32, f32)> =
        logits.iter().enumerate().filter(|(i, _)| allowed(*i)).map(|(i, &x)| (i as u32, x * inv_t)).collect();
    if cfg.top_k > 0 && cfg.top_k < cand.len() {
        cand.select_nth_unstable_by(cfg.top_k - 1, |a, b| b.1.total_cmp(&a.1));
        cand.truncate(cfg.top_k);
    }
    let max = cand.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.1));
    let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let mut total: f32 = probs.iter().sum();
    if cfg.top_p < 1.0 {
        let mut order: Vec<usize> = (0..cand.len()).collect();
        order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let mut acc = 0.0;
        let mut keep = vec![false; cand.len()];
        for &i in &order {
            keep[i] = true;
            acc += probs[i] / total;
            if acc >= cfg.top_p {
                break;
            }
        }
        for (p, k) in probs.iter_mut().zip(&keep) {
            if !k {
                *p = 0.0;
            }
        }
        total = probs.iter().sum();
    }
    let mut u = rng.random::<f32>() * total;
    let mut pick = cand.len() - 1;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            pick = i;
            if u < p {
                break;
            }
            u -= p;
        }
    }
    let token = cand[pick].0;
    Sampled { token, logprob: (probs[pick] / total).ln(), policy_logprob: log_softmax_at(logits, token as usize, 1.0) }
}

/// Sampling temperature as a function of the training step (stage 4's annealing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TemperatureSchedule {
    /// The same temperature throughout.
    Constant {
        /// The temperature.
        temperature: f32,
    },
    /// Linear from `start` to `end` over `steps`, then `end` (the recipe: 1.0 → 0.6).
    Linear {
        /// Temperature at step 0.
        start: f32,
        /// Temperature from `steps` on.
        end: f32,
        /// Length of the decay.
        steps: u64,
    },
}

impl TemperatureSchedule {
    /// Temperature at `step`.
    pub fn at(&self, step: u64) -> f32 {
        match *self {
            TemperatureSchedule::Constant { temperature } => temperature,
            TemperatureSchedule::Linear { start, end, steps } => {
                if steps == 0 || step >= steps {
                    end
                } else {
                    start + (end - start) * step as f32 / steps as f32
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn cfg(t: f32, p: f32, k: usize) -> SamplingConfig {
        SamplingConfig { temperature: t, top_p: p, top_k: k, ..Default::default() }
    }

    #[test]
    fn greedy_picks_argmax_and_respects_bans() {
        let l = [0.1, 3.0, 2.0];
        let mut rng = StdRng::seed_from_u64(0);
        let s = sample(&l, &cfg(0.0, 1.0, 0), &[], &mut rng);
        assert_eq!(s.token, 1);
        assert_eq!(s.logprob, 0.0);
        assert!((s.policy_logprob - log_softmax_at(&l, 1, 1.0)).abs() < 1e-6);
        assert_eq!(sample(&l, &cfg(0.0, 1.0, 0), &[1], &mut rng).token, 2);
    }

    #[test]
    fn empirical_frequencies_follow_the_tempered_distribution() {
        let l = [0.0f32, 1.0, 2.0];
        let mut rng = StdRng::seed_from_u64(1);
        let c = cfg(2.0, 1.0, 0);
        let mut counts = [0usize; 3];
        let n = 60_000;
        for _ in 0..n {
            let s = sample(&l, &c, &[], &mut rng);
            counts[s.token as usize] += 1;
            assert!((s.logprob - log_softmax_at(&l, s.token as usize, 0.5)).abs() < 1e-5);
        }
        for (i, &count) in counts.iter().enumerate() {
            let want = log_softmax_at(&l, i, 0.5).exp();
            assert!((count as f32 / n as f32 - want).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn top_k_and_top_p_truncate_and_renormalize() {
        let l = [0.0f32, 1.0, 2.0, 3.0];
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..500 {
            let s = sample(&l, &cfg(1.0, 1.0, 2), &[], &mut rng);
            assert!(s.token >= 2);
            let p2 = (2f32.exp() + 3f32.exp()).ln();
            assert!((s.logprob - (l[s.token as usize] - p2)).abs() < 1e-5);
        }
        // p(3) = 0.644, p(2) = 0.237: top_p = 0.5 keeps token 3 only.
        for _ in 0..100 {
            let s = sample(&l, &cfg(1.0, 0.5, 0), &[], &mut rng);
            assert_eq!(s.token, 3);
            assert!(s.logprob.abs() < 1e-6);
        }
    }

    #[test]
    fn temperature_anneals_linearly_then_holds() {
        let s = TemperatureSchedule::Linear { start: 1.0, end: 0.6, steps: 100 };
        assert_eq!(s.at(0), 1.0);
        assert!((s.at(50) - 0.8).abs() < 1e-6);
        assert_eq!(s.at(100), 0.6);
        assert_eq!(s.at(1000), 0.6);
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = cfg(-1.0, 1.0, 0).validate().unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        let e = cfg(1.0, 0.0, 0).validate().unwrap_err().to_string();
        assert!(e.contains("top_p"), "{e}");
    }
}
