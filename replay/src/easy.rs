//! [`EasyMemory`]: the prompts found too easy (every completion correct), so the prompt source stops
//! drawing them (reward re-balancing), and those set aside as too hard for now (every completion wrong),
//! so it draws them again only once the rest of the pool is used up. Serializable, so it survives a
//! checkpoint.

use crate::types::PromptId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The set of prompt ids whose group came back all-correct, and the set of those set aside because their
/// group came back all-wrong. `BTreeSet`s, so the serialized form is deterministic (sorted); `hard` is
/// left out while empty, so a memory without it reads as before.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EasyMemory {
    ids: BTreeSet<PromptId>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    hard: BTreeSet<PromptId>,
}

impl EasyMemory {
    /// An empty memory.
    pub fn new() -> Self {
        EasyMemory::default()
    }

    /// Remembers `id` as too easy; true if it was not remembered before.
    pub fn insert(&mut self, id: PromptId) -> bool {
        self.ids.insert(id)
    }

    /// Whether `id` was found too easy (the prompt source skips it).
    pub fn contains(&self, id: PromptId) -> bool {
        self.ids.contains(&id)
    }

    /// How many prompts are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The remembered ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = PromptId> + '_ {
        self.ids.iter().copied()
    }

    /// Sets `id` aside as too hard for now; true if it was not set aside before.
    pub fn set_aside(&mut self, id: PromptId) -> bool {
        self.hard.insert(id)
    }

    /// How many prompts are set aside as too hard.
    pub fn set_aside_len(&self) -> usize {
        self.hard.len()
    }

    /// Returns the prompts set aside as too hard to the pool; how many there were.
    pub fn forget_set_aside(&mut self) -> usize {
        std::mem::take(&mut self.hard).len()
    }

    /// Whether the prompt source skips `id`: too easy, or set aside as too hard.
    pub fn skips(&self, id: PromptId) -> bool {
        self.ids.contains(&id) || self.hard.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_once_and_round_trips_sorted() {
        let mut m = EasyMemory::new();
        assert!(m.insert(PromptId(9)));
        assert!(m.insert(PromptId(2)));
        assert!(!m.insert(PromptId(9)));
        assert!(m.contains(PromptId(2)) && !m.contains(PromptId(3)));
        let json = serde_json::to_string(&m).expect("serialize");
        assert_eq!(json, r#"{"ids":[2,9]}"#);
        assert_eq!(serde_json::from_str::<EasyMemory>(&json).expect("parse"), m);
    }

    #[test]
    fn set_aside_prompts_are_skipped_until_forgotten_and_round_trip() {
        let mut m = EasyMemory::new();
        m.insert(PromptId(1));
        assert!(m.set_aside(PromptId(4)));
        assert!(!m.set_aside(PromptId(4)));
        assert!(m.skips(PromptId(1)) && m.skips(PromptId(4)) && !m.skips(PromptId(5)));
        assert!(!m.contains(PromptId(4)), "set aside is not too easy");
        let json = serde_json::to_string(&m).expect("serialize");
        assert_eq!(json, r#"{"ids":[1],"hard":[4]}"#);
        assert_eq!(serde_json::from_str::<EasyMemory>(&json).expect("parse"), m);
        assert_eq!(m.forget_set_aside(), 1);
        assert!(!m.skips(PromptId(4)) && m.skips(PromptId(1)), "forgetting returns only the hard ones");
        assert_eq!(m.set_aside_len(), 0);
    }
}
