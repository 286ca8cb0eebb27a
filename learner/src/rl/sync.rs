//! Stage 4 run synchronously and on-policy, one step at a time (the policy version is the step): draw
//! prompts, sample `group_size` completions of each from a frozen copy of the current weights, verify
//! them (+1 / −1), filter and balance the groups, oversample while the balancer reports a shortfall
//! (at most `rl.max_draw_rounds` rounds), then [`Learner::rl_step`].
//!
//! Each part is its own call so a streaming runtime (N generator actors, a replay buffer) can replace
//! [`collect_groups`] and keep the rest: [`GroupSampler::sample`] is one generator's work,
//! [`collect_groups`] the prompt source + balancer loop (the generator actor's job in `stage rl`),
//! [`train_collected`] the learner's side; [`rl_sync_step`] is the two in one call.

use crate::error::{Error, Result};
use crate::learner::{Learner, RlStats, StepEvent};
use crate::rl::RlBatch;
use phi4r_replay::{collect_groups, CollectReport, Collected, GroupSampler, PromptSource};
use serde::Serialize;

/// What one synchronous stage-4 step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlStepReport {
    /// The learner's step event (skipped, with a NaN loss, when nothing was trained).
    pub step: StepEvent,
    /// RL metrics of the update (None when every group was filtered out).
    pub rl: Option<RlStats>,
    /// What sampling and balancing saw.
    pub collect: CollectReport,
}

/// One synchronous on-policy step: [`collect_groups`] from a frozen copy of the learner's weights, then
/// [`Learner::rl_step`] on the kept groups (or [`Learner::idle_step`] when none was kept); the too-easy
/// memory is recorded in the learner for its checkpoints.
pub fn rl_sync_step(learner: &mut Learner, sampler: &GroupSampler, source: &PromptSource) -> Result<RlStepReport> {
    let step = learner.state().step;
    let policy = learner.model().frozen()?;
    let easy = learner.easy().cloned().unwrap_or_default();
    let params = learner.config().rl.collect_params(learner.config().seed, step);
    let collected = collect_groups(&policy, sampler, source, easy, &params).map_err(|e| match e {
        phi4r_replay::Error::Config { key, reason } => Error::config(format!("rl.{key}"), reason),
        other => Error::input("collect_groups", other.to_string()),
    })?;
    drop(policy);
    train_collected(learner, collected, sampler.pad_id())
}

/// The learner's side of a step: records the too-easy memory, then [`Learner::rl_step`] on the collected
/// groups (padded with `pad_id`), or [`Learner::idle_step`] when there are none.
pub fn train_collected(learner: &mut Learner, collected: Collected, pad_id: u32) -> Result<RlStepReport> {
    let Collected { groups, easy, report } = collected;
    if report.policy_version != learner.state().step {
        return Err(Error::input(
            "train_collected",
            format!(
                "groups sampled by policy version {} reached the learner at step {} (synchronous on-policy training)",
                report.policy_version,
                learner.state().step
            ),
        ));
    }
    learner.record_easy(easy);
    if groups.is_empty() {
        return Ok(RlStepReport { step: learner.idle_step()?, rl: None, collect: report });
    }
    let (step, rl) = train_batch(learner, &groups, pad_id)?;
    Ok(RlStepReport { step, rl, collect: report })
}

/// What one streaming stage-4 step did (the batch came from the replay buffer, not a collection).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RlTrainReport {
    /// The learner's step event (skipped, with a NaN loss, when the batch was empty).
    pub step: StepEvent,
    /// RL metrics of the update (None when the batch was empty).
    pub rl: Option<RlStats>,
}

/// The learner's side of a streaming step: [`Learner::rl_step`] on `groups` (sampled by any policy
/// version the runtime admitted: the clipped ratio is taken against each completion's own sampler
/// log-probs), or [`Learner::idle_step`] when there are none; records the too-easy memory `easy` for the
/// next checkpoint.
pub fn train_groups(
    learner: &mut Learner,
    groups: &[phi4r_replay::Group],
    easy: phi4r_replay::EasyMemory,
    pad_id: u32,
) -> Result<RlTrainReport> {
    learner.record_easy(easy);
    if groups.is_empty() {
        return Ok(RlTrainReport { step: learner.idle_step()?, rl: None });
    }
    let (step, rl) = train_batch(learner, groups, pad_id)?;
    Ok(RlTrainReport { step, rl })
}

/// [`RlBatch::from_groups`] then [`Learner::rl_step`], or [`Learner::idle_step`] when overlong masking
/// left nothing to train; the overlong counts go into the step's [`RlStats`].
fn train_batch(
    learner: &mut Learner,
    groups: &[phi4r_replay::Group],
    pad_id: u32,
) -> Result<(StepEvent, Option<RlStats>)> {
    let cfg = learner.config();
    let (batches, overlong) = RlBatch::from_groups(groups, &cfg.rl, cfg.micro_batch, pad_id)?;
    if batches.is_empty() {
        return Ok((learner.idle_step()?, None));
    }
    let mut ev = learner.rl_step(&batches)?;
    ev.rl.overlong = overlong;
    Ok((ev.step, Some(ev.rl)))
}
