//! Held-out accuracy of a model on `{"problem","answer"}` problems, per tier: generate an answer for each
//! problem (greedy by default), verify it against the gold answer, and count. What `phi4r-actors eval`
//! prints, and what the main job's per-stage table is made of.
//!
//! The tally is a pure function ([`tally`]) so its arithmetic and the intervals are tested without a
//! model; [`evaluate`] adds generation and verification.

use crate::error::{Error, Result};
use crate::generate::{generate, FinishReason, StopRule};
use crate::sampling::SamplingConfig;
use phi4r_data::{prompt_ids, ChatTemplate, ProblemAnswer};
use phi4r_model::{Phi3, Tokenizer};
use serde::Serialize;
use std::collections::BTreeMap;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Maximum new tokens per answer (a longer answer is truncated and verified as such).
    pub max_new_tokens: usize,
    /// Prompts per generation batch.
    pub batch: usize,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Seed of the sampling streams (temperature > 0).
    pub seed: u64,
    /// Samples per problem (k): pass@1 is averaged over them and maj@k votes among them.
    pub samples: usize,
    /// Nucleus threshold (1 = off).
    pub top_p: f32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { max_new_tokens: 320, batch: 32, temperature: 0.0, seed: 0, samples: 1, top_p: 1.0 }
    }
}

/// What one sampled answer was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graded {
    /// The verifier scored it correct.
    pub correct: bool,
    /// It ended on its own (end token or stop string), not on the length limit.
    pub stopped: bool,
    /// The final answer the verifier extracted (None: no answer found, an extraction failure).
    pub answer: Option<String>,
}

/// The counts of one tier (or of all problems), with the 95% Wilson interval of the accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierResult {
    /// Problems.
    pub n: usize,
    /// Samples per problem (k).
    pub samples: usize,
    /// Correct samples (over all `n × k`).
    pub correct: usize,
    /// pass@1: the share of correct samples, averaged over the k samples of each problem (= `correct /
    /// (n k)`; with k = 1, plain accuracy). 0 when n = 0.
    pub accuracy: f64,
    /// 95% Wilson score interval of `accuracy`, counting problems (not samples) as the trials, since
    /// a problem's k samples are not independent: `[low, high]`.
    pub interval: [f64; 2],
    /// maj@k: the share of problems whose most frequent extracted answer (ties: the earliest) is correct.
    pub maj_at_k: f64,
    /// Share of samples that ended on their own.
    pub stopped: f64,
    /// Share of samples cut by the length limit.
    pub truncated: f64,
    /// Share of samples in which no final answer was found (extraction failures).
    pub no_answer: f64,
}

impl TierResult {
    fn from_graded(problems: &[Vec<Graded>]) -> Self {
        let n = problems.len();
        let samples = problems.iter().map(Vec::len).max().unwrap_or(0);
        let all: Vec<&Graded> = problems.iter().flatten().collect();
        let count = |f: &dyn Fn(&Graded) -> bool| all.iter().filter(|g| f(g)).count();
        let share = |k: usize| if all.is_empty() { 0.0 } else { k as f64 / all.len() as f64 };
        let correct = count(&|g| g.correct);
        let accuracy = share(correct);
        let majority_correct = problems.iter().filter(|p| majority_is_correct(p)).count();
        TierResult {
            n,
            samples,
            correct,
            accuracy,
            interval: wilson_share(accuracy, n),
            maj_at_k: if n == 0 { 0.0 } else { majority_correct as f64 / n as f64 },
            stopped: share(count(&|g| g.stopped)),
            truncated: share(count(&|g| !g.stopped)),
            no_answer: share(count(&|g| g.answer.is_none())),
        }
    }
}

/// Whether the most frequent extracted answer of one problem's samples (ties: the one seen first;
/// samples without an answer do not vote) was graded correct.
pub fn majority_is_correct(samples: &[Graded]) -> bool {
    let mut votes: Vec<(&str, usize, bool)> = Vec::new();
    for g in samples {
        let Some(a) = g.answer.as_deref() else { continue };
        match votes.iter_mut().find(|v| v.0 == a) {
            Some(v) => {
                v.1 += 1;
                v.2 |= g.correct;
            }
            None => votes.push((a, 1, g.correct)),
        }
    }
    // max_by_key keeps the last maximum; scan in reverse so the earliest wins a tie.
    votes.iter().rev().max_by_key(|v| v.1).is_some_and(|v| v.2)
}

/// The report: overall and per tier (tier 0 = problems without a tier).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// All problems together.
    #[serde(flatten)]
    pub overall: TierResult,
    /// Per tier, keyed by the tier's number as text (JSON object keys).
    pub tiers: BTreeMap<String, TierResult>,
    /// Per tier, each problem's correct samples (of k), in the order the problems were given: what a
    /// paired comparison of two models on the same problems needs ([`paired_difference`]).
    pub per_problem: BTreeMap<String, Vec<usize>>,
}

/// The mean per-problem difference `after − before` of two evaluations of the same problems, with its
/// 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDifference {
    /// Problems compared.
    pub n: usize,
    /// Mean of `after_i − before_i` (each a problem's share of correct samples).
    pub mean: f64,
    /// 95% interval of the mean: `mean ± 1.96 · sd / √n` with the sample sd of the differences.
    pub interval: [f64; 2],
}

/// A paired comparison of two models on the same problems: the differences of their per-problem
/// scores (correct samples over `k_before` / `k_after`), their mean and its 95% normal interval. Paired,
/// the noise is that of the problems on which the two disagree, not of the whole set, so the interval is
/// far narrower than two overlapping Wilson intervals suggest. `None` when the lists differ in length or
/// are empty.
///
/// ```text
/// # reference (numpy): d = after - before; m = d.mean(); h = 1.96 * d.std(ddof=1) / sqrt(len(d))
/// ```
pub fn paired_difference(
    before: &[usize],
    k_before: usize,
    after: &[usize],
    k_after: usize,
) -> Option<PairedDifference> {
    let n = before.len();
    if n == 0 || after.len() != n {
        return None;
    }
    let d: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(&b, &a)| a as f64 / k_after.max(1) as f64 - b as f64 / k_before.max(1) as f64)
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let sd = if n < 2 { 0.0 } else { (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() };
    let h = 1.959_963_984_540_054 * sd / (n as f64).sqrt();
    Some(PairedDifference { n, mean, interval: [mean - h, mean + h] })
}

/// The 95% Wilson score interval of `correct` successes in `n` trials (`[0, 1]` for n = 0): unlike the
/// normal approximation it stays inside [0, 1] and is honest at 0 or n successes.
///
/// ```
/// let [lo, hi] = phi4r_rollout::wilson(150, 200);
/// assert!((lo - 0.6857).abs() < 1e-4 && (hi - 0.8049).abs() < 1e-4);
/// ```
pub fn wilson(correct: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    wilson_share(correct as f64 / n as f64, n)
}

/// [`wilson`] for a success share `p` (possibly fractional, as pass@1 averaged over samples) of `n`
/// trials.
pub fn wilson_share(p: f64, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    // At 0 or n successes the bound is exactly 0 or 1 (the formula leaves rounding dust there).
    let lo = if p == 0.0 { 0.0 } else { (center - half).max(0.0) };
    let hi = if p == 1.0 { 1.0 } else { (center + half).min(1.0) };
    [lo, hi]
}

/// Groups problems by tier (0 for none), keeping at most `per_tier` of each in file order (0 = all).
pub fn select_per_tier(
    problems: impl IntoIterator<Item = ProblemAnswer>,
    per_tier: usize,
) -> BTreeMap<u8, Vec<ProblemAnswer>> {
    let mut by_tier: BTreeMap<u8, Vec<ProblemAnswer>> = BTreeMap::new();
    for p in problems {
        let list = by_tier.entry(p.tier.unwrap_or(0)).or_default();
        if per_tier == 0 || list.len() < per_tier {
            list.push(p);
        }
    }
    by_tier
}

/// Counts graded samples (per tier, per problem) per tier and overall.
pub fn tally(graded: &BTreeMap<u8, Vec<Vec<Graded>>>) -> EvalReport {
    let all: Vec<Vec<Graded>> = graded.values().flatten().cloned().collect();
    EvalReport {
        overall: TierResult::from_graded(&all),
        tiers: graded.iter().map(|(t, g)| (t.to_string(), TierResult::from_graded(g))).collect(),
        per_problem: graded
            .iter()
            .map(|(t, g)| (t.to_string(), g.iter().map(|p| p.iter().filter(|x| x.correct).count()).collect()))
            .collect(),
    }
}

/// Generates an answer to every problem with `model` and grades it with the default verifier.
pub fn evaluate(
    model: &Phi3,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    problems: &BTreeMap<u8, Vec<ProblemAnswer>>,
    cfg: &EvalConfig,
) -> Result<EvalReport> {
    let stop = StopRule { eos_ids: template.stop_ids(tokenizer), tokenizer: Some(tokenizer) };
    let k = cfg.samples.max(1);
    if k > 1 && cfg.temperature == 0.0 {
        return Err(Error::Config {
            key: "samples",
            reason: format!("{k} samples at temperature 0 are one greedy answer repeated"),
        });
    }
    let verifier = phi4r_verifier::Verifier::default();
    // Whole problems per generation batch: each prompt repeated k times, each row its own stream. The
    // batches are independent (each its own seed), so on the CPU they run side by side, one per compute
    // thread: decoding a small model keeps one thread busy with per-row work that a second thread hardly
    // speeds up, while two batches at once take twice the rows. The results are the same either way.
    let mut jobs = Vec::new();
    for (tier, list) in problems {
        for chunk in list.chunks((cfg.batch.max(1) / k).max(1)) {
            jobs.push((*tier, chunk, jobs.len() as u64));
        }
    }
    let run = |&(_, chunk, chunk_index): &(u8, &[ProblemAnswer], u64)| -> Result<Vec<Vec<Graded>>> {
        let scfg = SamplingConfig {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            max_new_tokens: cfg.max_new_tokens,
            seed: cfg.seed ^ chunk_index.wrapping_mul(0xD1B5_4A32_D192_ED03),
            ..Default::default()
        };
        let prompts = chunk
            .iter()
            .map(|p| prompt_ids(template, tokenizer, &p.problem))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Input(e.to_string()))?;
        let rows: Vec<Vec<u32>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), k)).collect();
        let mut gens = generate(model, &rows, &scfg, &stop)?.into_iter();
        let mut out = Vec::with_capacity(chunk.len());
        for p in chunk {
            let mut samples = Vec::with_capacity(k);
            for g in gens.by_ref().take(k) {
                let text = tokenizer.decode(&g.tokens)?;
                let stopped = g.finish != FinishReason::Length;
                let v = verifier.verify_with(&p.answer, &text, !stopped);
                samples.push(Graded { correct: v.correct, stopped, answer: v.extracted });
            }
            out.push(samples);
        }
        Ok(out)
    };
    let results: Vec<Vec<Vec<Graded>>> = if model.device().is_cpu() {
        use rayon::prelude::*;
        jobs.par_iter().with_max_len(1).map(run).collect::<Result<_>>()?
    } else {
        jobs.iter().map(run).collect::<Result<_>>()?
    };
    let mut graded: BTreeMap<u8, Vec<Vec<Graded>>> = BTreeMap::new();
    for ((tier, _, _), r) in jobs.iter().zip(results) {
        graded.entry(*tier).or_default().extend(r);
    }
    Ok(tally(&graded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(correct: bool, stopped: bool) -> Graded {
        Graded { correct, stopped, answer: Some(if correct { "1".into() } else { "2".into() }) }
    }

    fn a(answer: Option<&str>, correct: bool) -> Graded {
        Graded { correct, stopped: true, answer: answer.map(str::to_string) }
    }

    // numpy: before = [1, 0, 1, 0, 1], after = [1, 1, 1, 0, 0] -> d = [0, 1, 0, 0, -1]; mean 0,
    // std(ddof=1) = sqrt(2/4) = 0.70711; h = 1.96 * 0.70711 / sqrt(5) = 0.61980.
    // With k = 2 after: scores [2, 2, 2, 0, 0] / 2 are the same shares.
    #[test]
    fn paired_difference_by_hand() {
        let d = paired_difference(&[1, 0, 1, 0, 1], 1, &[1, 1, 1, 0, 0], 1).expect("same length");
        assert_eq!((d.n, d.mean), (5, 0.0));
        assert!((d.interval[1] - 0.61980).abs() < 1e-4 && (d.interval[0] + 0.61980).abs() < 1e-4, "{d:?}");
        assert_eq!(paired_difference(&[1, 0, 1, 0, 1], 1, &[2, 2, 2, 0, 0], 2), Some(d));
        let all_better = paired_difference(&[0, 0, 0], 1, &[1, 1, 1], 1).expect("same length");
        assert_eq!((all_better.mean, all_better.interval), (1.0, [1.0, 1.0]));
        assert_eq!(paired_difference(&[1], 1, &[1, 0], 1), None);
    }

    #[test]
    fn tallies_per_tier_and_overall() {
        let one = |x: Graded| vec![x];
        let graded = BTreeMap::from([
            (1, vec![one(g(true, true)), one(g(true, true)), one(g(false, false)), one(g(true, true))]),
            (2, vec![one(g(false, true)), one(g(false, false))]),
        ]);
        let r = tally(&graded);
        assert_eq!((r.overall.n, r.overall.samples, r.overall.correct), (6, 1, 3));
        assert_eq!(r.overall.accuracy, 0.5);
        assert_eq!(r.overall.maj_at_k, 0.5, "with k = 1, maj@1 is the accuracy");
        assert_eq!(r.overall.stopped, 4.0 / 6.0);
        assert_eq!(r.overall.truncated, 2.0 / 6.0);
        assert_eq!((r.tiers["1"].correct, r.tiers["1"].accuracy, r.tiers["1"].stopped), (3, 0.75, 0.75));
        assert_eq!((&r.per_problem["1"], &r.per_problem["2"]), (&vec![1, 1, 0, 1], &vec![0, 0]));
        assert_eq!((r.tiers["2"].correct, r.tiers["2"].accuracy), (0, 0.0));
        assert_eq!(r.tiers["2"].interval[0], 0.0);
    }

    // Two problems, k = 4. Problem 1: answers 7, 7, 5, none; 7 is right: 2 correct, majority 7 (right).
    // Problem 2: answers 3, 4, 4, 3 (tie, 3 seen first), 4 is right: 2 correct, majority 3 (wrong).
    // pass@1 = 4 / 8 = 0.5; maj@4 = 1 / 2; no answer 1 / 8.
    #[test]
    fn pass_at_1_averages_samples_and_maj_at_k_votes() {
        let p1 = vec![a(Some("7"), true), a(Some("7"), true), a(Some("5"), false), a(None, false)];
        let p2 = vec![a(Some("3"), false), a(Some("4"), true), a(Some("4"), true), a(Some("3"), false)];
        assert!(majority_is_correct(&p1));
        assert!(!majority_is_correct(&p2), "a tie goes to the answer seen first");
        assert!(!majority_is_correct(&[a(None, false)]), "no answer, no vote");
        let r = tally(&BTreeMap::from([(5, vec![p1, p2])]));
        let t = &r.tiers["5"];
        assert_eq!((t.n, t.samples, t.correct), (2, 4, 4));
        assert_eq!((t.accuracy, t.maj_at_k, t.no_answer), (0.5, 0.5, 0.125));
        assert_eq!(t.interval, wilson_share(0.5, 2), "the interval counts problems, not samples");
    }

    #[test]
    fn wilson_matches_the_textbook_values() {
        // statsmodels.stats.proportion.proportion_confint(150, 200, method="wilson")
        //   -> (0.685659, 0.804918)
        let [lo, hi] = wilson(150, 200);
        assert!((lo - 0.685659).abs() < 1e-6 && (hi - 0.804918).abs() < 1e-6, "{lo} {hi}");
        // proportion_confint(0, 50, method="wilson") -> (0.0, 0.071348)
        let [lo, hi] = wilson(0, 50);
        assert!(lo == 0.0 && (hi - 0.071348).abs() < 1e-6, "{lo} {hi}");
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
        let [lo, hi] = wilson(50, 50);
        assert!((lo - 0.928652).abs() < 1e-6 && hi == 1.0, "{lo} {hi}");
    }

    #[test]
    fn keeps_the_first_per_tier_problems_of_each_tier() {
        let p = |t: Option<u8>, q: &str| ProblemAnswer {
            problem: q.into(),
            answer: "1".into(),
            solution: None,
            id: None,
            tier: t,
        };
        let sel =
            select_per_tier([p(Some(2), "a"), p(Some(1), "b"), p(Some(2), "c"), p(None, "d"), p(Some(2), "e")], 2);
        let names = |t: u8| sel[&t].iter().map(|x| x.problem.clone()).collect::<Vec<_>>();
        assert_eq!(names(2), ["a", "c"]);
        assert_eq!(names(1), ["b"]);
        assert_eq!(names(0), ["d"]);
        assert_eq!(select_per_tier([p(Some(2), "a"), p(Some(2), "c")], 0)[&2].len(), 2);
    }
}
