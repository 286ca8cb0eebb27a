//! Packing tokenized examples into fixed-length rows for stage 1 (best-fit decreasing).
//!
//! Each row records its documents' lengths in order ([`PackedRow::doc_lens`]), which is what
//! `phi4r_model::AttentionLayout::packed` takes: attention stays inside a document and position ids
//! restart at each one. A document longer than the row is truncated or split into row-sized pieces
//! ([`Overflow`]); both are counted. Each piece is its own document, so its first token gets mask 0
//! (see [`crate::next_token_targets`] for how masks align with targets).

use crate::chat::TokenizedExample;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What to do with a document longer than a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Keep the first `seq_len` tokens, drop the rest (counted).
    Truncate,
    /// Cut it into pieces of at most `seq_len` tokens, each packed as its own document.
    #[default]
    Split,
}

/// Where a piece of a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPiece {
    /// Index of the document in the input.
    pub doc: usize,
    /// Offset of the piece's first token within that document.
    pub offset: usize,
}

/// One packed row of exactly `seq_len` tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedRow {
    /// Token ids, padded with the pad id.
    pub ids: Vec<u32>,
    /// Loss mask (0 on padding and on every document's first token).
    pub loss_mask: Vec<u8>,
    /// Lengths of the documents in the row, in order; the rest of the row is padding.
    pub doc_lens: Vec<usize>,
    /// The source of each document, parallel to `doc_lens`.
    pub pieces: Vec<DocPiece>,
}

/// Rows and the counts of what packing did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackedRows {
    /// The rows.
    pub rows: Vec<PackedRow>,
    /// Row length.
    pub seq_len: usize,
    /// Non-empty input documents.
    pub docs: usize,
    /// Tokens placed in rows (not padding).
    pub real_tokens: usize,
    /// Documents cut short by [`Overflow::Truncate`].
    pub truncated_docs: usize,
    /// Tokens dropped by truncation.
    pub truncated_tokens: usize,
    /// Documents cut into pieces by [`Overflow::Split`].
    pub split_docs: usize,
    /// `real_tokens / (rows × seq_len)` (0 with no rows).
    pub efficiency: f64,
}

impl PackedRows {
    /// Per-row document lengths, for `phi4r_model::AttentionLayout::packed(seq_len, &doc_lens)`.
    pub fn doc_lens(&self) -> Vec<Vec<usize>> {
        self.rows.iter().map(|r| r.doc_lens.clone()).collect()
    }
}

/// Packs `docs` into rows of `seq_len` tokens by best-fit decreasing: pieces longest first, each into the
/// fullest row that still has room (ties: the oldest row), else a new row. Deterministic.
///
/// # Shapes
/// every row: `ids`, `loss_mask` of length `seq_len`.
///
/// ```
/// use phi4r_data::{pack, Overflow, TokenizedExample};
/// let doc = |n: usize| TokenizedExample { ids: vec![7; n], loss_mask: vec![1; n] };
/// let packed = pack(&[doc(3), doc(5), doc(2)], 8, Overflow::Split, 0).unwrap();
/// assert_eq!(packed.rows.len(), 2);
/// assert_eq!(packed.rows[0].doc_lens, vec![5, 3]);
/// assert_eq!(packed.rows[1].doc_lens, vec![2]);
/// ```
pub fn pack(docs: &[TokenizedExample], seq_len: usize, overflow: Overflow, pad_id: u32) -> Result<PackedRows> {
    if seq_len == 0 {
        return Err(Error::input("pack", "seq_len must be > 0"));
    }
    let mut out = PackedRows {
        rows: Vec::new(),
        seq_len,
        docs: 0,
        real_tokens: 0,
        truncated_docs: 0,
        truncated_tokens: 0,
        split_docs: 0,
        efficiency: 0.0,
    };
    // (doc, offset, len) of every piece.
    let mut pieces: Vec<(usize, usize, usize)> = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        if d.ids.len() != d.loss_mask.len() {
            return Err(Error::input(
                "pack",
                format!("document {i}: {} ids but {} mask entries", d.ids.len(), d.loss_mask.len()),
            ));
        }
        let n = d.ids.len();
        if n == 0 {
            continue;
        }
        out.docs += 1;
        if n <= seq_len {
            pieces.push((i, 0, n));
        } else if overflow == Overflow::Truncate {
            out.truncated_docs += 1;
            out.truncated_tokens += n - seq_len;
            pieces.push((i, 0, seq_len));
        } else {
            out.split_docs += 1;
            pieces.extend((0..n).step_by(seq_len).map(|o| (i, o, seq_len.min(n - o))));
        }
    }
    pieces.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    // Open rows by (remaining room, row index): the first entry with room >= len is the best fit.
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut members: Vec<Vec<(usize, usize, usize)>> = Vec::new();
    let mut room: Vec<usize> = Vec::new();
    for p in pieces {
        let len = p.2;
        let row = match open.range((len, 0)..).next().copied() {
            Some(key) => {
                open.remove(&key);
                key.1
            }
            None => {
                members.push(Vec::new());
                room.push(seq_len);
                members.len() - 1
            }
        };
        members[row].push(p);
        room[row] -= len;
        if room[row] > 0 {
            open.insert((room[row], row));
        }
    }
    for m in members {
        let mut ids = Vec::with_capacity(seq_len);
        let mut loss_mask = Vec::with_capacity(seq_len);
        let mut doc_lens = Vec::with_capacity(m.len());
        let mut src = Vec::with_capacity(m.len());
        for (doc, offset, len) in m {
            let d = &docs[doc];
            ids.extend_from_slice(&d.ids[offset..offset + len]);
            let start = loss_mask.len();
            loss_mask.extend_from_slice(&d.loss_mask[offset..offset + len]);
            // A document's first token has no predecessor in its document.
            loss_mask[start] = 0;
            doc_lens.push(len);
            src.push(DocPiece { doc, offset });
            out.real_tokens += len;
        }
        ids.resize(seq_len, pad_id);
        loss_mask.resize(seq_len, 0);
        out.rows.push(PackedRow { ids, loss_mask, doc_lens, pieces: src });
    }
    if !out.rows.is_empty() {
        out.efficiency = out.real_tokens as f64 / (out.rows.len() * seq_len) as f64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phi4r_model::AttentionLayout;
    use proptest::prelude::*;

    /// (offset, ids, mask) of a piece found in a row.
    type Rebuilt = (usize, Vec<u32>, Vec<u8>);

    fn docs_from(lens: &[usize]) -> Vec<TokenizedExample> {
        lens.iter()
            .enumerate()
            .map(|(i, &n)| TokenizedExample {
                ids: (0..n).map(|j| (i * 1000 + j) as u32 + 2).collect(),
                loss_mask: (0..n).map(|j| u8::from(j % 3 != 0)).collect(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn split_packing_keeps_every_token_and_never_crosses_a_boundary(
            lens in prop::collection::vec(0usize..90, 0..60), seq_len in 1usize..64) {
            let docs = docs_from(&lens);
            let packed = pack(&docs, seq_len, Overflow::Split, 1).expect("packs");
            let mut rebuilt: Vec<Vec<Rebuilt>> = vec![Vec::new(); docs.len()];
            for row in &packed.rows {
                prop_assert_eq!(row.ids.len(), seq_len);
                prop_assert_eq!(row.loss_mask.len(), seq_len);
                prop_assert!(row.doc_lens.iter().sum::<usize>() <= seq_len);
                prop_assert!(row.doc_lens.iter().all(|&l| l > 0));
                prop_assert!(AttentionLayout::packed(seq_len, std::slice::from_ref(&row.doc_lens)).is_ok());
                let mut at = 0;
                for (len, piece) in row.doc_lens.iter().zip(&row.pieces) {
                    prop_assert_eq!(row.loss_mask[at], 0, "first token of a document is never a target");
                    rebuilt[piece.doc].push((piece.offset, row.ids[at..at + len].to_vec(), row.loss_mask[at..at + len].to_vec()));
                    at += len;
                }
                prop_assert!(row.ids[at..].iter().all(|&t| t == 1) && row.loss_mask[at..].iter().all(|&m| m == 0));
            }
            let mut total = 0;
            for (d, mut parts) in docs.iter().zip(rebuilt) {
                parts.sort_by_key(|p| p.0);
                let ids: Vec<u32> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
                prop_assert_eq!(&ids, &d.ids, "every token, in order");
                for (offset, _, mask) in &parts {
                    prop_assert_eq!(&mask[1..], &d.loss_mask[offset + 1..offset + mask.len()]);
                }
                total += ids.len();
            }
            prop_assert_eq!(total, packed.real_tokens);
            prop_assert_eq!(packed.truncated_tokens, 0);
        }

        #[test]
        fn truncation_is_counted(lens in prop::collection::vec(1usize..90, 1..40), seq_len in 1usize..64) {
            let docs = docs_from(&lens);
            let packed = pack(&docs, seq_len, Overflow::Truncate, 0).expect("packs");
            let total: usize = lens.iter().sum();
            prop_assert_eq!(packed.real_tokens + packed.truncated_tokens, total);
            prop_assert_eq!(packed.truncated_docs, lens.iter().filter(|&&n| n > seq_len).count());
            let pieces: usize = packed.rows.iter().map(|r| r.pieces.len()).sum();
            prop_assert_eq!(pieces, lens.len(), "one piece per document");
        }
    }

    #[test]
    fn best_fit_decreasing_fills_rows() {
        let packed = pack(&docs_from(&[6, 4, 5, 3, 2]), 10, Overflow::Split, 0).expect("packs");
        let lens: Vec<_> = packed.rows.iter().map(|r| r.doc_lens.clone()).collect();
        assert_eq!(lens, vec![vec![6, 4], vec![5, 3, 2]]);
        assert!((packed.efficiency - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(pack(&[], 0, Overflow::Split, 0).is_err());
        let bad = TokenizedExample { ids: vec![1, 2], loss_mask: vec![1] };
        assert!(pack(&[bad], 4, Overflow::Split, 0).expect_err("must fail").to_string().contains("document 0"));
    }
}
