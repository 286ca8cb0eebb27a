//! GRPO's group-relative advantages (Shao et al. 2024, "DeepSeekMath", §4.1.2 outcome supervision), with
//! Dr. GRPO's unnormalized variant (Liu et al. 2025, "Understanding R1-Zero-Like Training", §3.1).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a group's centered rewards are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdvNorm {
    /// Divide by the group's standard deviation (unbiased, as `torch.std`) plus `eps` (GRPO, TRL's
    /// `scale_rewards=True`).
    Std {
        /// Added to the standard deviation (TRL 1e-4, verl 1e-6).
        eps: f32,
    },
    /// No division (Dr. GRPO: the std term biases towards too-easy and too-hard prompts; verl's
    /// `norm_adv_by_std_in_grpo=False`).
    None,
}

impl Default for AdvNorm {
    fn default() -> Self {
        AdvNorm::Std { eps: 1e-4 }
    }
}

/// Group-relative advantages: each reward minus its group's mean, optionally over the group's std.
///
/// `rewards` holds consecutive groups of `group` completions of the same prompt. A group of one has no
/// baseline and gets advantage 0. Each group's advantages sum to 0.
///
/// ```text
/// # reference (TRL GRPOTrainer._generate_and_score_completions):
/// mean_grouped_rewards = rewards.view(-1, G).mean(dim=1).repeat_interleave(G)
/// std_grouped_rewards = rewards.view(-1, G).std(dim=1).repeat_interleave(G)
/// advantages = rewards - mean_grouped_rewards
/// if scale_rewards: advantages = advantages / (std_grouped_rewards + 1e-4)
/// ```
///
/// # Shapes
/// `rewards`: (b·g) → (b·g)
///
/// ```
/// use phi4r_learner::rl::{grpo_advantages, AdvNorm};
/// let adv = grpo_advantages(&[1.0, -1.0, 1.0, -1.0], 2, AdvNorm::None).unwrap();
/// assert_eq!(adv, vec![1.0, -1.0, 1.0, -1.0]);
/// ```
pub fn grpo_advantages(rewards: &[f32], group: usize, norm: AdvNorm) -> Result<Vec<f32>> {
    if group == 0 || !rewards.len().is_multiple_of(group) {
        return Err(Error::input(
            "grpo_advantages",
            format!("{} rewards do not split into groups of {group}", rewards.len()),
        ));
    }
    let mut out = Vec::with_capacity(rewards.len());
    for chunk in rewards.chunks(group) {
        let n = chunk.len() as f64;
        let mean = chunk.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let scale = match norm {
            AdvNorm::None => 1.0,
            AdvNorm::Std { eps } => {
                let var = if chunk.len() < 2 {
                    0.0
                } else {
                    chunk.iter().map(|&r| (f64::from(r) - mean).powi(2)).sum::<f64>() / (n - 1.0)
                };
                1.0 / (var.sqrt() + f64::from(eps))
            }
        };
        out.extend(chunk.iter().map(|&r| ((f64::from(r) - mean) * scale) as f32));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::close;
    use proptest::prelude::*;

    // torch:
    //   r = torch.tensor([1., -1., -1., -1., 1., 1., -1., -1., 1., 1., 1., 1.]).view(-1, 4)
    //   mean = [-0.5, 0, 1]; std (unbiased) = [1.0, 1.1547005, 0.0]
    //   (r - mean) / (std + 1e-4) = [[1.49985, -0.49995 x3], [0.865950 x2, -0.865950 x2], [0 x4]]
    //   Dr. GRPO (r - mean):      = [[1.5, -0.5 x3], [1, 1, -1, -1], [0 x4]]
    #[test]
    fn grpo_advantages_match_trl_and_dr_grpo() -> Result<()> {
        let r = [1.0, -1., -1., -1., 1., 1., -1., -1., 1., 1., 1., 1.];
        let std = grpo_advantages(&r, 4, AdvNorm::Std { eps: 1e-4 })?;
        let want = [1.49985, -0.49995, -0.49995, -0.49995, 0.86595, 0.86595, -0.86595, -0.86595, 0., 0., 0., 0.];
        for (a, b) in std.iter().zip(want) {
            close(*a, b, 1e-5);
        }
        let dr = grpo_advantages(&r, 4, AdvNorm::None)?;
        assert_eq!(dr, vec![1.5, -0.5, -0.5, -0.5, 1., 1., -1., -1., 0., 0., 0., 0.]);
        assert_eq!(grpo_advantages(&[1.0, -1.0], 1, AdvNorm::default())?, vec![0.0, 0.0]);
        assert!(grpo_advantages(&r, 5, AdvNorm::None).is_err());
        assert!(grpo_advantages(&r, 0, AdvNorm::None).is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn a_groups_advantages_sum_to_zero(
            g in 1usize..9, groups in 1usize..6, std in any::<bool>(),
            seed in proptest::collection::vec(-1.0f32..1.0, 64),
        ) {
            let rewards: Vec<f32> = seed.iter().cycle().take(g * groups).copied().collect();
            let norm = if std { AdvNorm::Std { eps: 1e-4 } } else { AdvNorm::None };
            let adv = grpo_advantages(&rewards, g, norm).expect("divisible");
            for chunk in adv.chunks(g) {
                let s: f32 = chunk.iter().sum();
                prop_assert!(s.abs() < 1e-3 * g as f32, "sum {s} of {chunk:?}");
            }
        }
    }
}
