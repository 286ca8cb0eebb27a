//! Synthetic multi-step arithmetic word problems with difficulty tiers, each with an exact integer answer.
//!
//! A problem is a start quantity and a chain of steps applied to the running value; a step's operand is a
//! number or, at tiers with [`TierSpec::parens`], a parenthesized sub-expression of two numbers
//! (`x + (3 * 12)`: "Tom gives her 3 boxes of 12"). A tier is a [`TierSpec`]: how many operations, how
//! large the numbers written and the intermediate results may be. Every intermediate result is a positive
//! integer no larger than `max_value`, and every division is exact.

use crate::arith::Op;
use crate::error::{Error, Result};
use crate::words::{self, Cast, CONTAINERS, ITEMS, PEOPLE};
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The shape of the problems of one difficulty tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Number of arithmetic operations in a problem (1..=12).
    pub ops: usize,
    /// Largest number a sentence introduces (start quantity, amounts added or removed, group sizes), >= 2.
    pub max_operand: i64,
    /// Largest factor or divisor of `*` and `/` (2..=9: the scratchpad multiplies by one digit).
    pub max_factor: i64,
    /// Largest intermediate result (>= `max_operand`).
    pub max_value: i64,
    /// Whether a step may combine two numbers first (a parenthesized sub-expression, with more people).
    pub parens: bool,
}

impl TierSpec {
    /// The default tiers 1..=6 (DESIGN §7): tiers 1-3 with numbers up to 20, `*` and `/` by 2..9 and
    /// intermediate results below 1000 (learnable by a ~1M-parameter model in minutes); tiers 4-6 add
    /// parenthesized sub-expressions, more people and larger numbers (clearly hard for it).
    pub fn defaults() -> Vec<TierSpec> {
        let t = |ops, max_operand, max_value, parens| TierSpec { ops, max_operand, max_factor: 9, max_value, parens };
        vec![
            t(1, 20, 999, false),
            t(2, 20, 999, false),
            t(3, 20, 999, false),
            t(4, 50, 999, true),
            t(5, 99, 9999, true),
            t(6, 200, 9999, true),
        ]
    }

    /// Checks the bounds; errors name `key` (e.g. `tiers[3]`) and the field.
    pub fn validate(&self, key: &str) -> Result<()> {
        if !(1..=12).contains(&self.ops) {
            return Err(Error::config(format!("{key}.ops"), format!("{} is not in 1..=12", self.ops)));
        }
        if self.max_operand < 2 {
            return Err(Error::config(format!("{key}.max_operand"), format!("{} < 2", self.max_operand)));
        }
        if !(2..=9).contains(&self.max_factor) {
            return Err(Error::config(
                format!("{key}.max_factor"),
                format!("{} is not in 2..=9 (the scratchpad multiplies and divides by one digit)", self.max_factor),
            ));
        }
        if self.max_value < self.max_operand || self.max_value > 1_000_000_000 {
            return Err(Error::config(
                format!("{key}.max_value"),
                format!("{} is not in max_operand ({})..=1e9", self.max_value, self.max_operand),
            ));
        }
        Ok(())
    }
}

/// A step's operand: a number, or a parenthesized operation on two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operand {
    /// A number.
    Number(i64),
    /// `(a op b)`.
    Group {
        /// The inner operation.
        op: Op,
        /// Left number.
        a: i64,
        /// Right number.
        b: i64,
    },
}

impl Operand {
    /// The value (floor division for `/`; exact in generated problems).
    pub fn value(&self) -> i64 {
        match *self {
            Operand::Number(n) => n,
            Operand::Group { op, a, b } => op.apply(a, b).unwrap_or(0),
        }
    }

    /// Operations it takes to compute (0 for a number).
    pub fn ops(&self) -> usize {
        usize::from(matches!(self, Operand::Group { .. }))
    }
}

/// One step of the chain: `value = value op operand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The operation applied to the running value.
    pub op: Op,
    /// Its operand.
    pub operand: Operand,
}

/// A generated word problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Identifier (`synth-train-t2-000123`).
    pub id: String,
    /// Difficulty tier (1 = easiest).
    pub tier: u8,
    /// The people and nouns of the sentences.
    pub cast: Cast,
    /// The start quantity.
    pub start: Operand,
    /// The chain of steps.
    pub steps: Vec<Step>,
    /// The problem statement (the prompt).
    pub text: String,
    /// The exact answer.
    pub answer: i64,
}

impl Problem {
    /// Number of arithmetic operations.
    pub fn ops(&self) -> usize {
        self.start.ops() + self.steps.iter().map(|s| 1 + s.operand.ops()).sum::<usize>()
    }

    /// The running value after the start and after each step.
    pub fn values(&self) -> Vec<i64> {
        let mut v = vec![self.start.value()];
        for s in &self.steps {
            let cur = v.last().copied().unwrap_or(0);
            v.push(s.op.apply(cur, s.operand.value()).unwrap_or(0));
        }
        v
    }

    /// The problem as one fully parenthesized expression, e.g. `((3 * 4) + 5) / 3`.
    pub fn expression(&self) -> String {
        let operand = |o: &Operand| match *o {
            Operand::Number(n) => n.to_string(),
            Operand::Group { op, a, b } => format!("({a} {} {b})", op.symbol()),
        };
        let mut e = operand(&self.start);
        for (i, s) in self.steps.iter().enumerate() {
            let inner = if i == 0 { e } else { format!("({e})") };
            e = format!("{inner} {} {}", s.op.symbol(), operand(&s.operand));
        }
        e
    }
}

fn pick(xs: &[&'static str], rng: &mut impl Rng) -> &'static str {
    xs.choose(rng).copied().unwrap_or("")
}

/// Uniform in `lo..=hi`, or `None` for an empty range.
fn range(lo: i64, hi: i64, rng: &mut impl Rng) -> Option<i64> {
    (lo <= hi).then(|| rng.random_range(lo..=hi))
}

fn cast(rng: &mut impl Rng) -> Cast {
    let mut idx: Vec<usize> = (0..PEOPLE.len()).collect();
    let mut chosen = [0usize; 3];
    for c in chosen.iter_mut() {
        let j = rng.random_range(0..idx.len());
        *c = idx.swap_remove(j);
    }
    let (name, pronoun) = PEOPLE[chosen[0]];
    Cast {
        name: name.to_string(),
        pronoun,
        others: [PEOPLE[chosen[1]].0.to_string(), PEOPLE[chosen[2]].0.to_string()],
        item: pick(&ITEMS, rng).to_string(),
        container: pick(&CONTAINERS, rng).to_string(),
    }
}

fn simple_step(cur: i64, t: &TierSpec, rng: &mut impl Rng) -> Option<Step> {
    let divisors: Vec<i64> = (2..=t.max_factor).filter(|k| cur % k == 0).collect();
    let mut ops = Vec::with_capacity(4);
    if cur < t.max_value {
        ops.push(Op::Add);
    }
    if cur >= 2 {
        ops.push(Op::Sub);
    }
    if cur * 2 <= t.max_value {
        ops.push(Op::Mul);
    }
    if !divisors.is_empty() {
        ops.push(Op::Div);
    }
    let op = *ops.choose(rng)?;
    let k = match op {
        Op::Add => range(1, t.max_operand.min(t.max_value - cur), rng)?,
        Op::Sub => range(1, t.max_operand.min(cur - 1), rng)?,
        Op::Mul => range(2, t.max_factor.min(t.max_value / cur.max(1)), rng)?,
        Op::Div => *divisors.choose(rng)?,
    };
    Some(Step { op, operand: Operand::Number(k) })
}

fn compound_step(cur: i64, t: &TierSpec, rng: &mut impl Rng) -> Option<Step> {
    let room = t.max_value - cur;
    let step = |op, inner, a, b| Step { op, operand: Operand::Group { op: inner, a, b } };
    match rng.random_range(0..5) {
        0 => {
            let c = range(2, t.max_factor, rng)?;
            let s = range(2, t.max_operand.min(room / c), rng)?;
            Some(step(Op::Add, Op::Mul, c, s))
        }
        1 => {
            let c = range(2, t.max_factor, rng)?;
            let s = range(2, t.max_operand.min((cur - 1) / c), rng)?;
            Some(step(Op::Sub, Op::Mul, c, s))
        }
        2 => {
            let k = range(2, t.max_factor, rng)?;
            let q = range(1, t.max_operand.min(room).min(t.max_value / k), rng)?;
            Some(step(Op::Add, Op::Div, q * k, k))
        }
        3 => {
            let a = range(1, t.max_operand.min(room - 1), rng)?;
            let b = range(1, t.max_operand.min(room - a), rng)?;
            Some(step(Op::Add, Op::Add, a, b))
        }
        _ => {
            let a = range(1, t.max_operand.min(cur - 2), rng)?;
            let b = range(1, t.max_operand.min(cur - 1 - a), rng)?;
            Some(step(Op::Sub, Op::Add, a, b))
        }
    }
}

/// Generates one problem of `tier` (1-based label) shaped by `spec`; deterministic for the RNG state.
pub fn generate(tier: u8, spec: &TierSpec, id: String, rng: &mut impl Rng) -> Problem {
    loop {
        if let Some(p) = try_generate(tier, spec, &id, rng) {
            return p;
        }
    }
}

fn try_generate(tier: u8, spec: &TierSpec, id: &str, rng: &mut impl Rng) -> Option<Problem> {
    let cast = cast(rng);
    let mut remaining = spec.ops;
    let mut sentences = Vec::with_capacity(spec.ops + 2);
    let start = if remaining >= 2 && rng.random_bool(0.3) {
        let c = range(2, spec.max_factor, rng)?;
        let s = range(2, spec.max_operand.min(spec.max_value / c), rng)?;
        remaining -= 1;
        sentences.push(words::fill(pick(&words::START_GROUP, rng), &cast, c, s, 0));
        Operand::Group { op: Op::Mul, a: c, b: s }
    } else {
        let a = range(2, spec.max_operand, rng)?;
        sentences.push(words::fill(pick(&words::START_NUMBER, rng), &cast, a, 0, 0));
        Operand::Number(a)
    };
    let mut cur = start.value();
    let mut steps = Vec::with_capacity(spec.ops);
    while remaining > 0 {
        let compound =
            if spec.parens && remaining >= 2 && rng.random_bool(0.5) { compound_step(cur, spec, rng) } else { None };
        let step = match compound {
            Some(s) => s,
            None => simple_step(cur, spec, rng)?,
        };
        let (templates, a, b, k): (&[&str], i64, i64, i64) = match (step.op, step.operand) {
            (Op::Add, Operand::Number(k)) => (&words::ADD, 0, 0, k),
            (Op::Sub, Operand::Number(k)) => (&words::SUB, 0, 0, k),
            (Op::Mul, Operand::Number(k)) => (&words::MUL, 0, 0, k),
            (Op::Div, Operand::Number(k)) => (&words::DIV, 0, 0, k),
            (Op::Add, Operand::Group { op: Op::Mul, a, b }) => (&words::ADD_MUL, a, b, 0),
            (Op::Sub, Operand::Group { op: Op::Mul, a, b }) => (&words::SUB_MUL, a, b, 0),
            (Op::Add, Operand::Group { op: Op::Div, a, b }) => (&words::ADD_DIV, a, b, 0),
            (Op::Add, Operand::Group { op: Op::Add, a, b }) => (&words::ADD_ADD, a, b, 0),
            (Op::Sub, Operand::Group { op: Op::Add, a, b }) => (&words::SUB_ADD, a, b, 0),
            _ => return None,
        };
        sentences.push(words::fill(pick(templates, rng), &cast, a, b, k));
        remaining -= 1 + step.operand.ops();
        cur = step.op.apply(cur, step.operand.value())?;
        if cur <= 0 || cur > spec.max_value {
            return None;
        }
        steps.push(step);
    }
    sentences.push(words::fill(pick(&words::QUESTION, rng), &cast, 0, 0, 0));
    Some(Problem { id: id.to_string(), tier, cast, start, steps, text: sentences.join(" "), answer: cur })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn default_tiers_validate() {
        for (i, t) in TierSpec::defaults().iter().enumerate() {
            t.validate(&format!("tiers[{i}]")).expect("valid");
        }
        let bad = TierSpec { max_factor: 12, ..TierSpec::defaults()[0].clone() };
        assert!(bad.validate("tiers[0]").expect_err("must fail").to_string().contains("tiers[0].max_factor"));
    }

    #[test]
    fn a_low_tier_problem_reads_like_a_word_problem() {
        let mut rng = StdRng::seed_from_u64(7);
        let p = generate(1, &TierSpec::defaults()[0], "x".into(), &mut rng);
        assert_eq!(p.ops(), 1);
        assert!(p.text.ends_with('?'), "{}", p.text);
        assert!(p.text.contains(&p.cast.name), "{}", p.text);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn problems_respect_their_tier(seed in any::<u64>(), tier in 0usize..6) {
            let spec = &TierSpec::defaults()[tier];
            let mut rng = StdRng::seed_from_u64(seed);
            let p = generate(tier as u8 + 1, spec, "x".into(), &mut rng);
            prop_assert_eq!(p.ops(), spec.ops);
            let values = p.values();
            prop_assert_eq!(*values.last().expect("non-empty"), p.answer);
            for v in values {
                prop_assert!(v > 0 && v <= spec.max_value, "value {} in {}", v, p.expression());
            }
            for s in &p.steps {
                if s.op == Op::Div {
                    let Operand::Number(k) = s.operand else { panic!("division by a group") };
                    prop_assert!((2..=spec.max_factor).contains(&k));
                }
                if let Operand::Group { op: Op::Div, a, b } = s.operand {
                    prop_assert_eq!(a % b, 0);
                }
            }
            if !spec.parens {
                prop_assert!(p.steps.iter().all(|s| s.operand.ops() == 0));
            }
        }
    }
}
