//! Rejection sampling: verified teacher responses → the data sets of stages 1-4.
//!
//! Works the same for the programmatic teacher and a real teacher's JSONL ([`group_teacher_responses`]):
//! - stage 1: every distinct correct response (prompt/completion);
//! - stage 2: a harder, deduplicated subset — up to `stage2_per_problem` distinct correct responses of
//!   each problem whose tier is at least `stage2_min_tier` (untiered problems: whose teacher pass rate is
//!   at most `stage2_max_pass_rate`);
//! - stage 3: one (correct, incorrect) pair per problem; problems lacking either kind are skipped and counted;
//! - stage 4: every problem with its gold answer (RL prompts).

use crate::error::{Error, Result};
use crate::schema::{Preference, ProblemAnswer, PromptCompletion, TeacherResponse};
use phi4r_verifier::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A response and the verifier's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradedResponse {
    /// The response text.
    pub response: String,
    /// What the verifier decided.
    pub outcome: Outcome,
}

/// A problem and its verified responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradedProblem {
    /// The problem and its gold answer.
    pub problem: ProblemAnswer,
    /// The responses, in sampling order.
    pub responses: Vec<GradedResponse>,
}

impl GradedProblem {
    /// Verifies each response against the problem's gold answer.
    pub fn grade(problem: ProblemAnswer, responses: impl IntoIterator<Item = String>) -> Self {
        let responses = responses
            .into_iter()
            .map(|response| {
                let outcome = phi4r_verifier::verify(&problem.answer, &response).outcome;
                GradedResponse { response, outcome }
            })
            .collect();
        GradedProblem { problem, responses }
    }

    /// Fraction of correct responses (0 with none).
    pub fn pass_rate(&self) -> f64 {
        if self.responses.is_empty() {
            return 0.0;
        }
        self.correct().count() as f64 / self.responses.len() as f64
    }

    /// The correct responses, in order.
    pub fn correct(&self) -> impl Iterator<Item = &str> {
        self.responses.iter().filter(|r| r.outcome == Outcome::Correct).map(|r| r.response.as_str())
    }

    /// The incorrect responses, in order.
    pub fn incorrect(&self) -> impl Iterator<Item = &str> {
        self.responses.iter().filter(|r| r.outcome != Outcome::Correct).map(|r| r.response.as_str())
    }
}

/// Selection of the stage sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    /// Stage 2 keeps problems of this tier and above.
    pub stage2_min_tier: u8,
    /// Stage 2 keeps untiered problems whose teacher pass rate is at most this.
    pub stage2_max_pass_rate: f64,
    /// Distinct correct responses per problem in stage 2.
    pub stage2_per_problem: usize,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig { stage2_min_tier: 3, stage2_max_pass_rate: 0.75, stage2_per_problem: 1 }
    }
}

impl StageConfig {
    /// Errors name the key (prefixed by `key`, e.g. `stages`).
    pub fn validate(&self, key: &str) -> Result<()> {
        if !(0.0..=1.0).contains(&self.stage2_max_pass_rate) {
            return Err(Error::config(
                format!("{key}.stage2_max_pass_rate"),
                format!("{} is not in 0..=1", self.stage2_max_pass_rate),
            ));
        }
        if self.stage2_per_problem == 0 {
            return Err(Error::config(format!("{key}.stage2_per_problem"), "must be > 0"));
        }
        Ok(())
    }
}

/// Counts of a rejection-sampling pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Problems.
    pub problems: usize,
    /// Responses verified.
    pub responses: usize,
    /// Correct responses.
    pub correct: usize,
    /// Incorrect responses (every outcome but correct).
    pub incorrect: usize,
    /// Responses per verifier outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Stage-1 examples.
    pub stage1: usize,
    /// Correct responses left out of stage 1 as exact duplicates of another of the same problem.
    pub stage1_duplicates_dropped: usize,
    /// Stage-2 examples.
    pub stage2: usize,
    /// Stage-3 pairs.
    pub stage3: usize,
    /// Problems without a correct response (no pair).
    pub stage3_skipped_no_correct: usize,
    /// Problems without an incorrect response (no pair).
    pub stage3_skipped_no_incorrect: usize,
    /// Stage-4 prompts.
    pub stage4: usize,
}

/// The stage sets and their counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageSets {
    /// Stage 1: every distinct correct response.
    pub stage1: Vec<PromptCompletion>,
    /// Index into the graded problems of each stage-1 example.
    pub stage1_source: Vec<usize>,
    /// Stage 2: the harder subset.
    pub stage2: Vec<PromptCompletion>,
    /// Stage 3: (correct, incorrect) pairs.
    pub stage3: Vec<Preference>,
    /// Stage 4: RL prompts with gold answers.
    pub stage4: Vec<ProblemAnswer>,
    /// Counts.
    pub counts: StageCounts,
}

/// Builds the stage sets from verified responses.
pub fn build_stages(graded: &[GradedProblem], cfg: &StageConfig) -> StageSets {
    let mut s = StageSets::default();
    let c = &mut s.counts;
    c.problems = graded.len();
    for (gi, g) in graded.iter().enumerate() {
        let prompt = &g.problem.problem;
        for r in &g.responses {
            c.responses += 1;
            *c.outcomes.entry(r.outcome.as_str().to_string()).or_default() += 1;
            if r.outcome == Outcome::Correct {
                c.correct += 1;
            } else {
                c.incorrect += 1;
            }
        }
        let mut seen = HashSet::new();
        let distinct: Vec<&str> = g.correct().filter(|r| seen.insert(*r)).collect();
        c.stage1_duplicates_dropped += g.correct().count() - distinct.len();
        for r in &distinct {
            s.stage1.push(PromptCompletion { prompt: prompt.clone(), completion: r.to_string() });
            s.stage1_source.push(gi);
        }
        let hard = match g.problem.tier {
            Some(t) => t >= cfg.stage2_min_tier,
            None => g.pass_rate() <= cfg.stage2_max_pass_rate,
        };
        if hard {
            for r in distinct.iter().take(cfg.stage2_per_problem) {
                s.stage2.push(PromptCompletion { prompt: prompt.clone(), completion: r.to_string() });
            }
        }
        match (g.correct().next(), g.incorrect().next()) {
            (Some(chosen), Some(rejected)) => s.stage3.push(Preference {
                prompt: prompt.clone(),
                chosen: chosen.to_string(),
                rejected: rejected.to_string(),
            }),
            (None, _) => c.stage3_skipped_no_correct += 1,
            (Some(_), None) => c.stage3_skipped_no_incorrect += 1,
        }
        s.stage4.push(g.problem.clone());
    }
    c.stage1 = s.stage1.len();
    c.stage2 = s.stage2.len();
    c.stage3 = s.stage3.len();
    c.stage4 = s.stage4.len();
    s
}

/// Groups a real teacher's responses by problem text (first-seen order) and verifies each one.
/// A problem seen again with a different gold answer is an error naming both answers.
pub fn group_teacher_responses(
    records: impl IntoIterator<Item = Result<TeacherResponse>>,
) -> Result<Vec<GradedProblem>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(ProblemAnswer, Vec<String>)> = Vec::new();
    for rec in records {
        let rec = rec?;
        match index.get(&rec.problem) {
            Some(&i) => {
                let (pa, responses) = &mut groups[i];
                if pa.answer != rec.answer {
                    return Err(Error::input(
                        "group_teacher_responses",
                        format!(
                            "problem {:?} has two gold answers: {:?} and {:?}",
                            truncate(&rec.problem),
                            pa.answer,
                            rec.answer
                        ),
                    ));
                }
                responses.push(rec.response);
            }
            None => {
                index.insert(rec.problem.clone(), groups.len());
                let pa =
                    ProblemAnswer { problem: rec.problem, answer: rec.answer, solution: None, id: None, tier: None };
                groups.push((pa, vec![rec.response]));
            }
        }
    }
    Ok(groups.into_iter().map(|(pa, rs)| GradedProblem::grade(pa, rs)).collect())
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(problem: &str, answer: &str, tier: Option<u8>) -> ProblemAnswer {
        ProblemAnswer { problem: problem.into(), answer: answer.into(), solution: None, id: None, tier }
    }

    #[test]
    fn stages_follow_the_verdicts() {
        let right = "so \\boxed{4}.".to_string();
        let wrong = "so \\boxed{5}.".to_string();
        let graded = vec![
            GradedProblem::grade(pa("2+2", "4", Some(1)), vec![right.clone(), right.clone(), wrong.clone()]),
            GradedProblem::grade(pa("1+3", "4", Some(3)), vec![wrong.clone(), wrong.clone()]),
            GradedProblem::grade(pa("3+1", "4", Some(4)), vec![right.clone(), "no answer".into()]),
            GradedProblem::grade(pa("0+4", "4", Some(5)), vec![right.clone()]),
        ];
        let s = build_stages(&graded, &StageConfig::default());
        let c = &s.counts;
        assert_eq!((c.responses, c.correct, c.incorrect), (8, 4, 4));
        assert_eq!(c.outcomes.get("no_answer"), Some(&1));
        assert_eq!(c.stage1, 3, "duplicates dropped");
        assert_eq!(c.stage1_duplicates_dropped, 1);
        assert_eq!(s.stage1_source, vec![0, 2, 3]);
        assert_eq!(c.stage2, 2, "tiers 4 and 5 with a correct response");
        assert_eq!(c.stage3, 2);
        assert_eq!((c.stage3_skipped_no_correct, c.stage3_skipped_no_incorrect), (1, 1));
        assert_eq!(s.stage3[0], Preference { prompt: "2+2".into(), chosen: right.clone(), rejected: wrong.clone() });
        assert_eq!(c.stage4, 4);
    }

    #[test]
    fn teacher_responses_group_by_problem_and_conflicting_golds_fail() {
        let r = |p: &str, a: &str, resp: &str| {
            Ok(TeacherResponse { problem: p.into(), answer: a.into(), response: resp.into() })
        };
        let g = group_teacher_responses(vec![
            r("a", "1", "\\boxed{1}"),
            r("b", "2", "\\boxed{3}"),
            r("a", "1", "\\boxed{2}"),
        ])
        .expect("groups");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].responses.len(), 2);
        assert!((g[0].pass_rate() - 0.5).abs() < 1e-12);
        let e = group_teacher_responses(vec![r("a", "1", "x"), r("a", "2", "y")]).expect_err("must fail");
        assert!(e.to_string().contains("two gold answers"), "{e}");
    }
}
