//! [`PromptSource`]: stage 4's prompts in a seeded order per step, so the synchronous loop (and later each
//! streaming generator) draws the same prompts for the same `(seed, step)` and a resumed run repeats
//! none and misses none. Too-easy prompts ([`crate::EasyMemory`]) are skipped by the caller's predicate.

use crate::error::{Error, Result};
use crate::splitmix64;
use crate::types::{Prompt, PromptId};

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
