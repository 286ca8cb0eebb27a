//! [`EasyMemory`]: the prompts found too easy (every completion correct), so the prompt source stops
//! drawing them (reward re-balancing). Serializable, so it survives a checkpoint.

use crate::types::PromptId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The set of prompt ids whose group came back all-correct. A `BTreeSet`, so its serialized form is
/// deterministic (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EasyMemory {
    ids: BTreeSet<PromptId>,
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
}
