//! Group filters of stage 4, as pure functions returning a typed decision:
//!
//! - **no signal** (reward re-balancing, DAPO's dynamic sampling): a group whose rewards are all equal
//!   (all +1 or all −1) has zero GRPO advantage everywhere, so it costs compute and teaches nothing;
//! - **non-uniform length** (prompt optimization): a group whose completion lengths spread too much (the
//!   coefficient of variation, std / mean, above a threshold) is dropped, keeping prompts whose sampled
//!   responses have uniform length.
//!
//! The no-signal check runs first, so an all-correct group is always reported as such (the balancer
//! remembers those prompts as too easy).

use crate::error::{Error, Result};
use crate::types::Group;
use serde::{Deserialize, Serialize};

/// Which filters run, each on by default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Drop groups whose rewards are all equal (no signal).
    pub drop_no_signal: bool,
    /// Drop groups whose completion lengths are not uniform (`max_length_cv`).
    pub length_filter: bool,
    /// The largest coefficient of variation (population std / mean) of a kept group's completion lengths.
    /// Seed 0.5 (lengths 10 and 30 sit exactly on it); calibrate per task.
    pub max_length_cv: f32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig { drop_no_signal: true, length_filter: true, max_length_cv: 0.5 }
    }
}

impl FilterConfig {
    /// Checks the ranges; errors name the key (under `prefix`, e.g. `filter.`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        if !(self.max_length_cv.is_finite() && self.max_length_cv >= 0.0) {
            return Err(Error::config(
                format!("{prefix}max_length_cv"),
                format!("must be a finite number >= 0, got {}", self.max_length_cv),
            ));
        }
        Ok(())
    }
}

/// Why a group was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DropReason {
    /// Every reward is the same: `all_correct` when they are all positive (too easy), else all wrong.
    NoSignal {
        /// All completions were positive.
        all_correct: bool,
    },
    /// The completion lengths' coefficient of variation exceeds the threshold.
    NonUniformLength {
        /// The group's coefficient of variation.
        cv: f32,
    },
}

/// What to do with a group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum FilterDecision {
    /// Train on it.
    Keep,
    /// Drop it, for this reason.
    Drop(DropReason),
}

/// Coefficient of variation of `lengths`: population standard deviation over the mean (numpy's
/// `np.std(x) / np.mean(x)`, ddof 0). 0 for fewer than two lengths or a mean of 0.
pub fn length_cv(lengths: &[usize]) -> f32 {
    if lengths.len() < 2 {
        return 0.0;
    }
    let n = lengths.len() as f64;
    let mean = lengths.iter().map(|&l| l as f64).sum::<f64>() / n;
    if mean == 0.0 {
        return 0.0;
    }
    let var = lengths.iter().map(|&l| (l as f64 - mean).powi(2)).sum::<f64>() / n;
    (var.sqrt() / mean) as f32
}

/// `Some(NoSignal)` when every reward is equal (an empty group counts as all wrong), else `None`.
pub fn no_signal(rewards: &[f32]) -> Option<DropReason> {
    let Some(&first) = rewards.first() else {
        return Some(DropReason::NoSignal { all_correct: false });
    };
    rewards.iter().all(|&r| r == first).then_some(DropReason::NoSignal { all_correct: first > 0.0 })
}

/// `Some(NonUniformLength)` when the lengths' coefficient of variation exceeds `max_cv`, else `None`.
pub fn non_uniform_length(lengths: &[usize], max_cv: f32) -> Option<DropReason> {
    let cv = length_cv(lengths);
    (cv > max_cv).then_some(DropReason::NonUniformLength { cv })
}

/// The filters of `cfg` on one group's rewards and completion lengths, no-signal first.
///
/// # Shapes
/// `rewards`, `lengths`: (g)
pub fn decide(rewards: &[f32], lengths: &[usize], cfg: &FilterConfig) -> FilterDecision {
    let reason = cfg.drop_no_signal.then(|| no_signal(rewards)).flatten().or_else(|| {
        if cfg.length_filter {
            non_uniform_length(lengths, cfg.max_length_cv)
        } else {
            None
        }
    });
    reason.map_or(FilterDecision::Keep, FilterDecision::Drop)
}

/// [`decide`] on a [`Group`].
pub fn filter_group(group: &Group, cfg: &FilterConfig) -> FilterDecision {
    decide(&group.rewards(), &group.lengths(), cfg)
}

/// Counts of filter decisions (one metric each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FilterCounts {
    /// Groups kept.
    pub kept: u64,
    /// Groups dropped because every completion was correct (too easy).
    pub no_signal_correct: u64,
    /// Groups dropped because every completion was wrong.
    pub no_signal_wrong: u64,
    /// Groups dropped for non-uniform lengths.
    pub non_uniform_length: u64,
}

impl FilterCounts {
    /// Counts one decision.
    pub fn record(&mut self, decision: &FilterDecision) {
        match decision {
            FilterDecision::Keep => self.kept += 1,
            FilterDecision::Drop(DropReason::NoSignal { all_correct: true }) => self.no_signal_correct += 1,
            FilterDecision::Drop(DropReason::NoSignal { all_correct: false }) => self.no_signal_wrong += 1,
            FilterDecision::Drop(DropReason::NonUniformLength { .. }) => self.non_uniform_length += 1,
        }
    }

    /// Groups seen.
    pub fn seen(&self) -> u64 {
        self.kept + self.no_signal_correct + self.no_signal_wrong + self.non_uniform_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::fixtures::group;
    use proptest::prelude::*;

    // numpy:
    //   x = np.array([10, 20, 30]); x.std() / x.mean()  -> 8.16497 / 20 = 0.408248
    //   x = np.array([10, 30]);     x.std() / x.mean()  -> 10 / 20 = 0.5
    //   x = np.array([5, 5, 5, 5]); x.std() / x.mean()  -> 0.0
    #[test]
    fn length_cv_matches_numpy() {
        assert!((length_cv(&[10, 20, 30]) - 0.408_248).abs() < 1e-6);
        assert!((length_cv(&[10, 30]) - 0.5).abs() < 1e-6);
        assert_eq!(length_cv(&[5, 5, 5, 5]), 0.0);
        assert_eq!(length_cv(&[7]), 0.0);
        assert_eq!(length_cv(&[0, 0]), 0.0);
    }

    // DAPO dynamic sampling (verl ray_dapo_trainer): keep a group iff std(metric) > 0, i.e. 0 < acc < 1.
    #[test]
    fn drops_groups_with_zero_reward_variance_and_says_which() {
        let cfg = FilterConfig::default();
        let easy = group(1, &[(1.0, 10), (1.0, 10)]);
        let hard = group(2, &[(-1.0, 10), (-1.0, 10)]);
        let mixed = group(3, &[(1.0, 10), (-1.0, 10)]);
        assert_eq!(filter_group(&easy, &cfg), FilterDecision::Drop(DropReason::NoSignal { all_correct: true }));
        assert_eq!(filter_group(&hard, &cfg), FilterDecision::Drop(DropReason::NoSignal { all_correct: false }));
        assert_eq!(filter_group(&mixed, &cfg), FilterDecision::Keep);
        let off = FilterConfig { drop_no_signal: false, ..cfg };
        assert_eq!(filter_group(&easy, &off), FilterDecision::Keep);
    }

    // lengths [10, 20, 30]: cv 0.408 -> kept at 0.5, dropped at 0.4; [10, 30]: cv 0.5 is kept at 0.5 (strict >).
    #[test]
    fn drops_groups_whose_length_cv_exceeds_the_threshold() {
        let cfg = FilterConfig { max_length_cv: 0.4, ..FilterConfig::default() };
        let spread = group(1, &[(1.0, 10), (-1.0, 20), (-1.0, 30)]);
        match filter_group(&spread, &cfg) {
            FilterDecision::Drop(DropReason::NonUniformLength { cv }) => assert!((cv - 0.408_248).abs() < 1e-6),
            other => panic!("expected a length drop, got {other:?}"),
        }
        assert_eq!(filter_group(&spread, &FilterConfig::default()), FilterDecision::Keep);
        assert_eq!(filter_group(&group(2, &[(1.0, 10), (-1.0, 30)]), &FilterConfig::default()), FilterDecision::Keep);
        assert_eq!(filter_group(&spread, &FilterConfig { length_filter: false, ..cfg }), FilterDecision::Keep);
    }

    #[test]
    fn no_signal_is_reported_before_length_and_counted() {
        let cfg = FilterConfig { max_length_cv: 0.1, ..FilterConfig::default() };
        let d = filter_group(&group(1, &[(1.0, 1), (1.0, 100)]), &cfg);
        assert_eq!(d, FilterDecision::Drop(DropReason::NoSignal { all_correct: true }));
        let mut counts = FilterCounts::default();
        counts.record(&d);
        counts.record(&FilterDecision::Keep);
        assert_eq!((counts.no_signal_correct, counts.kept, counts.seen()), (1, 1, 2));
    }

    #[test]
    fn config_rejects_bad_threshold_and_unknown_keys() {
        let bad = FilterConfig { max_length_cv: -1.0, ..FilterConfig::default() };
        let err = bad.validate("filter.").expect_err("negative cv");
        assert!(err.to_string().contains("filter.max_length_cv"), "{err}");
        assert!(serde_json::from_str::<FilterConfig>(r#"{"max_lenght_cv": 0.3}"#).is_err());
        let parsed: FilterConfig = serde_json::from_str(r#"{"length_filter": false}"#).expect("parse");
        assert_eq!(parsed, FilterConfig { length_filter: false, ..FilterConfig::default() });
    }

    proptest! {
        // A group with both a positive and a non-positive reward and equal lengths is always kept.
        #[test]
        fn never_drops_a_mixed_reward_group_of_uniform_length(
            rest in proptest::collection::vec(prop_oneof![Just(1.0f32), Just(-1.0f32)], 0..14),
            rotate in 0usize..16,
            len in 0usize..4096,
            max_cv in 0.0f32..2.0,
        ) {
            // One correct and one wrong completion, the rest anything, in any position.
            let mut rewards = [vec![1.0, -1.0], rest].concat();
            let k = rotate % rewards.len();
            rewards.rotate_left(k);
            let lengths = vec![len; rewards.len()];
            let cfg = FilterConfig { max_length_cv: max_cv, ..FilterConfig::default() };
            prop_assert_eq!(decide(&rewards, &lengths, &cfg), FilterDecision::Keep);
        }
    }
}
