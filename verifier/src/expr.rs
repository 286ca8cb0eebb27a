//! The expression tree that answers are parsed into.

use num_rational::BigRational;

/// Elementary functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Ln,
    Exp,
    Abs,
}

impl Func {
    /// The function named `name` (LaTeX command or plain word).
    pub(crate) fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "tan" | "tg" => Func::Tan,
            "cot" | "ctg" => Func::Cot,
            "sec" => Func::Sec,
            "csc" | "cosec" => Func::Csc,
            "arcsin" | "asin" => Func::Asin,
            "arccos" | "acos" => Func::Acos,
            "arctan" | "atan" => Func::Atan,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "ln" | "log" | "lg" => Func::Ln,
            "exp" => Func::Exp,
            "abs" => Func::Abs,
            _ => return None,
        })
    }

    /// The inverse function, for `\sin^{-1}`.
    pub(crate) fn inverse(self) -> Option<Func> {
        Some(match self {
            Func::Sin => Func::Asin,
            Func::Cos => Func::Acos,
            Func::Tan => Func::Atan,
            _ => return None,
        })
    }
}

/// Comparison operators of relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl RelOp {
    /// The operator seen from the other side (`a < b` ⇔ `b > a`).
    pub(crate) fn flip(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Le => RelOp::Ge,
            RelOp::Gt => RelOp::Lt,
            RelOp::Ge => RelOp::Le,
            o => o,
        }
    }
}

/// Named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Constant {
    Pi,
    E,
    I,
    Infinity,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// An exact number literal; `decimal` when written with a decimal point or exponent.
    Num {
        value: BigRational,
        decimal: bool,
    },
    Const(Constant),
    Var(String),
    Add(Vec<Node>),
    Neg(Box<Node>),
    Mul(Vec<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Factorial(Box<Node>),
    /// `\sqrt[index]{radicand}`.
    Root(Box<Node>, Box<Node>),
    Func(Func, Box<Node>),
    /// `\log_{base}(arg)`.
    Log(Box<Node>, Box<Node>),
    Binom(Box<Node>, Box<Node>),
    Percent(Box<Node>),
    Degree(Box<Node>),
    /// `a ± b` (`a` absent for a unary `±b`).
    PlusMinus(Option<Box<Node>>, Box<Node>),
    /// A chain `a op b op c ...`.
    Rel(Vec<Node>, Vec<RelOp>),
    /// `x \in S`.
    In(Box<Node>, Box<Node>),
    /// Bracketed comma list: tuple, interval or vector. `open`/`close` are `(`, `[`, `)`, `]`.
    Tuple {
        open: u8,
        close: u8,
        items: Vec<Node>,
    },
    /// `\{a, b\}`.
    Set(Vec<Node>),
    /// A bare top-level comma list `3, 5`.
    List(Vec<Node>),
    Union(Vec<Node>),
    Matrix(Vec<Vec<Node>>),
}

impl Node {
    /// Whether any number literal was written as a decimal (then float tolerance applies).
    pub(crate) fn has_decimal(&self) -> bool {
        let mut found = false;
        self.visit(&mut |n| {
            if let Node::Num { decimal: true, .. } = n {
                found = true;
            }
        });
        found
    }

    /// Whether the tree holds a percent or degree sign.
    pub(crate) fn has_percent(&self) -> bool {
        let mut found = false;
        self.visit(&mut |n| found |= matches!(n, Node::Percent(_)));
        found
    }

    /// Whether the tree holds a degree sign.
    pub(crate) fn has_degree(&self) -> bool {
        let mut found = false;
        self.visit(&mut |n| found |= matches!(n, Node::Degree(_)));
        found
    }

    /// Sorted, deduplicated variable names.
    pub(crate) fn vars(&self, out: &mut Vec<String>) {
        self.visit(&mut |n| {
            if let Node::Var(v) = n {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
        });
    }

    /// Pre-order visit. The parser bounds the depth, so recursion is bounded.
    pub(crate) fn visit(&self, f: &mut dyn FnMut(&Node)) {
        f(self);
        match self {
            Node::Num { .. } | Node::Const(_) | Node::Var(_) => {}
            Node::Neg(a) | Node::Factorial(a) | Node::Func(_, a) | Node::Percent(a) | Node::Degree(a) => a.visit(f),
            Node::Div(a, b)
            | Node::Pow(a, b)
            | Node::Root(a, b)
            | Node::Log(a, b)
            | Node::Binom(a, b)
            | Node::In(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Node::PlusMinus(a, b) => {
                if let Some(a) = a {
                    a.visit(f);
                }
                b.visit(f);
            }
            Node::Add(v)
            | Node::Mul(v)
            | Node::Set(v)
            | Node::List(v)
            | Node::Union(v)
            | Node::Rel(v, _)
            | Node::Tuple { items: v, .. } => v.iter().for_each(|n| n.visit(f)),
            Node::Matrix(rows) => rows.iter().flatten().for_each(|n| n.visit(f)),
        }
    }

    /// Whether this is a structured value (not a scalar expression).
    pub(crate) fn is_structured(&self) -> bool {
        matches!(
            self,
            Node::Rel(..)
                | Node::In(..)
                | Node::Tuple { .. }
                | Node::Set(_)
                | Node::List(_)
                | Node::Union(_)
                | Node::Matrix(_)
        )
    }
}
