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
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { max_new_tokens: 320, batch: 32, temperature: 0.0, seed: 0 }
    }
}

/// What one answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graded {
    /// The verifier scored it correct.
    pub correct: bool,
    /// It ended on its own (end token or stop string), not on the length limit.
    pub stopped: bool,
}

/// The counts of one tier (or of all problems), with the 95% Wilson interval of the accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierResult {
    /// Problems.
    pub n: usize,
    /// Correct answers.
    pub correct: usize,
    /// `correct / n` (0 when n = 0).
    pub accuracy: f64,
    /// 95% Wilson score interval of the accuracy, `[low, high]`.
    pub interval: [f64; 2],
    /// Share of answers that ended on their own.
    pub stopped: f64,
}

impl TierResult {
    fn from_graded(g: &[Graded]) -> Self {
        let n = g.len();
        let correct = g.iter().filter(|x| x.correct).count();
        let stopped = g.iter().filter(|x| x.stopped).count();
        let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        TierResult { n, correct, accuracy: share(correct), interval: wilson(correct, n), stopped: share(stopped) }
    }
}

/// The report: overall and per tier (tier 0 = problems without a tier).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// All problems together.
    #[serde(flatten)]
    pub overall: TierResult,
    /// Per tier, keyed by the tier's number as text (JSON object keys).
    pub tiers: BTreeMap<String, TierResult>,
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
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, correct as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    // At 0 or n successes the bound is exactly 0 or 1 (the formula leaves rounding dust there).
    let lo = if correct == 0 { 0.0 } else { (center - half).max(0.0) };
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

/// Counts graded answers per tier and overall.
pub fn tally(graded: &BTreeMap<u8, Vec<Graded>>) -> EvalReport {
    let all: Vec<Graded> = graded.values().flatten().copied().collect();
    EvalReport {
        overall: TierResult::from_graded(&all),
        tiers: graded.iter().map(|(t, g)| (t.to_string(), TierResult::from_graded(g))).collect(),
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
    let scfg = SamplingConfig {
        temperature: cfg.temperature,
        max_new_tokens: cfg.max_new_tokens,
        seed: cfg.seed,
        ..Default::default()
    };
    let verifier = phi4r_verifier::Verifier::default();
    let mut graded: BTreeMap<u8, Vec<Graded>> = BTreeMap::new();
    for (tier, list) in problems {
        let out = graded.entry(*tier).or_default();
        for chunk in list.chunks(cfg.batch.max(1)) {
            let prompts = chunk
                .iter()
                .map(|p| prompt_ids(template, tokenizer, &p.problem))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Input(e.to_string()))?;
            for (p, g) in chunk.iter().zip(generate(model, &prompts, &scfg, &stop)?) {
                let text = tokenizer.decode(&g.tokens)?;
                let stopped = g.finish != FinishReason::Length;
                let correct = verifier.verify_with(&p.answer, &text, !stopped).correct;
                out.push(Graded { correct, stopped });
            }
        }
    }
    Ok(tally(&graded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(correct: bool, stopped: bool) -> Graded {
        Graded { correct, stopped }
    }

    #[test]
    fn tallies_per_tier_and_overall() {
        let graded = BTreeMap::from([
            (1, vec![g(true, true), g(true, true), g(false, false), g(true, true)]),
            (2, vec![g(false, true), g(false, false)]),
        ]);
        let r = tally(&graded);
        assert_eq!((r.overall.n, r.overall.correct), (6, 3));
        assert_eq!(r.overall.accuracy, 0.5);
        assert_eq!(r.overall.stopped, 4.0 / 6.0);
        assert_eq!((r.tiers["1"].correct, r.tiers["1"].accuracy, r.tiers["1"].stopped), (3, 0.75, 0.75));
        assert_eq!((r.tiers["2"].correct, r.tiers["2"].accuracy), (0, 0.0));
        assert_eq!(r.tiers["2"].interval[0], 0.0);
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
