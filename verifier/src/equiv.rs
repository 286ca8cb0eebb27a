//! Deciding whether two parsed answers mean the same thing.
//!
//! Structured answers are compared by shape: bare lists and sets unordered (a
//! partial or padded answer is wrong), tuples ordered, intervals with their bracket
//! kinds, matrices elementwise, equations up to a non-zero factor (`y = 2x+1` ≡
//! `2x+1 = y` ≡ `2y = 4x+2`). Scalars are compared by value: exactly when both sides
//! are exact (integers, rationals, `\sqrt{16}`, `i`), else with a relative tolerance;
//! expressions with variables at several fixed sample points.

use num_bigint::BigInt;
use num_rational::BigRational;

use crate::canon::canonical;
use crate::config::{DegreePolicy, PercentPolicy, VerifierConfig};
use crate::eval::EvalCtx;
use crate::expr::{Node, RelOp};
use crate::value::{Arith, EvalError, Exact, Val};

/// Result of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Equal,
    NotEqual,
    TooComplex,
}

/// Sample values for variables: positive (so `\sqrt{1/n}` = `1/\sqrt n` holds), distinct,
/// unrelated rationals and a few integers (for `n!`, `(-1)^n`).
const POINTS: [(i64, i64); 16] = [
    (17, 7),
    (9, 13),
    (23, 11),
    (5, 3),
    (31, 19),
    (11, 29),
    (41, 37),
    (7, 4),
    (13, 9),
    (3, 17),
    (29, 8),
    (19, 23),
    (2, 1),
    (3, 1),
    (5, 1),
    (7, 1),
];
const N_POINTS: usize = 6;

/// Comparison settings derived from a [`VerifierConfig`].
pub(crate) struct Cmp<'a> {
    pub(crate) cfg: &'a VerifierConfig,
}

impl Cmp<'_> {
    fn arith(&self) -> Arith {
        Arith { max_bits: self.cfg.limits.max_bits }
    }

    /// Compare a gold answer with a predicted one.
    pub(crate) fn equivalent(&self, gold: &Node, pred: &Node) -> Decision {
        let g = canonical(gold);
        let p = canonical(pred);
        self.compare(&g, &p)
    }

    fn compare(&self, g: &Node, p: &Node) -> Decision {
        use Node::*;
        match (g, p) {
            (List(a) | Set(a), List(b) | Set(b)) => self.unordered(a, b),
            (List(a) | Set(a), Tuple { items: b, .. }) => self.unordered(a, b),
            // `(1,3)` vs `{1,3}`: the set as written, in order (Math-Verify's verdicts).
            (Tuple { items: a, .. }, Set(b)) => self.ordered(a, b),
            (List(a) | Set(a), x) | (x, List(a) | Set(a)) if a.len() == 1 && !matches!(x, List(_) | Set(_)) => {
                self.compare_pair(&a[0], x, std::ptr::eq(g, x))
            }
            // One answer boxed twice in two forms (`15\frac{39}{40}` or `\frac{639}{40}`).
            (x, List(a)) if !x.is_structured() && a.len() <= 4 => {
                let mut d = Decision::Equal;
                for y in a {
                    match self.compare(x, y) {
                        Decision::Equal => {}
                        other => d = other,
                    }
                    if d == Decision::NotEqual {
                        break;
                    }
                }
                d
            }
            (Tuple { open: o1, close: c1, items: a }, Tuple { open: o2, close: c2, items: b }) => {
                if a.len() != b.len() {
                    return Decision::NotEqual;
                }
                let brackets_match = a.len() != 2 || (o1 == o2 && c1 == c2);
                if !brackets_match {
                    return Decision::NotEqual;
                }
                self.ordered(a, b)
            }
            (Tuple { items: a, .. }, List(b)) => self.ordered(a, b),
            (Union(a), Union(b)) => self.unordered(a, b),
            (Matrix(a), Matrix(b)) => {
                if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
                    return Decision::NotEqual;
                }
                let fa: Vec<Node> = a.iter().flatten().cloned().collect();
                let fb: Vec<Node> = b.iter().flatten().cloned().collect();
                self.ordered(&fa, &fb)
            }
            (Matrix(m), Tuple { items, .. }) | (Tuple { items, .. }, Matrix(m)) => {
                let flat: Vec<Node> = m.iter().flatten().cloned().collect();
                let vector = m.len() == 1 || m.iter().all(|r| r.len() == 1);
                if !vector {
                    return Decision::NotEqual;
                }
                self.ordered(&flat, items)
            }
            (Rel(ga, gops), Rel(pa, pops)) => self.relations(ga, gops, pa, pops),
            (Rel(items, ops), x) | (x, Rel(items, ops)) if !matches!(x, Rel(..)) => match assigned_value(items, ops) {
                Some(v) => {
                    if std::ptr::eq(g, x) {
                        self.compare(x, v)
                    } else {
                        self.compare(v, x)
                    }
                }
                None => Decision::NotEqual,
            },
            _ if g.is_structured() || p.is_structured() => Decision::NotEqual,
            _ => self.scalars(g, p),
        }
    }

    fn compare_pair(&self, a: &Node, b: &Node, b_is_gold: bool) -> Decision {
        if b_is_gold {
            self.compare(b, a)
        } else {
            self.compare(a, b)
        }
    }

    fn ordered(&self, a: &[Node], b: &[Node]) -> Decision {
        if a.len() != b.len() {
            return Decision::NotEqual;
        }
        let mut too_complex = false;
        for (x, y) in a.iter().zip(b) {
            match self.compare(x, y) {
                Decision::Equal => {}
                Decision::NotEqual => return Decision::NotEqual,
                Decision::TooComplex => too_complex = true,
            }
        }
        if too_complex {
            Decision::TooComplex
        } else {
            Decision::Equal
        }
    }

    /// Multiset equality: every gold element matched to its own predicted element.
    fn unordered(&self, a: &[Node], b: &[Node]) -> Decision {
        if a.len() != b.len() {
            // As sets: a repeated element (`(3,17,3,7)` listed twice) is one answer; a missing
            // or an extra one is still wrong.
            if a.len().max(b.len()) > self.cfg.limits.max_set_len {
                return Decision::TooComplex;
            }
            let covers = |xs: &[Node], ys: &[Node], gold_first: bool| {
                xs.iter().all(|x| {
                    ys.iter().any(|y| {
                        let d = if gold_first { self.compare(x, y) } else { self.compare(y, x) };
                        d == Decision::Equal
                    })
                })
            };
            return bool_dec(covers(a, b, true) && covers(b, a, false));
        }
        if a.len() > self.cfg.limits.max_set_len {
            return Decision::TooComplex;
        }
        let mut used = vec![false; b.len()];
        let mut too_complex = false;
        for x in a {
            let mut found = false;
            for (j, y) in b.iter().enumerate() {
                if used[j] {
                    continue;
                }
                match self.compare(x, y) {
                    Decision::Equal => {
                        used[j] = true;
                        found = true;
                        break;
                    }
                    Decision::TooComplex => too_complex = true,
                    Decision::NotEqual => {}
                }
            }
            if !found {
                return if too_complex { Decision::TooComplex } else { Decision::NotEqual };
            }
        }
        Decision::Equal
    }

    fn relations(&self, ga: &[Node], gops: &[RelOp], pa: &[Node], pops: &[RelOp]) -> Decision {
        if gops.len() != pops.len() || ga.len() != pa.len() {
            return Decision::NotEqual;
        }
        if gops.len() == 1 && gops[0] == RelOp::Eq && pops[0] == RelOp::Eq {
            return self.equations(&ga[0], &ga[1], &pa[0], &pa[1]);
        }
        if gops == pops && self.ordered(ga, pa) == Decision::Equal {
            return Decision::Equal;
        }
        let flipped: Vec<RelOp> = pops.iter().rev().map(|o| o.flip()).collect();
        if gops == flipped.as_slice() {
            let rev: Vec<Node> = pa.iter().rev().cloned().collect();
            return self.ordered(ga, &rev);
        }
        Decision::NotEqual
    }

    /// `l1 = r1` ≡ `l2 = r2` when `l1 - r1 = k (l2 - r2)` for one non-zero constant `k`.
    fn equations(&self, l1: &Node, r1: &Node, l2: &Node, r2: &Node) -> Decision {
        let d1 = Node::Add(vec![l1.clone(), Node::Neg(Box::new(r1.clone()))]);
        let d2 = Node::Add(vec![l2.clone(), Node::Neg(Box::new(r2.clone()))]);
        let mut names = Vec::new();
        d1.vars(&mut names);
        d2.vars(&mut names);
        if names.is_empty() {
            // Numeric equations: compare the sides as written.
            let same = self.scalars(l1, l2) == Decision::Equal && self.scalars(r1, r2) == Decision::Equal;
            let swapped = self.scalars(l1, r2) == Decision::Equal && self.scalars(r1, l2) == Decision::Equal;
            return bool_dec(same || swapped);
        }
        let arith = self.arith();
        let mut ratio: Option<Val> = None;
        let mut ok = 0;
        let mut too_complex = false;
        for j in 0..N_POINTS {
            let vars = assignment(&names, j);
            let cx = self.ctx(false, false, &vars);
            let (a, b) = match (cx.eval(&d1), cx.eval(&d2)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(EvalError::TooComplex), _) | (_, Err(EvalError::TooComplex)) => {
                    too_complex = true;
                    continue;
                }
                _ => continue,
            };
            if a.is_exact_zero() && b.is_exact_zero() {
                ok += 1;
                continue;
            }
            if close_enough(&a, &Val::Exact(Exact::int(0)), self.cfg, false)
                != close_enough(&b, &Val::Exact(Exact::int(0)), self.cfg, false)
            {
                return Decision::NotEqual;
            }
            let k = match &ratio {
                Some(k) => k.clone(),
                None => match arith.div(&a, &b) {
                    Ok(k) if !k.is_exact_zero() => {
                        ratio = Some(k.clone());
                        k
                    }
                    _ => continue,
                },
            };
            match arith.mul(&k, &b) {
                Ok(kb) => {
                    if !close_enough(&a, &kb, self.cfg, true) {
                        return Decision::NotEqual;
                    }
                    ok += 1;
                }
                Err(_) => too_complex = true,
            }
        }
        if ok >= 3 {
            Decision::Equal
        } else if too_complex {
            Decision::TooComplex
        } else {
            Decision::NotEqual
        }
    }

    fn ctx<'v>(&self, pct: bool, deg: bool, vars: &'v [(String, Val)]) -> EvalCtx<'v> {
        EvalCtx { arith: self.arith(), percent_as_fraction: pct, degrees_as_radians: deg, vars }
    }

    /// Scalar expressions, under every marker reading the policies allow.
    fn scalars(&self, g: &Node, p: &Node) -> Decision {
        let readings = |has: bool, lenient: bool, convert: bool| -> &'static [bool] {
            match (has, lenient, convert) {
                (false, _, _) => &[false],
                (true, true, _) => &[false, true],
                (true, false, true) => &[true],
                (true, false, false) => &[false],
            }
        };
        let pct = self.cfg.percent;
        let deg = self.cfg.degrees;
        let (pl, pc) = (pct == PercentPolicy::Lenient, pct == PercentPolicy::Fraction);
        let (dl, dc) = (deg == DegreePolicy::Lenient, deg == DegreePolicy::Radians);
        let mut result = Decision::NotEqual;
        for &gp in readings(g.has_percent(), pl, pc) {
            for &pp in readings(p.has_percent(), pl, pc) {
                for &gd in readings(g.has_degree(), dl, dc) {
                    for &pd in readings(p.has_degree(), dl, dc) {
                        match self.scalar_once(g, p, (gp, gd), (pp, pd)) {
                            Decision::Equal => return Decision::Equal,
                            Decision::TooComplex => result = Decision::TooComplex,
                            Decision::NotEqual => {}
                        }
                    }
                }
            }
        }
        result
    }

    fn scalar_once(&self, g: &Node, p: &Node, gr: (bool, bool), pr: (bool, bool)) -> Decision {
        let tolerant = g.has_decimal() || p.has_decimal();
        let mut names = Vec::new();
        g.vars(&mut names);
        p.vars(&mut names);
        let points = if names.is_empty() { 1 } else { N_POINTS };
        let mut ok = 0;
        let mut too_complex = false;
        for j in 0..points {
            let vars = assignment(&names, j);
            let gv = self.ctx(gr.0, gr.1, &vars).eval(g);
            let pv = self.ctx(pr.0, pr.1, &vars).eval(p);
            match (gv, pv) {
                (Ok(a), Ok(b)) => {
                    if !close_enough(&a, &b, self.cfg, tolerant) {
                        return Decision::NotEqual;
                    }
                    ok += 1;
                }
                (Err(EvalError::TooComplex), _) | (_, Err(EvalError::TooComplex)) => too_complex = true,
                // Undefined on one side only: different functions.
                (Ok(_), Err(_)) | (Err(_), Ok(_)) if names.is_empty() => return Decision::NotEqual,
                _ => {}
            }
        }
        let needed = if names.is_empty() { 1 } else { 3 };
        if ok >= needed {
            Decision::Equal
        } else if too_complex {
            Decision::TooComplex
        } else {
            Decision::NotEqual
        }
    }
}

fn bool_dec(b: bool) -> Decision {
    if b {
        Decision::Equal
    } else {
        Decision::NotEqual
    }
}

fn assignment(names: &[String], j: usize) -> Vec<(String, Val)> {
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (n, d) = POINTS[(j * 7 + k * 5 + j / 2) % POINTS.len()];
            let v = Exact::real(BigRational::new(BigInt::from(n), BigInt::from(d)));
            (name.clone(), Val::Exact(v))
        })
        .collect()
}

/// Value equality: exact when both are exact (unless a decimal was written), else
/// relative tolerance; absolute tolerance only against an exact zero.
fn close_enough(a: &Val, b: &Val, cfg: &VerifierConfig, tolerant: bool) -> bool {
    match (a, b) {
        (Val::Inf(x), Val::Inf(y)) => return x == y,
        (Val::Inf(_), _) | (_, Val::Inf(_)) => return false,
        (Val::Exact(x), Val::Exact(y)) => {
            if x == y {
                return true;
            }
            if !tolerant {
                return false;
            }
        }
        _ => {}
    }
    let (Ok(x), Ok(y)) = (a.to_c64(), b.to_c64()) else {
        return false;
    };
    let diff = x.sub(y).abs();
    if a.is_exact_zero() || b.is_exact_zero() || x.abs() == 0.0 || y.abs() == 0.0 {
        return diff <= cfg.float_abs_tol;
    }
    diff <= cfg.float_rel_tol * x.abs().max(y.abs())
}

/// The value an equation states when compared with a bare answer: `x = 5` / `5 = x` → `5`
/// (a single variable on one side, not on the other); `\sqrt{4} = 2` → `2` (no variable on
/// the left: a computation); `(p,q) = (3,2)`, `\frac{NO}{BO} = \frac{1}{\sqrt6}`, `|AB| = 1` →
/// the right side (a label on the left: variables and no number, and a constant, non-zero
/// right side; `2x = 10` and `x + y - 1 = 0` stay equations).
fn assigned_value<'n>(items: &'n [Node], ops: &[RelOp]) -> Option<&'n Node> {
    if ops != [RelOp::Eq] {
        return None;
    }
    let names = |n: &Node| {
        let mut names = Vec::new();
        n.vars(&mut names);
        names
    };
    let mentions = |n: &Node, v: &str| names(n).iter().any(|x| x == v);
    let has_number = |n: &Node| {
        let mut found = false;
        n.visit(&mut |x| found |= matches!(x, Node::Num { .. }));
        found
    };
    let is_zero =
        |n: &Node| matches!(n, Node::Num { value, .. } if value == &num_rational::BigRational::from_integer(0.into()));
    match (&items[0], &items[1]) {
        (Node::Var(v), rhs) if !mentions(rhs, v) => Some(rhs),
        (lhs, Node::Var(v)) if !mentions(lhs, v) => Some(lhs),
        (lhs, rhs) if names(lhs).is_empty() && names(rhs).is_empty() => Some(rhs),
        (lhs, rhs) if !has_number(lhs) && names(rhs).is_empty() && !is_zero(rhs) => Some(rhs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::parse::parse;

    fn dec(g: &str, p: &str) -> Decision {
        let cfg = VerifierConfig::default();
        let lim = Limits::default();
        let g = parse(g, &lim).expect("gold parses");
        let p = parse(p, &lim).expect("pred parses");
        Cmp { cfg: &cfg }.equivalent(&g, &p)
    }

    #[test]
    fn symbolic_identities() {
        assert_eq!(dec("\\sqrt{1/n}", "\\frac{1}{\\sqrt n}"), Decision::Equal);
        assert_eq!(dec("2(x+1)", "2x+2"), Decision::Equal);
        assert_eq!(dec("(a+5)(b+2)", "ab+2a+5b+10"), Decision::Equal);
        assert_eq!(dec("2(x+1)", "2x+1"), Decision::NotEqual);
    }

    #[test]
    fn inequalities_become_intervals() {
        assert_eq!(dec("[-2,7]", "-2 \\le x \\le 7"), Decision::Equal);
        assert_eq!(dec("(5,\\infty)", "x > 5"), Decision::Equal);
        assert_eq!(dec("(-\\infty, 0]", "x \\le 0"), Decision::Equal);
        assert_eq!(dec("(-\\infty, 0]", "x < 0"), Decision::NotEqual);
        assert_eq!(dec("(3,4]", "4 \\ge x > 3"), Decision::Equal);
    }

    #[test]
    fn ranges_of_values_and_absolute_values() {
        assert_eq!(dec("0<f(x)<1", "(0,1)"), Decision::Equal);
        assert_eq!(dec("0<f(x)<1", "[0,1]"), Decision::NotEqual);
        assert_eq!(
            dec("1 \\le |z| \\le \\frac{3}{2}", "z \\in [-\\frac{3}{2}, -1] \\cup [1, \\frac{3}{2}]"),
            Decision::Equal
        );
        assert_eq!(dec("1 \\le |z| \\le \\frac{3}{2}", "[1, \\frac{3}{2}]"), Decision::NotEqual);
        assert_eq!(dec("1 < |z| \\le 2", "[-2, -1) \\cup (1, 2]"), Decision::Equal);
        assert_eq!(dec("|x| < 3", "(-3, 3)"), Decision::Equal);
        assert_eq!(dec("0 \\le |x| \\le 3", "[-3, 3]"), Decision::Equal);
        // Only a name applied to a variable: `0 < 2x < 1` is not `(0, 1)`.
        assert_eq!(dec("0<2x<1", "(0,1)"), Decision::NotEqual);
    }

    #[test]
    fn matrix_arithmetic_is_evaluated() {
        let m = |s: &str| format!("\\begin{{pmatrix}}{s}\\end{{pmatrix}}");
        let sum = format!("{} + {}", m("1 & 2 \\\\ 3 & 4"), m("5 & 6 \\\\ 7 & 8"));
        assert_eq!(dec(&m("6 & 8 \\\\ 10 & 12"), &sum), Decision::Equal);
        assert_eq!(dec(&m("6 & 8 \\\\ 10 & 13"), &sum), Decision::NotEqual);
        let prod = format!("{} {}", m("1 & 2 \\\\ 3 & 4"), m("0 & 1 \\\\ 1 & 0"));
        assert_eq!(dec(&m("2 & 1 \\\\ 4 & 3"), &prod), Decision::Equal);
        assert_eq!(dec(&m("3 & 4 \\\\ 1 & 2"), &prod), Decision::NotEqual);
        assert_eq!(dec(&m("2 & 4 \\\\ 6 & 8"), &format!("2{}", m("1 & 2 \\\\ 3 & 4"))), Decision::Equal);
        assert_eq!(dec(&m("-1 & -2"), &format!("-{}", m("1 & 2"))), Decision::Equal);
        // Shapes that do not fit are not a matrix.
        let bad = format!("{} + {}", m("1 & 2"), m("1 \\\\ 2"));
        assert_eq!(dec(&m("2 & 4"), &bad), Decision::NotEqual);
    }

    #[test]
    fn semicolons_separate_coordinates() {
        assert_eq!(dec("(0;-2;6),(4;0;0)", "(4, 0, 0), (0, -2, 6)"), Decision::Equal);
        assert_eq!(dec("(0;-2;6)", "(0, 2, 6)"), Decision::NotEqual);
        // One solution per `;`-separated group of assignments.
        assert_eq!(dec("p=5,q=2;p=7,q=2", "(5,2),(7,2)"), Decision::Equal);
        assert_eq!(dec("p=5,q=2;p=7,q=2", "(7,2),(5,2)"), Decision::Equal);
        assert_eq!(dec("p=5,q=2;p=7,q=2", "(2,5),(7,2)"), Decision::NotEqual);
        assert_eq!(dec("p=5,q=2;p=7,q=2", "(5,2)"), Decision::NotEqual);
    }

    #[test]
    fn equations_up_to_a_factor() {
        assert_eq!(dec("y = 2x + 3", "2x+3 = y"), Decision::Equal);
        assert_eq!(dec("y = 2x + 3", "2y = 4x+6"), Decision::Equal);
        assert_eq!(dec("y = 2x + 3", "y = 2x - 3"), Decision::NotEqual);
        assert_eq!(dec("5x - 7y + 11z + 4 = 0", "-5x + 7y - 11z - 4 = 0"), Decision::Equal);
    }

    #[test]
    fn plus_minus_is_two_answers() {
        assert_eq!(dec("\\pm 2021", "2021"), Decision::NotEqual);
        assert_eq!(dec("\\pm 2021", "2021, -2021"), Decision::Equal);
        assert_eq!(dec("1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}"), Decision::Equal);
    }
}
