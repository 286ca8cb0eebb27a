//! DPO reference log-probs: computed once per pair with the frozen reference model, then cached by
//! [`PairId`] for every later epoch (and saved in checkpoints, so a resumed run reuses the same values).

use crate::batch::{LmBatch, PairBatch, PairId};
use crate::error::{Error, Result};
use crate::loss::sequence_logps;
use candle_core::Device;
use phi4r_model::Phi3;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Summed completion log-probs of a pair under the reference model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefLogps {
    /// `log π_ref(y_chosen | x)`.
    pub chosen: f32,
    /// `log π_ref(y_rejected | x)`.
    pub rejected: f32,
}

/// The cache of reference log-probs by pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefCache {
    pairs: BTreeMap<PairId, RefLogps>,
}

impl RefCache {
    /// The cached values of `id`.
    pub fn get(&self, id: PairId) -> Option<RefLogps> {
        self.pairs.get(&id).copied()
    }

    /// Pairs cached.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Fills in the pairs of `batch` not cached yet, running `reference` on those rows only. Returns how
    /// many were computed.
    pub fn fill(&mut self, reference: Option<&Phi3>, batch: &PairBatch) -> Result<usize> {
        let missing: Vec<usize> = (0..batch.len()).filter(|&i| !self.pairs.contains_key(&batch.ids()[i])).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        let reference = reference.ok_or_else(|| {
            Error::input(
                "RefCache::fill",
                format!("{} pairs have no cached reference log-probs and no reference model is set", missing.len()),
            )
        })?;
        let all = missing.len() == batch.len();
        let rows = |b: &LmBatch| if all { Ok(b.clone()) } else { b.select_rows(&missing) };
        let chosen = batch_logps(reference, &rows(batch.chosen())?)?;
        let rejected = batch_logps(reference, &rows(batch.rejected())?)?;
        for (k, &i) in missing.iter().enumerate() {
            self.pairs.insert(batch.ids()[i], RefLogps { chosen: chosen[k], rejected: rejected[k] });
        }
        Ok(missing.len())
    }

    /// Reference log-probs of every pair of `batch`, in row order; all must be cached.
    pub fn lookup(&self, batch: &PairBatch) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut chosen = Vec::with_capacity(batch.len());
        let mut rejected = Vec::with_capacity(batch.len());
        for id in batch.ids() {
            let r = self
                .get(*id)
                .ok_or_else(|| Error::input("RefCache::lookup", format!("pair {} is not cached", id.0)))?;
            chosen.push(r.chosen);
            rejected.push(r.rejected);
        }
        Ok((chosen, rejected))
    }
}

/// Summed completion log-probs of every row of `batch` under `model`, without a graph.
pub fn batch_logps(model: &Phi3, batch: &LmBatch) -> Result<Vec<f32>> {
    let device: &Device = model.device();
    let t = batch.tensors(device)?;
    let logits = model.forward(&t.input_ids, batch.layout())?.detach();
    Ok(sequence_logps(&logits, &t.targets, &t.loss_mask)?.to_vec1::<f32>()?)
}
