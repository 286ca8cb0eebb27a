//! Choosing which pending groups form a batch so that the batch's share of positive completions lands
//! in a band: a deterministic local search, pure over `(positives, completions)` counts.
//!
//! Start from the oldest `batch` groups (FIFO keeps staleness low). While the share is outside the band,
//! make the one swap (a chosen group out, a pending one in) that brings the share closest to the band,
//! if it brings it strictly closer; among equally good swaps, the oldest pending group comes in and the
//! newest chosen one goes out. The distance to the band falls at every swap, so the search ends.

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

/// Picks `batch` of `candidates` (oldest first) whose positive share is inside `[lo, hi]` if the search
/// finds such a choice, else the closest it found. `None` when there are fewer than `batch` candidates.
pub fn select(candidates: &[GroupCounts], batch: usize, lo: f32, hi: f32) -> Option<Selection> {
    if candidates.len() < batch {
        return None;
    }
    let (lo, hi) = (f64::from(lo), f64::from(hi));
    let dist = |p: usize, n: usize| {
        let s = share(p, n);
        (lo - s).max(s - hi).max(0.0)
    };
    let mut chosen = vec![false; candidates.len()];
    chosen.iter_mut().take(batch).for_each(|c| *c = true);
    let (mut p, mut n) = candidates[..batch].iter().fold((0, 0), |(p, n), c| (p + c.positives, n + c.completions));
    loop {
        let here = dist(p, n);
        if here == 0.0 {
            break;
        }
        let mut best: Option<(f64, usize, usize)> = None;
        for u in (0..candidates.len()).filter(|&u| !chosen[u]) {
            for r in (0..candidates.len()).rev().filter(|&r| chosen[r]) {
                let (cu, cr) = (candidates[u], candidates[r]);
                let d = dist(p + cu.positives - cr.positives, n + cu.completions - cr.completions);
                if d < here && best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, u, r));
                }
            }
        }
        let Some((_, u, r)) = best else { break };
        chosen[u] = true;
        chosen[r] = false;
        p = p + candidates[u].positives - candidates[r].positives;
        n = n + candidates[u].completions - candidates[r].completions;
    }
    let s = share(p, n);
    Some(Selection {
        chosen: (0..candidates.len()).filter(|&i| chosen[i]).collect(),
        positive_share: s as f32,
        in_band: (lo..=hi).contains(&s),
    })
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

    // Oldest two: (1 + 1) / 16 = 0.125 < 0.3. Swaps tried, oldest pending first, newest chosen first:
    // in 2 / out 1 gives (1 + 5) / 16 = 0.375, inside the band, so nothing later can beat it
    // (in 3 / out 1 = 0.5 is in band too, but not strictly closer).
    #[test]
    fn swaps_in_positive_groups_when_the_batch_is_too_negative() {
        let s = select(&counts(&[1, 1, 5, 7], 8), 2, 0.3, 0.7).expect("enough");
        assert_eq!(s.chosen, vec![0, 2]);
        assert!((s.positive_share - 0.375).abs() < 1e-6 && s.in_band);
    }

    #[test]
    fn reports_the_closest_choice_when_the_band_is_out_of_reach() {
        let s = select(&counts(&[1, 2, 1], 8), 2, 0.4, 0.6).expect("enough");
        assert_eq!(s.chosen, vec![0, 1]);
        assert!((s.positive_share - 3.0 / 16.0).abs() < 1e-6 && !s.in_band);
        assert_eq!(select(&counts(&[1], 8), 2, 0.0, 1.0), None);
    }
}
