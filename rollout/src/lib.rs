//! Generation for phi4r: batched sampling over an explicit KV cache from frozen weights.
//!
//! - [`SamplingConfig`] / [`sample`] (`sampling`): temperature (0 = greedy), top-k, top-p, and the
//!   log-probability of each choice; [`TemperatureSchedule`] for stage 4's annealing.
//! - [`generate`] (`generate`): left-padded batches, stop at EOS ids or stop strings, per-sequence
//!   [`FinishReason`], seeded per-row random streams.
//!
//! - [`evaluate`] (`eval`): held-out accuracy per tier with Wilson intervals (`phi4r-actors eval`).
//!
//! Depends on `phi4r-model`, `phi4r-data` (chat template, problem records) and `phi4r-verifier` (grading
//! in `eval`); knows nothing of actors.
#![warn(missing_docs)]

mod error;
pub mod eval;
mod generate;
mod sampling;

pub use error::{Error, Result};
pub use eval::{
    evaluate, majority_is_correct, paired_difference, select_per_tier, tally, wilson, wilson_share, EvalConfig,
    EvalReport, Graded, PairedDifference, TierResult,
};
pub use generate::{generate, generate_in_flight, FinishReason, Generation, InFlight, StopRule};
pub use sampling::{sample, Sampled, SamplingConfig, TemperatureSchedule};

/// The version of the policy weights that produced a rollout (incremented by every learner update that
/// is published to the generators). A newtype, so a version is never passed where a step is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct PolicyVersion(pub u64);

impl PolicyVersion {
    /// How many versions `self` lags behind `current` (0 if it is not older).
    pub fn staleness(self, current: PolicyVersion) -> u64 {
        current.0.saturating_sub(self.0)
    }
}
