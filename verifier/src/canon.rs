//! Rewriting answers into a comparable form before [`crate::equiv`] compares them:
//! `x \\in S` → `S`, inequalities in one variable → intervals, `a ± b` → two answers.

use crate::expr::{Constant, Func, Node, RelOp};

fn inf(sign: bool) -> Node {
    let i = Node::Const(Constant::Infinity);
    if sign {
        i
    } else {
        Node::Neg(Box::new(i))
    }
}

/// Rewrite into the comparable form: `x \in S` → `S`, inequalities in one variable →
/// intervals, `a ± b` → the list `a + b, a - b`.
pub(crate) fn canonical(n: &Node) -> Node {
    match n {
        Node::In(_, set) => canonical(set),
        // An equation chain `x = 5+5+1 = 7 = 11` means its last right-hand side.
        Node::Rel(items, ops) if ops.len() >= 2 && ops.iter().all(|o| *o == RelOp::Eq) => {
            items.last().map_or_else(|| n.clone(), canonical)
        }
        Node::Rel(items, ops) => inequality_interval(items, ops).unwrap_or_else(|| n.clone()),
        Node::List(items) | Node::Set(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match expand_pm(it) {
                    Some(v) => out.extend(v),
                    None => out.push(canonical(it)),
                }
            }
            if matches!(n, Node::Set(_)) {
                Node::Set(out)
            } else {
                Node::List(out)
            }
        }
        Node::Union(parts) => Node::Union(parts.iter().map(canonical).collect()),
        Node::Add(_) | Node::Mul(_) | Node::Neg(_) if has_matrix(n) => {
            matrix_value(n, &mut 0).unwrap_or_else(|| n.clone())
        }
        other => match expand_pm(other) {
            Some(v) => Node::List(v),
            None => other.clone(),
        },
    }
}

/// `a ± b` → `[a + b, a - b]` (first `±` only, recursively for a second one).
fn expand_pm(n: &Node) -> Option<Vec<Node>> {
    let mut has = false;
    n.visit(&mut |x| has |= matches!(x, Node::PlusMinus(..)));
    if !has {
        return None;
    }
    let plus = replace_pm(n, false);
    let minus = replace_pm(n, true);
    let mut out = Vec::new();
    for v in [plus, minus] {
        match expand_pm(&v) {
            Some(more) if out.len() < 16 => out.extend(more),
            _ => out.push(v),
        }
    }
    Some(out)
}

/// Replace the first `±` by `+` or `-`.
fn replace_pm(n: &Node, minus: bool) -> Node {
    let mut done = false;
    replace_pm_inner(n, minus, &mut done)
}

fn replace_pm_inner(n: &Node, minus: bool, done: &mut bool) -> Node {
    if *done {
        return n.clone();
    }
    let rec = |x: &Node, d: &mut bool| replace_pm_inner(x, minus, d);
    match n {
        Node::PlusMinus(a, b) => {
            *done = true;
            let b = if minus { Node::Neg(b.clone()) } else { (**b).clone() };
            match a {
                Some(a) => Node::Add(vec![(**a).clone(), b]),
                None => b,
            }
        }
        Node::Add(v) => Node::Add(v.iter().map(|x| rec(x, done)).collect()),
        Node::Mul(v) => Node::Mul(v.iter().map(|x| rec(x, done)).collect()),
        Node::Neg(a) => Node::Neg(Box::new(rec(a, done))),
        Node::Div(a, b) => {
            let a = rec(a, done);
            Node::Div(Box::new(a), Box::new(rec(b, done)))
        }
        Node::Rel(items, ops) => Node::Rel(items.iter().map(|x| rec(x, done)).collect(), ops.clone()),
        other => other.clone(),
    }
}

fn has_matrix(n: &Node) -> bool {
    let mut found = false;
    n.visit(&mut |x| found |= matches!(x, Node::Matrix(_)));
    found
}

/// Most entries a matrix sum or product may produce (each entry of a product is a sum of
/// `inner` products, counted in `budget`).
const MATRIX_BUDGET: usize = 4096;

/// A sum, difference, scalar multiple or product of matrices written out (`A + B`, `A B`,
/// `2A`) → the matrix it evaluates to, entries left as expressions; `None` when the shapes do
/// not fit or it is not matrix arithmetic.
fn matrix_value(n: &Node, budget: &mut usize) -> Option<Node> {
    let grow = |budget: &mut usize, k: usize| {
        *budget += k;
        (*budget <= MATRIX_BUDGET).then_some(())
    };
    match n {
        Node::Matrix(_) => Some(n.clone()),
        Node::Neg(a) => {
            let Node::Matrix(m) = matrix_value(a, budget)? else { return None };
            grow(budget, m.iter().map(Vec::len).sum())?;
            Some(Node::Matrix(m.into_iter().map(|r| r.into_iter().map(|x| Node::Neg(Box::new(x))).collect()).collect()))
        }
        Node::Add(items) => {
            let mut acc: Option<Vec<Vec<Node>>> = None;
            for it in items {
                let Node::Matrix(m) = matrix_value(it, budget)? else { return None };
                acc = Some(match acc {
                    None => m,
                    Some(a) => {
                        if a.len() != m.len() || a.iter().zip(&m).any(|(x, y)| x.len() != y.len()) {
                            return None;
                        }
                        grow(budget, m.iter().map(Vec::len).sum())?;
                        a.into_iter()
                            .zip(m)
                            .map(|(x, y)| x.into_iter().zip(y).map(|(p, q)| Node::Add(vec![p, q])).collect())
                            .collect()
                    }
                });
            }
            acc.map(Node::Matrix)
        }
        Node::Mul(items) => {
            let mut scalars = Vec::new();
            let mut acc: Option<Vec<Vec<Node>>> = None;
            for it in items {
                if !has_matrix(it) {
                    if it.is_structured() {
                        return None;
                    }
                    scalars.push(it.clone());
                    continue;
                }
                let Node::Matrix(m) = matrix_value(it, budget)? else { return None };
                acc = Some(match acc {
                    None => m,
                    Some(a) => {
                        let inner = m.len();
                        if a.first().map_or(0, Vec::len) != inner {
                            return None;
                        }
                        let cols = m.first().map_or(0, Vec::len);
                        grow(budget, a.len() * cols * inner)?;
                        a.iter()
                            .map(|row| {
                                (0..cols)
                                    .map(|j| {
                                        Node::Add(
                                            row.iter()
                                                .zip(&m)
                                                .map(|(x, mrow)| Node::Mul(vec![x.clone(), mrow[j].clone()]))
                                                .collect(),
                                        )
                                    })
                                    .collect()
                            })
                            .collect()
                    }
                });
            }
            let m = acc?;
            if scalars.is_empty() {
                return Some(Node::Matrix(m));
            }
            grow(budget, m.iter().map(Vec::len).sum())?;
            let k = if scalars.len() == 1 { scalars.pop()? } else { Node::Mul(scalars) };
            Some(Node::Matrix(
                m.into_iter().map(|r| r.into_iter().map(|x| Node::Mul(vec![k.clone(), x])).collect()).collect(),
            ))
        }
        _ => None,
    }
}

fn has_vars(n: &Node) -> bool {
    let mut found = false;
    n.visit(&mut |x| found |= matches!(x, Node::Var(_)));
    found
}

fn is_nonnegative_literal(n: &Node) -> bool {
    use num_traits::Signed;
    matches!(n, Node::Num { value, .. } if !value.is_negative())
}

/// `a < x ≤ b`, `x > a`, `x ≤ b` in one variable → an interval tuple; also a value such as
/// `0 < f(x) < 1` (a name applied to a variable, between constants) → its range, and
/// `1 \le |z| \le \frac32` → the union `[-\frac32, -1] \cup [1, \frac32]`.
fn inequality_interval(items: &[Node], ops: &[RelOp]) -> Option<Node> {
    let is_var = |n: &Node| matches!(n, Node::Var(_));
    let lower = |op: RelOp| if op == RelOp::Lt { b'(' } else { b'[' };
    let upper = |op: RelOp| if op == RelOp::Lt { b')' } else { b']' };
    let ascending = |op: RelOp| matches!(op, RelOp::Lt | RelOp::Le);
    let neg = |n: &Node| Node::Neg(Box::new(n.clone()));
    // `f(x)`, written as a product of two names, between constants.
    let applied = |n: &Node| matches!(n, Node::Mul(f) if f.len() == 2 && f.iter().all(is_var));
    let abs_of_var = |n: &Node| matches!(n, Node::Func(Func::Abs, x) if is_var(x));
    match (items, ops) {
        ([a, x, b], [o1, o2])
            if (is_var(x) && !is_var(a) && !is_var(b))
                || ((applied(x) || abs_of_var(x)) && !has_vars(a) && !has_vars(b)) =>
        {
            let (o1, o2, a, b) = if ascending(*o1) && ascending(*o2) {
                (*o1, *o2, a, b)
            } else if !ascending(*o1)
                && !ascending(*o2)
                && *o1 != RelOp::Eq
                && *o2 != RelOp::Eq
                && *o1 != RelOp::Ne
                && *o2 != RelOp::Ne
            {
                (o2.flip(), o1.flip(), b, a)
            } else {
                return None;
            };
            if abs_of_var(x) {
                // `a ≤ |x| ≤ b` with `a ≥ 0`: `x` in `[-b, -a] ∪ [a, b]`.
                if !is_nonnegative_literal(a) {
                    return None;
                }
                let zero = matches!(a, Node::Num { value, .. } if num_traits::Zero::is_zero(value));
                if zero && o1 == RelOp::Le {
                    return Some(Node::Tuple { open: lower(o2), close: upper(o2), items: vec![neg(b), b.clone()] });
                }
                return Some(Node::Union(vec![
                    Node::Tuple { open: lower(o2), close: upper(o1), items: vec![neg(b), neg(a)] },
                    Node::Tuple { open: lower(o1), close: upper(o2), items: vec![a.clone(), b.clone()] },
                ]));
            }
            Some(Node::Tuple { open: lower(o1), close: upper(o2), items: vec![a.clone(), b.clone()] })
        }
        ([Node::Func(Func::Abs, x), b], [op]) if is_var(x) && ascending(*op) && !has_vars(b) => {
            // `|x| < b`: `x` in `(-b, b)`.
            Some(Node::Tuple { open: lower(*op), close: upper(*op), items: vec![neg(b), b.clone()] })
        }
        ([Node::Neg(l), r], [op]) if is_var(l) && !is_var(r) && *op != RelOp::Eq && *op != RelOp::Ne => {
            // `-x > -1` is `x < 1`.
            inequality_interval(&[(**l).clone(), Node::Neg(Box::new(r.clone()))], &[op.flip()])
        }
        ([l, r], [op]) if *op != RelOp::Eq && *op != RelOp::Ne => {
            let (x, v, op) = if is_var(l) && !is_var(r) {
                (l, r, *op)
            } else if is_var(r) && !is_var(l) {
                (r, l, op.flip())
            } else {
                return None;
            };
            let _ = x;
            Some(if ascending(op) {
                Node::Tuple { open: b'(', close: upper(op), items: vec![inf(false), v.clone()] }
            } else {
                Node::Tuple { open: lower(op.flip()), close: b')', items: vec![v.clone(), inf(true)] }
            })
        }
        _ => None,
    }
}
