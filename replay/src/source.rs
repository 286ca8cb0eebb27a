//! [`PromptSource`]: stage 4's prompts in a seeded order per step, so the synchronous loop (and later each
//! streaming generator) draws the same prompts for the same `(seed, step)` and a resumed run repeats
//! none and misses none. Too-easy prompts ([`crate::EasyMemory`]) are skipped by the caller's predicate;
//! set-aside ones return when nothing else is left ([`PromptSource::draw_step`]).

use crate::easy::EasyMemory;
use crate::error::{Error, Result};
use crate::splitmix64;
use crate::types::{Prompt, PromptId};
use std::collections::BTreeSet;

/// The prompts of a run, each drawn in a per-step permutation of `(seed, step)`.
#[derive(Debug, Clone)]
pub struct PromptSource {
    prompts: Vec<Prompt>,
}

impl PromptSource {
    /// A source over `prompts` (at least one).
    pub fn new(prompts: Vec<Prompt>) -> Result<Self> {
        if prompts.is_empty() {
            return Err(Error::config("prompts", "no prompts to draw from"));
        }
        Ok(PromptSource { prompts })
    }

    /// How many prompts there are.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Whether there are none (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The first `n` prompts of step `step`'s permutation (seeded by `(seed, step)`) for which `skip` is
    /// false. Fewer when not enough remain. Successive draws within a step pass the ids already drawn in
    /// `skip`, so they continue down the same permutation.
    pub fn draw(&self, seed: u64, step: u64, n: usize, skip: impl Fn(PromptId) -> bool) -> Vec<Prompt> {
        let key = |p: &Prompt| splitmix64(seed ^ splitmix64(step.wrapping_add(0x5851_F42D_4C95_7F2D)) ^ p.id.0);
        let mut order: Vec<(u64, usize)> = self.prompts.iter().enumerate().map(|(i, p)| (key(p), i)).collect();
        order.sort_unstable();
        order.into_iter().map(|(_, i)| &self.prompts[i]).filter(|p| !skip(p.id)).take(n).cloned().collect()
    }

    /// Up to `n` prompts of step `step`'s permutation that neither `drawn` nor `memory` skips: the
    /// synchronous loop's draw (`drawn`: this step's earlier rounds), and the streaming source's pass over
    /// every prompt (`step` = the pass, `n` = all, `drawn` empty). When none is left but some are only set
    /// aside as too hard, those return to the pool first (removed from `memory`); the second value counts
    /// them.
    pub fn draw_step(
        &self,
        seed: u64,
        step: u64,
        n: usize,
        drawn: &BTreeSet<PromptId>,
        memory: &mut EasyMemory,
    ) -> (Vec<Prompt>, usize) {
        let prompts = self.draw(seed, step, n, |id| drawn.contains(&id) || memory.skips(id));
        if !prompts.is_empty() || memory.set_aside_len() == 0 {
            return (prompts, 0);
        }
        let back = memory.forget_set_aside();
        (self.draw(seed, step, n, |id| drawn.contains(&id) || memory.skips(id)), back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn source(n: u64) -> PromptSource {
        let prompts =
            (0..n).map(|i| Prompt { id: PromptId(i), ids: vec![1, 2], gold: i.to_string(), tier: 1 }).collect();
        PromptSource::new(prompts).expect("non-empty")
    }

    #[test]
    fn a_whole_pass_skips_the_remembered_and_returns_the_set_aside_once_nothing_else_is_left() {
        let s = source(4);
        let mut m = EasyMemory::new();
        m.insert(PromptId(0));
        m.set_aside(PromptId(1));
        let none = BTreeSet::new();
        let (order, back) = s.draw_step(3, 1, 4, &none, &mut m);
        let mut got: Vec<u64> = order.iter().map(|p| p.id.0).collect();
        got.sort_unstable();
        assert_eq!((got, back), (vec![2, 3], 0), "too easy and set aside are skipped");
        m.set_aside(PromptId(2));
        m.set_aside(PromptId(3));
        let (order, back) = s.draw_step(3, 2, 4, &none, &mut m);
        let mut got: Vec<u64> = order.iter().map(|p| p.id.0).collect();
        got.sort_unstable();
        assert_eq!((got, back), (vec![1, 2, 3], 3), "the set-aside come back, the too easy do not");
        assert_eq!(m.set_aside_len(), 0);
        let mut all_easy = EasyMemory::new();
        (0..4).for_each(|i| _ = all_easy.insert(PromptId(i)));
        assert_eq!(s.draw_step(3, 3, 4, &none, &mut all_easy), (vec![], 0), "too easy never come back");
    }

    #[test]
    fn a_step_draw_returns_the_set_aside_only_when_nothing_else_is_left() {
        let s = source(3);
        let mut m = EasyMemory::new();
        m.set_aside(PromptId(0));
        let drawn = BTreeSet::from([PromptId(1)]);
        let ids = |(v, _): (Vec<Prompt>, usize)| v.into_iter().map(|p| p.id.0).collect::<Vec<_>>();
        assert_eq!(ids(s.draw_step(5, 1, 3, &drawn, &mut m)), vec![2]);
        assert_eq!(m.set_aside_len(), 1, "something else was left");
        let drawn = BTreeSet::from([PromptId(1), PromptId(2)]);
        assert_eq!(ids(s.draw_step(5, 1, 3, &drawn, &mut m)), vec![0], "back once the rest is drawn");
        assert_eq!(m.set_aside_len(), 0);
    }

    #[test]
    fn draws_are_seeded_per_step_skip_and_continue_down_the_permutation() {
        let s = source(20);
        let ids = |v: Vec<Prompt>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        let a = ids(s.draw(7, 3, 5, |_| false));
        assert_eq!(a, ids(s.draw(7, 3, 5, |_| false)), "same (seed, step), same draw");
        assert_ne!(a, ids(s.draw(7, 4, 5, |_| false)), "another step, another order");
        let drawn: BTreeSet<PromptId> = a.iter().copied().collect();
        let next = ids(s.draw(7, 3, 5, |id| drawn.contains(&id)));
        assert!(next.iter().all(|id| !drawn.contains(id)));
        assert_eq!(ids(s.draw(7, 3, 10, |_| false)), [a, next].concat(), "a second draw continues the first");
        assert_eq!(s.draw(7, 3, 50, |id| id.0 % 2 == 0).len(), 10);
        assert!(PromptSource::new(vec![]).is_err());
    }
}
