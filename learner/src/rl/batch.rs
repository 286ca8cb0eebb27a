//! [`RlBatch`]: what one stage-4 micro-step consumes. Each row is a prompt and one sampled completion,
//! right-padded; the loss mask covers the completion tokens only; the sampler's log-probs (π_old) and the
//! completion's advantage ride along, aligned with the shifted targets.

use crate::batch::LmBatch;
use crate::error::{Error, Result};
use crate::rl::{grpo_advantages, AdvNorm};
use phi4r_replay::Group;

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
}

/// A `(b, t)` batch of completions: inputs, targets and completion mask as an [`LmBatch`], with the
/// sampler's log-probs per target position and one advantage per row.
#[derive(Debug, Clone, PartialEq)]
pub struct RlBatch {
    lm: LmBatch,
    old_logps: Vec<f32>,
    advantages: Vec<f32>,
    temperatures: Vec<f32>,
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
            temperatures: rows.iter().map(|r| r.temperature).collect(),
        })
    }

    /// Every completion of `groups` with its group-relative advantage ([`grpo_advantages`], each group
    /// normalized on its own), in micro-batches of at most `micro_batch` rows.
    pub fn from_groups(groups: &[Group], norm: AdvNorm, micro_batch: usize, pad_id: u32) -> Result<Vec<Self>> {
        let mut rows = Vec::new();
        for g in groups {
            let adv = grpo_advantages(&g.rewards(), g.completions.len().max(1), norm)?;
            for (c, a) in g.completions.iter().zip(adv) {
                rows.push(RlRow {
                    prompt: &g.prompt.ids,
                    completion: &c.tokens,
                    sampler_logps: &c.sampler_logps,
                    temperature: c.temperature,
                    advantage: a,
                });
            }
        }
        rows.retain(|r| !r.completion.is_empty());
        rows.chunks(micro_batch.max(1)).map(|chunk| RlBatch::new(chunk, pad_id)).collect()
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
            },
            RlRow { prompt: &[3], completion: &[8], sampler_logps: &[-0.4], temperature: 1.0, advantage: -1.0 },
        ];
        let b = RlBatch::new(&rows, 0)?;
        assert_eq!(b.lm().dims(), (2, 5));
        assert_eq!(b.lm().targets(), &[2, 5, 6, 7, 0, 8, 0, 0, 0, 0]);
        assert_eq!(b.lm().loss_mask(), &[0., 1., 1., 1., 0., 1., 0., 0., 0., 0.]);
        assert_eq!(b.old_logps(), &[0., -0.1, -0.2, -0.3, 0., -0.4, 0., 0., 0., 0.]);
        assert_eq!((b.advantages(), b.completion_tokens()), (&[1.0, -1.0][..], 4));
        let bad = RlRow { prompt: &[1], completion: &[2, 3], sampler_logps: &[-0.1], temperature: 1.0, advantage: 0.0 };
        assert!(RlBatch::new(&[bad], 0).is_err());
        Ok(())
    }
}
