//! Evaluating a scalar expression tree to a [`Val`].
//!
//! Variables take values from an assignment (the sample points of
//! [`crate::equiv`]). Percent and degree signs are read as the caller asks, so the
//! comparison can try the readings its policy allows.

use std::f64::consts::{E, PI};

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};

use crate::complex::C64;
use crate::expr::{Constant, Func, Node};
use crate::value::{exact_log, is_odd, Arith, EResult, EvalError, Exact, Val};

/// How to read markers and where variables get their values.
pub(crate) struct EvalCtx<'a> {
    pub(crate) arith: Arith,
    /// `x%` is `x/100` (else `x`).
    pub(crate) percent_as_fraction: bool,
    /// `x°` is `x·π/180` (else `x`).
    pub(crate) degrees_as_radians: bool,
    /// Variable values, by name.
    pub(crate) vars: &'a [(String, Val)],
}

impl EvalCtx<'_> {
    pub(crate) fn eval(&self, n: &Node) -> EResult<Val> {
        let a = &self.arith;
        match n {
            Node::Num { value, .. } => Ok(Val::Exact(Exact::real(value.clone()))),
            Node::Const(c) => Ok(match c {
                Constant::Pi => Val::Approx(C64::real(PI)),
                Constant::E => Val::Approx(C64::real(E)),
                Constant::I => {
                    Val::Exact(Exact { re: BigRational::zero(), im: BigRational::from_integer(BigInt::from(1)) })
                }
                Constant::Infinity => Val::Inf(1),
            }),
            Node::Var(name) => {
                self.vars.iter().find(|(v, _)| v == name).map(|(_, val)| val.clone()).ok_or(EvalError::Undefined)
            }
            Node::Add(items) => {
                let mut acc = Val::Exact(Exact::int(0));
                for it in items {
                    let v = self.eval(it)?;
                    acc = a.add(&acc, &v)?;
                }
                Ok(acc)
            }
            Node::Neg(x) => a.neg(&self.eval(x)?),
            Node::Mul(items) => {
                let mut acc = Val::Exact(Exact::int(1));
                for it in items {
                    let v = self.eval(it)?;
                    if matches!(v, Val::Inf(_)) {
                        return Err(EvalError::Undefined);
                    }
                    acc = a.mul(&acc, &v)?;
                }
                Ok(acc)
            }
            Node::Div(x, y) => a.div(&self.eval(x)?, &self.eval(y)?),
            Node::Pow(x, y) => {
                let base = self.eval(x)?;
                let e = self.eval(y)?;
                a.pow(&base, &e)
            }
            Node::Factorial(x) => a.factorial(&self.eval(x)?),
            Node::Root(index, x) => self.root(&self.eval(index)?, &self.eval(x)?),
            Node::Func(f, x) => self.func(*f, &self.eval(x)?),
            Node::Log(base, x) => {
                let b = self.eval(base)?;
                let v = self.eval(x)?;
                if let (Val::Exact(be), Val::Exact(ve)) = (&b, &v) {
                    if be.is_real() && ve.is_real() {
                        if let Some(k) = exact_log(&be.re, &ve.re) {
                            return Ok(Val::Exact(Exact::int(k)));
                        }
                    }
                }
                let lb = b.to_c64()?.ln();
                let lv = v.to_c64()?.ln();
                if lb.abs() == 0.0 {
                    return Err(EvalError::Undefined);
                }
                finite(lv.div(lb))
            }
            Node::Binom(x, k) => a.binom(&self.eval(x)?, &self.eval(k)?),
            Node::Percent(x) => {
                let v = self.eval(x)?;
                if self.percent_as_fraction {
                    a.div(&v, &Val::Exact(Exact::int(100)))
                } else {
                    Ok(v)
                }
            }
            Node::Degree(x) => {
                let v = self.eval(x)?;
                if self.degrees_as_radians {
                    let r = a.div(&v, &Val::Exact(Exact::int(180)))?;
                    a.mul(&r, &Val::Approx(C64::real(PI)))
                } else {
                    Ok(v)
                }
            }
            Node::PlusMinus(..)
            | Node::Rel(..)
            | Node::In(..)
            | Node::Tuple { .. }
            | Node::Set(_)
            | Node::List(_)
            | Node::Union(_)
            | Node::Matrix(_) => Err(EvalError::Undefined),
        }
    }

    fn root(&self, index: &Val, x: &Val) -> EResult<Val> {
        let a = &self.arith;
        if let (Val::Exact(ix), Val::Exact(xv)) = (index, x) {
            if let Some(n) = ix.as_integer().and_then(|n| n.to_u32()).filter(|n| *n >= 2) {
                if xv.is_real() {
                    let neg = xv.re.is_negative();
                    let mag = xv.re.abs();
                    let odd = is_odd(&BigInt::from(n));
                    if let Some(r) = a.exact_root(&mag, n) {
                        let r = Val::Exact(r);
                        return match (neg, odd, n) {
                            (false, _, _) => Ok(r),
                            (true, true, _) => a.neg(&r),
                            // √(-4) = 2i.
                            (true, false, 2) => a.mul(
                                &r,
                                &Val::Exact(Exact {
                                    re: BigRational::zero(),
                                    im: BigRational::from_integer(BigInt::from(1)),
                                }),
                            ),
                            (true, false, _) => {
                                let unit = C64::real(-1.0).pow(C64::real(1.0 / n as f64));
                                a.mul(&r, &Val::Approx(unit))
                            }
                        };
                    }
                    let m = crate::value::rat_to_f64(&mag)?;
                    let r = m.powf(1.0 / n as f64);
                    return match (neg, odd) {
                        (false, _) => finite(C64::real(r)),
                        (true, true) => finite(C64::real(-r)),
                        (true, false) => {
                            let unit = C64::real(-1.0).pow(C64::real(1.0 / n as f64));
                            finite(unit.mul(C64::real(r)))
                        }
                    };
                }
            }
        }
        let inv = a.inv(index)?;
        a.pow(x, &inv)
    }

    fn func(&self, f: Func, x: &Val) -> EResult<Val> {
        if let Val::Exact(e) = x {
            if e.is_zero() {
                match f {
                    Func::Sin | Func::Tan | Func::Asin | Func::Atan | Func::Sinh | Func::Tanh | Func::Abs => {
                        return Ok(Val::Exact(Exact::int(0)))
                    }
                    Func::Cos | Func::Cosh | Func::Exp | Func::Sec => return Ok(Val::Exact(Exact::int(1))),
                    Func::Cot | Func::Csc | Func::Ln => return Err(EvalError::Undefined),
                    Func::Acos => {}
                }
            }
            if f == Func::Abs && e.is_real() {
                return Ok(Val::Exact(Exact::real(e.re.abs())));
            }
            if f == Func::Ln && e.is_real() && e.re == BigRational::from_integer(BigInt::from(1)) {
                return Ok(Val::Exact(Exact::int(0)));
            }
        }
        let z = x.to_c64()?;
        let one = C64::real(1.0);
        let r = match f {
            Func::Sin => z.sin(),
            Func::Cos => z.cos(),
            Func::Tan => z.sin().div(z.cos()),
            Func::Cot => z.cos().div(z.sin()),
            Func::Sec => one.div(z.cos()),
            Func::Csc => one.div(z.sin()),
            Func::Asin => z.asin(),
            Func::Acos => z.acos(),
            Func::Atan => z.atan(),
            Func::Sinh => z.sinh(),
            Func::Cosh => z.cosh(),
            Func::Tanh => z.sinh().div(z.cosh()),
            Func::Ln => {
                if z.abs() == 0.0 {
                    return Err(EvalError::Undefined);
                }
                z.ln()
            }
            Func::Exp => z.exp(),
            Func::Abs => C64::real(z.abs()),
        };
        finite(r)
    }
}

fn finite(c: C64) -> EResult<Val> {
    if !c.is_finite() {
        return Err(EvalError::TooComplex);
    }
    Ok(Val::Approx(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::parse::parse;

    fn ev(s: &str) -> EResult<Val> {
        let n = parse(s, &Limits::default()).expect("parses");
        EvalCtx { arith: Arith { max_bits: 40_000 }, percent_as_fraction: false, degrees_as_radians: false, vars: &[] }
            .eval(&n)
    }

    fn exact(n: i64, d: i64) -> Val {
        Val::Exact(Exact::real(BigRational::new(BigInt::from(n), BigInt::from(d))))
    }

    #[test]
    fn evaluates_exactly() {
        assert_eq!(ev("\\frac{1}{2}+0.5").expect("ok"), exact(1, 1));
        assert_eq!(ev("2\\frac{1}{3}").expect("ok"), exact(7, 3));
        assert_eq!(ev("\\sqrt{16}").expect("ok"), exact(4, 1));
        assert_eq!(ev("\\sqrt[3]{-8}").expect("ok"), exact(-2, 1));
        assert_eq!(ev("5!").expect("ok"), exact(120, 1));
        assert_eq!(ev("\\binom{6}{3}").expect("ok"), exact(20, 1));
        assert_eq!(ev("\\log_2 8").expect("ok"), exact(3, 1));
        assert_eq!(ev("1.5e3").expect("ok"), exact(1500, 1));
        assert_eq!(ev("(1+2i)(1-2i)").expect("ok"), exact(5, 1));
        assert_eq!(ev("i^2").expect("ok"), exact(-1, 1));
        assert_eq!(ev("|-3|").expect("ok"), exact(3, 1));
    }

    #[test]
    fn evaluates_approximately() {
        let v = ev("\\sin(\\pi/6)").expect("ok").to_c64().expect("finite");
        assert!((v.re - 0.5).abs() < 1e-12);
        let v = ev("e^{\\ln 2}").expect("ok").to_c64().expect("finite");
        assert!((v.re - 2.0).abs() < 1e-12);
    }

    #[test]
    fn pathological_values_are_too_complex() {
        assert_eq!(ev("10^{10^{10^{10}}}"), Err(EvalError::TooComplex));
        assert_eq!(ev("1000!!!"), Err(EvalError::TooComplex));
        assert!(ev("\\frac{1}{2004!}").is_ok());
    }
}
