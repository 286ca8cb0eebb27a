//! The programmatic teacher: the stand-in for sampling a large model on the synthetic task.
//!
//! [`Teacher::rollout`] writes a step-by-step solution of a [`Problem`] — one line per operation with a
//! digit-level scratchpad ([`crate::arith`]) — ending in `The answer is \boxed{N}.`, in varied phrasings.
//! Each *slip opportunity* (every operation, and the final copy of the result into the box) slips with
//! probability `slip_rate`:
//! - [`SlipKind::WrongIntermediate`]: one scratchpad column is wrong and the wrong result is carried forward;
//! - [`SlipKind::SkippedStep`]: a step of the chain is left out;
//! - [`SlipKind::WrongFinalCopy`]: the boxed answer differs from the last result computed.
//!
//! so N rollouts of a problem give both correct and incorrect ones. A real teacher's responses come as
//! JSONL [`crate::TeacherResponse`] records instead (see [`read_teacher_responses`]).

use crate::arith::{render_step, Op, Slip};
use crate::error::{Error, Result};
use crate::jsonl::JsonlReader;
use crate::problem::{Operand, Problem};
use crate::schema::TeacherResponse;
use crate::words::fill;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// What went wrong at a slip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlipKind {
    /// A wrong intermediate result, carried forward.
    WrongIntermediate,
    /// A step of the chain left out.
    SkippedStep,
    /// The boxed answer is not the last result computed.
    WrongFinalCopy,
}

/// One solution written by the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    /// The solution text.
    pub text: String,
    /// The slips made, in order.
    pub slips: Vec<SlipKind>,
    /// How many chances to slip there were (operations + the final copy).
    pub opportunities: usize,
    /// The boxed answer.
    pub boxed: i64,
}

const START_NUMBER: [&str; 3] = ["{N} starts with {a} {I}.", "At first {N} has {a} {I}.", "Start with {a} {I}."];
const START_GROUP: [&str; 2] = ["{N} has {a} {B} of {b}: ", "Start: "];
const ADD: [&str; 3] = ["Adding {k}: ", "{P} gets {k} more, so ", "Then "];
const SUB: [&str; 3] = ["Taking away {k}: ", "{P} has {k} fewer, so ", "Then "];
const MUL: [&str; 3] = ["Multiplying by {k}: ", "{k} times as many: ", "Then "];
const DIV: [&str; 3] = ["Dividing by {k}: ", "One of {k} equal parts: ", "Then "];
const GROUP_MUL: [&str; 2] = ["{a} {B} of {b} make ", "First, "];
const GROUP_DIV: [&str; 2] = ["1/{b} of {a} is ", "First, "];
const GROUP_ADD: [&str; 2] = ["Together ", "First, "];
const APPLY_ADD: [&str; 2] = ["Adding them: ", "Then "];
const APPLY_SUB: [&str; 2] = ["Taking them away: ", "Then "];
const CONCLUDE: [&str; 2] = ["So {N} has {a} {I} now. ", ""];

fn pick<'a>(xs: &'a [&'a str], rng: &mut impl Rng) -> &'a str {
    xs.choose(rng).copied().unwrap_or("")
}

/// Writes solutions with slips at a configured rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Teacher {
    slip_rate: f64,
}

impl Teacher {
    /// A teacher that slips at each opportunity with probability `slip_rate` (0..=1).
    pub fn new(slip_rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&slip_rate) {
            return Err(Error::config("slip_rate", format!("{slip_rate} is not in 0..=1")));
        }
        Ok(Teacher { slip_rate })
    }

    /// The configured slip rate per opportunity.
    pub fn slip_rate(&self) -> f64 {
        self.slip_rate
    }

    /// Writes one solution of `p`; the RNG decides phrasings and slips.
    ///
    /// Where the slips fall is drawn first. A slip can cancel out (a wrong intermediate result later
    /// floor-divided back to the right one, two wrong columns undoing each other); the rollout is then
    /// rewritten with other wrong digits, up to a few times, so that a slipped rollout is almost never
    /// judged correct and the correct set stays clean.
    pub fn rollout(&self, p: &Problem, rng: &mut impl Rng) -> Rollout {
        let plan = self.plan(p, rng);
        let mut r = self.write(p, &plan, rng);
        for _ in 0..8 {
            if r.slips.is_empty() || r.boxed != p.answer {
                break;
            }
            r = self.write(p, &plan, rng);
        }
        r
    }

    /// For each opportunity in writing order (start product, then per step: inner operation, step; then
    /// the final copy), the slip made there, if any.
    fn plan(&self, p: &Problem, rng: &mut impl Rng) -> Vec<Option<SlipKind>> {
        let mut skippable = Vec::with_capacity(p.ops());
        if matches!(p.start, Operand::Group { .. }) {
            skippable.push(false);
        }
        for step in &p.steps {
            if matches!(step.operand, Operand::Group { .. }) {
                skippable.push(false);
            }
            skippable.push(true);
        }
        let mut plan: Vec<Option<SlipKind>> = skippable
            .into_iter()
            .map(|skippable| {
                rng.random_bool(self.slip_rate).then(|| {
                    // Skipping is a third of the slips where a step can be skipped.
                    if skippable && rng.random_range(0..3) == 0 {
                        SlipKind::SkippedStep
                    } else {
                        SlipKind::WrongIntermediate
                    }
                })
            })
            .collect();
        plan.push(rng.random_bool(self.slip_rate).then_some(SlipKind::WrongFinalCopy));
        plan
    }

    fn write(&self, p: &Problem, plan: &[Option<SlipKind>], rng: &mut impl Rng) -> Rollout {
        let mut w = Writer { text: String::new(), slips: Vec::new(), plan, at: 0 };
        let mut cur = match p.start {
            Operand::Number(a) => {
                w.text.push_str(&fill(pick(&START_NUMBER, rng), &p.cast, a, 0, 0));
                a
            }
            Operand::Group { op, a, b } => {
                let intro = fill(pick(&START_GROUP, rng), &p.cast, a, b, 0);
                w.calc(&intro, a, op, b, rng).unwrap_or(0)
            }
        };
        for step in &p.steps {
            let (operand, intro) = match step.operand {
                Operand::Number(k) => {
                    let t = match step.op {
                        Op::Add => &ADD,
                        Op::Sub => &SUB,
                        Op::Mul => &MUL,
                        Op::Div => &DIV,
                    };
                    (k, fill(pick(t, rng), &p.cast, 0, 0, k))
                }
                Operand::Group { op, a, b } => {
                    let t: &[&str] = match op {
                        Op::Mul => &GROUP_MUL,
                        Op::Div => &GROUP_DIV,
                        _ => &GROUP_ADD,
                    };
                    let intro = fill(pick(t, rng), &p.cast, a, b, 0);
                    let g = w.calc(&intro, a, op, b, rng).unwrap_or(0);
                    let t: &[&str] = if step.op == Op::Sub { &APPLY_SUB } else { &APPLY_ADD };
                    (g, pick(t, rng).to_string())
                }
            };
            if let Some(v) = w.calc(&intro, cur, step.op, operand, rng) {
                cur = v;
            }
        }
        // The final copy into the box.
        let mut boxed = cur;
        if let Some(Some(kind)) = plan.get(w.at) {
            w.slips.push(*kind);
            let d = [-10, -1, 1, 10].choose(rng).copied().unwrap_or(1);
            boxed = if cur + d < 0 { cur + 1 } else { cur + d };
        }
        w.text.push(' ');
        let conclude = pick(&CONCLUDE, rng);
        if cur != 1 {
            // ("So Tom has 1 pens" would be bad grammar.)
            w.text.push_str(&fill(conclude, &p.cast, cur, 0, 0));
        }
        w.text.push_str(&format!("The answer is \\boxed{{{boxed}}}."));
        Rollout { text: w.text, slips: w.slips, opportunities: plan.len(), boxed }
    }
}

struct Writer<'a> {
    text: String,
    slips: Vec<SlipKind>,
    plan: &'a [Option<SlipKind>],
    at: usize,
}

impl Writer<'_> {
    /// Writes `intro` + `a op b = ...` as one sentence and returns the result written, or `None` if
    /// the plan skips this step.
    fn calc(&mut self, intro: &str, a: i64, op: Op, b: i64, rng: &mut impl Rng) -> Option<i64> {
        let planned = self.plan.get(self.at).copied().flatten();
        self.at += 1;
        let mut slip = None;
        match planned {
            Some(SlipKind::SkippedStep) => {
                self.slips.push(SlipKind::SkippedStep);
                return None;
            }
            Some(kind) => {
                self.slips.push(kind);
                slip =
                    Some(Slip { column: rng.random_range(0..4), delta: [-1, 1, 2].choose(rng).copied().unwrap_or(1) });
            }
            None => {}
        }
        let (calc, result) = render_step(a, op, b, slip);
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(intro);
        self.text.push_str(&calc);
        self.text.push('.');
        Some(result)
    }
}

/// Opens a real teacher's responses (`{"problem","answer","response"}` per line) for streaming.
pub fn read_teacher_responses(path: &Path) -> Result<JsonlReader<TeacherResponse, BufReader<File>>> {
    JsonlReader::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{generate, TierSpec};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn problems(n: usize, seed: u64) -> Vec<Problem> {
        let tiers = TierSpec::defaults();
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|i| generate((i % 6) as u8 + 1, &tiers[i % 6], format!("p{i}"), &mut rng)).collect()
    }

    #[test]
    fn a_teacher_without_slips_is_always_right() {
        let t = Teacher::new(0.0).expect("valid");
        let mut rng = StdRng::seed_from_u64(1);
        for p in problems(300, 2) {
            let r = t.rollout(&p, &mut rng);
            assert!(r.slips.is_empty());
            assert_eq!(r.boxed, p.answer, "{}\n{}", p.text, r.text);
            assert!(r.text.ends_with(&format!("The answer is \\boxed{{{}}}.", p.answer)));
            assert!(phi4r_verifier::verify(&p.answer.to_string(), &r.text).correct, "{}", r.text);
            assert_eq!(r.opportunities, p.ops() + 1);
        }
    }

    #[test]
    fn observed_slip_rate_matches_the_configured_rate() {
        for rate in [0.05, 0.15, 0.3] {
            let t = Teacher::new(rate).expect("valid");
            let mut rng = StdRng::seed_from_u64(3);
            let (mut slips, mut opps, mut wrong_with_slip, mut with_slip) = (0usize, 0usize, 0usize, 0usize);
            let mut kinds = std::collections::HashSet::new();
            for p in problems(2000, 4) {
                let r = t.rollout(&p, &mut rng);
                slips += r.slips.len();
                opps += r.opportunities;
                kinds.extend(r.slips.iter().copied());
                if !r.slips.is_empty() {
                    with_slip += 1;
                    wrong_with_slip += usize::from(r.boxed != p.answer);
                }
            }
            let observed = slips as f64 / opps as f64;
            assert!((observed - rate).abs() < 0.01 + rate * 0.08, "rate {rate}: observed {observed}");
            assert_eq!(kinds.len(), 3, "every kind of slip occurs");
            assert!(wrong_with_slip as f64 >= 0.995 * with_slip as f64, "a slip almost always makes the answer wrong");
        }
    }

    #[test]
    fn rejects_a_rate_outside_0_1() {
        assert!(Teacher::new(1.5).expect_err("must fail").to_string().contains("slip_rate"));
    }
}
