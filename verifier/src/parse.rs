//! Recursive-descent parser for LaTeX and plain math answers.
//!
//! Works on the bytes of a normalized answer (see [`crate::normalize`]). Every recursive
//! call passes through [`Parser::enter`], which enforces the depth budget, and every node
//! is counted, so 10,000 nested braces end in [`ParseError::TooComplex`] instead of a
//! stack overflow. Malformed LaTeX that models write is accepted: `\frac12`, `\sqrt2`,
//! `\frac 59`, `x^10` (read as `x^{10}`).

use num_bigint::BigInt;
use num_rational::BigRational;

use crate::config::Limits;
use crate::expr::{Func, Node, RelOp};

mod atoms;
mod latex;

use latex::is_atom_cmd;

/// Why an answer did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// A budget (depth, nodes, digits, length) was exceeded.
    TooComplex,
    /// Not an expression this parser understands.
    Invalid,
}

type PResult<T> = Result<T, ParseError>;

const GREEK: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
];

/// Parse a normalized answer into an expression tree.
pub(crate) fn parse(src: &str, limits: &Limits) -> PResult<Node> {
    if src.len() > limits.max_answer_bytes {
        return Err(ParseError::TooComplex);
    }
    let mut p = Parser { s: src.as_bytes(), src, pos: 0, depth: 0, nodes: 0, in_abs: 0, limits };
    let node = p.top()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(ParseError::Invalid);
    }
    Ok(node)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    depth: usize,
    nodes: usize,
    in_abs: usize,
    limits: &'a Limits,
}

impl<'a> Parser<'a> {
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(ParseError::TooComplex);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn node(&mut self, n: Node) -> PResult<Node> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(ParseError::TooComplex);
        }
        Ok(n)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(ParseError::Invalid)
        }
    }

    /// The command name at the cursor (`\frac` → `frac`, `\{` → `{`), without consuming it.
    fn peek_cmd(&mut self) -> Option<&'a str> {
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'\\') {
            return None;
        }
        let start = self.pos + 1;
        let mut j = start;
        while j < self.s.len() && self.s[j].is_ascii_alphabetic() {
            j += 1;
        }
        if j == start && j < self.s.len() {
            j += 1;
        }
        self.src.get(start..j)
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        if self.peek_cmd() == Some(name) {
            self.pos += 1 + name.len();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, t: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(t.as_bytes()) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// Comma list at the top level or inside `{..}`.
    fn top(&mut self) -> PResult<Node> {
        self.enter()?;
        let mut items = vec![self.union()?];
        // Where each `;` stands: before item `k`.
        let mut semis = Vec::new();
        loop {
            let semi = if self.eat(b',') {
                false
            } else if self.eat(b';') {
                true
            } else {
                break;
            };
            if matches!(self.peek(), None | Some(b'}')) {
                break;
            }
            if semi {
                semis.push(items.len());
            }
            items.push(self.union()?);
        }
        self.leave();
        if let Some(systems) = solution_systems(&items, &semis) {
            return self.node(systems);
        }
        if items.len() == 1 {
            Ok(items.pop().unwrap_or(Node::List(Vec::new())))
        } else {
            self.node(Node::List(items))
        }
    }

    fn union(&mut self) -> PResult<Node> {
        let mut parts = vec![self.rel()?];
        loop {
            let cup = self.eat_cmd("cup");
            let letter_u = !cup && {
                let save = self.pos;
                let ok = self.eat(b'U') && matches!(self.peek(), Some(b'(' | b'['));
                if !ok {
                    self.pos = save;
                }
                ok
            };
            if !(cup || letter_u) {
                break;
            }
            parts.push(self.rel()?);
        }
        if parts.len() == 1 {
            Ok(parts.pop().unwrap_or(Node::Union(Vec::new())))
        } else {
            self.node(Node::Union(parts))
        }
    }

    fn rel_op(&mut self) -> Option<RelOp> {
        let op = match self.peek()? {
            b'=' => {
                self.pos += 1;
                RelOp::Eq
            }
            b'!' if self.s.get(self.pos + 1) == Some(&b'=') => {
                self.pos += 2;
                RelOp::Ne
            }
            b'<' => {
                self.pos += 1;
                if self.eat(b'=') {
                    RelOp::Le
                } else {
                    RelOp::Lt
                }
            }
            b'>' => {
                self.pos += 1;
                if self.eat(b'=') {
                    RelOp::Ge
                } else {
                    RelOp::Gt
                }
            }
            b'\\' => {
                let op = match self.peek_cmd()? {
                    "le" => RelOp::Le,
                    "ge" => RelOp::Ge,
                    "lt" => RelOp::Lt,
                    "gt" => RelOp::Gt,
                    "ne" => RelOp::Ne,
                    "approx" | "equiv" => RelOp::Eq,
                    _ => return None,
                };
                let name_len = self.peek_cmd().map_or(0, str::len);
                self.pos += 1 + name_len;
                op
            }
            _ => return None,
        };
        Some(op)
    }

    fn rel(&mut self) -> PResult<Node> {
        let first = self.expr()?;
        if self.eat_cmd("in") {
            let set = self.union()?;
            return self.node(Node::In(Box::new(first), Box::new(set)));
        }
        let mut items = vec![first];
        let mut ops = Vec::new();
        while let Some(op) = self.rel_op() {
            ops.push(op);
            items.push(self.expr()?);
            if ops.len() > 8 {
                return Err(ParseError::TooComplex);
            }
        }
        if ops.is_empty() {
            Ok(items.pop().unwrap_or(Node::List(Vec::new())))
        } else {
            self.node(Node::Rel(items, ops))
        }
    }

    /// Sum of terms, with `±` / `∓`.
    fn expr(&mut self) -> PResult<Node> {
        self.enter()?;
        let mut terms = Vec::new();
        let mut pm: Option<Node> = None;
        let mut first = true;
        loop {
            enum Sign {
                Plus,
                Minus,
                PlusMinus,
            }
            let sign = if self.eat(b'+') {
                Sign::Plus
            } else if self.eat(b'-') {
                Sign::Minus
            } else if self.eat_cmd("pm") || self.eat_cmd("mp") {
                Sign::PlusMinus
            } else if first {
                Sign::Plus
            } else {
                break;
            };
            first = false;
            let t = self.term()?;
            match sign {
                Sign::Plus => terms.push(t),
                Sign::Minus => terms.push(self.node(Node::Neg(Box::new(t)))?),
                Sign::PlusMinus => {
                    let before = match terms.len() {
                        0 => None,
                        1 => terms.pop().map(Box::new),
                        _ => Some(Box::new(Node::Add(std::mem::take(&mut terms)))),
                    };
                    let before = match (pm.take(), before) {
                        (Some(p), Some(b)) => Some(Box::new(Node::Add(vec![p, *b]))),
                        (Some(p), None) => Some(Box::new(p)),
                        (None, b) => b,
                    };
                    pm = Some(self.node(Node::PlusMinus(before, Box::new(t)))?);
                }
            }
        }
        self.leave();
        if let Some(p) = pm {
            terms.insert(0, p);
        }
        match terms.len() {
            0 => Err(ParseError::Invalid),
            1 => Ok(terms.pop().unwrap_or(Node::List(Vec::new()))),
            _ => self.node(Node::Add(terms)),
        }
    }

    /// Whether a factor can start here (implicit multiplication).
    fn implicit_start(&mut self) -> bool {
        match self.peek() {
            Some(c) if c.is_ascii_digit() || c.is_ascii_alphabetic() => true,
            Some(b'(') => true,
            Some(b'{') => true,
            Some(b'|') => self.in_abs == 0,
            Some(b'.') => self.s.get(self.pos + 1).is_some_and(u8::is_ascii_digit),
            Some(b'\\') => matches!(self.peek_cmd(), Some(name) if is_atom_cmd(name)),
            _ => false,
        }
    }

    /// Product / quotient of factors, flattened as `Div(Mul(numerators), Mul(denominators))`.
    fn term(&mut self) -> PResult<Node> {
        let mut num = vec![self.unary()?];
        let mut den = Vec::new();
        loop {
            if self.eat(b'*') || self.eat_cmd("cdot") || self.eat_cmd("times") {
                num.push(self.unary()?);
            } else if self.eat(b'/') || self.eat_cmd("div") {
                den.push(self.unary()?);
            } else if self.implicit_start() {
                let is_frac = self.peek_cmd() == Some("frac");
                let f = self.power()?;
                // Mixed number `2\frac{1}{3}` = 2 + 1/3.
                if is_frac && num.len() == 1 && den.is_empty() && is_int_literal(&num[0]) {
                    if let Node::Div(a, b) = &f {
                        if is_int_literal(a) && is_int_literal(b) {
                            let whole = num.pop().unwrap_or(Node::List(Vec::new()));
                            num.push(self.node(Node::Add(vec![whole, f]))?);
                            continue;
                        }
                    }
                }
                num.push(f);
            } else {
                break;
            }
            if num.len() + den.len() > self.limits.max_nodes {
                return Err(ParseError::TooComplex);
            }
        }
        let n = if num.len() == 1 { num.pop().unwrap_or(Node::List(Vec::new())) } else { self.node(Node::Mul(num))? };
        if den.is_empty() {
            return Ok(n);
        }
        let d = if den.len() == 1 { den.pop().unwrap_or(Node::List(Vec::new())) } else { self.node(Node::Mul(den))? };
        self.node(Node::Div(Box::new(n), Box::new(d)))
    }

    fn unary(&mut self) -> PResult<Node> {
        self.enter()?;
        let out = if self.eat(b'-') {
            let f = self.unary()?;
            self.node(Node::Neg(Box::new(f)))
        } else if self.eat(b'+') {
            self.unary()
        } else if self.eat_cmd("pm") || self.eat_cmd("mp") {
            let f = self.unary()?;
            self.node(Node::PlusMinus(None, Box::new(f)))
        } else {
            self.power()
        };
        self.leave();
        out
    }

    /// Atom with postfix operators and an optional exponent (right associative).
    fn power(&mut self) -> PResult<Node> {
        self.enter()?;
        let mut base = self.atom()?;
        let mut postfix = 0;
        loop {
            postfix += 1;
            if postfix + self.depth > self.limits.max_depth {
                return Err(ParseError::TooComplex);
            }
            self.skip_ws();
            match self.s.get(self.pos) {
                Some(b'!') if self.s.get(self.pos + 1) != Some(&b'=') => {
                    self.pos += 1;
                    base = self.node(Node::Factorial(Box::new(base)))?;
                }
                Some(b'%') => {
                    self.pos += 1;
                    base = self.node(Node::Percent(Box::new(base)))?;
                }
                Some(b'_') => {
                    self.pos += 1;
                    let sub = self.subscript_text()?;
                    base = match base {
                        Node::Var(name) => Node::Var(format!("{name}_{sub}")),
                        // `204_5`: a base subscript; the digits are compared as written.
                        other => other,
                    };
                }
                Some(b'^') => {
                    self.pos += 1;
                    if self.eat_cmd("circ") {
                        base = self.node(Node::Degree(Box::new(base)))?;
                        continue;
                    }
                    let e = self.exponent()?;
                    base = self.node(Node::Pow(Box::new(base), Box::new(e)))?;
                }
                _ => break,
            }
        }
        self.leave();
        Ok(base)
    }

    fn atom(&mut self) -> PResult<Node> {
        let Some(c) = self.peek() else {
            return Err(ParseError::Invalid);
        };
        match c {
            b'0'..=b'9' | b'.' => self.number(),
            b'(' | b'[' => self.bracketed(),
            b'{' => self.group(),
            b'|' => {
                self.pos += 1;
                self.in_abs += 1;
                let inner = self.expr();
                self.in_abs = self.in_abs.saturating_sub(1);
                let inner = inner?;
                self.expect(b'|')?;
                self.node(Node::Func(Func::Abs, Box::new(inner)))
            }
            b'\\' => self.command(),
            c if c.is_ascii_alphabetic() => self.word(),
            _ => Err(ParseError::Invalid),
        }
    }

    /// `( .. )`, `[ .. ]` and mixed interval brackets.
    fn bracketed(&mut self) -> PResult<Node> {
        self.enter()?;
        let open = self.s[self.pos];
        self.pos += 1;
        let saved_abs = std::mem::replace(&mut self.in_abs, 0);
        let items = self.comma_items();
        self.in_abs = saved_abs;
        let mut items = items?;
        let close = match self.peek() {
            Some(c @ (b')' | b']')) => c,
            _ => return Err(ParseError::Invalid),
        };
        self.pos += 1;
        self.leave();
        if items.len() == 1 && (open == b'(' && close == b')' || open == b'[' && close == b']') {
            return Ok(items.pop().unwrap_or(Node::List(Vec::new())));
        }
        self.node(Node::Tuple { open, close, items })
    }

    fn comma_items(&mut self) -> PResult<Vec<Node>> {
        let mut items = vec![self.union()?];
        // `(0;-2;6)`: semicolons separate the coordinates as commas do.
        while self.eat(b',') || self.eat(b';') {
            items.push(self.union()?);
        }
        Ok(items)
    }
}

/// `p=5,q=2;p=7,q=2`: solutions written as assignments, one solution per `;`-separated
/// group, all groups naming the same variables in the same order → the list of tuples
/// `(5,2), (7,2)`.
fn solution_systems(items: &[Node], semis: &[usize]) -> Option<Node> {
    if semis.is_empty() {
        return None;
    }
    let assignment = |n: &Node| match n {
        Node::Rel(sides, ops) if ops.as_slice() == [RelOp::Eq] => match sides.as_slice() {
            [Node::Var(name), value] => {
                let mut names = Vec::new();
                value.vars(&mut names);
                names.is_empty().then(|| (name.clone(), value.clone()))
            }
            _ => None,
        },
        _ => None,
    };
    let mut bounds = vec![0];
    bounds.extend_from_slice(semis);
    bounds.push(items.len());
    let mut names: Option<Vec<String>> = None;
    let mut solutions = Vec::new();
    for w in bounds.windows(2) {
        let group = items.get(w[0]..w[1])?;
        if group.len() < 2 {
            return None;
        }
        let (these, values): (Vec<String>, Vec<Node>) =
            group.iter().map(assignment).collect::<Option<Vec<_>>>()?.into_iter().unzip();
        match &names {
            Some(n) if *n != these => return None,
            Some(_) => {}
            None => names = Some(these),
        }
        solutions.push(Node::Tuple { open: b'(', close: b')', items: values });
    }
    Some(Node::List(solutions))
}

fn int_node(v: i64) -> Node {
    Node::Num { value: BigRational::from_integer(BigInt::from(v)), decimal: false }
}

fn is_int_literal(n: &Node) -> bool {
    matches!(n, Node::Num { value, decimal: false } if value.is_integer())
}

/// Whether `n` is the number zero literal (used by tests).
#[cfg(test)]
fn is_zero_literal(n: &Node) -> bool {
    use num_traits::Zero;
    matches!(n, Node::Num { value, .. } if value.is_zero())
}

#[cfg(test)]
mod tests;
