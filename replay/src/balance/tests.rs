use super::*;
use crate::types::fixtures::group;
use crate::types::PromptId;
use proptest::prelude::*;

fn cfg(batch_groups: usize, max_pending_groups: usize, lo: f32, hi: f32) -> BalanceConfig {
    BalanceConfig {
        batch_groups,
        max_pending_groups,
        positive_share_min: lo,
        positive_share_max: hi,
        ..BalanceConfig::default()
    }
}

/// A group of `g` completions, `pos` of them correct, all of length 10.
fn mixed(id: u64, pos: usize, g: usize) -> Group {
    let c: Vec<(f32, usize)> = (0..g).map(|i| (if i < pos { 1.0 } else { -1.0 }, 10)).collect();
    group(id, &c)
}

fn ids(batch: &Batch) -> Vec<u64> {
    batch.groups.iter().map(|g| g.prompt.id.0).collect()
}

#[test]
fn a_final_batch_short_of_groups_hands_back_every_kept_group_oldest_first() {
    let mut b = Balancer::new(cfg(4, 8, 0.3, 0.7), EasyMemory::new()).expect("valid");
    for id in [1, 2] {
        assert_eq!(b.push(mixed(id, 1, 4)), Admission::Kept);
    }
    assert!(matches!(b.next_batch(), BatchOrShortfall::Shortfall(Shortfall::Groups { pending: 2, missing: 2 })));
    assert_eq!(ids(&b.final_batch()), vec![1, 2]);
    assert_eq!(b.pending(), 0);
}

// Out of rounds with 5 groups at 1/4 pending (batch 2, band [0.3, 0.7], so never in band): the final batch
// is the closest 2, never the whole pool; with 1 pending it is that one; with none, empty.
#[test]
fn the_final_batch_is_at_most_batch_groups() {
    let mut b = Balancer::new(cfg(2, 8, 0.3, 0.7), EasyMemory::new()).expect("valid");
    for id in 1..=5 {
        assert_eq!(b.push(mixed(id, 1, 4)), Admission::Kept);
    }
    let last = b.final_batch();
    assert_eq!(ids(&last), vec![1, 2], "the oldest closest choice");
    assert_eq!((last.positive_share, last.in_band), (0.25, false));
    assert_eq!(b.pending(), 3);
    let mut b = Balancer::new(cfg(2, 8, 0.3, 0.7), EasyMemory::new()).expect("valid");
    assert_eq!(b.push(mixed(7, 2, 4)), Admission::Kept);
    let last = b.final_batch();
    assert_eq!((ids(&last), last.positive_share, last.in_band), (vec![7], 0.5, true));
    assert!(b.final_batch().groups.is_empty());
    assert_eq!(b.stats().batches, 1, "an empty final batch is not counted");
}

// Batch of 2 groups of 4, band [0.3, 0.7]:
//   group 1 all correct, group 2 all wrong -> dropped (no signal), prompt 1 remembered as easy;
//   groups 3, 4 at 1/4 each -> (1 + 1) / 8 = 0.25 < 0.3 -> shortfall, more positive needed;
//   group 5 at 3/4 -> swap it for the newest chosen (4): (1 + 3) / 8 = 0.5 -> batch [3, 5]; 4 waits.
#[test]
fn rebalances_by_swapping_in_positive_groups_and_remembers_easy_prompts() {
    let mut b = Balancer::new(cfg(2, 4, 0.3, 0.7), EasyMemory::new()).expect("valid");
    assert_eq!(b.push(mixed(1, 4, 4)), Admission::Dropped(DropReason::NoSignal { all_correct: true }));
    assert_eq!(b.push(mixed(2, 0, 4)), Admission::Dropped(DropReason::NoSignal { all_correct: false }));
    assert!(b.easy().contains(PromptId(1)) && !b.easy().contains(PromptId(2)));
    assert!(b.easy().skips(PromptId(2)) && b.easy().set_aside_len() == 1, "all-wrong: set aside");
    assert_eq!(b.next_batch(), BatchOrShortfall::Shortfall(Shortfall::Groups { pending: 0, missing: 2 }));
    assert_eq!(b.push(mixed(3, 1, 4)), Admission::Kept);
    assert_eq!(b.push(mixed(4, 1, 4)), Admission::Kept);
    assert_eq!(b.next_batch(), BatchOrShortfall::Shortfall(Shortfall::MorePositive { best_share: 0.25 }));
    assert_eq!(b.push(mixed(5, 3, 4)), Admission::Kept);
    match b.next_batch() {
        BatchOrShortfall::Batch(batch) => {
            assert_eq!(ids(&batch), vec![3, 5]);
            assert_eq!((batch.positive_share, batch.in_band), (0.5, true));
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    assert_eq!(b.pending(), 1);
    let s = b.stats();
    assert_eq!((s.filter.kept, s.filter.no_signal_correct, s.filter.no_signal_wrong), (3, 1, 1));
    assert_eq!((s.batches, s.batches_out_of_band, s.shortfalls, s.last_positive_share), (1, 0, 2, Some(0.5)));
}

#[test]
fn the_memory_follows_the_switches() {
    let off = BalanceConfig { remember_easy: false, set_aside_hard: false, ..cfg(2, 4, 0.3, 0.7) };
    let mut b = Balancer::new(off, EasyMemory::new()).expect("valid");
    b.push(mixed(1, 4, 4));
    b.push(mixed(2, 0, 4));
    assert!(!b.easy().skips(PromptId(1)) && !b.easy().skips(PromptId(2)), "nothing remembered");
}

// A full pool (2 groups, batch 2) whose share 2/8 = 0.25 cannot reach [0.45, 0.55] releases it anyway.
#[test]
fn a_full_pool_releases_its_closest_batch_out_of_band() {
    let mut b = Balancer::new(cfg(2, 2, 0.45, 0.55), EasyMemory::new()).expect("valid");
    assert_eq!(b.push(mixed(1, 1, 4)), Admission::Kept);
    assert_eq!(b.push(mixed(2, 1, 4)), Admission::Kept);
    assert!(matches!(b.push(mixed(3, 1, 4)), Admission::Refused(g) if g.prompt.id == PromptId(3)));
    assert_eq!(b.prompts_to_request(), 0);
    match b.next_batch() {
        BatchOrShortfall::Batch(batch) => {
            assert_eq!((ids(&batch), batch.positive_share, batch.in_band), (vec![1, 2], 0.25, false))
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    assert_eq!((b.stats().batches_out_of_band, b.stats().refused), (1, 1));
}

#[test]
fn too_many_positives_ask_for_harder_prompts_and_rebalance_off_takes_the_oldest() {
    let mut b = Balancer::new(cfg(1, 3, 0.3, 0.7), EasyMemory::new()).expect("valid");
    b.push(mixed(1, 7, 8));
    assert_eq!(b.next_batch(), BatchOrShortfall::Shortfall(Shortfall::MoreNegative { best_share: 0.875 }));
    let mut off =
        Balancer::new(BalanceConfig { rebalance: false, ..cfg(1, 3, 0.3, 0.7) }, EasyMemory::new()).expect("valid");
    off.push(mixed(1, 7, 8));
    assert!(matches!(off.next_batch(), BatchOrShortfall::Batch(batch) if batch.in_band && ids(&batch) == vec![1]));
}

// Nothing seen: the 8 missing groups. One kept of two seen (keep rate 0.5): 7 missing x 2 = 14.
// One kept of eight seen: factor 8 capped at max_oversample 4 -> 7 x 4 = 28.
#[test]
fn oversamples_prompts_by_the_observed_keep_rate_up_to_the_cap() {
    let mut b = Balancer::new(BalanceConfig::default(), EasyMemory::new()).expect("valid");
    assert_eq!(b.prompts_to_request(), 8);
    b.push(mixed(1, 2, 8));
    b.push(mixed(2, 0, 8));
    assert_eq!(b.prompts_to_request(), 14);
    for id in 3..9 {
        b.push(mixed(id, 0, 8));
    }
    assert_eq!(b.prompts_to_request(), 28);
}

#[test]
fn config_errors_name_the_key_and_unknown_keys_are_rejected() {
    assert!(BalanceConfig::default().validate().is_ok());
    let cases = [
        (cfg(0, 4, 0.3, 0.7), "batch_groups"),
        (cfg(4, 2, 0.3, 0.7), "max_pending_groups"),
        (cfg(2, 4, 0.8, 0.7), "positive_share_min"),
        (cfg(2, 4, 0.3, 1.5), "positive_share_max"),
        (BalanceConfig { max_oversample: 0.5, ..BalanceConfig::default() }, "max_oversample"),
        (
            BalanceConfig {
                filter: FilterConfig { max_length_cv: f32::NAN, ..FilterConfig::default() },
                ..BalanceConfig::default()
            },
            "filter.max_length_cv",
        ),
    ];
    for (c, key) in cases {
        let err = c.validate().expect_err(key);
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        assert!(Balancer::new(c, EasyMemory::new()).is_err());
    }
    assert!(serde_json::from_str::<BalanceConfig>(r#"{"batch_group": 4}"#).is_err());
    let parsed: BalanceConfig =
        serde_json::from_str(r#"{"batch_groups": 4, "filter": {"length_filter": false}}"#).expect("parse");
    assert_eq!((parsed.batch_groups, parsed.filter.length_filter, parsed.rebalance), (4, false, true));
}

proptest! {
    // Whatever the reward mix: every call yields a full batch (in band, or out of band only from a full
    // pool) or a shortfall that says what is missing; a full pool always yields; no group is lost.
    #[test]
    fn never_starves(
        batch in 1usize..4, extra in 0usize..4,
        lo in 0.0f32..1.0, width in 0.0f32..1.0,
        ops in proptest::collection::vec((0usize..=4, any::<bool>()), 1..80),
    ) {
        let hi = (lo + width).min(1.0);
        let c = cfg(batch, batch + extra, lo, hi);
        let mut b = Balancer::new(c, EasyMemory::new()).expect("valid");
        let (mut batched, mut refused) = (0u64, 0u64);
        for (i, (pos, take)) in ops.into_iter().enumerate() {
            if !take {
                if let Admission::Refused(_) = b.push(mixed(i as u64, pos, 4)) {
                    refused += 1;
                    prop_assert_eq!(b.pending(), c.max_pending_groups);
                }
                continue;
            }
            let pending = b.pending();
            match b.next_batch() {
                BatchOrShortfall::Batch(out) => {
                    prop_assert_eq!(out.groups.len(), batch);
                    prop_assert_eq!(out.in_band, (lo..=hi).contains(&out.positive_share));
                    prop_assert!(out.in_band || pending == c.max_pending_groups);
                    batched += batch as u64;
                }
                BatchOrShortfall::Shortfall(Shortfall::Groups { pending: p, missing }) => {
                    prop_assert!(p < batch && p + missing == batch);
                }
                BatchOrShortfall::Shortfall(Shortfall::MorePositive { best_share }) => {
                    prop_assert!(pending < c.max_pending_groups && best_share < lo);
                }
                BatchOrShortfall::Shortfall(Shortfall::MoreNegative { best_share }) => {
                    prop_assert!(pending < c.max_pending_groups && best_share > hi);
                }
            }
            if b.pending() == c.max_pending_groups {
                prop_assert!(matches!(b.next_batch(), BatchOrShortfall::Batch(_)));
                batched += batch as u64;
            }
        }
        prop_assert_eq!(b.stats().filter.kept, batched + b.pending() as u64 + refused);
    }
}

#[test]
fn stale_groups_leave_a_batch_and_a_pool_the_rest_stays() {
    let at = |v: u64, id: u64| {
        let mut g = group(id, &[(1.0, 4), (-1.0, 4)]);
        for c in &mut g.completions {
            c.policy_version = crate::PolicyVersion(v);
        }
        g
    };
    let mut batch = Batch { groups: vec![at(1, 1), at(3, 2), at(2, 3)], positive_share: 0.5, in_band: true };
    assert_eq!(batch.drop_stale(crate::PolicyVersion(4), 1), 2, "versions 1 and 2 lag 3 and 2 > 1");
    assert_eq!(batch.groups.iter().map(|g| g.prompt.id.0).collect::<Vec<_>>(), [2]);
    let mut b = Balancer::new(cfg(2, 8, 0.0, 1.0), EasyMemory::new()).expect("config");
    for (v, id) in [(0, 1), (2, 2), (1, 3)] {
        assert_eq!(b.push(at(v, id)), Admission::Kept);
    }
    assert_eq!(b.drop_stale(crate::PolicyVersion(2), 1), 1);
    assert_eq!(b.pending(), 2);
}
