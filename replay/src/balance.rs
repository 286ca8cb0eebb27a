//! The [`Balancer`]: stage 4's reward re-balancing and prompt optimization over scored groups.
//!
//! Every group goes through the filters ([`crate::filter`]); kept groups wait in a bounded pending pool,
//! oldest first. [`Balancer::next_batch`] takes `batch_groups` of them whose share of positive completions
//! lies inside `[positive_share_min, positive_share_max]` ([`crate::select`]), or reports what is missing
//! ([`Shortfall`]) so the prompt source oversamples. It never starves: once the pool is full it releases
//! the closest batch it has, flagged out of band, so training cannot stall on an unreachable band.
//! All-correct prompts are remembered in an [`EasyMemory`] so they are not drawn again.

use crate::easy::EasyMemory;
use crate::error::{Error, Result};
use crate::filter::{filter_group, DropReason, FilterConfig, FilterCounts, FilterDecision};
use crate::select::{select, GroupCounts, Selection};
use crate::types::Group;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Configuration of the balancer; every measure is on by default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceConfig {
    /// Groups (prompts) per training batch.
    pub batch_groups: usize,
    /// Keep the batch's positive share inside the band (off: the oldest `batch_groups` groups).
    pub rebalance: bool,
    /// Lowest share of positive completions in a batch.
    pub positive_share_min: f32,
    /// Highest share of positive completions in a batch.
    pub positive_share_max: f32,
    /// Kept groups held while waiting for a batch (at least `batch_groups`); a full pool refuses more and
    /// releases its closest batch even when out of band.
    pub max_pending_groups: usize,
    /// Remember all-correct prompts so the prompt source skips them.
    pub remember_easy: bool,
    /// Set all-wrong prompts aside, so the prompt source draws them again only once every other prompt of
    /// the pool is too easy or set aside (the streaming source then returns them all to the pool; the
    /// synchronous loop does so when a step's draw comes up empty).
    pub set_aside_hard: bool,
    /// Largest oversampling factor [`Balancer::prompts_to_request`] applies for the filters' drop rate.
    pub max_oversample: f32,
    /// The group filters.
    pub filter: FilterConfig,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            batch_groups: 8,
            rebalance: true,
            positive_share_min: 0.3,
            positive_share_max: 0.7,
            max_pending_groups: 32,
            remember_easy: true,
            set_aside_hard: true,
            max_oversample: 4.0,
            filter: FilterConfig::default(),
        }
    }
}

impl BalanceConfig {
    /// Checks ranges and combinations; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.batch_groups == 0 {
            return Err(Error::config("batch_groups", "must be at least 1"));
        }
        if self.max_pending_groups < self.batch_groups {
            return Err(Error::config(
                "max_pending_groups",
                format!("{} is below batch_groups = {}", self.max_pending_groups, self.batch_groups),
            ));
        }
        for (key, v) in
            [("positive_share_min", self.positive_share_min), ("positive_share_max", self.positive_share_max)]
        {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(key, format!("must lie in [0, 1], got {v}")));
            }
        }
        if self.positive_share_min > self.positive_share_max {
            return Err(Error::config(
                "positive_share_min",
                format!("{} exceeds positive_share_max = {}", self.positive_share_min, self.positive_share_max),
            ));
        }
        if !(self.max_oversample >= 1.0 && self.max_oversample.is_finite()) {
            return Err(Error::config(
                "max_oversample",
                format!("must be finite and >= 1, got {}", self.max_oversample),
            ));
        }
        self.filter.validate("filter.")
    }
}

/// What happened to a group handed to [`Balancer::push`].
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// It passed the filters and waits for a batch.
    Kept,
    /// A filter dropped it.
    Dropped(DropReason),
    /// It passed the filters but the pending pool is full: it is handed back (take a batch first).
    Refused(Group),
}

/// A training batch of groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Exactly `batch_groups` groups, oldest first.
    pub groups: Vec<Group>,
    /// Share of positive completions in the batch.
    pub positive_share: f32,
    /// Whether the share is inside the band (false only when a full pool had to release a batch).
    pub in_band: bool,
}

impl Batch {
    /// Removes the groups sampled more than `max_staleness` versions before `current`; returns how many.
    /// The rest of the batch stays trainable: one late group does not condemn the groups beside it.
    pub fn drop_stale(&mut self, current: crate::PolicyVersion, max_staleness: u64) -> usize {
        let before = self.groups.len();
        self.groups.retain(|g| crate::Versioned::policy_version(g).staleness(current) <= max_staleness);
        before - self.groups.len()
    }
}

impl crate::Versioned for Batch {
    /// The oldest group's version: a batch is as stale as its stalest completion.
    fn policy_version(&self) -> crate::PolicyVersion {
        self.groups.iter().map(crate::Versioned::policy_version).min().unwrap_or_default()
    }
}

/// What the balancer lacks to produce a batch; the prompt source answers by drawing more prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "need", rename_all = "snake_case")]
pub enum Shortfall {
    /// Fewer kept groups than a batch holds.
    Groups {
        /// Kept groups held.
        pending: usize,
        /// How many more are needed.
        missing: usize,
    },
    /// Enough groups, but every choice found is below the band: groups with more correct answers needed.
    MorePositive {
        /// The closest share found.
        best_share: f32,
    },
    /// Enough groups, but every choice found is above the band: harder prompts needed.
    MoreNegative {
        /// The closest share found.
        best_share: f32,
    },
}

/// The result of [`Balancer::next_batch`]: one type, whichever way it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BatchOrShortfall {
    /// A full batch.
    Batch(Batch),
    /// No batch yet, and why.
    Shortfall(Shortfall),
}

/// Counters of a balancer (one metric each).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BalanceStats {
    /// Filter decisions.
    pub filter: FilterCounts,
    /// Kept groups handed back because the pool was full.
    pub refused: u64,
    /// Batches produced.
    pub batches: u64,
    /// Of those, batches released out of band by a full pool.
    pub batches_out_of_band: u64,
    /// Shortfalls reported.
    pub shortfalls: u64,
    /// Positive share of the last batch.
    pub last_positive_share: Option<f32>,
}

/// Filters scored groups, holds the kept ones and assembles balanced batches. Deterministic.
#[derive(Debug, Clone)]
pub struct Balancer {
    cfg: BalanceConfig,
    pending: VecDeque<Group>,
    easy: EasyMemory,
    stats: BalanceStats,
}

/// Prompts to draw per group wanted when the filters keep a share `keep_rate` of groups: `1 / keep_rate`,
/// at most `max_oversample` (and exactly that when nothing was kept, or the rate is not a number).
pub(crate) fn oversample(keep_rate: f32, max_oversample: f32) -> f32 {
    if keep_rate.is_finite() && keep_rate > 0.0 {
        (1.0 / keep_rate).min(max_oversample)
    } else {
        max_oversample
    }
}

impl Balancer {
    /// A balancer with an empty pool and `easy` as the memory of too-easy prompts (restored from a
    /// checkpoint, or empty). Validates `cfg`.
    pub fn new(cfg: BalanceConfig, easy: EasyMemory) -> Result<Self> {
        cfg.validate()?;
        Ok(Balancer { cfg, pending: VecDeque::new(), easy, stats: BalanceStats::default() })
    }

    /// Filters `group`; a kept one joins the pool unless the pool is full.
    pub fn push(&mut self, group: Group) -> Admission {
        let decision = filter_group(&group, &self.cfg.filter);
        self.stats.filter.record(&decision);
        match decision {
            FilterDecision::Drop(reason) => {
                match reason {
                    DropReason::NoSignal { all_correct: true } if self.cfg.remember_easy => {
                        self.easy.insert(group.prompt.id);
                    }
                    DropReason::NoSignal { all_correct: false } if self.cfg.set_aside_hard => {
                        self.easy.set_aside(group.prompt.id);
                    }
                    _ => {}
                }
                Admission::Dropped(reason)
            }
            FilterDecision::Keep if self.pending.len() >= self.cfg.max_pending_groups => {
                self.stats.refused += 1;
                Admission::Refused(group)
            }
            FilterDecision::Keep => {
                self.pending.push_back(group);
                Admission::Kept
            }
        }
    }

    /// A batch of `batch_groups` kept groups inside the positive-share band, the closest one when the pool
    /// is full, or the shortfall.
    pub fn next_batch(&mut self) -> BatchOrShortfall {
        let Some(sel) = self.select_pending(self.cfg.batch_groups) else {
            self.stats.shortfalls += 1;
            let pending = self.pending.len();
            return BatchOrShortfall::Shortfall(Shortfall::Groups {
                pending,
                missing: self.cfg.batch_groups - pending,
            });
        };
        if !sel.in_band && self.pending.len() < self.cfg.max_pending_groups {
            self.stats.shortfalls += 1;
            let best_share = sel.positive_share;
            return BatchOrShortfall::Shortfall(if best_share < self.band().0 {
                Shortfall::MorePositive { best_share }
            } else {
                Shortfall::MoreNegative { best_share }
            });
        }
        BatchOrShortfall::Batch(self.release(sel))
    }

    /// The batch to train on when a step's draw rounds are used up: the batch of `batch_groups` groups
    /// closest to the band when that many are pending (out of band allowed), else every pending group
    /// (fewer than `batch_groups`; empty when nothing was kept). Never more than `batch_groups`.
    pub fn final_batch(&mut self) -> Batch {
        let take = self.cfg.batch_groups.min(self.pending.len());
        match self.select_pending(take) {
            Some(sel) if take > 0 => self.release(sel),
            _ => Batch { groups: vec![], positive_share: 0.0, in_band: false },
        }
    }

    /// The positive-share band batches aim for (`[0, 1]` without re-balancing).
    fn band(&self) -> (f32, f32) {
        if self.cfg.rebalance {
            (self.cfg.positive_share_min, self.cfg.positive_share_max)
        } else {
            (0.0, 1.0)
        }
    }

    /// The best choice of `batch` pending groups for the band ([`select`]); `None` when fewer are pending.
    fn select_pending(&self, batch: usize) -> Option<Selection> {
        let counts: Vec<GroupCounts> = self
            .pending
            .iter()
            .map(|g| GroupCounts { positives: g.positives(), completions: g.completions.len() })
            .collect();
        let (lo, hi) = self.band();
        select(&counts, batch, lo, hi)
    }

    /// Removes a selection's groups from the pool as a batch, and counts it.
    fn release(&mut self, sel: Selection) -> Batch {
        // Remove the chosen indices from the back so earlier indices stay valid, then restore order.
        let mut groups: Vec<Group> = sel.chosen.iter().rev().filter_map(|&i| self.pending.remove(i)).collect();
        groups.reverse();
        self.stats.batches += 1;
        self.stats.batches_out_of_band += u64::from(!sel.in_band);
        self.stats.last_positive_share = Some(sel.positive_share);
        Batch { groups, positive_share: sel.positive_share, in_band: sel.in_band }
    }

    /// How many prompts to draw after a [`Shortfall`]: the groups missing from a batch (at least one, for
    /// a pool that holds enough groups but out of band) scaled by the inverse of the filters' observed
    /// keep rate, at most `max_oversample` times. 0 when the pool is full (take a batch instead).
    pub fn prompts_to_request(&self) -> usize {
        let room = self.cfg.max_pending_groups - self.pending.len();
        if room == 0 {
            return 0;
        }
        let missing = self.cfg.batch_groups.saturating_sub(self.pending.len()).max(1);
        let f = self.stats.filter;
        let keep_rate = if f.seen() == 0 { 1.0 } else { f.kept as f32 / f.seen() as f32 };
        ((missing as f32 * oversample(keep_rate, self.cfg.max_oversample)).ceil() as usize).max(1)
    }

    /// Drops every pending group sampled more than `max_staleness` versions before `current` (the
    /// streaming runtime, after each weights update); returns how many.
    pub fn drop_stale(&mut self, current: crate::PolicyVersion, max_staleness: u64) -> usize {
        let before = self.pending.len();
        self.pending.retain(|g| crate::Versioned::policy_version(g).staleness(current) <= max_staleness);
        before - self.pending.len()
    }

    /// The memory of too-easy prompts (the prompt source skips them; save it with the checkpoint).
    pub fn easy(&self) -> &EasyMemory {
        &self.easy
    }

    pub(crate) fn easy_mut(&mut self) -> &mut EasyMemory {
        &mut self.easy
    }

    /// Kept groups waiting for a batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The counters.
    pub fn stats(&self) -> BalanceStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &BalanceConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests;
