//! The training state beside the weights: step counter, data cursor, RNG seed and bad-step counts —
//! everything besides model and optimizer that exact resume needs.

use crate::config::Stage;
use rand::rngs::StdRng;
use rand::SeedableRng;
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
    /// The data cursor after the last step.
    pub cursor: DataCursor,
    /// Seed of the stage's random draws. The RNG state is a pure function of `(seed, epoch)`
    /// ([`TrainState::epoch_rng`]), so there is no generator state to save.
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

    /// The generator for epoch `cursor.epoch` (e.g. to shuffle that epoch's data): the same for a resumed
    /// run as for a straight one.
    pub fn epoch_rng(&self) -> StdRng {
        StdRng::seed_from_u64(splitmix64(self.seed ^ splitmix64(self.cursor.epoch)))
    }
}

/// SplitMix64's finalizer: decorrelates nearby seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn epoch_rng_depends_on_seed_and_epoch_only() {
        let mut a = TrainState::new(Stage::Mid, 10, 7);
        let b = a.clone();
        assert_eq!(a.epoch_rng().random::<u64>(), b.epoch_rng().random::<u64>());
        a.cursor.epoch = 1;
        assert_ne!(a.epoch_rng().random::<u64>(), b.epoch_rng().random::<u64>());
    }
}
