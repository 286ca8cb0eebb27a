//! The training figure of `phi4r-actors bench model`: the learner's own optimizer step
//! ([`Learner::train_step`]: forward, masked LM loss, backward, global-norm clipping, the finite check and
//! AdamW), timed on random tokens, so the speed the README reports is the product's, not a loop of the
//! benchmark's own.
//!
//! And `phi4r-actors bench rl`: one GRPO iteration end to end ([`time_grpo_iterations`]: a frozen copy
//! of the weights, [`GroupSampler::sample`] (generate + decode + verify), [`RlBatch::from_groups`], then
//! [`Learner::rl_step`]), with each phase timed.

use crate::batch::LmBatch;
use crate::config::{Stage, StageConfig};
use crate::error::{Error, Result};
use crate::grads::clip_grad_norm;
use crate::learner::Learner;
use crate::optim::AdamW;
use crate::rl::{LossAgg, Overlong, RlAlgo, RlBatch, RlConfig};
use crate::schedule::Decay;
use candle_core::Var;
use phi4r_model::bench::{median, Reps};
use phi4r_model::loss::token_logps;
use phi4r_model::{Tokenizer, TrainableModel};
use phi4r_replay::{Group, GroupSampler, PolicyVersion, Prompt, PromptId, TemperatureSchedule};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// What the timed steps did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainTiming {
    /// Seconds of each measured step.
    pub sec_per_step_all: Vec<f64>,
    /// Loss of the first step (warm-up included).
    pub first_loss: f64,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Steps skipped for a non-finite loss or gradient (0 in a healthy run).
    pub skipped: usize,
}

/// The stage config of the timed step: one micro-batch of `b` rows of `t` tokens, lr 1e-4 constant, the
/// stage defaults otherwise (gradient clipping at 1.0, AdamW as the stages run it).
pub fn bench_config(b: usize, t: usize) -> StageConfig {
    StageConfig {
        seq_len: t,
        batch_size: b,
        micro_batch: b,
        lr: 1e-4,
        warmup_ratio: 0.0,
        decay: Decay::Constant,
        ..StageConfig::seed(Stage::Sft)
    }
}

/// Runs `reps.warmup` untimed and `reps.measured` timed [`Learner::train_step`]s of `model` on one
/// batch of `b` rows × `t` random tokens (ids `3..vocab`, every position a target).
pub fn time_train_steps(model: TrainableModel, b: usize, t: usize, reps: Reps, seed: u64) -> Result<TrainTiming> {
    let vocab = model.model.config().vocab_size as u32;
    let total = (reps.warmup + reps.measured) as u64;
    let mut learner = Learner::new(model, bench_config(b, t), total)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let rows: Vec<(Vec<u32>, Vec<u8>)> =
        (0..b).map(|_| ((0..t).map(|_| rng.random_range(3..vocab.max(4))).collect(), vec![1u8; t])).collect();
    let batch = [LmBatch::from_padded(&rows, 0)?];
    let mut timing = TrainTiming { sec_per_step_all: vec![], first_loss: f64::NAN, final_loss: f64::NAN, skipped: 0 };
    for i in 0..reps.warmup + reps.measured {
        let t0 = Instant::now();
        let ev = learner.train_step(&batch)?;
        let dt = t0.elapsed().as_secs_f64();
        if i >= reps.warmup {
            timing.sec_per_step_all.push(dt);
        }
        if i == 0 {
            timing.first_loss = ev.loss;
        }
        timing.final_loss = ev.loss;
        timing.skipped += usize::from(ev.skipped);
    }
    Ok(timing)
}

/// What one GRPO iteration samples and trains (the TRL peer's part `e`: 2 prompts × 8 completions of
/// 128 new tokens, one update at lr 1e-5, `beta` 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GrpoBenchSetup {
    /// Prompts per iteration (a fresh pair each iteration, as TRL's sampler draws new ones each step).
    pub prompts: usize,
    /// Completions per prompt (G).
    pub group_size: usize,
    /// New tokens per completion. Every completion runs to this length: the sampler gets no stop ids, so
    /// each iteration samples and trains a fixed amount of work.
    pub max_new_tokens: usize,
    /// `rl.kl_coef` (TRL's `beta`): above 0 the update runs the reference forward too.
    pub kl_coef: f64,
    /// Constant learning rate.
    pub lr: f64,
    /// Seed of the prompts and of the sampling streams.
    pub seed: u64,
}

impl Default for GrpoBenchSetup {
    fn default() -> Self {
        GrpoBenchSetup { prompts: 2, group_size: 8, max_new_tokens: 128, kl_coef: 0.0, lr: 1e-5, seed: 0 }
    }
}

/// The stage config of the timed iteration: stage rl, one micro-batch holding every completion (TRL's
/// `per_device_train_batch_size` 16), constant lr, temperature 1, GRPO with std normalization and a
/// symmetric clip of 0.2 (TRL's `epsilon`), token-mean aggregation (TRL's default `loss_type = "dapo"`),
/// gradient clipping at 1.0 and AdamW without weight decay (transformers' defaults).
pub fn grpo_bench_config(setup: &GrpoBenchSetup, seq_len: usize, steps: u64) -> StageConfig {
    let rows = (setup.prompts * setup.group_size).max(1);
    StageConfig {
        seq_len,
        batch_size: rows,
        micro_batch: rows,
        lr: setup.lr,
        max_steps: Some(steps),
        warmup_ratio: 0.0,
        decay: Decay::Constant,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seed: setup.seed,
        rl: RlConfig {
            group_size: setup.group_size,
            prompts_per_step: setup.prompts,
            max_new_tokens: setup.max_new_tokens,
            algo: RlAlgo::Grpo { norm_std: true, eps_low: 0.2, eps_high: 0.2 },
            kl_coef: setup.kl_coef,
            loss_agg: LossAgg::TokenMean,
            temperature: TemperatureSchedule::Constant { temperature: 1.0 },
            // TRL's peer trains every completion; a random model's are all cut at the limit.
            overlong: Overlong::Off,
            ..RlConfig::default()
        },
        ..StageConfig::seed(Stage::Rl)
    }
}

/// `n` prompts of the synthetic task's tiers 1 to `tiers` (cycled): each problem's bare expression, e.g.
/// `(15 + 12) * 2`, through the chat template as `stage rl` feeds prompts ([`phi4r_data::prompt_ids`]);
/// deterministic in `seed`. TRL's peer prompts are `"Problem: Compute <expression>.\nSolution:"` in a
/// tokenizer trained on that text, ~16 tokens; those words cost our tokenizer (trained on the chat-formatted
/// task) 16 tokens before the expression, so the bench keeps the expression and the length, not the words.
pub fn bench_prompts(tokenizer: &Tokenizer, n: usize, tiers: usize, seed: u64) -> Result<Vec<Prompt>> {
    let specs = phi4r_data::TierSpec::defaults();
    let tiers = tiers.clamp(1, specs.len());
    let template = phi4r_data::ChatTemplate::default();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let tier = i % tiers;
            let p = phi4r_data::generate(tier as u8 + 1, &specs[tier], format!("bench-{i}"), &mut rng);
            let ids = phi4r_data::prompt_ids(&template, tokenizer, &p.expression())
                .map_err(|e| Error::input("bench_prompts", e.to_string()))?;
            Ok(Prompt { id: PromptId(i as u64 + 1), ids, gold: p.answer.to_string(), tier: p.tier })
        })
        .collect()
}

/// Seconds of each phase of one GRPO iteration. `iteration_s` is the timed iteration itself
/// (`weights_s + sample_and_score_s + batch_s + update_s`, what a synchronous stage-4 step runs); the
/// split of `sample_and_score_s` and of `update_s` comes from probes run right after it, untimed as
/// part of the iteration, on the same data: `scoring_s` decodes and verifies the completions again,
/// `policy_fwd_bwd_s` is [`crate::rl_step`] (forward, log-probs, clipped surrogate, entropy, backward)
/// and `policy_forward_s` its forward and log-probs alone,
/// `reference_s` the reference forward and its log-probs (0 when `kl_coef` is 0: no reference pass), and
/// `optimizer_s` global-norm clipping and AdamW on copies of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct GrpoPhases {
    /// The whole iteration.
    pub iteration_s: f64,
    /// The frozen copy of the weights the sampler reads (`Phi3::frozen`).
    pub weights_s: f64,
    /// [`GroupSampler::sample`]: generation, then decode + verify.
    pub sample_and_score_s: f64,
    /// Its generation part (`sample_and_score_s − scoring_s`).
    pub sampling_s: f64,
    /// Its decode + verify part (probe).
    pub scoring_s: f64,
    /// [`RlBatch::from_groups`]: advantages, padding, the aligned sampler log-probs.
    pub batch_s: f64,
    /// π_old's log-probs: always 0, since they are the sampler's, returned by generation (TRL skips this
    /// forward too when one update follows each generation).
    pub old_logps_s: f64,
    /// [`Learner::rl_step`], the product's update.
    pub update_s: f64,
    /// The policy's forward and backward (probe).
    pub policy_fwd_bwd_s: f64,
    /// Of which the forward and the per-token log-probs alone (probe; compare TRL's
    /// `_get_per_token_logps_and_entropies`): the rest is the surrogate, the entropy metric and backward.
    pub policy_forward_s: f64,
    /// The reference forward (probe; 0 without a KL term).
    pub reference_s: f64,
    /// Clipping + AdamW (probe).
    pub optimizer_s: f64,
}

/// What [`time_grpo_iterations`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrpoTiming {
    /// Each measured iteration's phases (warm-up excluded).
    pub iterations: Vec<GrpoPhases>,
    /// Mean prompt length, tokens.
    pub prompt_tokens_mean: f64,
    /// Mean completion length, tokens.
    pub completion_tokens_mean: f64,
    /// Mean reward over every sampled completion (−1 for a random model: every group has advantage 0,
    /// and the update still runs in full, as TRL's does).
    pub reward_mean: f64,
    /// Updates skipped for a non-finite loss or gradient.
    pub skipped: usize,
}

impl GrpoTiming {
    /// Each measured iteration's value of `phase`.
    pub fn all(&self, phase: impl Fn(&GrpoPhases) -> f64) -> Vec<f64> {
        self.iterations.iter().map(phase).collect()
    }

    /// The median over measured iterations of `phase`.
    pub fn median(&self, phase: impl Fn(&GrpoPhases) -> f64) -> f64 {
        median(&self.all(phase))
    }

    /// Every phase's median, keyed by its field name.
    pub fn phase_medians(&self) -> GrpoPhases {
        GrpoPhases {
            iteration_s: self.median(|p| p.iteration_s),
            weights_s: self.median(|p| p.weights_s),
            sample_and_score_s: self.median(|p| p.sample_and_score_s),
            sampling_s: self.median(|p| p.sampling_s),
            scoring_s: self.median(|p| p.scoring_s),
            batch_s: self.median(|p| p.batch_s),
            old_logps_s: self.median(|p| p.old_logps_s),
            update_s: self.median(|p| p.update_s),
            policy_fwd_bwd_s: self.median(|p| p.policy_fwd_bwd_s),
            policy_forward_s: self.median(|p| p.policy_forward_s),
            reference_s: self.median(|p| p.reference_s),
            optimizer_s: self.median(|p| p.optimizer_s),
        }
    }
}

/// Decodes and verifies every completion of the groups again, as [`GroupSampler::sample`] does after
/// generating (the sampler keeps its tokenizer and verifier to itself, so the caller passes the same
/// pair in); returns how many are correct.
pub type Rescore<'a> = dyn Fn(&[Group]) -> std::result::Result<usize, String> + 'a;

/// Runs `reps.warmup` untimed and `reps.measured` timed GRPO iterations of `model` (stage rl, config
/// [`grpo_bench_config`]): each takes a frozen copy of the weights, samples `setup.group_size`
/// completions of `setup.prompts` fresh prompts from `prompts` (cycled) with `sampler`, builds the
/// [`RlBatch`] and takes one [`Learner::rl_step`]; then probes split the sampling and the update into
/// phases ([`GrpoPhases`]). `sampler` must have no stop ids, so every completion is
/// `setup.max_new_tokens` long.
pub fn time_grpo_iterations(
    model: TrainableModel,
    sampler: &GroupSampler,
    rescore: &Rescore,
    prompts: &[Prompt],
    setup: &GrpoBenchSetup,
    reps: Reps,
) -> Result<GrpoTiming> {
    if prompts.len() < setup.prompts || setup.prompts == 0 || setup.group_size == 0 {
        return Err(Error::input(
            "time_grpo_iterations",
            format!("{} prompts for {} per iteration (G {})", prompts.len(), setup.prompts, setup.group_size),
        ));
    }
    let total = reps.warmup + reps.measured;
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(1);
    let cfg = grpo_bench_config(setup, longest + setup.max_new_tokens + 1, total as u64);
    // The reference is the initial weights, as `stage rl` defaults it; the probe reads its own copy.
    let reference = (setup.kl_coef > 0.0).then(|| model.model.frozen()).transpose()?;
    let learner_reference = (setup.kl_coef > 0.0).then(|| model.model.frozen()).transpose()?;
    let mut learner = Learner::new(model, cfg.clone(), total as u64)?;
    if let Some(r) = learner_reference {
        learner = learner.with_reference(r);
    }
    // The optimizer probe updates copies, so the learner's weights and moments are the product's own.
    let copies = learner
        .trainable()
        .vars()
        .into_iter()
        .map(|(n, v)| Ok((n, Var::from_tensor(&v.as_tensor().copy()?)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut probe_opt = AdamW::new(copies, cfg.adamw())?;
    let mut timing = GrpoTiming {
        iterations: Vec::with_capacity(reps.measured),
        prompt_tokens_mean: 0.0,
        completion_tokens_mean: 0.0,
        reward_mean: 0.0,
        skipped: 0,
    };
    let (mut prompt_tokens, mut completion_tokens, mut reward, mut completions) = (0usize, 0usize, 0f64, 0usize);
    for i in 0..total {
        let chosen: Vec<Prompt> =
            (0..setup.prompts).map(|k| prompts[(i * setup.prompts + k) % prompts.len()].clone()).collect();
        let step = learner.state().step;
        // The timed iteration: what a synchronous stage-4 step runs.
        let t0 = Instant::now();
        let policy = learner.model().frozen()?;
        let t1 = Instant::now();
        let seed = setup.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let groups = sampler
            .sample(&policy, &chosen, setup.group_size, 1.0, setup.max_new_tokens, seed, PolicyVersion(step))
            .map_err(|e| Error::input("time_grpo_iterations", e.to_string()))?;
        let t2 = Instant::now();
        drop(policy);
        let (batches, _) = RlBatch::from_groups(&groups, &cfg.rl, cfg.micro_batch, sampler.pad_id())?;
        let t3 = Instant::now();
        let ev = learner.rl_step(&batches)?;
        let t4 = Instant::now();
        // Probes, outside the timed iteration.
        let s0 = Instant::now();
        rescore(&groups).map_err(|e| Error::input("time_grpo_iterations", e))?;
        let scoring_s = s0.elapsed().as_secs_f64();
        let (mut fwd_bwd_s, mut forward_s, mut reference_s, mut optimizer_s) = (0.0, 0.0, 0.0, 0.0);
        let vars: Vec<Var> = learner.trainable().vars().into_iter().map(|(_, v)| v).collect();
        for b in &batches {
            let p0 = Instant::now();
            let out = crate::step::rl_step(
                learner.model(),
                &vars,
                None,
                b,
                &cfg.rl.algo,
                0.0,
                cfg.rl.loss_agg,
                b.completion_tokens() as f64 / ev.rl.completion_tokens.max(1) as f64,
                None,
                None,
            )?;
            fwd_bwd_s += p0.elapsed().as_secs_f64();
            forward_s += time_logps(learner.model(), b)?;
            if let Some(r) = &reference {
                reference_s += time_logps(r, b)?;
            }
            let mut grads = out.grads;
            let p2 = Instant::now();
            clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
            probe_opt.step(&grads, cfg.lr)?;
            optimizer_s += p2.elapsed().as_secs_f64();
        }
        let sample_and_score_s = (t2 - t1).as_secs_f64();
        for g in &groups {
            for c in &g.completions {
                prompt_tokens += g.prompt.ids.len();
                completion_tokens += c.tokens.len();
                reward += f64::from(c.reward);
                completions += 1;
            }
        }
        timing.skipped += usize::from(ev.step.skipped);
        if i >= reps.warmup {
            timing.iterations.push(GrpoPhases {
                iteration_s: (t4 - t0).as_secs_f64(),
                weights_s: (t1 - t0).as_secs_f64(),
                sample_and_score_s,
                sampling_s: (sample_and_score_s - scoring_s).max(0.0),
                scoring_s,
                batch_s: (t3 - t2).as_secs_f64(),
                old_logps_s: 0.0,
                update_s: (t4 - t3).as_secs_f64(),
                policy_fwd_bwd_s: fwd_bwd_s,
                policy_forward_s: forward_s,
                reference_s,
                optimizer_s,
            });
        }
    }
    let n = completions.max(1) as f64;
    timing.prompt_tokens_mean = prompt_tokens as f64 / n;
    timing.completion_tokens_mean = completion_tokens as f64 / n;
    timing.reward_mean = reward / n;
    Ok(timing)
}

/// Seconds of `model`'s forward over `batch` and its per-token log-probs (read back, so the work is done).
fn time_logps(model: &phi4r_model::Phi3, batch: &RlBatch) -> Result<f64> {
    let t0 = Instant::now();
    let tensors = batch.lm().tensors(model.device())?;
    let logits = model.forward(&tensors.input_ids, batch.lm().layout())?;
    let _ = token_logps(&logits, &tensors.targets)?.sum_all()?.to_scalar::<f32>()?;
    Ok(t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn times_the_learners_step_and_trains() -> Result<()> {
        let mut cfg = phi4r_model::Phi3Config::tiny();
        (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (64, 32, 64, 1);
        let model = TrainableModel::init(&cfg, 0, DType::F32, &Device::Cpu)?;
        let reps = Reps { warmup: 1, measured: 3 };
        let t = time_train_steps(model, 2, 16, reps, 1)?;
        assert_eq!(t.sec_per_step_all.len(), 3);
        assert!(t.sec_per_step_all.iter().all(|s| *s > 0.0));
        assert_eq!(t.skipped, 0);
        // Four real steps on one fixed batch lower its loss.
        assert!(t.final_loss < t.first_loss, "{} -> {}", t.first_loss, t.final_loss);
        Ok(())
    }

    fn tiny_tokenizer() -> Result<Tokenizer> {
        let texts = ["Problem: Compute (15 + 12) * 2.\nSolution: 15 + 12 = 27. The answer is 54."; 4];
        Ok(Tokenizer::train_bpe(texts.iter(), 300)?)
    }

    #[test]
    fn a_grpo_iteration_runs_and_reports_every_phase() -> Result<()> {
        let tok = tiny_tokenizer()?;
        let mut cfg = phi4r_model::Phi3Config::tiny();
        (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (tok.vocab_size(), 32, 64, 1);
        let verifier = phi4r_verifier::Verifier::default();
        let sampler = GroupSampler::new(tok.clone(), vec![], verifier.clone(), 16)
            .map_err(|e| Error::input("test", e.to_string()))?;
        let rescore = |groups: &[Group]| -> std::result::Result<usize, String> {
            let mut correct = 0;
            for g in groups {
                for c in &g.completions {
                    let text = tok.decode(&c.tokens).map_err(|e| e.to_string())?;
                    correct += usize::from(verifier.verify_with(&g.prompt.gold, &text, c.truncated).correct);
                }
            }
            Ok(correct)
        };
        let prompts = bench_prompts(&tok, 4, 2, 0)?;
        assert!(prompts.iter().all(|p| !p.ids.is_empty() && !p.gold.is_empty()));
        for kl_coef in [0.0, 0.1] {
            let setup = GrpoBenchSetup { prompts: 2, group_size: 2, max_new_tokens: 6, kl_coef, lr: 1e-5, seed: 3 };
            let model = TrainableModel::init(&cfg, 0, DType::F32, &Device::Cpu)?;
            let t = time_grpo_iterations(model, &sampler, &rescore, &prompts, &setup, Reps { warmup: 1, measured: 2 })?;
            assert_eq!(t.iterations.len(), 2);
            assert_eq!((t.completion_tokens_mean, t.skipped), (6.0, 0));
            assert!(t.prompt_tokens_mean > 0.0 && (-1.0..=1.0).contains(&t.reward_mean));
            for p in &t.iterations {
                for (name, s) in [
                    ("iteration", p.iteration_s),
                    ("sampling", p.sampling_s),
                    ("scoring", p.scoring_s),
                    ("update", p.update_s),
                    ("fwd_bwd", p.policy_fwd_bwd_s),
                    ("forward", p.policy_forward_s),
                    ("optimizer", p.optimizer_s),
                ] {
                    assert!(s > 0.0, "{name}: {s}");
                }
                assert_eq!(p.old_logps_s, 0.0);
                assert_eq!(p.reference_s > 0.0, kl_coef > 0.0);
                let parts = p.weights_s + p.sample_and_score_s + p.batch_s + p.update_s;
                assert!(parts <= p.iteration_s * (1.0 + 1e-9) && parts > 0.9 * p.iteration_s, "{p:?}");
            }
            let m = t.phase_medians();
            assert_eq!(m.iteration_s, t.median(|p| p.iteration_s));
        }
        Ok(())
    }
}
