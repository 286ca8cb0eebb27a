//! Arithmetic steps as the teacher writes them: `a op b = [scratchpad] result`.
//!
//! Multi-digit steps get a digit-level scratchpad (DESIGN §7; Lee et al. 2023, "Teaching Arithmetic to
//! Small Transformers"): addition, subtraction and multiplication by one digit go column by column,
//! least significant digit first, with the carry or borrow written into the column; division is long
//! division, most significant digit first, with the remainder carried down. The last column is written
//! whole, so the result is the last column followed by the other columns' digits in reverse:
//!
//! ```text
//! 47 + 38 = [7+8=15, 4+3+1=8] 85
//! 83 - 38 = [13-8=5, 7-3=4] 45
//! 47 * 6 = [7*6=42, 4*6+4=28] 282
//! 282 / 6 = [28/6=4 r4, 42/6=7 r0] 47
//! ```
//!
//! Single-digit facts (`7 + 8 = 15`, `7 * 6 = 42`, `42 / 6 = 7`, `15 - 7 = 8`) are written plainly.
//! A *slip* (see [`Slip`]) corrupts one column, so the scratchpad stays consistent with the wrong result,
//! as a real arithmetic mistake would.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// An arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (exact in a generated problem; floor division after a slip)
    Div,
}

impl Op {
    /// The symbol written in a solution.
    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    /// `a op b`; division is floor division, and `None` for division by zero or overflow.
    pub fn apply(self, a: i64, b: i64) -> Option<i64> {
        match self {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => (b != 0).then(|| a.div_euclid(b)),
        }
    }
}

/// A deliberate mistake in one column of a step: the column's value is shifted by `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slip {
    /// Which column (0 = least significant for +, -, *; the first long-division step for /), taken
    /// modulo the number of columns.
    pub column: usize,
    /// Non-zero shift of that column's value.
    pub delta: i64,
}

fn digits_lsd(mut n: i64) -> Vec<i64> {
    let mut d = Vec::new();
    loop {
        d.push(n % 10);
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Whether `a op b` gets a scratchpad (it is not a single-digit fact).
pub fn needs_scratchpad(a: i64, op: Op, b: i64) -> bool {
    if a < 0 || b < 0 {
        return false;
    }
    match op {
        Op::Add => a >= 10 || b >= 10,
        Op::Sub => a >= b && (b >= 10 || a >= 20),
        Op::Mul => (a >= 10 && b < 10) || (b >= 10 && a < 10),
        Op::Div => b > 0 && b < 10 && a / b >= 10,
    }
}

/// Writes `a op b = [scratch] result` (or `a op b = result` for a single-digit fact) and returns the
/// text and the result written, which differs from the true result when `slip` is given.
/// For `*` the multi-digit factor is written first.
pub fn render_step(a: i64, op: Op, b: i64, slip: Option<Slip>) -> (String, i64) {
    let (a, b) = if op == Op::Mul && a < 10 && b >= 10 { (b, a) } else { (a, b) };
    let truth = op.apply(a, b).unwrap_or(0);
    let mut out = format!("{a} {} {b} = ", op.symbol());
    let result = if needs_scratchpad(a, op, b) {
        let (scratch, result) = match op {
            Op::Add => add_columns(a, b, slip),
            Op::Sub => sub_columns(a, b, slip),
            Op::Mul => mul_columns(a, b, slip),
            Op::Div => long_division(a, b, slip),
        };
        out.push('[');
        out.push_str(&scratch);
        out.push_str("] ");
        result
    } else {
        match slip {
            Some(s) => shift(truth, s.delta),
            None => truth,
        }
    };
    let _ = write!(out, "{result}");
    (out, result)
}

/// `v + delta`, but never `v` itself and never negative when `v` is not.
fn shift(v: i64, delta: i64) -> i64 {
    let d = if delta == 0 { 1 } else { delta };
    let w = v + d;
    if w < 0 && v >= 0 {
        v + d.abs()
    } else {
        w
    }
}

/// The result from column outputs: every column's last digit, the last column whole.
fn assemble(cols: &[i64]) -> i64 {
    let mut v = cols.last().copied().unwrap_or(0);
    for c in cols.iter().rev().skip(1) {
        v = v * 10 + c % 10;
    }
    v
}

fn add_columns(a: i64, b: i64, slip: Option<Slip>) -> (String, i64) {
    let (da, db) = (digits_lsd(a), digits_lsd(b));
    let n = da.len().max(db.len());
    let slip_col = slip.map(|s| (s.column % n, s.delta));
    let mut parts = Vec::with_capacity(n);
    let mut cols = Vec::with_capacity(n);
    let mut carry = 0;
    for i in 0..n {
        let (x, y) = (da.get(i).copied().unwrap_or(0), db.get(i).copied().unwrap_or(0));
        let mut s = x + y + carry;
        if let Some((_, d)) = slip_col.filter(|&(c, _)| c == i) {
            let t = shift(s, d);
            s = if t <= 19 { t } else { s - 1 };
        }
        parts.push(if carry > 0 { format!("{x}+{y}+{carry}={s}") } else { format!("{x}+{y}={s}") });
        cols.push(s);
        carry = s / 10;
    }
    (parts.join(", "), assemble(&cols))
}

fn sub_columns(a: i64, b: i64, slip: Option<Slip>) -> (String, i64) {
    let (da, db) = (digits_lsd(a), digits_lsd(b));
    let n = da.len();
    let slip_col = slip.map(|s| (s.column % n, s.delta));
    let mut parts = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut borrow = 0;
    for (i, &x) in da.iter().enumerate() {
        let y = db.get(i).copied().unwrap_or(0);
        let mut top = x - borrow;
        borrow = 0;
        if top < y {
            top += 10;
            borrow = 1;
        }
        let mut d = top - y;
        if let Some((_, delta)) = slip_col.filter(|&(c, _)| c == i) {
            d = shift(d, delta).rem_euclid(10);
            if d == top - y {
                d = (d + 1) % 10;
            }
        }
        parts.push(format!("{top}-{y}={d}"));
        out.push(d);
    }
    let v = out.iter().rev().fold(0, |acc, d| acc * 10 + d);
    (parts.join(", "), v)
}

fn mul_columns(a: i64, k: i64, slip: Option<Slip>) -> (String, i64) {
    let da = digits_lsd(a);
    let n = da.len();
    let slip_col = slip.map(|s| (s.column % n, s.delta));
    let mut parts = Vec::with_capacity(n);
    let mut cols = Vec::with_capacity(n);
    let mut carry = 0;
    for (i, &x) in da.iter().enumerate() {
        let mut s = x * k + carry;
        if let Some((_, d)) = slip_col.filter(|&(c, _)| c == i) {
            s = shift(s, d);
        }
        parts.push(if carry > 0 { format!("{x}*{k}+{carry}={s}") } else { format!("{x}*{k}={s}") });
        cols.push(s);
        carry = s / 10;
    }
    (parts.join(", "), assemble(&cols))
}

fn long_division(a: i64, k: i64, slip: Option<Slip>) -> (String, i64) {
    let da: Vec<i64> = digits_lsd(a).into_iter().rev().collect();
    // Start with the shortest prefix that is at least k (or the whole number).
    let mut cur = 0;
    let mut used = 0;
    for &d in &da {
        cur = cur * 10 + d;
        used += 1;
        if cur >= k {
            break;
        }
    }
    let steps = da.len() - used + 1;
    let slip_step = slip.map(|s| (s.column % steps, s.delta));
    let mut parts = Vec::with_capacity(steps);
    let mut q_all = 0;
    for step in 0..steps {
        let mut q = cur / k;
        let r = cur % k;
        if let Some((_, d)) = slip_step.filter(|&(c, _)| c == step) {
            q = shift(q, d).clamp(0, 9);
            if q == cur / k {
                q = if q == 9 { 8 } else { q + 1 };
            }
        }
        parts.push(format!("{cur}/{k}={q} r{r}"));
        q_all = q_all * 10 + q;
        if let Some(&next) = da.get(used + step) {
            cur = r * 10 + next;
        }
    }
    (parts.join(", "), q_all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_the_documented_forms() {
        assert_eq!(render_step(47, Op::Add, 38, None).0, "47 + 38 = [7+8=15, 4+3+1=8] 85");
        assert_eq!(render_step(83, Op::Sub, 38, None).0, "83 - 38 = [13-8=5, 7-3=4] 45");
        assert_eq!(render_step(47, Op::Mul, 6, None).0, "47 * 6 = [7*6=42, 4*6+4=28] 282");
        assert_eq!(render_step(6, Op::Mul, 47, None).0, "47 * 6 = [7*6=42, 4*6+4=28] 282");
        assert_eq!(render_step(282, Op::Div, 6, None).0, "282 / 6 = [28/6=4 r4, 42/6=7 r0] 47");
        assert_eq!(render_step(7, Op::Add, 8, None).0, "7 + 8 = 15");
        assert_eq!(render_step(15, Op::Sub, 7, None).0, "15 - 7 = 8");
        assert_eq!(render_step(42, Op::Div, 6, None).0, "42 / 6 = 7");
        assert_eq!(render_step(105, Op::Sub, 7, None).0, "105 - 7 = [15-7=8, 9-0=9, 0-0=0] 98");
        assert_eq!(render_step(99, Op::Add, 5, None).0, "99 + 5 = [9+5=14, 9+0+1=10] 104");
        assert_eq!(render_step(120, Op::Div, 3, None).0, "120 / 3 = [12/3=4 r0, 0/3=0 r0] 40");
        assert_eq!(render_step(5, Op::Sub, 9, None).0, "5 - 9 = -4");
    }

    #[test]
    fn a_slip_changes_the_result_and_keeps_the_columns_consistent() {
        let (text, v) = render_step(47, Op::Add, 38, Some(Slip { column: 1, delta: 1 }));
        assert_eq!(text, "47 + 38 = [7+8=15, 4+3+1=9] 95");
        assert_eq!(v, 95);
    }

    proptest! {
        #[test]
        fn scratchpad_results_are_exact(a in 0i64..100_000, b in 0i64..100_000, k in 1i64..10) {
            prop_assert_eq!(render_step(a, Op::Add, b, None).1, a + b);
            let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
            prop_assert_eq!(render_step(hi, Op::Sub, lo, None).1, hi - lo);
            prop_assert_eq!(render_step(a, Op::Mul, k, None).1, a * k);
            prop_assert_eq!(render_step(a * k, Op::Div, k, None).1, a);
            prop_assert_eq!(render_step(a, Op::Div, k, None).1, a / k);
        }

        #[test]
        fn slips_always_change_the_result(a in 0i64..10_000, b in 0i64..10_000, k in 2i64..10,
                                          column in 0usize..6, delta in prop::sample::select(vec![-2i64, -1, 1, 2])) {
            let slip = Some(Slip { column, delta });
            prop_assert_ne!(render_step(a, Op::Add, b, slip).1, a + b);
            let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
            prop_assert_ne!(render_step(hi, Op::Sub, lo, slip).1, hi - lo);
            prop_assert_ne!(render_step(a, Op::Mul, k, slip).1, a * k);
            prop_assert_ne!(render_step(a * k, Op::Div, k, slip).1, a);
        }
    }
}
