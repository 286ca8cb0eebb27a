//! Unpacked, length-bucketed batches for stage 2 (and any stage that trains whole examples).
//!
//! Each epoch, the examples are shuffled (seeded by `seed` and the epoch), cut into buckets of
//! `bucket_batches × batch_size` examples, each bucket sorted by length and cut into batches, and the
//! batch order shuffled. Batches are right-padded to their longest example, so padding stays small while
//! every epoch sees a different order.

use crate::chat::TokenizedExample;
use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// How to batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Examples per batch.
    pub batch_size: usize,
    /// Batches' worth of examples sorted by length together (1: sort within a batch only).
    pub bucket_batches: usize,
    /// Examples longer than this are truncated (counted); None: no limit.
    pub max_len: Option<usize>,
    /// Drop the last, smaller batch of an epoch.
    pub drop_last: bool,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { batch_size: 16, bucket_batches: 32, max_len: None, drop_last: false, seed: 0 }
    }
}

impl BatchConfig {
    /// Errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", "must be > 0"));
        }
        if self.bucket_batches == 0 {
            return Err(Error::config("bucket_batches", "must be > 0"));
        }
        if self.max_len == Some(0) {
            return Err(Error::config("max_len", "must be > 0"));
        }
        Ok(())
    }
}

/// A padded batch, row-major `(b, t)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Token ids, padded with the pad id. (b × t)
    pub ids: Vec<u32>,
    /// Loss mask, 0 on padding. (b × t)
    pub loss_mask: Vec<u8>,
    /// 1 on real tokens, 0 on padding, for `phi4r_model::AttentionLayout::from_mask(b, t, ..)`. (b × t)
    pub attention_mask: Vec<u8>,
    /// `b`.
    pub batch: usize,
    /// `t`: the longest example in the batch.
    pub seq_len: usize,
    /// Index of each row's example in the batcher's input.
    pub examples: Vec<usize>,
}

impl Batch {
    /// Real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().map(|&m| usize::from(m)).sum()
    }
}

/// Right-pads `examples` to the longest into one batch; `indices` label the rows.
///
/// # Shapes
/// → `ids`, `loss_mask`, `attention_mask`: (b, t) with t = the longest example.
pub fn pad_batch(examples: &[&TokenizedExample], indices: Vec<usize>, pad_id: u32) -> Batch {
    let b = examples.len();
    let t = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut batch = Batch {
        ids: Vec::with_capacity(b * t),
        loss_mask: Vec::with_capacity(b * t),
        attention_mask: Vec::with_capacity(b * t),
        batch: b,
        seq_len: t,
        examples: indices,
    };
    for e in examples {
        let n = e.len();
        batch.ids.extend_from_slice(&e.ids);
        batch.ids.extend(std::iter::repeat_n(pad_id, t - n));
        batch.loss_mask.extend_from_slice(&e.loss_mask);
        batch.loss_mask.extend(std::iter::repeat_n(0, t - n));
        batch.attention_mask.extend(std::iter::repeat_n(1, n));
        batch.attention_mask.extend(std::iter::repeat_n(0, t - n));
    }
    batch
}

/// Deterministic length-bucketed batching of a fixed set of examples.
#[derive(Debug, Clone)]
pub struct Batcher {
    examples: Vec<TokenizedExample>,
    cfg: BatchConfig,
    pad_id: u32,
    truncated: usize,
}

impl Batcher {
    /// Owns `examples` (truncated to `cfg.max_len`; empty ones dropped) and batches them.
    pub fn new(mut examples: Vec<TokenizedExample>, cfg: BatchConfig, pad_id: u32) -> Result<Self> {
        cfg.validate()?;
        for (i, e) in examples.iter().enumerate() {
            if e.ids.len() != e.loss_mask.len() {
                return Err(Error::input(
                    "Batcher::new",
                    format!("example {i}: {} ids but {} mask entries", e.ids.len(), e.loss_mask.len()),
                ));
            }
        }
        let mut truncated = 0;
        if let Some(max) = cfg.max_len {
            for e in &mut examples {
                if e.len() > max {
                    truncated += 1;
                    e.ids.truncate(max);
                    e.loss_mask.truncate(max);
                }
            }
        }
        examples.retain(|e| !e.is_empty());
        Ok(Batcher { examples, cfg, pad_id, truncated })
    }

    /// Examples truncated to `max_len`.
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// Number of examples.
    pub fn examples(&self) -> usize {
        self.examples.len()
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.examples.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The batches of `epoch`, in training order; deterministic for (seed, epoch).
    pub fn epoch(&self, epoch: u64) -> Vec<Batch> {
        let mut rng = StdRng::seed_from_u64(self.cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        order.shuffle(&mut rng);
        let bs = self.cfg.batch_size;
        let mut groups: Vec<Vec<usize>> = Vec::with_capacity(self.batches_per_epoch() + 1);
        for bucket in order.chunks(bs * self.cfg.bucket_batches) {
            let mut bucket = bucket.to_vec();
            bucket.sort_by_key(|&i| self.examples[i].len());
            groups.extend(bucket.chunks(bs).map(<[usize]>::to_vec));
        }
        if self.cfg.drop_last {
            groups.retain(|g| g.len() == bs);
        }
        groups.shuffle(&mut rng);
        groups
            .into_iter()
            .map(|g| {
                let rows: Vec<&TokenizedExample> = g.iter().map(|&i| &self.examples[i]).collect();
                pad_batch(&rows, g, self.pad_id)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn examples(lens: &[usize]) -> Vec<TokenizedExample> {
        lens.iter().map(|&n| TokenizedExample { ids: vec![5; n], loss_mask: vec![1; n] }).collect()
    }

    #[test]
    fn batches_are_padded_to_their_longest_and_bucketing_limits_padding() {
        let lens: Vec<usize> = (0..200).map(|i| 10 + (i * 37) % 150).collect();
        let cfg = BatchConfig { batch_size: 8, bucket_batches: 25, ..BatchConfig::default() };
        let b = Batcher::new(examples(&lens), cfg.clone(), 0).expect("valid");
        let batches = b.epoch(0);
        assert_eq!(batches.len(), 25);
        let real: usize = batches.iter().map(Batch::real_tokens).sum();
        let total: usize = batches.iter().map(|x| x.batch * x.seq_len).sum();
        assert_eq!(real, lens.iter().sum::<usize>());
        assert!(real as f64 / total as f64 > 0.95, "bucketed padding efficiency {}", real as f64 / total as f64);
        let unbucketed = Batcher::new(examples(&lens), BatchConfig { bucket_batches: 1, ..cfg }, 0).expect("valid");
        let total_unbucketed: usize = unbucketed.epoch(0).iter().map(|x| x.batch * x.seq_len).sum();
        assert!(total < total_unbucketed, "bucketing pads less");
        assert_eq!(b.epoch(3), b.epoch(3), "deterministic");
        assert_ne!(b.epoch(3), b.epoch(4), "epochs differ");
    }

    #[test]
    fn truncates_and_drops_last_as_configured() {
        let cfg = BatchConfig { batch_size: 4, max_len: Some(5), drop_last: true, ..BatchConfig::default() };
        let b = Batcher::new(examples(&[3, 9, 4, 7, 2, 0, 6]), cfg, 0).expect("valid");
        assert_eq!(b.truncated(), 3);
        assert_eq!(b.examples(), 6, "the empty example is dropped");
        let batches = b.epoch(0);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].seq_len <= 5);
        assert!(BatchConfig { batch_size: 0, ..BatchConfig::default() }
            .validate()
            .expect_err("must fail")
            .to_string()
            .contains("batch_size"));
    }

    proptest! {
        #[test]
        fn every_example_appears_once_per_epoch_with_its_tokens(
            lens in prop::collection::vec(1usize..40, 0..80), bs in 1usize..9, seed in any::<u64>()) {
            let ex: Vec<TokenizedExample> = lens.iter().enumerate()
                .map(|(i, &n)| TokenizedExample { ids: vec![i as u32 + 2; n], loss_mask: vec![1; n] }).collect();
            let cfg = BatchConfig { batch_size: bs, bucket_batches: 3, seed, ..BatchConfig::default() };
            let b = Batcher::new(ex.clone(), cfg, 1).expect("valid");
            let mut seen = vec![0usize; lens.len()];
            for batch in b.epoch(1) {
                prop_assert!(batch.batch <= bs);
                prop_assert_eq!(batch.ids.len(), batch.batch * batch.seq_len);
                for (r, &i) in batch.examples.iter().enumerate() {
                    seen[i] += 1;
                    let row = &batch.ids[r * batch.seq_len..(r + 1) * batch.seq_len];
                    let n = ex[i].len();
                    prop_assert_eq!(&row[..n], &ex[i].ids[..]);
                    prop_assert!(row[n..].iter().all(|&t| t == 1));
                    prop_assert!(batch.attention_mask[r * batch.seq_len..][..batch.seq_len].iter().enumerate().all(|(j, &m)| (m == 1) == (j < n)));
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
        }
    }
}
