//! The [`Learner`]: owns the trainable model, AdamW, the LR schedule, the training state and (for DPO)
//! the frozen reference with its log-prob cache. Each step consumes the micro-batches of one optimizer
//! step and returns a typed event; it never logs.

use crate::batch::{LmBatch, PairBatch};
use crate::checkpoint::{
    latest_checkpoint, write_checkpoint, EASY_FILE, INPUTS_FILE, OPTIMIZER_FILE, REF_LOGPS_FILE, STAGE_CONFIG_FILE,
    STATE_FILE,
};
use crate::config::{Stage, StageConfig};
use crate::error::{Error, Result};
use crate::grads::{clip_grad_norm, is_finite_step, Grads};
use crate::inputs::RunInputs;
use crate::optim::AdamW;
use crate::reference::RefCache;
use crate::rl::{explained_variance, ppo_targets, whiten, Critic, LossAgg, OffPolicy, OverlongStats, RlAlgo, RlBatch};
use crate::schedule::LrSchedule;
use crate::state::{DataCursor, TrainState};
use crate::step::{dpo_step, lm_step, rl_step, tempered_forward, PpoMicro, ProximalMicro, RlMicroStats};
use candle_core::{DType, Device, Var};
use phi4r_model::{write_atomic, Phi3, Tokenizer, TrainableModel};
use phi4r_replay::EasyMemory;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What one optimizer step did (the actor turns it into metrics and progress).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepEvent {
    /// The stage.
    pub stage: Stage,
    /// Steps taken, this one included.
    pub step: u64,
    /// Steps the schedule spans.
    pub total_steps: u64,
    /// Epoch of the data cursor.
    pub epoch: u64,
    /// Step loss (token-mean LM loss, or mean DPO loss); non-finite when the step was skipped for it.
    pub loss: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Global gradient norm before clipping (NaN when a non-finite loss stopped the step before it).
    pub grad_norm: f64,
    /// Real input tokens.
    pub tokens: usize,
    /// Trained target tokens (completion tokens).
    pub loss_tokens: usize,
    /// Sequences (DPO: pairs) consumed.
    pub sequences: usize,
    /// Whether the update was skipped, so the weights did not change: a non-finite loss or gradient
    /// (a bad step, counted in `bad_steps_in_row`), or in stage 4 an idle step with nothing to train
    /// ([`Learner::idle_step`]: every group filtered out; its metrics line has `rl: null`).
    pub skipped: bool,
    /// Consecutive skipped steps, this one included.
    pub bad_steps_in_row: usize,
}

/// DPO metrics of one step, means over its pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpoStats {
    /// Mean implicit reward of the chosen completions.
    pub chosen_reward: f64,
    /// Mean implicit reward of the rejected completions.
    pub rejected_reward: f64,
    /// Share of pairs whose chosen reward beats the rejected one.
    pub reward_accuracy: f64,
    /// Mean chosen − rejected reward.
    pub margin: f64,
    /// Pairs whose reference log-probs were computed in this step (the rest came from the cache).
    pub ref_computed: usize,
}

/// A DPO step's event and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpoStepEvent {
    /// The common step event.
    pub step: StepEvent,
    /// DPO metrics.
    pub dpo: DpoStats,
}

/// Stage-4 metrics of one step (token-weighted means over its completion tokens).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlStats {
    /// The clipped-surrogate part of the loss.
    pub pg_loss: f64,
    /// Mean k3 KL to the reference per completion token (0 when `kl_coef` is 0: no reference pass).
    pub kl: f64,
    /// Share of completion tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// Mean `old − new` log-prob per completion token (how far the learner's forward is from the sampler).
    pub approx_kl: f64,
    /// Mean policy entropy per completion token (nats).
    pub entropy: f64,
    /// Mean advantage over completions (about 0 for GRPO).
    pub advantage_mean: f64,
    /// Mean |advantage| over completions (0: nothing to learn).
    pub advantage_abs_mean: f64,
    /// Completions trained on.
    pub completions: usize,
    /// Their tokens.
    pub completion_tokens: usize,
    /// Optimizer updates the step took (`rl.epochs` × mini-batches).
    pub updates: usize,
    /// PPO: the clipped value loss (null for GRPO).
    pub value_loss: Option<f64>,
    /// PPO: share of tokens where the clipped value error was the larger (null for GRPO).
    pub value_clip_fraction: Option<f64>,
    /// PPO: `1 − Var(returns − values) / Var(returns)` of the critic at the start of the step (null for
    /// GRPO; NaN, written as null, when the returns do not vary).
    pub explained_variance: Option<f64>,
    /// Decoupled objective: share of tokens whose importance weight hit `rl.off_policy.cap` (null
    /// otherwise).
    pub is_capped_share: Option<f64>,
    /// What overlong handling did to the step's completions (filled by the caller that built the batch).
    pub overlong: OverlongStats,
}

/// A stage-4 step's event and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlStepEvent {
    /// The common step event (`loss` is policy loss + `kl_coef` × KL).
    pub step: StepEvent,
    /// RL metrics.
    pub rl: RlStats,
}

/// A training stage's state machine over optimizer steps.
pub struct Learner {
    model: TrainableModel,
    vars: Vec<Var>,
    optimizer: AdamW,
    schedule: LrSchedule,
    config: StageConfig,
    state: TrainState,
    reference: Option<Phi3>,
    ref_cache: RefCache,
    tokenizer: Option<Tokenizer>,
    inputs: Option<RunInputs>,
    easy: Option<EasyMemory>,
    critic: Option<Critic>,
}

/// What the micro-batches of a step added up to, before the update decision.
struct Accumulated {
    loss: f64,
    grads: Option<Grads>,
    tokens: usize,
    loss_tokens: usize,
    sequences: usize,
}

impl Learner {
    /// A fresh stage over `model` whose schedule spans `total_steps` optimizer steps (see
    /// [`StageConfig::total_steps`]).
    pub fn new(model: TrainableModel, config: StageConfig, total_steps: u64) -> Result<Self> {
        config.validate()?;
        let named = model.vars();
        let vars = named.iter().map(|(_, v)| v.clone()).collect();
        let optimizer = AdamW::new(named, config.adamw())?;
        let critic = match (config.stage, config.rl.algo) {
            (Stage::Rl, RlAlgo::Ppo { .. }) => {
                Some(Critic::zeros(model.model.config().hidden_size, model.model.device())?)
            }
            _ => None,
        };
        Ok(Learner {
            critic,
            vars,
            optimizer,
            schedule: config.schedule(total_steps),
            state: TrainState::new(config.stage, total_steps, config.seed),
            config,
            model,
            reference: None,
            ref_cache: RefCache::default(),
            tokenizer: None,
            inputs: None,
            easy: None,
        })
    }

    /// Sets the frozen DPO reference (e.g. `phi4r_model::load_frozen(stage2_dir, ..)` or
    /// `model.frozen()` before the first step).
    pub fn with_reference(mut self, reference: Phi3) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Starts PPO's value head from `critic` (e.g. [`Critic::load`] from the init checkpoint) instead of
    /// zeros; ignored unless the stage runs PPO.
    pub fn with_critic(mut self, critic: Critic) -> Self {
        if self.critic.is_some() {
            self.critic = Some(critic);
        }
        self
    }

    /// PPO's value head (None unless the stage runs PPO).
    pub fn critic(&self) -> Option<&Critic> {
        self.critic.as_ref()
    }

    /// Records `inputs` (fingerprints of data, tokenizer, reference) in every checkpoint, so a later
    /// `--resume` can check it continues the same run ([`crate::resume_changes`]).
    pub fn with_inputs(mut self, inputs: RunInputs) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Saves `tokenizer` in every checkpoint.
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Resumes from `path` (a checkpoint folder, or an output folder whose `latest` is used): weights,
    /// optimizer moments, schedule clock, data cursor, bad-step counts and cached reference log-probs are
    /// restored exactly. `config` must be for the same stage; a DPO reference must be set again with
    /// [`Learner::with_reference`] if pairs not seen before will come. Whether `config` and the run's
    /// inputs are the checkpoint's is the caller's check ([`crate::resume_changes`]).
    pub fn resume(path: &Path, config: StageConfig, dtype: DType, device: &Device) -> Result<Self> {
        let dir = latest_checkpoint(path)?.ok_or_else(|| Error::checkpoint(path, "no complete checkpoint found"))?;
        let state: TrainState = read_json(&dir.join(STATE_FILE))?;
        if state.stage != config.stage {
            return Err(Error::checkpoint(
                &dir,
                format!("was saved by stage `{}`, the config is for `{}`", state.stage.name(), config.stage.name()),
            ));
        }
        let model = TrainableModel::load(&dir, dtype, device)?;
        let tokenizer = phi4r_model::load_tokenizer(&dir, model.model.config())?;
        let mut learner = Learner::new(model, config, state.total_steps)?;
        let opt_path = dir.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
        learner.optimizer.load_state_bytes(&bytes, device).map_err(|e| Error::checkpoint(&opt_path, e.to_string()))?;
        let ref_path = dir.join(REF_LOGPS_FILE);
        if ref_path.is_file() {
            learner.ref_cache = read_json(&ref_path)?;
        }
        let easy_path = dir.join(EASY_FILE);
        if easy_path.is_file() {
            learner.easy = Some(read_json(&easy_path)?);
        }
        if learner.critic.is_some() {
            let hidden = learner.model.model.config().hidden_size;
            learner.critic = Some(Critic::load(&dir, hidden, device)?.ok_or_else(|| {
                Error::checkpoint(&dir, format!("a PPO checkpoint needs {}", crate::rl::VALUE_HEAD_FILE))
            })?);
        }
        learner.state = state;
        learner.tokenizer = tokenizer;
        Ok(learner)
    }

    /// One optimizer step of the LM objective (stages `mid` and `sft`) over the micro-batches of the step
    /// (normally [`StageConfig::accumulation_steps`] batches of `micro_batch` rows).
    ///
    /// A non-finite loss or gradient skips the update (weights and moments unchanged) and counts as a bad
    /// step; `max_bad_steps` in a row return [`Error::TooManyBadSteps`].
    pub fn train_step(&mut self, micro_batches: &[LmBatch]) -> Result<StepEvent> {
        self.expect_stage("train_step", &[Stage::Mid, Stage::Sft])?;
        if micro_batches.is_empty() {
            return Err(Error::input("Learner::train_step", "no micro-batches"));
        }
        for b in micro_batches {
            self.check_len("Learner::train_step", b)?;
        }
        let step_loss_tokens: usize = micro_batches.iter().map(LmBatch::loss_tokens).sum();
        let mut acc = Accumulated { loss: 0.0, grads: None, tokens: 0, loss_tokens: 0, sequences: 0 };
        for batch in micro_batches {
            let out = lm_step(&self.model.model, &self.vars, batch, step_loss_tokens)?;
            acc.tokens += out.stats.tokens;
            acc.loss_tokens += out.stats.loss_tokens;
            acc.sequences += out.stats.sequences;
            acc.loss += out.stats.loss;
            if !acc.loss.is_finite() {
                break;
            }
            accumulate(&mut acc.grads, out.grads)?;
        }
        // Rows after a non-finite micro-batch are consumed too: the data cursor counts every row handed in.
        let handed: usize = micro_batches.iter().map(|b| b.dims().0).sum();
        acc.sequences = handed;
        self.finish_step(acc)
    }

    /// One optimizer step of DPO (stage `dpo`) over micro-batches of pairs. Reference log-probs come from
    /// the cache, computed with the reference model the first time a pair is seen.
    pub fn dpo_step(&mut self, micro_batches: &[PairBatch]) -> Result<DpoStepEvent> {
        self.expect_stage("dpo_step", &[Stage::Dpo])?;
        if micro_batches.iter().all(PairBatch::is_empty) {
            return Err(Error::input("Learner::dpo_step", "no pairs"));
        }
        let mut ref_computed = 0;
        for pairs in micro_batches {
            self.check_len("Learner::dpo_step", pairs.chosen())?;
            self.check_len("Learner::dpo_step", pairs.rejected())?;
            ref_computed += self.ref_cache.fill(self.reference.as_ref(), pairs)?;
        }
        let step_pairs: usize = micro_batches.iter().map(PairBatch::len).sum();
        let mut acc = Accumulated { loss: 0.0, grads: None, tokens: 0, loss_tokens: 0, sequences: step_pairs };
        let (mut chosen, mut rejected) = (Vec::with_capacity(step_pairs), Vec::with_capacity(step_pairs));
        for pairs in micro_batches.iter().filter(|p| !p.is_empty()) {
            let (ref_c, ref_r) = self.ref_cache.lookup(pairs)?;
            let out = dpo_step(&self.model.model, &self.vars, pairs, &ref_c, &ref_r, self.config.beta, step_pairs)?;
            acc.tokens += out.stats.tokens;
            acc.loss_tokens += out.stats.loss_tokens;
            acc.loss += out.stats.loss;
            chosen.extend(out.stats.chosen_rewards);
            rejected.extend(out.stats.rejected_rewards);
            if !acc.loss.is_finite() {
                break;
            }
            accumulate(&mut acc.grads, out.grads)?;
        }
        let n = chosen.len().max(1) as f64;
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let wins = chosen.iter().zip(&rejected).filter(|(c, r)| c > r).count();
        let (chosen_reward, rejected_reward) = (mean(&chosen), mean(&rejected));
        let dpo = DpoStats {
            chosen_reward,
            rejected_reward,
            reward_accuracy: wins as f64 / n,
            margin: chosen_reward - rejected_reward,
            ref_computed,
        };
        Ok(DpoStepEvent { step: self.finish_step(acc)?, dpo })
    }

    /// One step of stage 4 (one policy version) over micro-batches of completions
    /// ([`RlBatch::from_groups`]): the clipped surrogate against the sampler's log-probs plus `rl.kl_coef`
    /// × the k3 KL to the reference ([`Learner::with_reference`], needed when `kl_coef > 0`), aggregated
    /// as `rl.loss_agg` over each mini-batch (each micro loss scaled by its share), then the clip / finite
    /// check / AdamW path; `rl.epochs` passes of `rl.mini_batches` updates each (reshuffled after the
    /// first pass). GRPO's advantages are the rows'; PPO's are GAE over the critic's values at the start
    /// of the step, whitened over the step, and the critic takes one update with each policy update.
    pub fn rl_step(&mut self, micro_batches: &[RlBatch]) -> Result<RlStepEvent> {
        self.expect_stage("rl_step", &[Stage::Rl])?;
        let batches: Vec<&RlBatch> = micro_batches.iter().filter(|b| !b.is_empty()).collect();
        if batches.is_empty() {
            return Err(Error::input("Learner::rl_step", "no completions"));
        }
        for b in &batches {
            self.check_len("Learner::rl_step", b.lm())?;
        }
        let rl = self.config.rl.clone();
        // What the step needs from the weights before any update, in one forward per micro-batch: PPO's
        // values, and the decoupled objective's π_prox (the learner's own log-probs).
        let decoupled = matches!(rl.off_policy, OffPolicy::Decoupled { .. });
        let start = self.step_start_pass(&batches, decoupled)?;
        let targets = match (rl.algo, start.values) {
            (RlAlgo::Ppo { gamma, lambda, .. }, Some(values)) => {
                Some(ppo_step_targets(&batches, values, gamma, lambda)?)
            }
            _ => None,
        };
        let proximal = match (rl.off_policy, start.logps) {
            (OffPolicy::Decoupled { cap }, Some(logps)) => Some((logps, cap)),
            _ => None,
        };
        let weight = |b: &RlBatch| rl_weight(rl.loss_agg, b);
        let step_weight: usize = batches.iter().map(|b| weight(b)).sum();
        let step_tokens: usize = batches.iter().map(|b| b.completion_tokens()).sum();
        let step_rows: usize = batches.iter().map(|b| b.len()).sum();
        let lr = self.schedule.lr_at(self.state.step);
        let minis = rl.mini_batches.clamp(1, batches.len());
        let mut order: Vec<usize> = (0..batches.len()).collect();
        let mut m = MicroSums::default();
        let (mut loss, mut norms, mut applied, mut bad, mut tokens) = (0.0, Vec::new(), false, false, 0);
        for epoch in 0..rl.epochs {
            if epoch > 0 {
                shuffle(&mut order, self.config.seed ^ (self.state.step << 16) ^ epoch as u64);
            }
            for mini in split_even(&order, minis) {
                let mini_weight: usize = mini.iter().map(|&i| weight(batches[i])).sum();
                let mini_share = mini_weight as f64 / step_weight.max(1) as f64 / rl.epochs as f64;
                let (mut grads, mut value_grads, mut mini_loss) = (None, None, 0.0);
                for &i in mini {
                    let batch = batches[i];
                    let ppo = match (&targets, rl.algo) {
                        (Some(t), RlAlgo::Ppo { value_clip, .. }) => Some(PpoMicro {
                            critic: self
                                .critic
                                .as_ref()
                                .ok_or_else(|| Error::input("rl_step", "PPO without a critic"))?,
                            advantages: &t.advantages[i],
                            old_values: &t.values[i],
                            returns: &t.returns[i],
                            value_clip,
                        }),
                        _ => None,
                    };
                    let prox = proximal.as_ref().map(|(l, cap)| ProximalMicro { logps: &l[i], cap: *cap });
                    let share = weight(batch) as f64 / mini_weight.max(1) as f64;
                    let out = self.rl_micro(batch, share, ppo, prox)?;
                    m.add(&out.stats, mini_share, step_tokens, rl.epochs);
                    if epoch == 0 {
                        tokens += out.stats.tokens;
                    }
                    mini_loss += out.stats.loss;
                    if !mini_loss.is_finite() {
                        break;
                    }
                    accumulate(&mut grads, out.grads)?;
                    if let Some(vg) = out.value_grads {
                        accumulate(&mut value_grads, vg)?;
                    }
                }
                if epoch == 0 {
                    loss += mini_loss * mini_weight as f64 / step_weight.max(1) as f64;
                }
                let (norm, good) = self.apply_update(mini_loss, grads, lr)?;
                norms.push(norm);
                applied |= good;
                bad |= !good;
                if let (true, Some(vg), RlAlgo::Ppo { value_lr, .. }) = (good, value_grads, rl.algo) {
                    if let Some(critic) = self.critic.as_mut() {
                        critic.step(&vg, value_lr)?;
                    }
                }
            }
        }
        let advantages: Vec<f64> = batches.iter().flat_map(|b| b.advantages().iter().map(|&a| f64::from(a))).collect();
        let ppo_stats = targets.as_ref().map(|t| t.explained_variance);
        let stats = RlStats {
            updates: norms.len(),
            value_loss: ppo_stats.map(|_| m.value_loss),
            value_clip_fraction: ppo_stats.map(|_| m.value_clip),
            explained_variance: ppo_stats,
            is_capped_share: proximal.as_ref().map(|_| m.is_capped),
            ..m.stats(&advantages, step_rows, step_tokens)
        };
        let grad_norm = norms.iter().sum::<f64>() / norms.len().max(1) as f64;
        let summary = StepSummary { loss, lr, grad_norm, tokens, loss_tokens: step_tokens, sequences: step_rows };
        Ok(RlStepEvent { step: self.advance(summary, applied, bad)?, rl: stats })
    }

    /// An independent replica of this learner for data-parallel training: a deep copy of the weights,
    /// the same optimizer moments (exactly), schedule, state, reference (shared: it is frozen), tokenizer,
    /// inputs and too-easy memory. A PPO learner's critic is not replicated: data parallelism is GRPO's.
    pub fn replicate(&self) -> Result<Learner> {
        if self.critic.is_some() {
            return Err(Error::config(
                "rl.algo",
                "data-parallel learner replicas run GRPO (PPO's critic is not replicated)",
            ));
        }
        let mut r = Learner::new(self.model.deep_copy()?, self.config.clone(), self.state.total_steps)?;
        r.optimizer.load_state_bytes(&self.optimizer.state_bytes()?, self.model.model.device())?;
        r.state = self.state.clone();
        r.reference = self.reference.as_ref().map(Phi3::frozen).transpose()?;
        r.tokenizer = self.tokenizer.clone();
        r.inputs = self.inputs.clone();
        r.easy = self.easy.clone();
        Ok(r)
    }

    /// [`rl_step`] on one micro-batch with this learner's model, reference and `[rl]` config.
    fn rl_micro(
        &self,
        batch: &RlBatch,
        share: f64,
        ppo: Option<PpoMicro>,
        prox: Option<ProximalMicro>,
    ) -> Result<crate::step::RlMicroOutput> {
        let rl = &self.config.rl;
        let (model, reference) = (&self.model.model, self.reference.as_ref());
        rl_step(model, &self.vars, reference, batch, &rl.algo, rl.kl_coef, rl.loss_agg, share, ppo, prox)
    }

    /// One replica's part of a data-parallel GRPO step: the gradients of `batches` (its shard), each micro
    /// loss scaled by its share of the whole step (`step_weight`: the step's tokens for token-mean, its
    /// completions otherwise; `step_tokens` its completion tokens), so that the shards' gradients sum to
    /// the whole step's. Applied by [`Learner::rl_apply`] once summed.
    pub fn rl_shard(&self, batches: &[&RlBatch], step_weight: usize, step_tokens: usize) -> Result<RlShard> {
        self.expect_stage("rl_shard", &[Stage::Rl])?;
        let rl = &self.config.rl;
        let mut shard = RlShard::default();
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            self.check_len("Learner::rl_shard", batch.lm())?;
            let share = rl_weight(rl.loss_agg, batch) as f64 / step_weight.max(1) as f64;
            let out = self.rl_micro(batch, share, None, None)?;
            shard.sums.add(&out.stats, 1.0, step_tokens, 1);
            shard.loss += out.stats.loss;
            shard.tokens += out.stats.tokens;
            shard.loss_tokens += out.stats.completion_tokens;
            shard.rows += out.stats.completions;
            shard.advantages.extend(batch.advantages().iter().map(|&a| f64::from(a)));
            accumulate(&mut shard.grads, out.grads)?;
        }
        Ok(shard)
    }

    /// Applies a data-parallel step's summed shards ([`RlShard::merge`]): clip, finite check, AdamW, the
    /// clock. Every replica given the same sum takes the same update.
    pub fn rl_apply(&mut self, shard: RlShard) -> Result<RlStepEvent> {
        self.expect_stage("rl_apply", &[Stage::Rl])?;
        if shard.rows == 0 {
            return Err(Error::input("Learner::rl_apply", "no completions"));
        }
        let lr = self.schedule.lr_at(self.state.step);
        let (grad_norm, good) = self.apply_update(shard.loss, shard.grads, lr)?;
        let stats = shard.sums.stats(&shard.advantages, shard.rows, shard.loss_tokens);
        let summary = StepSummary {
            loss: shard.loss,
            lr,
            grad_norm,
            tokens: shard.tokens,
            loss_tokens: shard.loss_tokens,
            sequences: shard.rows,
        };
        Ok(RlStepEvent { step: self.advance(summary, good, !good)?, rl: stats })
    }

    /// One forward per micro-batch with the weights at the start of the step (no gradient): the critic's
    /// values of every position when the stage runs PPO, and the completion tokens' log-probs at the rows'
    /// temperatures when `logps` (the decoupled objective's π_prox). Nothing runs when neither is needed.
    fn step_start_pass(&self, batches: &[&RlBatch], logps: bool) -> Result<StepStart> {
        let critic = self.critic.as_ref();
        let mut out = StepStart {
            values: critic.map(|_| Vec::with_capacity(batches.len())),
            logps: logps.then(|| Vec::with_capacity(batches.len())),
        };
        if critic.is_none() && !logps {
            return Ok(out);
        }
        for b in batches {
            let tensors = b.lm().tensors(self.model.model.device())?;
            let (hidden, logits) = tempered_forward(&self.model.model, b, &tensors)?;
            if let (Some(critic), Some(values)) = (critic, out.values.as_mut()) {
                values.push(critic.values(&hidden.detach())?.flatten_all()?.to_vec1()?);
            }
            if let Some(l) = out.logps.as_mut() {
                let lp = phi4r_model::loss::token_logps(&logits.detach(), &tensors.targets)?;
                l.push(lp.flatten_all()?.to_vec1()?);
            }
        }
        Ok(out)
    }

    /// A stage-4 step that found nothing to train on (every group filtered out): the clock advances (the
    /// policy version is the step), the weights and moments stay, and it is not a bad step.
    pub fn idle_step(&mut self) -> Result<StepEvent> {
        self.expect_stage("idle_step", &[Stage::Rl])?;
        let lr = self.schedule.lr_at(self.state.step);
        let s = &mut self.state;
        s.step += 1;
        Ok(StepEvent {
            stage: self.config.stage,
            step: s.step,
            total_steps: s.total_steps,
            epoch: s.cursor.epoch,
            loss: f64::NAN,
            lr,
            grad_norm: f64::NAN,
            tokens: 0,
            loss_tokens: 0,
            sequences: 0,
            skipped: true,
            bad_steps_in_row: s.bad_steps_in_row,
        })
    }

    /// Records stage 4's memory of too-easy prompts after a step; the next checkpoint saves it
    /// (`easy.json`) and [`Learner::resume`] restores it.
    pub fn record_easy(&mut self, easy: EasyMemory) {
        self.easy = Some(easy);
    }

    /// The memory of too-easy prompts recorded or restored (stage 4).
    pub fn easy(&self) -> Option<&EasyMemory> {
        self.easy.as_ref()
    }

    /// Computes and caches the reference log-probs of `pairs` ahead of training (e.g. one pass over the
    /// dataset before the first step). Returns how many were computed.
    pub fn precompute_reference(&mut self, pairs: &PairBatch) -> Result<usize> {
        self.ref_cache.fill(self.reference.as_ref(), pairs)
    }

    /// Drops the cached DPO reference log-probs (a forced resume onto other pairs or another reference:
    /// they are keyed by pair index and would be stale); they are recomputed as pairs come.
    pub fn forget_reference_cache(&mut self) {
        self.ref_cache = RefCache::default();
    }

    /// Records where the data stands after the step just taken, as its one owner (the [`crate::StageFeed`])
    /// reported it with the step's batches: the next checkpoint saves it, and a resumed feed seeks to it.
    pub fn record_data_cursor(&mut self, cursor: DataCursor) {
        self.state.cursor = cursor;
    }

    /// Whether the step just taken is a multiple of `checkpoint_every`.
    pub fn checkpoint_due(&self) -> bool {
        let every = self.config.checkpoint_every;
        every > 0 && self.state.step > 0 && self.state.step.is_multiple_of(every)
    }

    /// Whether the schedule's steps are all taken.
    pub fn is_finished(&self) -> bool {
        self.state.step >= self.state.total_steps
    }

    /// Writes a checkpoint of the current step under `root` (layout in [`crate::checkpoint`]) and returns
    /// its folder.
    pub fn save_checkpoint(&self, root: &Path) -> Result<PathBuf> {
        write_checkpoint(root, self.state.step, self.config.keep_checkpoints, |dir| {
            phi4r_model::save(&self.model.model, self.tokenizer.as_ref(), dir)?;
            write_atomic(&dir.join(OPTIMIZER_FILE), &self.optimizer.state_bytes()?)?;
            let stage = toml::to_string(&self.config).map_err(|e| Error::checkpoint(dir, e.to_string()))?;
            write_atomic(&dir.join(STAGE_CONFIG_FILE), stage.as_bytes())?;
            if let Some(inputs) = &self.inputs {
                write_json(&dir.join(INPUTS_FILE), inputs)?;
            }
            if !self.ref_cache.is_empty() {
                write_json(&dir.join(REF_LOGPS_FILE), &self.ref_cache)?;
            }
            if let Some(easy) = &self.easy {
                write_json(&dir.join(EASY_FILE), easy)?;
            }
            if let Some(critic) = &self.critic {
                critic.save(dir)?;
            }
            // Last: its presence marks the folder complete.
            write_json(&dir.join(STATE_FILE), &self.state)
        })
    }

    /// The counters (step, data cursor, bad steps).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The stage config.
    pub fn config(&self) -> &StageConfig {
        &self.config
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &LrSchedule {
        &self.schedule
    }

    /// The model being trained.
    pub fn model(&self) -> &Phi3 {
        &self.model.model
    }

    /// The model with its variables.
    pub fn trainable(&self) -> &TrainableModel {
        &self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// The DPO reference log-prob cache.
    pub fn ref_cache(&self) -> &RefCache {
        &self.ref_cache
    }

    /// Gives the trained model back (end of stage).
    pub fn into_model(self) -> TrainableModel {
        self.model
    }

    fn expect_stage(&self, op: &'static str, stages: &[Stage]) -> Result<()> {
        if stages.contains(&self.config.stage) {
            return Ok(());
        }
        Err(Error::input(op, format!("not available in stage `{}`", self.config.stage.name())))
    }

    fn check_len(&self, op: &'static str, batch: &LmBatch) -> Result<()> {
        let (_, t) = batch.dims();
        if t > self.config.seq_len {
            return Err(Error::input(op, format!("rows of {t} tokens exceed seq_len {}", self.config.seq_len)));
        }
        Ok(())
    }

    /// Clip, finite check, update or skip, and the counters.
    fn finish_step(&mut self, acc: Accumulated) -> Result<StepEvent> {
        let lr = self.schedule.lr_at(self.state.step);
        let (grad_norm, good) = self.apply_update(acc.loss, acc.grads, lr)?;
        let summary = StepSummary {
            loss: acc.loss,
            lr,
            grad_norm,
            tokens: acc.tokens,
            loss_tokens: acc.loss_tokens,
            sequences: acc.sequences,
        };
        self.advance(summary, good, !good)
    }

    /// Clips `grads` and applies them at `lr` when the loss and the norm are finite; returns the norm
    /// before clipping and whether the update was applied.
    fn apply_update(&mut self, loss: f64, mut grads: Option<Grads>, lr: f64) -> Result<(f64, bool)> {
        let grad_norm = match (&mut grads, loss.is_finite()) {
            (Some(g), true) => clip_grad_norm(g, self.config.max_grad_norm)?,
            _ => f64::NAN,
        };
        let good = is_finite_step(loss, grad_norm);
        if let (true, Some(g)) = (good, &grads) {
            self.optimizer.step(g, lr)?;
        }
        Ok((grad_norm, good))
    }

    /// Advances the clock after a step whose updates were `applied` (any) and `bad` (any skipped for a
    /// non-finite loss or gradient).
    fn advance(&mut self, acc: StepSummary, applied: bool, bad: bool) -> Result<StepEvent> {
        let StepSummary { loss, lr, grad_norm, .. } = acc;
        let good = !bad;
        let s = &mut self.state;
        s.step += 1;
        s.tokens_seen += acc.tokens as u64;
        if good {
            s.bad_steps_in_row = 0;
        } else {
            s.bad_steps_in_row += 1;
            s.bad_steps_total += 1;
            if s.bad_steps_in_row >= self.config.max_bad_steps {
                return Err(Error::TooManyBadSteps { count: s.bad_steps_in_row, step: s.step });
            }
        }
        Ok(StepEvent {
            stage: self.config.stage,
            step: s.step,
            total_steps: s.total_steps,
            epoch: s.cursor.epoch,
            loss,
            lr,
            grad_norm,
            tokens: acc.tokens,
            loss_tokens: acc.loss_tokens,
            sequences: acc.sequences,
            skipped: !applied,
            bad_steps_in_row: s.bad_steps_in_row,
        })
    }
}

/// What a step reports besides its update outcome.
struct StepSummary {
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens: usize,
    loss_tokens: usize,
    sequences: usize,
}

/// What [`Learner::step_start_pass`] computed, one vector per micro-batch, row-major `(b·t)`.
struct StepStart {
    values: Option<Vec<Vec<f32>>>,
    logps: Option<Vec<Vec<f32>>>,
}

/// PPO's targets for a step from the critic's `values` at its start: GAE per row, advantages whitened
/// over the whole step, and the critic's explained variance.
fn ppo_step_targets(batches: &[&RlBatch], values: Vec<Vec<f32>>, gamma: f64, lambda: f64) -> Result<PpoTargets> {
    let mut t = PpoTargets { values, ..PpoTargets::default() };
    for (b, v) in batches.iter().zip(&t.values) {
        let (adv, ret) = ppo_targets(v, b.lm().loss_mask(), b.rewards(), gamma, lambda)?;
        t.advantages.push(adv);
        t.returns.push(ret);
    }
    let mask: Vec<f32> = batches.iter().flat_map(|b| b.lm().loss_mask().iter().copied()).collect();
    let flat = |x: &[Vec<f32>]| x.iter().flatten().copied().collect::<Vec<f32>>();
    t.explained_variance = explained_variance(&flat(&t.values), &flat(&t.returns), &mask);
    let mut white = whiten(&flat(&t.advantages), &mask)?.into_iter();
    for a in &mut t.advantages {
        *a = white.by_ref().take(a.len()).collect();
    }
    Ok(t)
}

/// PPO's targets of a step, one vector per micro-batch, row-major `(b·t)`.
#[derive(Default)]
struct PpoTargets {
    values: Vec<Vec<f32>>,
    advantages: Vec<Vec<f32>>,
    returns: Vec<Vec<f32>>,
    explained_variance: f64,
}

/// A micro-batch's weight in its step's loss: its completion tokens for token-mean, its completions
/// otherwise.
pub(crate) fn rl_weight(agg: LossAgg, b: &RlBatch) -> usize {
    match agg {
        LossAgg::TokenMean => b.completion_tokens(),
        LossAgg::SeqMean | LossAgg::TokenSum => b.len(),
    }
}

/// One data-parallel replica's gradients and measurements of its shard of a step ([`Learner::rl_shard`]);
/// shards add up with [`RlShard::merge`] (the all-reduce).
#[derive(Debug, Clone, Default)]
pub struct RlShard {
    grads: Option<Grads>,
    loss: f64,
    tokens: usize,
    loss_tokens: usize,
    rows: usize,
    sums: MicroSums,
    advantages: Vec<f64>,
}

impl RlShard {
    /// Adds `other` into `self`: gradients, losses and the step-weighted metrics sum; advantages append.
    pub fn merge(&mut self, other: RlShard) -> Result<()> {
        if let Some(g) = other.grads {
            accumulate(&mut self.grads, g)?;
        }
        self.loss += other.loss;
        self.tokens += other.tokens;
        self.loss_tokens += other.loss_tokens;
        self.rows += other.rows;
        self.sums.merge(&other.sums);
        self.advantages.extend(other.advantages);
        Ok(())
    }
}

/// Stage-4 metrics summed over a step's micro passes, each weighted by its share of the step.
#[derive(Debug, Clone, Copy, Default)]
struct MicroSums {
    pg_loss: f64,
    kl: f64,
    clip: f64,
    approx_kl: f64,
    entropy: f64,
    value_loss: f64,
    value_clip: f64,
    is_capped: f64,
}

impl MicroSums {
    /// Adds a micro pass: its losses (already scaled by its share of the mini-batch) times `mini_share`
    /// (the mini-batch's share of the step, over the passes), its rates by its share of the step's tokens
    /// over the passes.
    fn add(&mut self, s: &RlMicroStats, mini_share: f64, step_tokens: usize, epochs: usize) {
        let w = s.completion_tokens as f64 / step_tokens.max(1) as f64 / epochs as f64;
        self.pg_loss += mini_share * s.pg_loss;
        self.value_loss += mini_share * s.value_loss;
        self.kl += w * s.kl;
        self.clip += w * s.clip_fraction;
        self.approx_kl += w * s.approx_kl;
        self.entropy += w * s.entropy;
        self.value_clip += w * s.value_clip_fraction;
        self.is_capped += w * s.is_capped_share;
    }

    /// The step's [`RlStats`] over `advantages` (one per completion): one update, no PPO or decoupled
    /// metrics (the caller fills what it ran).
    fn stats(&self, advantages: &[f64], completions: usize, completion_tokens: usize) -> RlStats {
        let n = advantages.len().max(1) as f64;
        RlStats {
            pg_loss: self.pg_loss,
            kl: self.kl,
            clip_fraction: self.clip,
            approx_kl: self.approx_kl,
            entropy: self.entropy,
            advantage_mean: advantages.iter().sum::<f64>() / n,
            advantage_abs_mean: advantages.iter().map(|a| a.abs()).sum::<f64>() / n,
            completions,
            completion_tokens,
            updates: 1,
            value_loss: None,
            value_clip_fraction: None,
            explained_variance: None,
            is_capped_share: None,
            overlong: OverlongStats::default(),
        }
    }

    fn merge(&mut self, o: &MicroSums) {
        self.pg_loss += o.pg_loss;
        self.kl += o.kl;
        self.clip += o.clip;
        self.approx_kl += o.approx_kl;
        self.entropy += o.entropy;
        self.value_loss += o.value_loss;
        self.value_clip += o.value_clip;
        self.is_capped += o.is_capped;
    }
}

/// Splits `order` into `parts` contiguous runs whose lengths differ by at most one (empty runs left out).
pub(crate) fn split_even(order: &[usize], parts: usize) -> Vec<&[usize]> {
    let (n, parts) = (order.len(), parts.max(1));
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = n / parts + usize::from(p < n % parts);
        out.push(&order[start..start + len]);
        start += len;
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A seeded Fisher–Yates shuffle (splitmix64), so a resumed step reshuffles the same way.
fn shuffle(order: &mut [usize], seed: u64) {
    let mut state = seed;
    for i in (1..order.len()).rev() {
        state = phi4r_replay::splitmix64(state);
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn accumulate(acc: &mut Option<Grads>, grads: Grads) -> Result<()> {
    match acc {
        Some(a) => a.accumulate(grads),
        None => {
            *acc = Some(grads);
            Ok(())
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::checkpoint(path, e.to_string()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    Ok(write_atomic(path, text.as_bytes())?)
}
