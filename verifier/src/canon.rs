//! Rewriting answers into a comparable form before [`crate::equiv`] compares them:
//! `x \\in S` → `S`, inequalities in one variable → intervals, `a ± b` → two answers.

use crate::expr::{Constant, Node, RelOp};

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

/// `a < x ≤ b`, `x > a`, `x ≤ b` in one variable → an interval tuple.
fn inequality_interval(items: &[Node], ops: &[RelOp]) -> Option<Node> {
    let is_var = |n: &Node| matches!(n, Node::Var(_));
    let lower = |op: RelOp| if op == RelOp::Lt { b'(' } else { b'[' };
    let upper = |op: RelOp| if op == RelOp::Lt { b')' } else { b']' };
    let ascending = |op: RelOp| matches!(op, RelOp::Lt | RelOp::Le);
    match (items, ops) {
        ([a, x, b], [o1, o2]) if is_var(x) && !is_var(a) && !is_var(b) => {
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
            Some(Node::Tuple { open: lower(o1), close: upper(o2), items: vec![a.clone(), b.clone()] })
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
