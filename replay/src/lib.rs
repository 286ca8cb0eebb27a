//! The replay buffer between the verifiers and the stage-4 learner: bounded (a full buffer refuses, so
//! generators feel back-pressure instead of memory growing) and staleness-bounded (an item produced by a
//! policy more than `max_staleness` versions old is dropped and counted, never served).
//! `max_staleness = 0` is synchronous on-policy training.
//!
//! Plain synchronous logic: the replay actor (stage 4) owns a [`Buffer`]. Depends on `phi4r-rollout`
//! for [`PolicyVersion`] and [`phi4r_rollout::FinishReason`] only.
//!
//! Stage 4's payloads and its stability measures (used by `stage rl` through the learner's synchronous
//! step; the staleness-bounded [`Buffer`] waits for the streaming runtime):
//! - [`Prompt`], [`ScoredCompletion`], [`Group`] (`types`): what travels from the prompt source through the
//!   generators and verifiers, with the [`PromptId`] and [`RewardPolicyId`] newtypes.
//! - [`filter`]: the no-signal filter (all rewards equal: DAPO's dynamic sampling) and the length filter
//!   (prompt optimization: drop a group whose completion lengths' coefficient of variation exceeds a
//!   threshold), pure functions returning a [`FilterDecision`] with a [`DropReason`].
//! - [`Balancer`] (`balance`, `select`): filters groups, keeps the batch's share of positive completions
//!   inside a band by choosing among pending groups, reports a [`Shortfall`] so the prompt source
//!   oversamples ([`Balancer::prompts_to_request`]), and never starves (a full pool releases its closest
//!   batch); [`EasyMemory`] (`easy`) holds the all-correct prompts so they are not drawn again.
//! - [`Books`] (`books`): the streaming runtime's ledger of leased prompts (issued = scored + re-queued +
//!   dropped + in flight), and [`admission`], which paces new prompts by `max_staleness`.
//! - [`PromptSource`] (`source`): the prompts in a seeded permutation per step, skipping what the caller
//!   says (too easy, already drawn this step).
#![warn(missing_docs)]

mod balance;
pub mod books;
pub mod collect;
mod easy;
pub mod error;
pub mod filter;
mod select;
mod source;
mod types;

pub use balance::{Admission, BalanceConfig, BalanceStats, Balancer, Batch, BatchOrShortfall, Shortfall};
pub use books::{admission, BookCounts, Books, BooksError, Holder, LeaseId};
pub use collect::{collect_groups, score_group, CollectParams, CollectReport, Collected, GroupSampler};
pub use easy::EasyMemory;
pub use error::Error;
pub use filter::{DropReason, FilterConfig, FilterCounts, FilterDecision};
pub use phi4r_rollout::{PolicyVersion, TemperatureSchedule};
pub use select::{select, GroupCounts, Selection};
pub use source::PromptSource;
pub use types::{
    token_versions, Group, Prompt, PromptId, RewardPolicyId, SampledCompletion, SampledGroup, ScoredCompletion,
    VersionSwitch,
};

use std::collections::VecDeque;

/// SplitMix64's output function (Steele et al. 2014): a fixed, well-mixed hash of a 64-bit word, so a seed
/// derived from it shares no linear structure with its input. Prompt orders, sampling rounds and the
/// streaming runtime's lease seeds all derive from it.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Anything that records the policy version that produced it.
pub trait Versioned {
    /// The producing policy's version.
    fn policy_version(&self) -> PolicyVersion;
}

/// A bounded FIFO that never serves data staler than its bound.
#[derive(Debug, Clone)]
pub struct Buffer<T> {
    items: VecDeque<T>,
    capacity: usize,
    max_staleness: u64,
    dropped_stale: u64,
}

/// Counters of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// Items held now.
    pub len: usize,
    /// Items dropped for staleness so far.
    pub dropped_stale: u64,
}

impl<T: Versioned> Buffer<T> {
    /// An empty buffer holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize, max_staleness: u64) -> Self {
        Buffer { items: VecDeque::new(), capacity: capacity.max(1), max_staleness, dropped_stale: 0 }
    }

    /// Adds `item`, or hands it back when the buffer is full (the caller retries later: back-pressure).
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.items.len() >= self.capacity {
            return Err(item);
        }
        self.items.push_back(item);
        Ok(())
    }

    /// Drops every item staler than the bound relative to `current`, then takes up to `n` of the oldest
    /// remaining ones.
    pub fn take_fresh(&mut self, current: PolicyVersion, n: usize) -> Vec<T> {
        let before = self.items.len();
        let bound = self.max_staleness;
        self.items.retain(|it| it.policy_version().staleness(current) <= bound);
        self.dropped_stale += (before - self.items.len()) as u64;
        let k = n.min(self.items.len());
        self.items.drain(..k).collect()
    }

    /// Takes up to `n` of the oldest items whatever their staleness (for items that drop their own stale
    /// parts, like a [`Batch`]).
    pub fn take_oldest(&mut self, n: usize) -> Vec<T> {
        let k = n.min(self.items.len());
        self.items.drain(..k).collect()
    }

    /// Current counters.
    pub fn stats(&self) -> BufferStats {
        BufferStats { len: self.items.len(), dropped_stale: self.dropped_stale }
    }

    /// Items held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(u64, u32);
    impl Versioned for Item {
        fn policy_version(&self) -> PolicyVersion {
            PolicyVersion(self.0)
        }
    }

    #[test]
    fn full_buffer_hands_the_item_back() {
        let mut b = Buffer::new(2, 0);
        assert!(b.push(Item(0, 1)).is_ok());
        assert!(b.push(Item(0, 2)).is_ok());
        assert_eq!(b.push(Item(0, 3)), Err(Item(0, 3)));
        assert_eq!(b.take_fresh(PolicyVersion(0), 1), vec![Item(0, 1)]);
        assert!(b.push(Item(0, 3)).is_ok());
    }

    #[test]
    fn stale_items_are_dropped_and_counted_fifo_otherwise() {
        let mut b = Buffer::new(10, 1);
        for (v, id) in [(0, 1), (1, 2), (2, 3), (2, 4)] {
            b.push(Item(v, id)).expect("room");
        }
        let got = b.take_fresh(PolicyVersion(2), 10);
        assert_eq!(got, vec![Item(1, 2), Item(2, 3), Item(2, 4)]);
        assert_eq!(b.stats().dropped_stale, 1);
        b.push(Item(3, 6)).expect("room");
        b.push(Item(0, 7)).expect("room");
        assert_eq!(b.take_oldest(5), vec![Item(3, 6), Item(0, 7)], "FIFO, staleness not checked");
        assert!(b.is_empty());
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity_nor_serves_stale_data(
            cap in 1usize..8, bound in 0u64..3,
            ops in proptest::collection::vec((0u64..6, any::<bool>(), 0usize..4), 0..60),
        ) {
            let mut b: Buffer<Item> = Buffer::new(cap, bound);
            let mut current = 0u64;
            let (mut pushed, mut served) = (0u64, 0u64);
            for (i, (v, take, n)) in ops.into_iter().enumerate() {
                current = current.max(v);
                if take {
                    for it in b.take_fresh(PolicyVersion(current), n) {
                        prop_assert!(current - it.0 <= bound);
                        served += 1;
                    }
                } else if b.push(Item(v.min(current), i as u32)).is_ok() {
                    pushed += 1;
                }
                prop_assert!(b.len() <= cap);
            }
            // Nothing lost or duplicated: pushed = served + held + dropped.
            prop_assert_eq!(pushed, served + b.len() as u64 + b.stats().dropped_stale);
        }
    }
}
