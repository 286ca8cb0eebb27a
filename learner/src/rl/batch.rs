//! [`RlBatch`]: what one stage-4 micro-step consumes. Each row is a prompt and one sampled completion,
//! right-padded; the loss mask covers the completion tokens only; the sampler's log-probs (π_old) and the
//! completion's advantage ride along, aligned with the shifted targets.

use crate::batch::LmBatch;
use crate::error::{Error, Result};
use crate::rl::{grpo_advantages, OverlongOutcome, RlConfig};
use phi4r_replay::Group;
use serde::Serialize;

/// One completion to train on.
#[derive(Debug, Clone, Copy)]
pub struct RlRow<'a> {
    /// The chat-templated prompt ids.
    pub prompt: &'a [u32],
    /// The sampled completion ids.
    pub completion: &'a [u32],
    /// The sampler's log-prob of each completion token under its sampling distribution (π_old).
    pub sampler_logps: &'a [f32],
    /// The temperature it was sampled at: the learner divides its logits by it, so π_θ and π_old are the
    /// same distribution (as TRL and verl do).
    pub temperature: f32,
    /// The completion's advantage.
    pub advantage: f32,
    /// Its reward after overlong shaping (PPO puts it on the last token).
    pub reward: f32,
}

/// A `(b, t)` batch of completions: inputs, targets and completion mask as an [`LmBatch`], with the
/// sampler's log-probs per target position and one advantage per row.
#[derive(Debug, Clone, PartialEq)]
pub struct RlBatch {
    lm: LmBatch,
    old_logps: Vec<f32>,
    advantages: Vec<f32>,
    rewards: Vec<f32>,
    temperatures: Vec<f32>,
}

/// What overlong handling ([`Overlong`](crate::rl::Overlong)) did to a step's completions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct OverlongStats {
    /// Completions that hit `max_new_tokens` without ending.
    pub truncated: usize,
    /// Of those, masked out of the loss ([`Overlong::Mask`](crate::rl::Overlong::Mask)).
    pub masked: usize,
    /// Mean penalty added to a completion's reward ([`Overlong::SoftPenalty`](crate::rl::Overlong::SoftPenalty); 0 otherwise).
    pub penalty_mean: f64,
}

impl RlBatch {
    /// Rows right-padded with `pad_id` to the longest prompt + completion.
    pub fn new(rows: &[RlRow], pad_id: u32) -> Result<Self> {
        let mut examples = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            if row.completion.len() != row.sampler_logps.len() {
                return Err(Error::input(
                    "RlBatch::new",
                    format!(
                        "row {r}: {} completion tokens, {} sampler log-probs",
                        row.completion.len(),
                        row.sampler_logps.len()
                    ),
                ));
            }
            if row.prompt.is_empty() || !row.advantage.is_finite() {
                return Err(Error::input("RlBatch::new", format!("row {r}: empty prompt or non-finite advantage")));
            }
            if !(row.temperature.is_finite() && row.temperature > 0.0) {
                return Err(Error::input("RlBatch::new", format!("row {r}: temperature {}", row.temperature)));
            }
            let ids: Vec<u32> = row.prompt.iter().chain(row.completion).copied().collect();
            let mask: Vec<u8> = std::iter::repeat_n(0u8, row.prompt.len())
                .chain(std::iter::repeat_n(1u8, row.completion.len()))
                .collect();
            examples.push((ids, mask));
        }
        let lm = LmBatch::from_padded(&examples, pad_id)?;
        let (_, t) = lm.dims();
        // Target position i predicts ids[i + 1]: completion token j (ids[p + j]) sits at position p + j − 1.
        let mut old_logps = vec![0f32; rows.len() * t];
        for (r, row) in rows.iter().enumerate() {
            let p = row.prompt.len();
            for (j, &lp) in row.sampler_logps.iter().enumerate() {
                old_logps[r * t + p + j - 1] = lp;
            }
        }
        Ok(RlBatch {
            lm,
            old_logps,
            advantages: rows.iter().map(|r| r.advantage).collect(),
            rewards: rows.iter().map(|r| r.reward).collect(),
            temperatures: rows.iter().map(|r| r.temperature).collect(),
        })
    }

    /// Every completion of `groups` with its reward after `rl.overlong` and its group-relative advantage
    /// ([`grpo_advantages`] with `rl.algo`'s normalization, each group on its own, over all its
    /// completions), in micro-batches of at most `micro_batch` rows. Completions masked by
    /// [`Overlong::Mask`](crate::rl::Overlong::Mask) and empty ones are left out (after their group's advantages are taken, as DAPO).
    pub fn from_groups(
        groups: &[Group],
        rl: &RlConfig,
        micro_batch: usize,
        pad_id: u32,
    ) -> Result<(Vec<Self>, OverlongStats)> {
        let mut rows = Vec::new();
        let (mut stats, mut penalty, mut n) = (OverlongStats::default(), 0f64, 0usize);
        for g in groups {
            let shaped: Vec<OverlongOutcome> = g
                .completions
                .iter()
                .map(|c| rl.overlong.apply(c.reward, c.tokens.len(), rl.max_new_tokens, c.truncated))
                .collect();
            let rewards: Vec<f32> = shaped.iter().map(|o| o.reward).collect();
            let adv = grpo_advantages(&rewards, g.completions.len().max(1), rl.algo.adv_norm())?;
            for ((c, a), o) in g.completions.iter().zip(adv).zip(&shaped) {
                n += 1;
                penalty += f64::from(o.penalty);
                stats.truncated += usize::from(c.truncated);
                if !o.in_loss {
                    stats.masked += 1;
                    continue;
                }
                rows.push(RlRow {
                    prompt: &g.prompt.ids,
                    completion: &c.tokens,
                    sampler_logps: &c.sampler_logps,
                    temperature: c.temperature,
                    advantage: a,
                    reward: o.reward,
                });
            }
        }
        stats.penalty_mean = if n == 0 { 0.0 } else { penalty / n as f64 };
        rows.retain(|r| !r.completion.is_empty());
        if rl.mini_batches <= 1 {
            // One update per pass sums every micro-batch's gradient, weighted by its share of the step
            // (`rl_weight`), so the order of the rows changes nothing but the padding: micro-batches of
            // completions of like length pad less (its effect on the streamed stage 4's wall time was
            // inside the run-to-run spread). With several mini-batches the order would decide which rows
            // share an update, so it is left as sampled.
            rows.sort_by_key(|r| r.prompt.len() + r.completion.len());
        }
        let batches =
            rows.chunks(micro_batch.max(1)).map(|chunk| RlBatch::new(chunk, pad_id)).collect::<Result<_>>()?;
        Ok((batches, stats))
    }

    /// The inputs, targets and completion mask.
    pub fn lm(&self) -> &LmBatch {
        &self.lm
    }

    /// The sampler's log-probs, row-major `(b, t)` over target positions (0 outside the completion).
    pub fn old_logps(&self) -> &[f32] {
        &self.old_logps
    }

    /// The sampling temperature of each row.
    pub fn temperatures(&self) -> &[f32] {
        &self.temperatures
    }

    /// One advantage per row.
    pub fn advantages(&self) -> &[f32] {
        &self.advantages
    }

    /// One reward per row (after overlong shaping).
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }

    /// Rows (completions).
    pub fn len(&self) -> usize {
        self.advantages.len()
    }

    /// Whether there are no rows (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.advantages.is_empty()
    }

    /// Completion tokens (the loss's tokens).
    pub fn completion_tokens(&self) -> usize {
        self.lm.loss_tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_sampler_logps_with_the_shifted_completion_targets() -> Result<()> {
        let rows = [
            RlRow {
                prompt: &[1, 2],
                completion: &[5, 6, 7],
                sampler_logps: &[-0.1, -0.2, -0.3],
                temperature: 1.0,
                advantage: 1.0,
                reward: 1.0,
            },
            RlRow {
                prompt: &[3],
                completion: &[8],
                sampler_logps: &[-0.4],
                temperature: 1.0,
                advantage: -1.0,
                reward: -1.0,
            },
        ];
        let b = RlBatch::new(&rows, 0)?;
        assert_eq!(b.lm().dims(), (2, 5));
        assert_eq!(b.lm().targets(), &[2, 5, 6, 7, 0, 8, 0, 0, 0, 0]);
        assert_eq!(b.lm().loss_mask(), &[0., 1., 1., 1., 0., 1., 0., 0., 0., 0.]);
        assert_eq!(b.old_logps(), &[0., -0.1, -0.2, -0.3, 0., -0.4, 0., 0., 0., 0.]);
        assert_eq!((b.advantages(), b.completion_tokens()), (&[1.0, -1.0][..], 4));
        let bad = RlRow {
            prompt: &[1],
            completion: &[2, 3],
            sampler_logps: &[-0.1],
            temperature: 1.0,
            advantage: 0.0,
            reward: 0.0,
        };
        assert!(RlBatch::new(&[bad], 0).is_err());
        Ok(())
    }

    /// A scored completion of `len` tokens (`truncated`: cut at the length limit).
    fn scored(reward: f32, len: usize, truncated: bool) -> phi4r_replay::ScoredCompletion {
        use phi4r_replay::{PolicyVersion, RewardPolicyId, ScoredCompletion};
        use phi4r_rollout::FinishReason;
        ScoredCompletion {
            tokens: vec![7; len],
            sampler_logps: vec![-0.5; len],
            policy_version: PolicyVersion(0),
            version_switches: vec![],
            temperature: 1.0,
            finish: if truncated { FinishReason::Length } else { FinishReason::Eos },
            reward,
            truncated,
            reward_policy: RewardPolicyId(0),
        }
    }

    // Two groups whose completions alternate short and long: one update per pass trains them in
    // micro-batches of like length (less padding), several mini-batches keep the sampled order.
    #[test]
    fn micro_batches_hold_completions_of_like_length_when_one_update_takes_them_all() -> Result<()> {
        use phi4r_replay::{Prompt, PromptId};
        let completion = |reward: f32, len: usize| scored(reward, len, false);
        let group = |id| Group {
            prompt: Prompt { id: PromptId(id), ids: vec![1, 2], gold: "4".into(), tier: 1 },
            completions: vec![completion(1.0, 9), completion(-1.0, 1)],
            node: None,
        };
        let groups = [group(1), group(2)];
        let rl = RlConfig { max_new_tokens: 16, ..RlConfig::default() };
        let (batches, _) = RlBatch::from_groups(&groups, &rl, 2, 0)?;
        // Widths are prompt + completion: 3 and 11.
        let widths: Vec<usize> = batches.iter().map(|b| b.lm().dims().1).collect();
        assert_eq!(widths, vec![3, 11]);
        assert_eq!(batches[0].rewards(), &[-1.0, -1.0]);
        let total: usize = batches.iter().map(RlBatch::completion_tokens).sum();
        assert_eq!(total, 20, "every completion token is still trained");
        let (batches, _) = RlBatch::from_groups(&groups, &RlConfig { mini_batches: 2, ..rl }, 2, 0)?;
        let widths: Vec<usize> = batches.iter().map(|b| b.lm().dims().1).collect();
        assert_eq!(widths, vec![11, 11]);
        Ok(())
    }

    // One group of three, the last truncated at max_new_tokens 4: rewards [+1, -1, -1]. Mask drops the
    // truncated row after the group's advantages are taken; SoftPenalty with cache 2 keeps it and shapes
    // the rewards by length (lengths 1, 3, 4: penalties 0, -0.5, -1); Off keeps everything as is.
    #[test]
    fn overlong_masks_or_penalizes_truncated_completions() -> Result<()> {
        use crate::rl::Overlong;
        use phi4r_replay::{Prompt, PromptId};
        let completion = |reward: f32, len: usize| scored(reward, len, len == 4);
        let g = Group {
            prompt: Prompt { id: PromptId(1), ids: vec![1, 2, 3], gold: "42".into(), tier: 1 },
            completions: vec![completion(1.0, 1), completion(-1.0, 3), completion(-1.0, 4)],
            node: None,
        };
        let mut rl = RlConfig { max_new_tokens: 4, ..RlConfig::default() };
        let (batches, stats) = RlBatch::from_groups(std::slice::from_ref(&g), &rl, 8, 0)?;
        assert_eq!((batches[0].len(), stats.truncated, stats.masked), (2, 1, 1));
        assert_eq!(batches[0].rewards(), &[1.0, -1.0]);
        // advantages over all three: mean -1/3, std 1.1547 -> +1.1547, -0.5774 (the masked one's -0.5774 unused)
        assert!((batches[0].advantages()[0] - 1.1547).abs() < 1e-3, "{:?}", batches[0].advantages());
        rl.overlong = Overlong::SoftPenalty { cache_len: 2 };
        let (batches, stats) = RlBatch::from_groups(std::slice::from_ref(&g), &rl, 8, 0)?;
        assert_eq!((batches[0].len(), stats.masked), (3, 0));
        assert_eq!(batches[0].rewards(), &[1.0, -1.5, -2.0]);
        assert!((stats.penalty_mean + 0.5).abs() < 1e-9);
        rl.overlong = Overlong::Off;
        let (batches, _) = RlBatch::from_groups(std::slice::from_ref(&g), &rl, 8, 0)?;
        assert_eq!(batches[0].rewards(), &[1.0, -1.0, -1.0]);
        Ok(())
    }
}
