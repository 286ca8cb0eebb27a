//! The LaTeX-command and word half of the parser: `\\frac`, `\\sqrt`, `\\binom`,
//! functions (`\\sin^2 x`, `\\log_2 8`, `sqrt(2)`), sets and matrices.

use super::{int_node, PResult, ParseError, Parser, GREEK};
use num_rational::BigRational;
use num_traits::One;

use crate::expr::{Constant, Func, Node};

impl Parser<'_> {
    pub(super) fn word(&mut self) -> PResult<Node> {
        let start = self.pos;
        let mut j = start;
        while j < self.s.len() && self.s[j].is_ascii_alphabetic() {
            j += 1;
        }
        let w = &self.src[start..j];
        if w.len() > 1 {
            if let Some(n) = self.named(w, j)? {
                return Ok(n);
            }
            // `sinx`: a trig name followed by one variable letter.
            if w.len() >= 4 {
                let (name, rest) = w.split_at(w.len() - 1);
                if matches!(name, "sin" | "cos" | "tan" | "cot" | "sec" | "csc") && rest != "e" {
                    self.pos = start + name.len();
                    return self.function_rest(name);
                }
            }
        }
        self.pos = start + 1;
        self.letter(self.s[start])
    }

    /// Plain-text names: `pi`, `sqrt(..)`, `sin(..)`, `inf`.
    pub(super) fn named(&mut self, w: &str, end: usize) -> PResult<Option<Node>> {
        match w {
            "pi" => {
                self.pos = end;
                self.node(Node::Const(Constant::Pi)).map(Some)
            }
            "inf" | "infty" | "infinity" | "oo" => {
                self.pos = end;
                self.node(Node::Const(Constant::Infinity)).map(Some)
            }
            "sqrt" => {
                self.pos = end;
                let x = self.arg_or_paren()?;
                let two = int_node(2);
                self.node(Node::Root(Box::new(two), Box::new(x))).map(Some)
            }
            _ if Func::from_name(w).is_some() => {
                self.pos = end;
                self.function_rest(w).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub(super) fn arg_or_paren(&mut self) -> PResult<Node> {
        if self.peek() == Some(b'(') {
            self.bracketed()
        } else {
            self.arg()
        }
    }

    pub(super) fn command(&mut self) -> PResult<Node> {
        let name = self.peek_cmd().ok_or(ParseError::Invalid)?;
        self.pos += 1 + name.len();
        match name {
            "frac" => {
                let a = self.arg()?;
                let b = self.arg()?;
                self.node(Node::Div(Box::new(a), Box::new(b)))
            }
            "binom" => {
                let a = self.arg()?;
                let b = self.arg()?;
                self.node(Node::Binom(Box::new(a), Box::new(b)))
            }
            "sqrt" => {
                let index = if self.eat(b'[') {
                    let i = self.expr()?;
                    self.expect(b']')?;
                    i
                } else {
                    int_node(2)
                };
                let x = self.arg()?;
                self.node(Node::Root(Box::new(index), Box::new(x)))
            }
            "pi" => self.node(Node::Const(Constant::Pi)),
            "infty" | "infin" => self.node(Node::Const(Constant::Infinity)),
            "emptyset" | "varnothing" => self.node(Node::Set(Vec::new())),
            "{" => {
                self.enter()?;
                let mut items = Vec::new();
                if !self.eat_cmd("}") {
                    loop {
                        items.push(self.union()?);
                        if !(self.eat(b',') || self.eat(b';')) {
                            break;
                        }
                    }
                    if !self.eat_cmd("}") {
                        return Err(ParseError::Invalid);
                    }
                }
                self.leave();
                self.node(Node::Set(items))
            }
            "begin" => self.matrix(),
            "log" if self.peek() == Some(b'_') => {
                self.pos += 1;
                let base = self.arg()?;
                let x = self.function_arg()?;
                self.node(Node::Log(Box::new(base), Box::new(x)))
            }
            _ if GREEK.contains(&name) => self.node(Node::Var(name.to_string())),
            _ if Func::from_name(name).is_some() => self.function_rest(name),
            _ => Err(ParseError::Invalid),
        }
    }

    /// After a function name: optional `^2` / `^{-1}`, then the argument.
    pub(super) fn function_rest(&mut self, name: &str) -> PResult<Node> {
        let mut f = Func::from_name(name).ok_or(ParseError::Invalid)?;
        let mut power = None;
        if self.eat(b'^') {
            let e = self.exponent()?;
            if is_minus_one(&e) {
                f = f.inverse().ok_or(ParseError::Invalid)?;
            } else {
                power = Some(e);
            }
        }
        let x = self.function_arg()?;
        let applied = self.node(Node::Func(f, Box::new(x)))?;
        match power {
            Some(e) => self.node(Node::Pow(Box::new(applied), Box::new(e))),
            None => Ok(applied),
        }
    }

    /// `(x)`, `{x}`, or an implicit product that stops at the next function (`\sin 2x \cos x`).
    pub(super) fn function_arg(&mut self) -> PResult<Node> {
        self.enter()?;
        let out = match self.peek() {
            Some(b'(') | Some(b'{') => self.power(),
            _ => {
                let mut f = vec![self.power()?];
                while self.implicit_start() && !self.at_function() && self.peek() != Some(b'(') {
                    f.push(self.power()?);
                }
                if f.len() == 1 {
                    Ok(f.pop().unwrap_or(Node::List(Vec::new())))
                } else {
                    self.node(Node::Mul(f))
                }
            }
        };
        self.leave();
        out
    }

    pub(super) fn at_function(&mut self) -> bool {
        matches!(self.peek_cmd(), Some(n) if Func::from_name(n).is_some())
    }

    /// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (also bmatrix, matrix, array).
    pub(super) fn matrix(&mut self) -> PResult<Node> {
        self.enter()?;
        self.expect(b'{')?;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != b'}' {
            self.pos += 1;
        }
        let env = self.src.get(start..self.pos).unwrap_or("").trim().to_string();
        self.expect(b'}')?;
        if env == "array" && self.peek() == Some(b'{') {
            let close = crate::extract::matching_brace(self.s, self.pos).ok_or(ParseError::Invalid)?;
            self.pos = close + 1;
        }
        let mut rows: Vec<Vec<Node>> = Vec::new();
        let mut row = Vec::new();
        loop {
            if self.eat_cmd("end") {
                break;
            }
            row.push(self.expr()?);
            if self.eat(b'&') {
                continue;
            }
            if self.eat_str("\\\\") {
                rows.push(std::mem::take(&mut row));
                continue;
            }
            if self.eat_cmd("end") {
                break;
            }
            return Err(ParseError::Invalid);
        }
        if !row.is_empty() {
            rows.push(row);
        }
        self.expect(b'{')?;
        while self.pos < self.s.len() && self.s[self.pos] != b'}' {
            self.pos += 1;
        }
        self.expect(b'}')?;
        self.leave();
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 || rows.iter().any(|r| r.len() != width) {
            return Err(ParseError::Invalid);
        }
        self.node(Node::Matrix(rows))
    }
}

pub(super) fn is_atom_cmd(name: &str) -> bool {
    matches!(name, "frac" | "sqrt" | "binom" | "pi" | "infty" | "begin" | "log" | "emptyset" | "varnothing")
        || GREEK.contains(&name)
        || Func::from_name(name).is_some()
}

fn is_minus_one(n: &Node) -> bool {
    match n {
        Node::Neg(a) => matches!(&**a, Node::Num { value, .. } if value.is_one()),
        Node::Num { value, .. } => *value == -BigRational::one(),
        _ => false,
    }
}
