//! An explicit, preallocated key/value cache for batched decoding.
//!
//! The model never owns decoding state: a generator creates a `KvCache` per batch and passes it to
//! [`Phi3::forward_cached`](crate::Phi3::forward_cached), so one set of frozen weights serves many
//! generators. Keys and values are written in place (`slice_set`) into tensors allocated once.

use crate::config::Phi3Config;
use crate::error::{Error, Result};
use crate::kernels::KeyRanges;
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// Per-layer key/value tensors `(b, kv_heads, capacity, head_dim)` plus per-row bookkeeping for
/// prompts of different lengths (left padding).
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) keys: Vec<Tensor>,
    pub(crate) values: Vec<Tensor>,
    pub(crate) len: usize,
    capacity: usize,
    batch: usize,
    /// 1 where the cached position holds a real token, row-major `(b, capacity)`.
    pub(crate) key_valid: Vec<u8>,
    /// Position id the next real token of each row gets.
    pub(crate) next_position: Vec<u32>,
}

impl KvCache {
    /// An empty cache for `batch` rows of up to `capacity` tokens each.
    pub fn new(cfg: &Phi3Config, batch: usize, capacity: usize, dtype: DType, device: &Device) -> Result<Self> {
        let shape = (batch, cfg.num_key_value_heads, capacity, cfg.head_dim());
        let mut keys = Vec::with_capacity(cfg.num_hidden_layers);
        let mut values = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            keys.push(Tensor::zeros(shape, dtype, device)?);
            values.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(KvCache {
            keys,
            values,
            len: 0,
            capacity,
            batch,
            key_valid: vec![0; batch * capacity],
            next_position: vec![0; batch],
        })
    }

    /// Tokens cached so far (per row, padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum tokens per row.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Keeps only the rows `keep` (indices into the current batch, in the order given) and drops the
    /// others, so later [`Phi3::forward_cached`](crate::Phi3::forward_cached) calls take `keep.len()`
    /// rows. A kept row's keys, values, padding and positions are unchanged: decoding it goes on exactly
    /// as before. Generation uses this to stop paying for finished rows.
    pub fn retain(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(&r) = keep.iter().find(|&&r| r >= self.batch) {
            return Err(Error::input("KvCache::retain", format!("row {r} of a batch of {}", self.batch)));
        }
        if keep.is_empty() {
            return Err(Error::input("KvCache::retain", "keeps no row"));
        }
        if keep.len() == self.batch && keep.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        let device = self.keys.first().map(|k| k.device().clone());
        if let Some(device) = device {
            let idx = Tensor::from_vec(keep.iter().map(|&r| r as u32).collect::<Vec<u32>>(), keep.len(), &device)?;
            for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
                *t = t.index_select(&idx, 0)?.contiguous()?;
            }
        }
        let cap = self.capacity;
        self.key_valid = keep.iter().flat_map(|&r| self.key_valid[r * cap..(r + 1) * cap].iter().copied()).collect();
        self.next_position = keep.iter().map(|&r| self.next_position[r]).collect();
        self.batch = keep.len();
        Ok(())
    }

    /// Registers `t` new tokens per row (`valid`: `(b, t)` row-major, 1 = real token) and returns their
    /// position ids. Padding tokens take the row's current position and do not advance it.
    pub(crate) fn admit(&mut self, t: usize, valid: &[u8]) -> Result<Vec<u32>> {
        if valid.len() != self.batch * t {
            return Err(Error::input(
                "forward_cached",
                format!("valid has {} entries, expected {}x{t}", valid.len(), self.batch),
            ));
        }
        if self.len + t > self.capacity {
            return Err(Error::input(
                "forward_cached",
                format!("cache capacity {} exceeded ({} cached + {t} new)", self.capacity, self.len),
            ));
        }
        let mut positions = Vec::with_capacity(self.batch * t);
        for r in 0..self.batch {
            for i in 0..t {
                let v = valid[r * t + i];
                positions.push(self.next_position[r]);
                if v != 0 {
                    self.next_position[r] += 1;
                }
                self.key_valid[r * self.capacity + self.len + i] = u8::from(v != 0);
            }
        }
        Ok(positions)
    }

    /// The same as [`Self::mask`] as key ranges, when every real query sees a contiguous run of real keys
    /// (left padding, as `generate` builds); `None` otherwise.
    pub(crate) fn key_ranges(&self, t: usize, window: Option<usize>) -> Option<KeyRanges> {
        let mut ranges = Vec::with_capacity(self.batch * t);
        for r in 0..self.batch {
            let valid = &self.key_valid[r * self.capacity..r * self.capacity + self.len + t];
            let first = valid.iter().position(|&v| v != 0).unwrap_or(0);
            for i in 0..t {
                let q = self.len + i;
                if valid[q] == 0 {
                    ranges.push((q as u32, q as u32));
                    continue;
                }
                let lo = window.map_or(first, |w| first.max((q + 1).saturating_sub(w)));
                if valid[lo..=q].contains(&0) {
                    return None;
                }
                ranges.push((lo as u32, q as u32));
            }
        }
        Some(KeyRanges { queries: t, ranges: Arc::new(ranges) })
    }

    /// Additive mask `(b, 1, t, len + t)` for the `t` tokens just admitted.
    pub(crate) fn mask(&self, t: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
        let total = self.len + t;
        let mut m = vec![f32::NEG_INFINITY; self.batch * t * total];
        for r in 0..self.batch {
            for i in 0..t {
                let q = self.len + i;
                let q_valid = self.key_valid[r * self.capacity + q] != 0;
                let row = &mut m[(r * t + i) * total..(r * t + i + 1) * total];
                for (k, v) in row.iter_mut().enumerate().take(q + 1) {
                    let ok = k == q
                        || (q_valid && self.key_valid[r * self.capacity + k] != 0 && window.is_none_or(|w| q - k < w));
                    if ok {
                        *v = 0.0;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(m, (self.batch, 1, t, total), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_keeps_the_named_rows_and_refuses_rows_it_does_not_have() -> Result<()> {
        let mut c = Phi3Config::tiny();
        c.num_hidden_layers = 1;
        let mut cache = KvCache::new(&c, 3, 4, DType::F32, &Device::Cpu)?;
        // Row r has r padding tokens before its real ones.
        cache.admit(2, &[1, 1, 0, 1, 0, 0])?;
        cache.len += 2;
        let kv = (c.num_key_value_heads, 4, c.head_dim());
        let marked =
            Tensor::arange(0f32, 3.0, &Device::Cpu)?.reshape((3, 1, 1, 1))?.broadcast_as((3, kv.0, kv.1, kv.2))?;
        cache.keys[0] = marked.contiguous()?;
        cache.retain(&[2, 0])?;
        assert_eq!(cache.batch(), 2);
        assert_eq!(cache.next_position, vec![0, 2]);
        assert_eq!(&cache.key_valid[..2], &[0, 0]);
        assert_eq!(&cache.key_valid[4..6], &[1, 1]);
        let firsts: Vec<f32> = cache.keys[0].flatten_from(1)?.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?;
        assert_eq!(firsts, vec![2.0, 0.0], "row 2's keys first, then row 0's");
        assert!(cache.retain(&[2]).is_err(), "only rows 0 and 1 are left");
        assert!(cache.retain(&[]).is_err());
        Ok(())
    }
}
