//! The learner of phi4r: the logic of training stages 1–4 (mid-training, SFT, rollout DPO, RLVR with
//! GRPO), synchronous and deterministic so a plain test drives it. The `actors` crate wraps it in a
//! learner actor (and, for stage 4, a generator actor).
//!
//! - [`loss`]: [`lm_loss`] (masked token-mean NLL, packing-aware), [`sequence_logps`], [`dpo_loss`]
//!   (sigmoid DPO with implicit-reward metrics, [`DpoOutput`]).
//! - [`LmBatch`] / [`PairBatch`] (`batch`): what a step consumes, built from packed or padded rows.
//! - [`AdamW`] (`optim`): decoupled weight decay as `torch.optim.AdamW`, with savable moments;
//!   [`Grads`], [`clip_grad_norm`], [`is_finite_step`] (`grads`): accumulation, global-norm clipping,
//!   the NaN/inf check.
//! - [`LrSchedule`] (`schedule`): warmup then cosine / linear / constant, a pure `lr_at(step)`.
//! - [`StageConfig`] (`config`): TOML stage configs with profiles, validated, errors naming the key.
//! - [`lm_step`] / [`dpo_step`] (`step`): one micro-batch's forward + backward → [`StepOutput`].
//! - [`Learner`] (`learner`): owns model, optimizer, schedule, [`TrainState`] and the frozen reference
//!   (DPO, with its [`RefCache`]; RL's KL anchor); `train_step` / `dpo_step` / `rl_step` return
//!   [`StepEvent`]s; bad steps are skipped and counted.
//! - [`bench`](mod@bench): the learner's real step timed for `bench model`.
//! - [`checkpoint`]: atomic step folders (HF weights + optimizer + state), `latest`, exact resume;
//!   [`inputs`]: fingerprints of the data, tokenizer and reference, and [`resume_changes`], the guard
//!   that refuses to resume a checkpoint into a different run.
//! - [`StageFeed`] (`feed`): a stage's data in its seeded epoch order, the one owner of the data cursor.
//! - [`rl`]: stage 4 — the math ([`grpo_advantages`] (GRPO / Dr. GRPO), [`gae`] (PPO), [`k3_kl`],
//!   [`clipped_surrogate`] with clip-higher and the [`LossAgg`] choices, [`truncated_is_weights`],
//!   [`value_loss_clipped`] and DAPO's [`overlong_penalty`], each with a golden test against the TRL /
//!   verl / OpenRLHF formula), [`RlConfig`] (`[rl]`), [`RlBatch`] (what [`Learner::rl_step`] consumes) and
//!   the synchronous on-policy step ([`phi4r_replay::collect_groups`] + [`rl::train_collected`]); PPO's value
//!   head is [`Critic`], its targets [`ppo_targets`].
//!
//! Depends on `phi4r-model`, `phi4r-data`, and for stage 4 `phi4r-replay`, `phi4r-rollout` (sampling)
//! and `phi4r-verifier` (rewards); never on tokio, ractor or a logger: stats leave as typed events.
#![warn(missing_docs)]

mod batch;
pub mod bench;
pub mod checkpoint;
mod config;
mod error;
pub mod feed;
pub mod grads;
pub mod inputs;
mod learner;
pub mod loss;
mod optim;
mod parallel;
mod reference;
pub mod rl;
mod schedule;
mod state;
mod step;

pub use batch::{LmBatch, LmTensors, PairBatch, PairId};
pub use checkpoint::{latest_checkpoint, write_checkpoint};
pub use config::{stage_file, Stage, StageConfig};
pub use error::{Error, Result};
pub use feed::{FeedReport, FeedStep, StageBatch, StageFeed};
pub use grads::{clip_grad_norm, is_finite_step, Grads};
pub use inputs::{resume_changes, Change, FileFingerprint, RunInputs};
pub use learner::{DpoStats, DpoStepEvent, Learner, RlShard, RlStats, RlStepEvent, StepEvent};
pub use loss::{dpo_loss, lm_loss, sequence_logps, DpoOutput};
pub use optim::{AdamW, AdamWConfig};
pub use parallel::DataParallel;
pub use reference::{batch_logps, RefCache, RefLogps};
pub use rl::{
    aggregate, clipped_surrogate, explained_variance, gae, grpo_advantages, k3_kl, outcome_rewards, overlong_penalty,
    ppo_targets, truncated_is_weights, value_loss_clipped, whiten, AdvNorm, Clip, Critic, IsWeights, LossAgg,
    OffPolicy, Overlong, OverlongOutcome, OverlongStats, PolicyLossOutput, RlAlgo, RlBatch, RlConfig, RlRow,
    ValueLossOutput, WeightSync,
};
pub use schedule::{Decay, LrSchedule};
pub use state::{DataCursor, TrainState};
pub use step::{
    dpo_step, lm_step, rl_step, DpoMicroStats, LmStats, PpoMicro, ProximalMicro, RlMicroOutput, RlMicroStats,
    StepOutput,
};
