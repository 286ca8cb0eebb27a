//! Reward policies: map an [`Outcome`] to a scalar reward.
//!
//! The policy is data (a serde-tagged enum), so the actors can swap it at run time with a
//! control message.

use serde::{Deserialize, Serialize};

use crate::verdict::Outcome;

/// How an outcome becomes a reward.
///
/// JSON/TOML form: `{"kind": "binary"}`, `{"kind": "zero_one"}`,
/// `{"kind": "format_aware", "correct": 1.0, "wrong": -0.5, "no_answer": -1.0, "truncated": -1.0, "too_complex": 0.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RewardPolicy {
    /// +1 when correct, −1 otherwise (the seed's reward).
    #[default]
    Binary,
    /// 1 when correct, 0 otherwise.
    ZeroOne,
    /// Its own value for every outcome, e.g. to punish a missing or truncated answer more
    /// than a wrong one.
    FormatAware {
        /// Reward of a correct answer.
        correct: f32,
        /// Reward of a wrong answer.
        wrong: f32,
        /// Reward when no final answer was found.
        no_answer: f32,
        /// Reward when the response was truncated before a final answer.
        truncated: f32,
        /// Reward when the verifier could not decide within its budgets.
        too_complex: f32,
    },
}

impl RewardPolicy {
    /// The reward for `outcome`.
    ///
    /// ```
    /// use phi4r_verifier::{Outcome, RewardPolicy};
    /// assert_eq!(RewardPolicy::Binary.reward(Outcome::NoAnswer), -1.0);
    /// assert_eq!(RewardPolicy::ZeroOne.reward(Outcome::Correct), 1.0);
    /// ```
    pub fn reward(&self, outcome: Outcome) -> f32 {
        match *self {
            RewardPolicy::Binary => {
                if outcome == Outcome::Correct {
                    1.0
                } else {
                    -1.0
                }
            }
            RewardPolicy::ZeroOne => {
                if outcome == Outcome::Correct {
                    1.0
                } else {
                    0.0
                }
            }
            RewardPolicy::FormatAware { correct, wrong, no_answer, truncated, too_complex } => match outcome {
                Outcome::Correct => correct,
                Outcome::Wrong => wrong,
                Outcome::NoAnswer => no_answer,
                Outcome::Truncated => truncated,
                Outcome::TooComplex => too_complex,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_zero_one_rewards() {
        for o in Outcome::ALL {
            let c = o == Outcome::Correct;
            assert_eq!(RewardPolicy::Binary.reward(o), if c { 1.0 } else { -1.0 });
            assert_eq!(RewardPolicy::ZeroOne.reward(o), if c { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn format_aware_uses_its_own_values() {
        let p = RewardPolicy::FormatAware {
            correct: 1.0,
            wrong: -0.5,
            no_answer: -1.0,
            truncated: -0.75,
            too_complex: 0.0,
        };
        assert_eq!(p.reward(Outcome::Correct), 1.0);
        assert_eq!(p.reward(Outcome::Wrong), -0.5);
        assert_eq!(p.reward(Outcome::NoAnswer), -1.0);
        assert_eq!(p.reward(Outcome::Truncated), -0.75);
        assert_eq!(p.reward(Outcome::TooComplex), 0.0);
    }

    #[test]
    fn policies_are_kind_tagged_in_json() {
        let p: RewardPolicy = serde_json::from_str(r#"{"kind":"zero_one"}"#).expect("parses");
        assert_eq!(p, RewardPolicy::ZeroOne);
        let p: RewardPolicy = serde_json::from_str(
            r#"{"kind":"format_aware","correct":1,"wrong":0,"no_answer":-1,"truncated":-1,"too_complex":0}"#,
        )
        .expect("parses");
        assert_eq!(p.reward(Outcome::Truncated), -1.0);
        assert_eq!(serde_json::to_string(&RewardPolicy::Binary).expect("serializable"), r#"{"kind":"binary"}"#);
    }
}
