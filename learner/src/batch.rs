//! The batches a learner step consumes: [`LmBatch`] (next-token LM over padded or packed rows) and
//! [`PairBatch`] (DPO pairs, chosen and rejected side by side).
//!
//! Masks follow the data crate's convention: an example's `loss_mask[i] == 1` says token `i` is a training
//! target, predicted at position `i - 1` of the same document, and every document's first token has mask 0.
//! The constructors shift rows so that `targets[i] = ids[i + 1]` with `mask[i] = loss_mask[i + 1]`; in a
//! packed row a document therefore never learns to predict the next document's first token.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use phi4r_model::AttentionLayout;
use serde::{Deserialize, Serialize};

/// Identifies a DPO pair across epochs (the key of the reference log-prob cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PairId(pub u64);

/// A `(b, t)` next-token batch: inputs, shifted targets, a 0/1 loss mask and the attention layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LmBatch {
    input_ids: Vec<u32>,
    targets: Vec<u32>,
    loss_mask: Vec<f32>,
    layout: AttentionLayout,
    b: usize,
    t: usize,
}

/// The three tensors of an [`LmBatch`] on a device.
pub struct LmTensors {
    /// `(b, t)` u32.
    pub input_ids: Tensor,
    /// `(b, t)` u32.
    pub targets: Tensor,
    /// `(b, t)` f32, 1 where the target is trained.
    pub loss_mask: Tensor,
}

impl LmBatch {
    /// A batch from already shifted row-major `(b, t)` arrays.
    pub fn new(
        b: usize,
        t: usize,
        input_ids: Vec<u32>,
        targets: Vec<u32>,
        loss_mask: Vec<f32>,
        layout: AttentionLayout,
    ) -> Result<Self> {
        let n = b * t;
        for (name, len) in [("input_ids", input_ids.len()), ("targets", targets.len()), ("loss_mask", loss_mask.len())]
        {
            if len != n {
                return Err(Error::input("LmBatch::new", format!("{name} has {len} entries, expected {b}x{t}")));
            }
        }
        if layout.dims() != (b, t) {
            return Err(Error::input("LmBatch::new", format!("layout is {:?}, expected ({b}, {t})", layout.dims())));
        }
        if b == 0 || t == 0 {
            return Err(Error::input("LmBatch::new", format!("empty batch ({b}, {t})")));
        }
        Ok(LmBatch { input_ids, targets, loss_mask, layout, b, t })
    }

    /// Packed rows (stage 1): each row holds exactly `seq_len` ids, its loss mask (data convention) and the
    /// lengths of its documents in order (the rest is padding).
    pub fn from_packed(
        seq_len: usize,
        ids: &[Vec<u32>],
        loss_mask: &[Vec<u8>],
        doc_lens: &[Vec<usize>],
    ) -> Result<Self> {
        let b = ids.len();
        if loss_mask.len() != b || doc_lens.len() != b {
            return Err(Error::input(
                "LmBatch::from_packed",
                format!("{b} rows of ids, {} of loss_mask, {} of doc_lens", loss_mask.len(), doc_lens.len()),
            ));
        }
        let layout = AttentionLayout::packed(seq_len, doc_lens)?;
        let mut batch = Shifted::with_capacity(b * seq_len);
        for (r, (row, mask)) in ids.iter().zip(loss_mask).enumerate() {
            if row.len() != seq_len || mask.len() != seq_len {
                return Err(Error::input(
                    "LmBatch::from_packed",
                    format!("row {r} has {} ids and {} mask entries, expected {seq_len}", row.len(), mask.len()),
                ));
            }
            let real: usize = doc_lens[r].iter().sum();
            batch.push_row(row, mask, real, seq_len, 0);
        }
        LmBatch::new(b, seq_len, batch.input_ids, batch.targets, batch.loss_mask, layout)
    }

    /// Unpacked examples (stages 2 and 3), right-padded with `pad_id` to the longest one. Each example is
    /// `(ids, loss_mask)` in the data convention. The end-of-sequence token, when it ends a completion
    /// with mask 1, is a target: that is how the model learns to stop.
    pub fn from_padded(examples: &[(Vec<u32>, Vec<u8>)], pad_id: u32) -> Result<Self> {
        let b = examples.len();
        let t = examples.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let mut batch = Shifted::with_capacity(b * t);
        let mut attention = Vec::with_capacity(b * t);
        for (r, (ids, mask)) in examples.iter().enumerate() {
            if ids.len() != mask.len() || ids.is_empty() {
                return Err(Error::input(
                    "LmBatch::from_padded",
                    format!("example {r} has {} ids and {} mask entries", ids.len(), mask.len()),
                ));
            }
            batch.push_row(ids, mask, ids.len(), t, pad_id);
            attention.extend(std::iter::repeat_n(1u8, ids.len()));
            attention.extend(std::iter::repeat_n(0u8, t - ids.len()));
        }
        let layout = AttentionLayout::from_mask(b, t, &attention)?;
        LmBatch::new(b, t, batch.input_ids, batch.targets, batch.loss_mask, layout)
    }

    /// A batch of the given rows, in that order (same `t`).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        let t = self.t;
        if let Some(&r) = rows.iter().find(|&&r| r >= self.b) {
            return Err(Error::input("LmBatch::select_rows", format!("row {r} of a batch of {}", self.b)));
        }
        fn gather<T: Copy>(v: &[T], rows: &[usize], t: usize) -> Vec<T> {
            rows.iter().flat_map(|&r| v[r * t..(r + 1) * t].iter().copied()).collect()
        }
        let layout = AttentionLayout::from_segments(rows.len(), t, gather(self.layout.segments(), rows, t))?;
        LmBatch::new(
            rows.len(),
            t,
            gather(&self.input_ids, rows, t),
            gather(&self.targets, rows, t),
            gather(&self.loss_mask, rows, t),
            layout,
        )
    }

    /// `(b, t)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.b, self.t)
    }

    /// The attention layout (padding or packing).
    pub fn layout(&self) -> &AttentionLayout {
        &self.layout
    }

    /// Input ids, row-major `(b, t)`.
    pub fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    /// Shifted targets, row-major `(b, t)`.
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// Loss mask over targets, row-major `(b, t)`.
    pub fn loss_mask(&self) -> &[f32] {
        &self.loss_mask
    }

    /// Number of trained targets (the token-mean's denominator).
    pub fn loss_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m != 0.0).count()
    }

    /// Number of real (non-padding) input positions.
    pub fn tokens(&self) -> usize {
        self.layout.segments().iter().filter(|&&s| s != 0).count()
    }

    /// The batch as tensors on `device`.
    pub fn tensors(&self, device: &Device) -> Result<LmTensors> {
        let shape = (self.b, self.t);
        Ok(LmTensors {
            input_ids: Tensor::from_slice(&self.input_ids, shape, device)?,
            targets: Tensor::from_slice(&self.targets, shape, device)?,
            loss_mask: Tensor::from_slice(&self.loss_mask, shape, device)?,
        })
    }
}

/// Row-major accumulation of shifted rows.
struct Shifted {
    input_ids: Vec<u32>,
    targets: Vec<u32>,
    loss_mask: Vec<f32>,
}

impl Shifted {
    fn with_capacity(n: usize) -> Self {
        Shifted { input_ids: Vec::with_capacity(n), targets: Vec::with_capacity(n), loss_mask: Vec::with_capacity(n) }
    }

    /// Appends one row of width `t` from its first `real` ids: `targets[i] = ids[i + 1]`,
    /// `mask[i] = loss_mask[i + 1]` for `i + 1 < real`, padding elsewhere.
    fn push_row(&mut self, ids: &[u32], loss_mask: &[u8], real: usize, t: usize, pad_id: u32) {
        for i in 0..t {
            self.input_ids.push(ids.get(i).copied().unwrap_or(pad_id));
            if i + 1 < real {
                self.targets.push(ids[i + 1]);
                self.loss_mask.push(f32::from(loss_mask[i + 1] != 0));
            } else {
                self.targets.push(pad_id);
                self.loss_mask.push(0.0);
            }
        }
    }
}

/// DPO pairs: row `i` of `chosen` and of `rejected` share a prompt; `ids[i]` names the pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    ids: Vec<PairId>,
    chosen: LmBatch,
    rejected: LmBatch,
}

impl PairBatch {
    /// Pairs from a chosen and a rejected batch with one row per id (their `t` may differ). The loss masks
    /// must cover the completion only, so that log-probs are summed over completion tokens.
    pub fn new(ids: Vec<PairId>, chosen: LmBatch, rejected: LmBatch) -> Result<Self> {
        let (bc, _) = chosen.dims();
        let (br, _) = rejected.dims();
        if bc != ids.len() || br != ids.len() {
            return Err(Error::input(
                "PairBatch::new",
                format!("{} ids, {bc} chosen rows, {br} rejected rows", ids.len()),
            ));
        }
        Ok(PairBatch { ids, chosen, rejected })
    }

    /// Pairs from unpacked `(ids, loss_mask)` examples (prompt + completion, mask on the completion),
    /// each side right-padded with `pad_id`.
    pub fn from_padded(
        ids: Vec<PairId>,
        chosen: &[(Vec<u32>, Vec<u8>)],
        rejected: &[(Vec<u32>, Vec<u8>)],
        pad_id: u32,
    ) -> Result<Self> {
        PairBatch::new(ids, LmBatch::from_padded(chosen, pad_id)?, LmBatch::from_padded(rejected, pad_id)?)
    }

    /// The pair ids, one per row.
    pub fn ids(&self) -> &[PairId] {
        &self.ids
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The chosen (preferred) sequences.
    pub fn chosen(&self) -> &LmBatch {
        &self.chosen
    }

    /// The rejected sequences.
    pub fn rejected(&self) -> &LmBatch {
        &self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_never_predict_the_next_documents_first_token() -> Result<()> {
        // Two documents [1 2 3] (targets 2, 3) and [4 5] (target 5), then one pad.
        let b = LmBatch::from_packed(6, &[vec![1, 2, 3, 4, 5, 0]], &[vec![0, 1, 1, 0, 1, 0]], &[vec![3, 2]])?;
        assert_eq!(b.input_ids(), &[1, 2, 3, 4, 5, 0]);
        assert_eq!(b.targets(), &[2, 3, 4, 5, 0, 0]);
        assert_eq!(b.loss_mask(), &[1., 1., 0., 1., 0., 0.]);
        assert_eq!((b.tokens(), b.loss_tokens()), (5, 3));
        Ok(())
    }

    #[test]
    fn padded_rows_train_the_final_end_token() -> Result<()> {
        let eos = 9;
        let b = LmBatch::from_padded(&[(vec![1, 2, 3, eos], vec![0, 0, 1, 1]), (vec![4, 5], vec![0, 1])], 0)?;
        assert_eq!(b.dims(), (2, 4));
        assert_eq!(b.targets(), &[2, 3, eos, 0, 5, 0, 0, 0]);
        assert_eq!(b.loss_mask(), &[0., 1., 1., 0., 1., 0., 0., 0.]);
        assert_eq!(b.layout().segments(), &[1, 1, 1, 1, 1, 1, 0, 0]);
        Ok(())
    }

    #[test]
    fn selects_rows_with_their_layout() -> Result<()> {
        let b = LmBatch::from_padded(&[(vec![1, 2, 3], vec![0, 1, 1]), (vec![4, 5], vec![0, 1])], 0)?;
        let s = b.select_rows(&[1])?;
        assert_eq!(s.dims(), (1, 3));
        assert_eq!(s.input_ids(), &[4, 5, 0]);
        assert_eq!(s.layout().segments(), &[1, 1, 0]);
        assert!(b.select_rows(&[2]).is_err());
        Ok(())
    }

    #[test]
    fn rejects_mismatched_pairs() {
        let one = LmBatch::from_padded(&[(vec![1, 2], vec![0, 1])], 0).expect("batch");
        assert!(PairBatch::new(vec![PairId(0), PairId(1)], one.clone(), one).is_err());
    }
}
