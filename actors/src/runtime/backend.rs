//! What the streaming runtime's learner trains and its generators sample with: the real thing
//! ([`Learner`], [`GroupSampler`]), or stand-ins of fixed cost ([`SimTrainer`], [`SimSampler`]) with which
//! `bench rl --simulate` runs the real actors, queues, filters and books at scales this machine cannot
//! hold models for.

use super::Policy;
use candle_core::Device;
use phi4r_learner::rl::{train_groups, RlTrainReport};
use phi4r_learner::{DataParallel, Learner, Stage, StepEvent};
use phi4r_replay::{EasyMemory, Group, GroupSampler, PolicyVersion, Prompt, SampledCompletion, SampledGroup};
use phi4r_rollout::FinishReason;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The learner's side, behind the streaming learner actor's compute thread.
pub trait Trainer: Send + 'static {
    /// The policy version (= optimizer steps taken).
    fn version(&self) -> u64;
    /// One update on `groups` (idle when empty); records the too-easy memory.
    fn train(&mut self, groups: &[Group], easy: EasyMemory, pad_id: u32) -> anyhow::Result<RlTrainReport>;
    /// A detached copy of the weights to publish, on the generators' device `to` (None: the learner's).
    fn snapshot(&self, to: Option<&Device>) -> anyhow::Result<Policy>;
    /// Writes a checkpoint (with `easy`) under `out`; its folder.
    fn checkpoint(&mut self, out: &Path, easy: EasyMemory) -> anyhow::Result<PathBuf>;
    /// Whether the schedule asks for a checkpoint now.
    fn checkpoint_due(&self) -> bool;
    /// Whether every step of the schedule is done.
    fn is_finished(&self) -> bool;
}

impl Trainer for Learner {
    fn version(&self) -> u64 {
        self.state().step
    }

    fn train(&mut self, groups: &[Group], easy: EasyMemory, pad_id: u32) -> anyhow::Result<RlTrainReport> {
        Ok(train_groups(self, groups, easy, pad_id)?)
    }

    fn snapshot(&self, to: Option<&Device>) -> anyhow::Result<Policy> {
        let m = self.model();
        let frozen = match to {
            Some(dev) => m.frozen_on(dev)?,
            None => m.frozen()?,
        };
        Ok(Policy { version: self.state().step, model: Some(std::sync::Arc::new(frozen)) })
    }

    fn checkpoint(&mut self, out: &Path, easy: EasyMemory) -> anyhow::Result<PathBuf> {
        self.record_easy(easy);
        Ok(self.save_checkpoint(out)?)
    }

    fn checkpoint_due(&self) -> bool {
        Learner::checkpoint_due(self)
    }

    fn is_finished(&self) -> bool {
        Learner::is_finished(self)
    }
}

/// M > 1 (`<N>gen-<M>learn`): data-parallel replicas behind the same actor; checkpoints and snapshots
/// are replica 0's (all are identical).
impl Trainer for DataParallel {
    fn version(&self) -> u64 {
        self.leader().state().step
    }

    fn train(&mut self, groups: &[Group], easy: EasyMemory, pad_id: u32) -> anyhow::Result<RlTrainReport> {
        Ok(self.train_groups(groups, easy, pad_id)?)
    }

    fn snapshot(&self, to: Option<&Device>) -> anyhow::Result<Policy> {
        self.leader().snapshot(to)
    }

    fn checkpoint(&mut self, out: &Path, easy: EasyMemory) -> anyhow::Result<PathBuf> {
        self.for_each(|l| l.record_easy(easy.clone()));
        Ok(self.leader().save_checkpoint(out)?)
    }

    fn checkpoint_due(&self) -> bool {
        self.leader().checkpoint_due()
    }

    fn is_finished(&self) -> bool {
        self.leader().is_finished()
    }
}

/// A learner stand-in: each update takes `step_cost` and changes nothing; no checkpoints.
#[derive(Debug, Clone)]
pub struct SimTrainer {
    /// Steps taken.
    pub step: u64,
    /// Steps to run.
    pub total: u64,
    /// Wall time of one update.
    pub step_cost: Duration,
}

impl Trainer for SimTrainer {
    fn version(&self) -> u64 {
        self.step
    }

    fn train(&mut self, groups: &[Group], _easy: EasyMemory, _pad_id: u32) -> anyhow::Result<RlTrainReport> {
        std::thread::sleep(self.step_cost);
        self.step += 1;
        let tokens: usize = groups.iter().flat_map(|g| &g.completions).map(|c| c.tokens.len()).sum();
        let step = StepEvent {
            stage: Stage::Rl,
            step: self.step,
            total_steps: self.total,
            epoch: 0,
            loss: 0.0,
            lr: 0.0,
            grad_norm: 0.0,
            tokens,
            loss_tokens: tokens,
            sequences: groups.iter().map(|g| g.completions.len()).sum(),
            skipped: groups.is_empty(),
            bad_steps_in_row: 0,
        };
        Ok(RlTrainReport { step, rl: None })
    }

    fn snapshot(&self, _to: Option<&Device>) -> anyhow::Result<Policy> {
        Ok(Policy { version: self.step, model: None })
    }

    fn checkpoint(&mut self, out: &Path, _easy: EasyMemory) -> anyhow::Result<PathBuf> {
        Ok(out.to_path_buf())
    }

    fn checkpoint_due(&self) -> bool {
        false
    }

    fn is_finished(&self) -> bool {
        self.step >= self.total
    }
}

/// A generator stand-in: each completion takes `completion_cost`, has `tokens` tokens and is correct with
/// probability `p_correct` (its text is `\boxed{gold}` or `\boxed{gold}1`, so the real verifier grades it).
#[derive(Debug, Clone)]
pub struct SimSampler {
    /// Wall time per completion.
    pub completion_cost: Duration,
    /// Tokens per completion.
    pub tokens: usize,
    /// Probability that a completion is correct.
    pub p_correct: f64,
}

/// How a generator samples.
#[derive(Debug, Clone)]
pub enum Sampling {
    /// The model, through [`GroupSampler::sample_unscored`].
    Real(Box<GroupSampler>),
    /// A stand-in of fixed cost.
    Simulated(SimSampler),
}

impl Sampling {
    /// The padding id of training batches (0 for the stand-in).
    pub fn pad_id(&self) -> u32 {
        match self {
            Sampling::Real(s) => s.pad_id(),
            Sampling::Simulated(_) => 0,
        }
    }

    /// `g` completions of every prompt from `policy` at `temperature`. Before each decoding step,
    /// `refresh` may hand over a newer policy, which samples every later token (in-flight weight updates;
    /// the stand-in ignores it).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        policy: &Policy,
        refresh: &mut dyn FnMut() -> Option<std::sync::Arc<Policy>>,
        prompts: &[Prompt],
        g: usize,
        temperature: f32,
        max_new_tokens: usize,
        seed: u64,
    ) -> anyhow::Result<Vec<SampledGroup>> {
        let version = PolicyVersion(policy.version);
        match self {
            Sampling::Real(s) => {
                let model = policy.model.clone().ok_or_else(|| anyhow::anyhow!("a real generator needs weights"))?;
                let mut newer = || refresh().and_then(|p| Some((PolicyVersion(p.version), p.model.clone()?)));
                Ok(s.sample_in_flight((version, model), &mut newer, prompts, g, temperature, max_new_tokens, seed)?)
            }
            Sampling::Simulated(sim) => {
                std::thread::sleep(sim.completion_cost * (prompts.len() * g) as u32);
                let mut rng = StdRng::seed_from_u64(seed);
                Ok(prompts
                    .iter()
                    .map(|p| SampledGroup {
                        prompt: p.clone(),
                        completions: (0..g)
                            .map(|_| {
                                let right = rng.random_bool(sim.p_correct);
                                SampledCompletion {
                                    text: if right {
                                        format!("\\boxed{{{}}}", p.gold)
                                    } else {
                                        format!("\\boxed{{{}1}}", p.gold)
                                    },
                                    tokens: vec![0; sim.tokens],
                                    sampler_logps: vec![-1.0; sim.tokens],
                                    policy_version: version,
                                    version_switches: vec![],
                                    temperature,
                                    finish: FinishReason::Eos,
                                }
                            })
                            .collect(),
                        node: None,
                    })
                    .collect())
            }
        }
    }
}
