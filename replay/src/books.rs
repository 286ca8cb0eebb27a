//! The books of the streaming stage-4 runtime: every prompt handed out is accounted for until it is
//! scored, re-queued or dropped for a named reason — never lost, never counted twice.
//!
//! A prompt travels as part of a [`LeaseId`]: issued to a generator ([`Books::issue`]), handed from the
//! generator to a verifier ([`Books::hand_over`]), and closed when the verifier delivers its scored groups
//! ([`Books::close_scored`]). Whoever holds a lease when it dies loses nothing: [`Books::requeue_holder`]
//! puts its prompts back at the front of the queue. A lease that is no longer open (already re-queued)
//! cannot be closed again, so a late delivery is refused instead of being trained twice.
//!
//! The identity: `issued = scored + requeued + dropped + in_flight`, at every moment
//! ([`BookCounts::balanced`]).

use crate::types::Prompt;
use phi4r_rollout::PolicyVersion;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// One hand-out of prompts (a generator's sampling batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LeaseId(pub u64);

/// Who holds a lease: an actor's process id (a restarted actor is a new holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Holder(pub u64);

/// Why the books refused an operation (a protocol error of the caller: nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BooksError {
    /// The lease is not open: it was closed, re-queued or never issued.
    #[error("lease {0:?} is not open (already closed or re-queued)")]
    NotOpen(LeaseId),
    /// The lease is open but held by someone else.
    #[error("lease {lease:?} is held by {held_by:?}, not {claimed_by:?}")]
    NotHolder {
        /// The lease.
        lease: LeaseId,
        /// Its holder.
        held_by: Holder,
        /// Who claimed it.
        claimed_by: Holder,
    },
}

/// The counters of the books, in prompts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BookCounts {
    /// Prompts handed out (a re-queued prompt counts again when it is handed out again).
    pub issued: u64,
    /// Prompts whose groups were scored and delivered.
    pub scored: u64,
    /// Prompts put back in the queue because their holder died or stopped.
    pub requeued: u64,
    /// Prompts dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Prompts held by a generator or verifier right now.
    pub in_flight: u64,
    /// Prompts waiting in the re-queue.
    pub waiting: u64,
}

impl BookCounts {
    /// Prompts dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Whether `issued = scored + requeued + dropped + in_flight`.
    pub fn balanced(&self) -> bool {
        self.issued == self.scored + self.requeued + self.dropped_total() + self.in_flight
    }
}

#[derive(Debug, Clone)]
struct Lease {
    holder: Holder,
    prompts: Vec<Prompt>,
    version: PolicyVersion,
}

/// The ledger of leases (owned by the prompt-source actor).
#[derive(Debug, Clone, Default)]
pub struct Books {
    next: u64,
    open: BTreeMap<LeaseId, Lease>,
    requeue: VecDeque<Prompt>,
    counts: BookCounts,
}

impl Books {
    /// Empty books.
    pub fn new() -> Self {
        Books::default()
    }

    /// Opens a lease of `prompts` for `holder`, sampled from `version` onwards.
    pub fn issue(&mut self, holder: Holder, prompts: Vec<Prompt>, version: PolicyVersion) -> LeaseId {
        let id = LeaseId(self.next);
        self.next += 1;
        self.counts.issued += prompts.len() as u64;
        self.counts.in_flight += prompts.len() as u64;
        self.open.insert(id, Lease { holder, prompts, version });
        id
    }

    /// Up to `n` re-queued prompts, oldest first (they go out before fresh ones).
    pub fn take_requeued(&mut self, n: usize) -> Vec<Prompt> {
        let k = n.min(self.requeue.len());
        self.counts.waiting -= k as u64;
        self.requeue.drain(..k).collect()
    }

    /// Moves `lease` from `from` to `to` (a generator hands its groups to a verifier).
    pub fn hand_over(&mut self, lease: LeaseId, from: Holder, to: Holder) -> Result<(), BooksError> {
        let l = self.held(lease, from)?;
        l.holder = to;
        Ok(())
    }

    /// Closes `lease` as scored (its groups reached the balancer); returns its prompt count.
    pub fn close_scored(&mut self, lease: LeaseId, holder: Holder) -> Result<usize, BooksError> {
        self.held(lease, holder)?;
        let n = self.close(lease);
        self.counts.scored += n as u64;
        Ok(n)
    }

    /// Closes `lease` as dropped for `reason` (e.g. `shutdown`); returns its prompt count.
    pub fn close_dropped(&mut self, lease: LeaseId, reason: &str) -> Result<usize, BooksError> {
        if !self.open.contains_key(&lease) {
            return Err(BooksError::NotOpen(lease));
        }
        let n = self.close(lease);
        *self.counts.dropped.entry(reason.to_string()).or_default() += n as u64;
        Ok(n)
    }

    /// Drops every open lease for `reason` (the run ends); returns the prompt count.
    pub fn close_all_dropped(&mut self, reason: &str) -> usize {
        let ids: Vec<LeaseId> = self.open.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.close_dropped(id, reason).ok()).sum()
    }

    /// Re-queues the prompts of every lease `holder` holds (it died or stopped); returns how many.
    pub fn requeue_holder(&mut self, holder: Holder) -> usize {
        let ids: Vec<LeaseId> = self.open.iter().filter(|(_, l)| l.holder == holder).map(|(id, _)| *id).collect();
        let mut n = 0;
        for id in ids {
            if let Some(l) = self.open.remove(&id) {
                n += l.prompts.len();
                self.counts.in_flight -= l.prompts.len() as u64;
                self.counts.waiting += l.prompts.len() as u64;
                self.requeue.extend(l.prompts);
            }
        }
        self.counts.requeued += n as u64;
        n
    }

    /// The oldest policy version among open leases (None when nothing is in flight).
    pub fn oldest_in_flight(&self) -> Option<PolicyVersion> {
        self.open.values().map(|l| l.version).min()
    }

    /// Open leases per holder.
    pub fn holders(&self) -> BTreeMap<Holder, usize> {
        let mut m = BTreeMap::new();
        for l in self.open.values() {
            *m.entry(l.holder).or_default() += l.prompts.len();
        }
        m
    }

    /// The counters.
    pub fn counts(&self) -> &BookCounts {
        &self.counts
    }

    fn held(&mut self, lease: LeaseId, holder: Holder) -> Result<&mut Lease, BooksError> {
        match self.open.get_mut(&lease) {
            None => Err(BooksError::NotOpen(lease)),
            Some(l) if l.holder != holder => {
                Err(BooksError::NotHolder { lease, held_by: l.holder, claimed_by: holder })
            }
            Some(l) => Ok(l),
        }
    }

    fn close(&mut self, lease: LeaseId) -> usize {
        let n = self.open.remove(&lease).map_or(0, |l| l.prompts.len());
        self.counts.in_flight -= n as u64;
        n
    }
}

/// How many more prompts may be handed out now so that no group is trained more than `max_staleness`
/// policy versions after the one that sampled it — pacing admission instead of discarding late work.
///
/// The learner consumes `batch_groups` groups per version, so `max_staleness + 1` batches' worth of kept
/// groups may be ahead of a new prompt. The filters keep a share `keep_rate` of groups, so a prompt not
/// yet through them (`unfiltered`: handed out, or scored on its way to a balancer) is worth `keep_rate` of
/// a kept group, while a group through them (`kept`: waiting in a pool, in the replay buffer or being
/// trained) is worth one. Counted in prompts: `(max_staleness + 1) · batch_groups / keep_rate` minus
/// `unfiltered + kept / keep_rate`, the factor `1 / keep_rate` capped at `max_oversample`. (Counting a
/// kept group as one prompt let the backlog run a version past the bound, and those groups went stale.)
pub fn admission(
    max_staleness: u64,
    batch_groups: usize,
    keep_rate: f32,
    max_oversample: f32,
    unfiltered: usize,
    kept: usize,
) -> usize {
    let factor = crate::balance::oversample(keep_rate, max_oversample).max(1.0);
    let target = ((max_staleness as f32 + 1.0) * batch_groups as f32 * factor).ceil();
    let out = unfiltered as f32 + kept as f32 * factor;
    (target - out).max(0.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PromptId;
    use proptest::prelude::*;

    fn prompts(ids: std::ops::Range<u64>) -> Vec<Prompt> {
        ids.map(|i| Prompt { id: PromptId(i), ids: vec![1], gold: "1".into(), tier: 1 }).collect()
    }

    #[test]
    fn a_dead_holders_leases_come_back_once_and_late_deliveries_are_refused() {
        let mut b = Books::new();
        let (g1, g2, v) = (Holder(1), Holder(2), Holder(9));
        let l1 = b.issue(g1, prompts(0..4), PolicyVersion(0));
        let l2 = b.issue(g2, prompts(4..6), PolicyVersion(0));
        b.hand_over(l2, g2, v).expect("g2 holds l2");
        assert_eq!(b.hand_over(l1, g2, v), Err(BooksError::NotHolder { lease: l1, held_by: g1, claimed_by: g2 }));
        assert_eq!(b.requeue_holder(g1), 4);
        assert_eq!(b.close_scored(l1, g1), Err(BooksError::NotOpen(l1)), "a requeued lease cannot be scored");
        assert_eq!(b.close_scored(l2, v), Ok(2));
        assert_eq!(b.close_scored(l2, v), Err(BooksError::NotOpen(l2)), "nothing twice");
        let c = b.counts().clone();
        assert_eq!((c.issued, c.scored, c.requeued, c.in_flight, c.waiting), (6, 2, 4, 0, 4));
        assert!(c.balanced());
        let again = b.take_requeued(10);
        assert_eq!(again.iter().map(|p| p.id.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let l3 = b.issue(g2, again, PolicyVersion(1));
        assert_eq!(b.oldest_in_flight(), Some(PolicyVersion(1)));
        assert_eq!(b.close_all_dropped("shutdown"), 4);
        assert!(b.close_dropped(l3, "shutdown").is_err());
        let c = b.counts();
        assert_eq!((c.issued, c.dropped_total(), c.in_flight), (10, 4, 0));
        assert!(c.balanced());
    }

    #[test]
    fn admission_allows_one_batch_per_version_of_staleness() {
        assert_eq!(admission(0, 8, 1.0, 4.0, 0, 0), 8);
        assert_eq!(admission(2, 8, 1.0, 4.0, 0, 0), 24);
        assert_eq!(admission(0, 8, 0.5, 4.0, 0, 0), 16, "half the groups filtered: twice the prompts");
        assert_eq!(admission(0, 8, 0.01, 4.0, 0, 0), 32, "capped at max_oversample");
        assert_eq!(admission(0, 8, 0.0, 4.0, 0, 0), 32, "nothing kept yet: the cap");
        assert_eq!(admission(1, 8, 1.0, 4.0, 10, 0), 6);
        assert_eq!(admission(0, 8, 1.0, 4.0, 40, 0), 0);
        assert_eq!(admission(1, 8, 1.0, 4.0, 4, 6), 6, "nothing filtered: a kept group counts as a prompt");
    }

    #[test]
    fn a_kept_group_counts_as_the_prompts_it_took() {
        // Keep rate 1/2, 2 versions of staleness, 4 groups a version: 12 kept groups may be ahead of a new
        // prompt, that is 24 prompts. 8 kept groups waiting stand for 16 of them, not 8.
        assert_eq!(admission(2, 4, 0.5, 4.0, 0, 8), 8);
        assert_eq!(admission(2, 4, 0.5, 4.0, 6, 8), 2);
        assert_eq!(admission(2, 4, 0.5, 4.0, 0, 12), 0, "three batches of kept groups: nothing more");
    }

    proptest! {
        #[test]
        fn the_books_always_balance(ops in proptest::collection::vec((0u8..5, 0u64..4, 1usize..5), 0..80)) {
            let mut b = Books::new();
            let mut open: Vec<(LeaseId, Holder)> = vec![];
            let mut next_prompt = 0u64;
            for (op, who, n) in ops {
                match op {
                    0 => {
                        let mut p = b.take_requeued(n);
                        let fresh = n - p.len();
                        p.extend(prompts(next_prompt..next_prompt + fresh as u64));
                        next_prompt += fresh as u64;
                        open.push((b.issue(Holder(who), p, PolicyVersion(0)), Holder(who)));
                    }
                    1 => if let Some((l, h)) = open.pop() {
                        // Fails only when `h`'s leases were re-queued meanwhile; then it must not count.
                        let scored = b.counts().scored;
                        match b.close_scored(l, h) {
                            Ok(k) => prop_assert_eq!(b.counts().scored, scored + k as u64),
                            Err(_) => prop_assert_eq!(b.counts().scored, scored),
                        }
                    },
                    2 => { b.requeue_holder(Holder(who)); }
                    3 => if let Some(&(l, h)) = open.last() {
                        if b.hand_over(l, h, Holder(who + 10)).is_ok() {
                            open.pop();
                            open.push((l, Holder(who + 10)));
                        }
                    },
                    _ => if let Some((l, _)) = open.pop() { let _ = b.close_dropped(l, "test"); },
                }
                prop_assert!(b.counts().balanced(), "{:?}", b.counts());
                prop_assert_eq!(b.counts().waiting as usize, b.requeue.len());
            }
        }
    }
}
