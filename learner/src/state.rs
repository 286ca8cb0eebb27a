//! The training state beside the weights: step counter, data cursor, RNG seed and bad-step counts —
//! everything besides model and optimizer that exact resume needs.

use crate::config::Stage;
use serde::{Deserialize, Serialize};

/// Where the data stream stands: the caller resumes its stream here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataCursor {
    /// 0-based epoch.
    pub epoch: u64,
    /// Items (sequences, packed rows or pairs) of this epoch already consumed, skipped steps included.
    pub position: u64,
}

/// Counters of a stage, saved as `train_state.json` in every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// The stage being trained.
    pub stage: Stage,
    /// Optimizer steps taken so far, skipped ones included (the schedule's clock).
    pub step: u64,
    /// Steps the schedule spans.
    pub total_steps: u64,
    /// The data cursor after the last step, as the feed (its one owner, [`crate::StageFeed`]) reported it
    /// with the step: saved here so a resumed feed can seek back to it.
    pub cursor: DataCursor,
    /// Seed of the stage's random draws. The epoch order is a pure function of `(seed, epoch)`
    /// ([`phi4r_data::epoch_order`]), so there is no generator state to save.
    pub seed: u64,
    /// Non-finite steps since the last good one.
    pub bad_steps_in_row: usize,
    /// Non-finite steps in the whole stage.
    pub bad_steps_total: u64,
    /// Real (non-padding) tokens consumed.
    pub tokens_seen: u64,
}

impl TrainState {
    /// A fresh stage.
    pub fn new(stage: Stage, total_steps: u64, seed: u64) -> Self {
        TrainState {
            stage,
            step: 0,
            total_steps,
            cursor: DataCursor::default(),
            seed,
            bad_steps_in_row: 0,
            bad_steps_total: 0,
            tokens_seen: 0,
        }
    }
}
