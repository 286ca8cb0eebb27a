//! Which positions of a training batch attend to which: padded rows and packed rows.
//!
//! A row is a sequence of *segment ids*: `0` marks padding, and equal non-zero ids mark one document.
//! Padded batches have one segment per row; packed rows hold several documents, which must not attend
//! to each other and whose position ids restart at 0.

use crate::error::{Error, Result};
use crate::kernels::KeyRanges;
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// Attention structure of a `(b, t)` training batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionLayout {
    batch: usize,
    seq_len: usize,
    /// Segment id of every position, row-major `(b, t)`; 0 = padding.
    segments: Vec<u32>,
}

impl AttentionLayout {
    /// Every position of every row is one document (no padding).
    pub fn full(batch: usize, seq_len: usize) -> Self {
        AttentionLayout { batch, seq_len, segments: vec![1; batch * seq_len] }
    }

    /// A padded batch from a 0/1 attention mask (`(b, t)`, row-major): 1 = real token. Left and right
    /// padding both work; positions count real tokens only, as transformers' `generate` does.
    pub fn from_mask(batch: usize, seq_len: usize, mask: &[u8]) -> Result<Self> {
        if mask.len() != batch * seq_len {
            return Err(Error::input(
                "AttentionLayout::from_mask",
                format!("mask has {} entries, expected {batch}x{seq_len}", mask.len()),
            ));
        }
        Ok(AttentionLayout { batch, seq_len, segments: mask.iter().map(|&m| u32::from(m != 0)).collect() })
    }

    /// Packed rows from per-row document lengths; each row's lengths sum to at most `seq_len`, and the
    /// remainder is padding.
    pub fn packed(seq_len: usize, doc_lens: &[Vec<usize>]) -> Result<Self> {
        let mut segments = Vec::with_capacity(doc_lens.len() * seq_len);
        for (r, docs) in doc_lens.iter().enumerate() {
            let total: usize = docs.iter().sum();
            if total > seq_len {
                return Err(Error::input(
                    "AttentionLayout::packed",
                    format!("row {r} holds {total} tokens > seq_len {seq_len}"),
                ));
            }
            for (i, &len) in docs.iter().enumerate() {
                segments.extend(std::iter::repeat_n(i as u32 + 1, len));
            }
            segments.extend(std::iter::repeat_n(0, seq_len - total));
        }
        Ok(AttentionLayout { batch: doc_lens.len(), seq_len, segments })
    }

    /// A layout from explicit segment ids (`(b, t)` row-major; 0 = padding).
    pub fn from_segments(batch: usize, seq_len: usize, segments: Vec<u32>) -> Result<Self> {
        if segments.len() != batch * seq_len {
            return Err(Error::input(
                "AttentionLayout::from_segments",
                format!("{} ids, expected {batch}x{seq_len}", segments.len()),
            ));
        }
        Ok(AttentionLayout { batch, seq_len, segments })
    }

    /// `(b, t)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.batch, self.seq_len)
    }

    /// Segment ids, row-major.
    pub fn segments(&self) -> &[u32] {
        &self.segments
    }

    /// Position id of every token: restarts at 0 at each new segment; padding gets 0.
    pub fn position_ids(&self) -> Vec<u32> {
        let mut pos = Vec::with_capacity(self.segments.len());
        for row in self.segments.chunks(self.seq_len.max(1)) {
            let mut prev = u32::MAX;
            let mut p = 0u32;
            for &s in row {
                if s == 0 {
                    pos.push(0);
                    continue;
                }
                if s != prev {
                    p = 0;
                    prev = s;
                }
                pos.push(p);
                p += 1;
            }
        }
        pos
    }

    /// Whether query `i` may attend to key `j` in row `r`: same non-zero segment and `j <= i` (and within
    /// `window` if set). A padding query attends to itself only, so no softmax row is empty.
    pub fn allowed(&self, r: usize, i: usize, j: usize, window: Option<usize>) -> bool {
        let row = &self.segments[r * self.seq_len..(r + 1) * self.seq_len];
        if i == j {
            return true;
        }
        j < i && row[i] != 0 && row[i] == row[j] && window.is_none_or(|w| i - j < w)
    }

    /// The allowed key range of every query (what [`Self::allowed`] says, as ranges): the start of the
    /// query's document (or of the window) up to the query itself.
    pub fn key_ranges(&self, window: Option<usize>) -> KeyRanges {
        let t = self.seq_len;
        let mut ranges = Vec::with_capacity(self.segments.len());
        for row in self.segments.chunks(t.max(1)) {
            let mut start = 0usize;
            for (i, &s) in row.iter().enumerate() {
                if i == 0 || s != row[i - 1] {
                    start = i;
                }
                let lo = if s == 0 { i } else { window.map_or(start, |w| start.max((i + 1).saturating_sub(w))) };
                ranges.push((lo as u32, i as u32));
            }
        }
        KeyRanges { queries: t, ranges: Arc::new(ranges) }
    }

    /// Additive mask `(b, 1, t, t)` in f32: 0 where attention is allowed, -inf elsewhere.
    pub fn additive_mask(&self, window: Option<usize>, device: &Device) -> Result<Tensor> {
        let (b, t) = (self.batch, self.seq_len);
        let mut m = vec![f32::NEG_INFINITY; b * t * t];
        for r in 0..b {
            for i in 0..t {
                let row = &mut m[(r * t + i) * t..(r * t + i + 1) * t];
                for (j, v) in row.iter_mut().enumerate().take(i + 1) {
                    if self.allowed(r, i, j, window) {
                        *v = 0.0;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(m, (b, 1, t, t), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_positions_restart_and_documents_do_not_see_each_other() {
        let l = AttentionLayout::packed(6, &[vec![2, 3], vec![6]]).expect("layout");
        assert_eq!(l.position_ids(), vec![0, 1, 0, 1, 2, 0, 0, 1, 2, 3, 4, 5]);
        assert!(l.allowed(0, 1, 0, None));
        assert!(!l.allowed(0, 2, 1, None), "second doc must not see the first");
        assert!(l.allowed(0, 4, 2, None));
        assert!(!l.allowed(0, 5, 4, None), "padding attends to itself only");
        assert!(l.allowed(0, 5, 5, None));
        assert!(!l.allowed(1, 2, 3, None), "causal");
    }

    #[test]
    fn left_padding_counts_real_tokens_only() {
        let l = AttentionLayout::from_mask(1, 4, &[0, 0, 1, 1]).expect("layout");
        assert_eq!(l.position_ids(), vec![0, 0, 0, 1]);
        assert!(!l.allowed(0, 3, 1, None));
        assert!(l.allowed(0, 3, 2, None));
    }

    #[test]
    fn key_ranges_agree_with_allowed() {
        let l = AttentionLayout::packed(7, &[vec![2, 3], vec![7], vec![1]]).expect("layout");
        for window in [None, Some(2)] {
            let r = l.key_ranges(window);
            for row in 0..3 {
                for i in 0..7 {
                    let (lo, hi) = r.ranges[row * 7 + i];
                    for j in 0..7 {
                        let inside = (lo as usize..=hi as usize).contains(&j);
                        assert_eq!(inside, l.allowed(row, i, j, window), "row {row} q {i} k {j} window {window:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_overfull_rows() {
        assert!(AttentionLayout::packed(4, &[vec![3, 2]]).is_err());
    }
}
