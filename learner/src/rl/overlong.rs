//! Overlong completions (DAPO, Yu et al. 2025, §3.4): a completion cut at the length limit gets the −1 of
//! a wrong answer although its reasoning may be sound, which is reward noise. Either mask truncated
//! completions out of the loss (overlong filtering) or shape the reward with a soft penalty that grows
//! over the last `cache_len` tokens before the limit (soft overlong punishment, eq. 13).

use serde::{Deserialize, Serialize};

/// DAPO's soft overlong punishment for a completion of `len` tokens under a limit of `max_len`:
/// 0 up to `max_len − cache_len`, then falling linearly to −1 at `max_len`, and −1 beyond.
///
/// ```text
/// # reference (DAPO eq. 13):
/// R_length(y) = 0                                  if |y| <= L_max - L_cache
///             = ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max
///             = -1                                 if L_max < |y|
/// ```
///
/// ```
/// use phi4r_learner::rl::overlong_penalty;
/// assert_eq!(overlong_penalty(18432, 20480, 4096), -0.5);
/// ```
pub fn overlong_penalty(len: usize, max_len: usize, cache_len: usize) -> f32 {
    let expected = max_len.saturating_sub(cache_len);
    if len <= expected {
        0.0
    } else if len > max_len || cache_len == 0 {
        -1.0
    } else {
        -((len - expected) as f64 / cache_len as f64) as f32
    }
}

/// What to do about completions that hit the length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Overlong {
    /// Nothing: a truncated completion keeps its reward and its place in the loss.
    Off,
    /// Overlong filtering: truncated completions are masked out of the loss.
    #[default]
    Mask,
    /// Soft overlong punishment: [`overlong_penalty`] is added to every completion's reward.
    SoftPenalty {
        /// Length of the band before the limit over which the penalty grows from 0 to −1.
        cache_len: usize,
    },
}

/// One completion's reward and loss membership after overlong handling (each part reported as a metric).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlongOutcome {
    /// The reward after shaping.
    pub reward: f32,
    /// The penalty added (0 unless [`Overlong::SoftPenalty`]).
    pub penalty: f32,
    /// Whether the completion stays in the loss (false only for a truncated one under [`Overlong::Mask`]).
    pub in_loss: bool,
}

impl Overlong {
    /// Applies the policy to a completion of `len` tokens with `reward`, `truncated` when it hit
    /// `max_len` without ending.
    pub fn apply(&self, reward: f32, len: usize, max_len: usize, truncated: bool) -> OverlongOutcome {
        match *self {
            Overlong::Off => OverlongOutcome { reward, penalty: 0.0, in_loss: true },
            Overlong::Mask => OverlongOutcome { reward, penalty: 0.0, in_loss: !truncated },
            Overlong::SoftPenalty { cache_len } => {
                let penalty = overlong_penalty(len, max_len, cache_len);
                OverlongOutcome { reward: reward + penalty, penalty, in_loss: true }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DAPO eq. 13 with L_max = 20480, L_cache = 4096 (the paper's setting), by hand:
    //   16384 -> 0; 17408 -> (16384 - 17408) / 4096 = -0.25; 18432 -> -0.5; 20480 -> -1; 20481 -> -1
    #[test]
    fn soft_penalty_matches_dapo_eq_13() {
        for (len, want) in [(100, 0.0), (16384, 0.0), (17408, -0.25), (18432, -0.5), (20480, -1.0), (20481, -1.0)] {
            assert_eq!(overlong_penalty(len, 20480, 4096), want, "len {len}");
        }
        assert_eq!(overlong_penalty(20480, 20480, 0), 0.0);
        assert_eq!(overlong_penalty(20481, 20480, 0), -1.0);
        assert_eq!(overlong_penalty(5, 8, 100), -0.05);
    }

    #[test]
    fn policies_mask_or_shape_and_report() {
        assert_eq!(
            Overlong::Mask.apply(-1.0, 8, 8, true),
            OverlongOutcome { reward: -1.0, penalty: 0.0, in_loss: false }
        );
        assert!(Overlong::Mask.apply(1.0, 4, 8, false).in_loss);
        assert_eq!(
            Overlong::Off.apply(-1.0, 8, 8, true),
            OverlongOutcome { reward: -1.0, penalty: 0.0, in_loss: true }
        );
        let soft = Overlong::SoftPenalty { cache_len: 4 }.apply(1.0, 6, 8, false);
        assert_eq!(soft, OverlongOutcome { reward: 0.5, penalty: -0.5, in_loss: true });
        let parsed: Overlong = serde_json::from_str(r#"{"kind": "soft_penalty", "cache_len": 4}"#).expect("parse");
        assert_eq!(parsed, Overlong::SoftPenalty { cache_len: 4 });
        assert!(serde_json::from_str::<Overlong>(r#"{"kind": "soft_penalty", "cache": 4}"#).is_err());
    }
}
