//! Choosing which pending groups form a batch so that the batch's share of positive completions lands
//! in a band: exact, deterministic, pure over `(positives, completions)` counts.
//!
//! The search tabulates, for every suffix of the candidates (oldest first) and every count `k`, the
//! `(positives, completions)` totals reachable by choosing `k` of them. The closest reachable share to the
//! band (distance 0 when inside) is the target; then, walking from the oldest candidate, each one is taken
//! if the rest can still reach the target. So the batch is in band whenever any choice is, and among the
//! choices that are, it holds the oldest groups (FIFO keeps staleness low). The tables hold at most
//! `batch + 1` sets of totals per candidate, small for the pool sizes of a balancer (tens of groups).

use std::collections::HashSet;

/// Positive completions and all completions of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounts {
    /// Completions with a positive reward.
    pub positives: usize,
    /// All completions.
    pub completions: usize,
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Indices into the candidates, ascending (oldest first).
    pub chosen: Vec<usize>,
    /// The chosen groups' share of positive completions (0 when they hold no completion).
    pub positive_share: f32,
    /// Whether that share is inside `[lo, hi]`.
    pub in_band: bool,
}

/// Picks `batch` of `candidates` (oldest first) whose positive share is inside `[lo, hi]` when any choice
/// is, preferring the oldest groups; otherwise the choice whose share is closest to the band. `None` when
/// there are fewer than `batch` candidates.
pub fn select(candidates: &[GroupCounts], batch: usize, lo: f32, hi: f32) -> Option<Selection> {
    let n = candidates.len();
    if n < batch {
        return None;
    }
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    // The oldest `batch` in band is what the search below would choose (it prefers the oldest groups
    // among in-band choices): take it without the search, whose tables grow with pool × batch.
    let (p, c) = candidates[..batch].iter().fold((0, 0), |(p, c), g| (p + g.positives, c + g.completions));
    if (lo..=hi).contains(&share(p, c)) {
        return Some(Selection { chosen: (0..batch).collect(), positive_share: share(p, c) as f32, in_band: true });
    }
    let dist = |(p, c): (usize, usize)| {
        let s = share(p, c);
        (lo - s).max(s - hi).max(0.0)
    };
    // reach[i][k]: the totals reachable by choosing exactly k of candidates[i..].
    let mut reach: Vec<Vec<HashSet<(usize, usize)>>> = vec![vec![HashSet::new(); batch + 1]; n + 1];
    reach[n][0].insert((0, 0));
    for i in (0..n).rev() {
        let GroupCounts { positives, completions } = candidates[i];
        for k in 0..=batch.min(n - i) {
            let mut here = reach[i + 1][k].clone();
            if k > 0 {
                here.extend(reach[i + 1][k - 1].iter().map(|&(p, c)| (p + positives, c + completions)));
            }
            reach[i][k] = here;
        }
    }
    let target = reach[0][batch].iter().map(|&t| dist(t)).fold(f64::INFINITY, f64::min);
    let (mut chosen, mut totals) = (Vec::with_capacity(batch), (0usize, 0usize));
    for (i, c) in candidates.iter().enumerate() {
        let left = batch - chosen.len();
        if left == 0 {
            break;
        }
        let with = (totals.0 + c.positives, totals.1 + c.completions);
        if reach[i + 1][left - 1].iter().any(|&(p, q)| dist((with.0 + p, with.1 + q)) <= target) {
            chosen.push(i);
            totals = with;
        }
    }
    let s = share(totals.0, totals.1);
    Some(Selection { chosen, positive_share: s as f32, in_band: (lo..=hi).contains(&s) })
}

fn share(positives: usize, completions: usize) -> f64 {
    if completions == 0 {
        0.0
    } else {
        positives as f64 / completions as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pos: &[usize], g: usize) -> Vec<GroupCounts> {
        pos.iter().map(|&p| GroupCounts { positives: p, completions: g }).collect()
    }

    #[test]
    fn keeps_the_oldest_groups_when_they_are_in_band() {
        let s = select(&counts(&[4, 4, 1, 7], 8), 2, 0.3, 0.7).expect("enough");
        assert_eq!(s, Selection { chosen: vec![0, 1], positive_share: 0.5, in_band: true });
    }

    // Oldest two: (1 + 1) / 16 = 0.125 < 0.3. Take group 0 (1 + 5 or 1 + 7 can still reach the band),
    // skip group 1 ((1 + 1) / 16 cannot), take group 2: (1 + 5) / 16 = 0.375.
    #[test]
    fn swaps_in_positive_groups_when_the_batch_is_too_negative() {
        let s = select(&counts(&[1, 1, 5, 7], 8), 2, 0.3, 0.7).expect("enough");
        assert_eq!(s.chosen, vec![0, 2]);
        assert!((s.positive_share - 0.375).abs() < 1e-6 && s.in_band);
    }

    // Greedy swapping gets stuck here: from the oldest four (2+3+2+3 = 10 of 16) the band [0.365, 0.4275]
    // needs 6 positives, reached only by {1, 3, 4, 5} (3 + 3 + 0 + 0).
    #[test]
    fn finds_a_band_that_needs_several_exchanges() {
        let s = select(&counts(&[2, 3, 2, 3, 0, 0], 4), 4, 0.365, 0.4275).expect("enough");
        assert_eq!(s, Selection { chosen: vec![1, 3, 4, 5], positive_share: 0.375, in_band: true });
    }

    #[test]
    fn reports_the_closest_choice_when_the_band_is_out_of_reach() {
        let s = select(&counts(&[1, 2, 1], 8), 2, 0.4, 0.6).expect("enough");
        assert_eq!(s.chosen, vec![0, 1]);
        assert!((s.positive_share - 3.0 / 16.0).abs() < 1e-6 && !s.in_band);
        assert_eq!(select(&counts(&[1], 8), 2, 0.0, 1.0), None);
    }

    proptest::proptest! {
        // The search finds an in-band batch whenever one exists (checked against every subset of up to
        // 9 candidates), and the batch always has `batch` groups.
        #[test]
        fn finds_an_in_band_batch_whenever_one_exists(
            pos in proptest::collection::vec(0usize..=4, 1..9),
            batch in 1usize..5,
            lo in 0.0f32..1.0, width in 0.0f32..0.5,
        ) {
            let hi = (lo + width).min(1.0);
            let cands = counts(&pos, 4);
            let batch = batch.min(cands.len());
            let exists = (0u32..1 << cands.len()).filter(|m| m.count_ones() as usize == batch).any(|m| {
                let p: usize = (0..cands.len()).filter(|i| m & (1 << i) != 0).map(|i| pos[i]).sum();
                (f64::from(lo)..=f64::from(hi)).contains(&share(p, batch * 4))
            });
            let sel = select(&cands, batch, lo, hi).expect("enough candidates");
            proptest::prop_assert_eq!(sel.in_band, exists, "{:?}", sel);
            proptest::prop_assert_eq!(sel.chosen.len(), batch);
        }
    }
}
