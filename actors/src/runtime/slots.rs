//! Generator actors by index, with the ones asked to stop: the run's pool (the root supervisor) and a
//! cluster node's (its controller) are kept the same way.

use crate::messages::SampleMsg;
use ractor::{ActorId, ActorRef};
use std::collections::BTreeSet;

/// Generators by index; a slot is empty once its actor has ended.
#[derive(Default)]
pub(crate) struct GeneratorSlots {
    slots: Vec<Option<ActorRef<SampleMsg>>>,
    stopping: BTreeSet<ActorId>,
}

impl GeneratorSlots {
    /// Puts a just-started generator at `index`.
    pub(crate) fn put(&mut self, index: usize, g: ActorRef<SampleMsg>) {
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        self.slots[index] = Some(g);
    }

    /// Indices of the generators running and not asked to stop.
    fn live(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].as_ref().is_some_and(|g| !self.stopping.contains(&g.get_id())))
            .collect()
    }

    /// Moves toward `n` live generators: asks the highest-numbered extra ones to stop (each between two
    /// batches, so the batch in progress is handed over first) and returns the free indices, lowest first,
    /// where new ones must start.
    pub(crate) fn resize(&mut self, n: usize) -> Vec<usize> {
        let live = self.live();
        if n > live.len() {
            return (0..).filter(|i| !live.contains(i)).take(n - live.len()).collect();
        }
        for &i in live.iter().rev().take(live.len() - n) {
            if let Some(g) = &self.slots[i] {
                self.stopping.insert(g.get_id());
                g.stop(Some("scaled down".into()));
            }
        }
        vec![]
    }

    /// Asks every generator to stop.
    pub(crate) fn stop_all(&mut self, reason: &str) {
        for g in self.slots.iter().flatten() {
            self.stopping.insert(g.get_id());
            g.stop(Some(reason.into()));
        }
    }

    /// Generator `id` at `index` ended: frees the slot if it still holds it; whether it had been asked to
    /// stop.
    pub(crate) fn ended(&mut self, index: usize, id: ActorId) -> bool {
        if self.slots.get(index).and_then(|g| g.as_ref()).is_some_and(|g| g.get_id() == id) {
            self.slots[index] = None;
        }
        self.stopping.remove(&id)
    }
}
