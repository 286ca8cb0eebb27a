//! Batched generation over an explicit KV cache, from frozen weights.
//!
//! Prompts of different lengths are left-padded into one batch; every step appends one token per
//! unfinished row. Sampling weights must be a frozen copy ([`phi4r_model::Phi3::frozen`]): decoding from
//! trainable `Var`s would keep every step's autograd graph alive through the cache.

use crate::error::{Error, Result};
use crate::sampling::{sample, SamplingConfig};
use candle_core::{DType, Tensor};
use phi4r_model::{KvCache, LogitsAt, Phi3, Tokenizer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::ops::Deref;

/// Why a sequence ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was sampled (it is the last token).
    Eos,
    /// The generated text contains this stop string (the token completing it is the last token).
    Stop(String),
    /// `max_new_tokens` was reached.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// New token ids (the prompt excluded).
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the sampling distribution.
    pub logprobs: Vec<f32>,
    /// Log-probability of each token under the policy at temperature 1 (for importance ratios).
    pub policy_logprobs: Vec<f32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// What ends a sequence besides its length.
#[derive(Debug, Clone, Default)]
pub struct StopRule<'a> {
    /// End-of-sequence ids (for the chat template: EOS and `<|end|>`).
    pub eos_ids: Vec<u32>,
    /// Needed to match `stop_strings`.
    pub tokenizer: Option<&'a Tokenizer>,
}

/// Per-row random stream: results depend on the seed and the row, not on thread timing.
fn row_rng(seed: u64, row: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (row as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn stop_hit(cfg: &SamplingConfig, tok: Option<&Tokenizer>, tokens: &[u32]) -> Result<Option<String>> {
    let (Some(tok), false) = (tok, cfg.stop_strings.is_empty()) else { return Ok(None) };
    // Only the tail can contain a stop string that was completed by the newest token.
    let longest = cfg.stop_strings.iter().map(String::len).max().unwrap_or(0);
    let tail = &tokens[tokens.len().saturating_sub(longest + 2)..];
    let text = tok.decode(tail)?;
    Ok(cfg.stop_strings.iter().find(|s| text.contains(s.as_str())).cloned())
}

/// Generates a continuation of every prompt.
pub fn generate(model: &Phi3, prompts: &[Vec<u32>], cfg: &SamplingConfig, stop: &StopRule) -> Result<Vec<Generation>> {
    Ok(generate_in_flight(model, prompts, cfg, stop, &mut || None)?.generations)
}

/// What [`generate_in_flight`] returns.
#[derive(Debug)]
pub struct InFlight<W> {
    /// One continuation per prompt.
    pub generations: Vec<Generation>,
    /// For each set of weights `refresh` handed over, in order: the index of the first new token sampled
    /// from it (all rows decode in step, so token `i` of every row was sampled by the weights in force
    /// at step `i`).
    pub switches: Vec<usize>,
    /// The weights in force at the end (the last ones handed over, else the first).
    pub last: W,
}

/// [`generate`] with in-flight weight updates (PipelineRL's scheme): before each decoding step after the
/// first, `refresh` may hand over newer weights, which sample every later token. The KV cache is kept:
/// the keys and values of earlier tokens stay those of the weights that computed them. Each token's
/// log-probabilities are those of the weights that sampled it, so importance ratios stay per token.
/// New weights must have the same architecture, dtype and device.
pub fn generate_in_flight<W: Deref<Target = Phi3>>(
    model: W,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    stop: &StopRule,
    refresh: &mut dyn FnMut() -> Option<W>,
) -> Result<InFlight<W>> {
    let mut model = model;
    let mut switches = vec![];
    cfg.validate()?;
    if prompts.is_empty() {
        return Ok(InFlight { generations: vec![], switches, last: model });
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::Input(format!("prompt {i} is empty")));
    }
    if !cfg.stop_strings.is_empty() && stop.tokenizer.is_none() {
        return Err(Error::Config { key: "stop_strings", reason: "matching stop strings needs a tokenizer".into() });
    }
    let b = prompts.len();
    let t0 = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let dev = &model.device().clone();
    let mut flat = Vec::with_capacity(b * t0);
    let mut valid = Vec::with_capacity(b * t0);
    for p in prompts {
        model.check_ids(p)?;
        flat.extend(std::iter::repeat_n(0u32, t0 - p.len()).chain(p.iter().copied()));
        valid.extend(std::iter::repeat_n(0u8, t0 - p.len()).chain(std::iter::repeat_n(1u8, p.len())));
    }
    let mut cache = KvCache::new(model.config(), b, t0 + cfg.max_new_tokens, model.dtype(), dev)?;
    let mut logits =
        model.forward_cached(&Tensor::from_vec(flat, (b, t0), dev)?, &valid, &mut cache, LogitsAt::Last)?;
    let mut rngs: Vec<StdRng> = (0..b).map(|r| row_rng(cfg.seed, r)).collect();
    let mut out: Vec<Generation> = (0..b)
        .map(|_| Generation { tokens: vec![], logprobs: vec![], policy_logprobs: vec![], finish: FinishReason::Length })
        .collect();
    let mut done = vec![false; b];
    // `live[i]`: the prompt whose row is row `i` of the cache and of `logits`. Finished rows are
    // dropped from both once they are a quarter of the batch (`KvCache::retain`), so a batch whose
    // completions end at different lengths stops paying for the ended ones; the rows kept decode
    // exactly as they would have.
    let mut live: Vec<usize> = (0..b).collect();
    for step in 0..cfg.max_new_tokens {
        let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let banned: &[u32] = if step < cfg.min_new_tokens { &stop.eos_ids } else { &[] };
        let mut next = vec![0u32; live.len()];
        let mut next_valid = vec![0u8; live.len()];
        for (i, &r) in live.iter().enumerate() {
            if done[r] {
                continue;
            }
            let s = sample(&rows[i], cfg, banned, &mut rngs[r]);
            let g = &mut out[r];
            g.tokens.push(s.token);
            g.logprobs.push(s.logprob);
            g.policy_logprobs.push(s.policy_logprob);
            if stop.eos_ids.contains(&s.token) {
                g.finish = FinishReason::Eos;
                done[r] = true;
            } else if let Some(hit) = stop_hit(cfg, stop.tokenizer, &g.tokens)? {
                g.finish = FinishReason::Stop(hit);
                done[r] = true;
            } else {
                next[i] = s.token;
                next_valid[i] = 1;
            }
        }
        if done.iter().all(|&d| d) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let ended = live.iter().filter(|&&r| done[r]).count();
        if ended > 0 && ended * 4 >= live.len() {
            let keep: Vec<usize> = (0..live.len()).filter(|&i| !done[live[i]]).collect();
            cache.retain(&keep)?;
            next = keep.iter().map(|&i| next[i]).collect();
            next_valid = keep.iter().map(|&i| next_valid[i]).collect();
            live = keep.iter().map(|&i| live[i]).collect();
        }
        if let Some(newer) = refresh() {
            if newer.config() != model.config() || newer.dtype() != model.dtype() || !newer.device().same_device(dev) {
                return Err(Error::Input(
                    "in-flight weights differ from the sampling model in architecture, dtype or device".into(),
                ));
            }
            model = newer;
            switches.push(step + 1);
        }
        logits = model.forward_cached(
            &Tensor::from_vec(next, (live.len(), 1), dev)?,
            &next_valid,
            &mut cache,
            LogitsAt::Last,
        )?;
    }
    Ok(InFlight { generations: out, switches, last: model })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use phi4r_model::{AttentionLayout, Phi3Config, TrainableModel};

    fn model() -> Phi3 {
        model_seeded(7)
    }

    fn model_seeded(seed: u64) -> Phi3 {
        let mut c = Phi3Config::tiny();
        c.vocab_size = 40;
        c.hidden_size = 32;
        c.intermediate_size = 32;
        c.num_hidden_layers = 2;
        c.num_key_value_heads = 2;
        TrainableModel::init(&c, seed, DType::F32, &Device::Cpu).and_then(|m| m.model.frozen()).expect("model")
    }

    #[test]
    fn in_flight_weights_sample_later_tokens_over_the_kept_cache() -> anyhow::Result<()> {
        let (a, b) = (model_seeded(7), model_seeded(8));
        let prompt = vec![1u32, 2, 3, 4, 5];
        let cfg = SamplingConfig { temperature: 1.0, max_new_tokens: 8, seed: 3, ..Default::default() };
        let plain = generate(&a, std::slice::from_ref(&prompt), &cfg, &StopRule::default())?;
        // Hand over `b` before the third decoding step: tokens 0..3 come from `a`, the rest from `b`.
        let mut calls = 0;
        let mut refresh = || {
            calls += 1;
            (calls == 3).then_some(&b)
        };
        let r = generate_in_flight(&a, std::slice::from_ref(&prompt), &cfg, &StopRule::default(), &mut refresh)?;
        assert_eq!(r.switches, vec![3]);
        assert!(std::ptr::eq(r.last, &b));
        let g = &r.generations[0];
        assert_eq!(g.tokens[..3], plain[0].tokens[..3], "before the switch nothing changes");
        assert_eq!(g.logprobs[..3], plain[0].logprobs[..3]);
        assert_ne!(g.logprobs[3..], plain[0].logprobs[3..], "after it, the new weights sample");
        // Token 3's log-prob is `b`'s over a cache whose first positions `a` computed.
        let dev = Device::Cpu;
        let mut prefix = prompt.clone();
        prefix.extend(&g.tokens[..2]);
        let mut cache = phi4r_model::KvCache::new(a.config(), 1, 16, DType::F32, &dev)?;
        a.forward_cached(&Tensor::new(prefix.as_slice(), &dev)?.unsqueeze(0)?, &[1; 7], &mut cache, LogitsAt::Last)?;
        let logits =
            b.forward_cached(&Tensor::new(&[g.tokens[2]], &dev)?.unsqueeze(0)?, &[1], &mut cache, LogitsAt::Last)?;
        let want = phi4r_model::ops::log_softmax_last_dim(&logits)?.to_vec2::<f32>()?[0][g.tokens[3] as usize];
        assert!((g.logprobs[3] - want).abs() < 1e-4, "{} vs {want}", g.logprobs[3]);
        // Recomputing the whole prefix with `b` would give another value: the cache was kept.
        let mut all = prefix.clone();
        all.push(g.tokens[2]);
        let full =
            b.forward(&Tensor::new(all.as_slice(), &dev)?.unsqueeze(0)?, &AttentionLayout::full(1, all.len()))?;
        let fresh = phi4r_model::ops::log_softmax_last_dim(&full.squeeze(0)?)?.to_vec2::<f32>()?[all.len() - 1]
            [g.tokens[3] as usize];
        assert!((fresh - want).abs() > 1e-6, "the test would not tell a kept cache from a recomputed one");
        Ok(())
    }

    #[test]
    fn rows_that_end_early_are_dropped_and_the_others_decode_as_before() -> anyhow::Result<()> {
        let m = model();
        let prompts: Vec<Vec<u32>> =
            vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9], vec![10], vec![11, 12, 13], vec![14, 15, 16, 17, 18]];
        let cfg = SamplingConfig { temperature: 0.0, max_new_tokens: 16, ..Default::default() };
        let full = generate(&m, &prompts, &cfg, &StopRule::default())?;
        // An end token that ends at least two rows (a third of the batch, so it is compacted) early and
        // leaves others running.
        let first_at = |g: &Generation, t: u32| g.tokens.iter().position(|&x| x == t);
        let eos = (0..40u32)
            .find(|&t| {
                let ends: Vec<usize> = full.iter().filter_map(|g| first_at(g, t)).filter(|&i| i < 12).collect();
                ends.len() >= 2 && ends.len() < prompts.len()
            })
            .expect("some token ends a third of the rows early");
        let stopped = generate(&m, &prompts, &cfg, &StopRule { eos_ids: vec![eos], tokenizer: None })?;
        for (g, f) in stopped.iter().zip(&full) {
            let n = first_at(f, eos).map_or(f.tokens.len(), |i| i + 1);
            assert_eq!(g.tokens, f.tokens[..n], "a row decodes the same whether or not others ended");
            assert_eq!(g.logprobs, f.logprobs[..n]);
            let want = if first_at(f, eos).is_some() { FinishReason::Eos } else { FinishReason::Length };
            assert_eq!(g.finish, want);
        }
        Ok(())
    }

    #[test]
    fn in_flight_weights_of_another_shape_are_refused() {
        let a = model();
        let mut c = a.config().clone();
        c.num_hidden_layers = 1;
        let other =
            TrainableModel::init(&c, 1, DType::F32, &Device::Cpu).and_then(|m| m.model.frozen()).expect("model");
        let cfg = SamplingConfig { max_new_tokens: 4, ..Default::default() };
        let e = generate_in_flight(&a, &[vec![1, 2]], &cfg, &StopRule::default(), &mut || Some(&other))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("architecture"), "{e}");
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_logprobs_match_the_model() -> anyhow::Result<()> {
        let m = model();
        let prompts = vec![vec![1, 2, 3, 4, 5], vec![7, 8]];
        let cfg = SamplingConfig { temperature: 1.0, max_new_tokens: 8, seed: 42, ..Default::default() };
        let a = generate(&m, &prompts, &cfg, &StopRule::default())?;
        let b = generate(&m, &prompts, &cfg, &StopRule::default())?;
        assert_eq!(a, b);
        let c = generate(&m, &prompts, &SamplingConfig { seed: 43, ..cfg.clone() }, &StopRule::default())?;
        assert_ne!(a, c);
        // At temperature 1 without truncation both log-probs equal the model's own log-softmax.
        for (p, g) in prompts.iter().zip(&a) {
            assert_eq!(g.tokens.len(), 8);
            assert_eq!(g.finish, FinishReason::Length);
            let mut seq = p.clone();
            seq.extend(&g.tokens[..7]);
            let ids = Tensor::new(seq.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let logits = m.forward(&ids, &AttentionLayout::full(1, seq.len()))?.squeeze(0)?;
            let logp = phi4r_model::ops::log_softmax_last_dim(&logits)?.to_vec2::<f32>()?;
            for (i, &tok) in g.tokens.iter().enumerate() {
                let want = logp[p.len() - 1 + i][tok as usize];
                assert!((g.logprobs[i] - want).abs() < 1e-4, "step {i}: {} vs {want}", g.logprobs[i]);
                assert!((g.policy_logprobs[i] - want).abs() < 1e-4);
            }
        }
        Ok(())
    }

    #[test]
    fn greedy_stops_at_eos_and_min_new_tokens_delays_it() -> anyhow::Result<()> {
        let m = model();
        let prompts = vec![vec![1, 2, 3]];
        let greedy = SamplingConfig { temperature: 0.0, max_new_tokens: 6, ..Default::default() };
        let g = generate(&m, &prompts, &greedy, &StopRule::default())?;
        let first = g[0].tokens[0];
        let stop = StopRule { eos_ids: vec![first], tokenizer: None };
        let g2 = generate(&m, &prompts, &greedy, &stop)?;
        assert_eq!(g2[0].tokens, vec![first]);
        assert_eq!(g2[0].finish, FinishReason::Eos);
        let delayed = SamplingConfig { min_new_tokens: 3, ..greedy };
        let g3 = generate(&m, &prompts, &delayed, &stop)?;
        assert!(g3[0].tokens.len() >= 3 && !g3[0].tokens[..3].contains(&first));
        Ok(())
    }

    #[test]
    fn rejects_empty_prompts_and_out_of_range_ids() {
        let m = model();
        let cfg = SamplingConfig { max_new_tokens: 2, ..Default::default() };
        assert!(generate(&m, &[vec![]], &cfg, &StopRule::default()).is_err());
        let e = generate(&m, &[vec![1, 99]], &cfg, &StopRule::default()).unwrap_err().to_string();
        assert!(e.contains("token id 99"), "{e}");
    }

    #[test]
    fn finish_reasons_serialize_as_the_json_users_read() -> anyhow::Result<()> {
        assert_eq!(serde_json::to_string(&FinishReason::Eos)?, r#""eos""#);
        assert_eq!(serde_json::to_string(&FinishReason::Length)?, r#""length""#);
        assert_eq!(serde_json::to_string(&FinishReason::Stop("\n\n".into()))?, r#"{"stop":"\n\n"}"#);
        Ok(())
    }
}
