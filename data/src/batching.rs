//! The order in which a stage serves its items, epoch by epoch: the one owner of the epoch order.
//!
//! Each epoch, the items are shuffled with a generator seeded by [`epoch_seed`]`(seed, epoch)`. Unpacked
//! stages (sft, dpo) then sort each window of `window` consecutive items longest first, so a
//! micro-batch pads to similar lengths while the windows keep the shuffled order; packed rows (mid) all
//! have the same length and skip the sort. The order is a pure function of `(lens, window, seed, epoch)`,
//! so a resumed run serves exactly the items a straight run would have.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The seed of epoch `epoch`'s shuffle for a stage seeded with `seed` (the formula every stage and
/// every checkpoint since the first one uses: changing it would change every run's data order).
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The serving order of epoch `epoch`: a permutation of `0..lens.len()`.
///
/// `window`: `None` keeps the shuffle as it is (packed rows); `Some(w)` sorts each run of `w` items
/// longest first by `lens` (length bucketing; ties keep the shuffled order).
///
/// ```
/// use phi4r_data::epoch_order;
/// let lens = [5, 1, 9, 3];
/// let order = epoch_order(&lens, Some(4), 7, 0);
/// assert_eq!(order.iter().map(|&i| lens[i]).collect::<Vec<_>>(), vec![9, 5, 3, 1]);
/// assert_eq!(order, epoch_order(&lens, Some(4), 7, 0), "deterministic");
/// ```
pub fn epoch_order(lens: &[usize], window: Option<usize>, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(seed, epoch)));
    if let Some(w) = window {
        for chunk in order.chunks_mut(w.max(1)) {
            chunk.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `epoch_order(&[1; 10], None, 42, 0)` as rand 0.9's StdRng gives it.
    const GOLDEN_ORDER: [usize; 10] = [4, 0, 9, 6, 1, 7, 8, 3, 5, 2];
    use proptest::prelude::*;

    #[test]
    fn bucketing_pads_less_than_the_plain_shuffle() {
        // Padding of batches of 8 cut from the order: bucketed windows of 8 batches pad far less.
        let lens: Vec<usize> = (0..400).map(|i| 10 + (i * 37) % 150).collect();
        let padded = |order: &[usize]| -> usize {
            order.chunks(8).map(|c| c.len() * c.iter().map(|&i| lens[i]).max().unwrap_or(0)).sum()
        };
        let real: usize = lens.iter().sum();
        let bucketed = padded(&epoch_order(&lens, Some(64), 3, 0));
        let plain = padded(&epoch_order(&lens, None, 3, 0));
        assert!(real as f64 / bucketed as f64 > 0.9, "bucketed efficiency {}", real as f64 / bucketed as f64);
        assert!(bucketed < plain, "bucketing pads less: {bucketed} vs {plain}");
    }

    #[test]
    fn the_seed_formula_is_the_one_checkpoints_were_written_with() {
        // Pinned: a change here silently changes the data order of every resumed run.
        assert_eq!(epoch_seed(42, 0), 42 ^ 0x9E37_79B9_7F4A_7C15);
        assert_eq!(epoch_seed(42, 1), 42 ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(2));
    }

    #[test]
    fn the_shuffle_itself_is_pinned() {
        // Pinned: a change of `rand`'s StdRng or shuffle would silently change resumed runs' data order.
        assert_eq!(epoch_order(&[1; 10], None, 42, 0), GOLDEN_ORDER);
    }

    proptest! {
        #[test]
        fn every_item_is_served_once_per_epoch_and_windows_are_sorted(
            lens in prop::collection::vec(1usize..40, 0..120), w in 1usize..20, seed in any::<u64>(), epoch in 0u64..5) {
            let order = epoch_order(&lens, Some(w), seed, epoch);
            let mut seen = vec![0usize; lens.len()];
            for &i in &order {
                seen[i] += 1;
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
            for chunk in order.chunks(w) {
                prop_assert!(chunk.windows(2).all(|p| lens[p[0]] >= lens[p[1]]));
            }
            prop_assert_eq!(&order, &epoch_order(&lens, Some(w), seed, epoch));
        }

        #[test]
        fn epochs_and_seeds_change_the_order(n in 20usize..100, seed in any::<u64>()) {
            let lens = vec![1; n];
            let a = epoch_order(&lens, None, seed, 0);
            prop_assert_ne!(&a, &epoch_order(&lens, None, seed, 1));
            prop_assert_ne!(&a, &epoch_order(&lens, None, seed.wrapping_add(1), 0));
        }
    }
}
