//! Numeric values: exact Gaussian rationals when possible, complex floats otherwise.
//!
//! Exact arithmetic is bounded by [`crate::Limits::max_bits`]; an exact result that would
//! exceed it falls back to floats, and a float that overflows or underflows is an error
//! ([`EvalError::TooComplex`]) rather than a silent `inf` or `0` — so `1/2004!` and
//! `1/2006!` never compare equal through underflow.

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use crate::complex::C64;

/// Why a value could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// A budget was exceeded or a float left the normal range.
    TooComplex,
    /// Undefined here (division by zero, a set where a number is needed, ...).
    Undefined,
}

pub(crate) type EResult<T> = Result<T, EvalError>;

/// An exact Gaussian rational `re + im·i`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exact {
    pub(crate) re: BigRational,
    pub(crate) im: BigRational,
}

/// A value of a scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Exact(Exact),
    Approx(C64),
    /// `+∞` (`1`) or `-∞` (`-1`), only as a whole value (interval endpoints).
    Inf(i8),
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits() + r.denom().bits()
}

/// A float from a rational, refusing overflow and underflow.
pub(crate) fn rat_to_f64(r: &BigRational) -> EResult<f64> {
    if r.is_zero() {
        return Ok(0.0);
    }
    let f = r.to_f64().ok_or(EvalError::TooComplex)?;
    if f == 0.0 {
        // Underflow of a non-zero value.
        return Err(EvalError::TooComplex);
    }
    check_float(f)
}

fn check_float(f: f64) -> EResult<f64> {
    if !f.is_finite() || (f != 0.0 && f.abs() < f64::MIN_POSITIVE) {
        return Err(EvalError::TooComplex);
    }
    Ok(f)
}

impl Exact {
    pub(crate) fn real(re: BigRational) -> Exact {
        Exact { re, im: BigRational::zero() }
    }

    pub(crate) fn int(v: i64) -> Exact {
        Exact::real(BigRational::from_integer(BigInt::from(v)))
    }

    pub(crate) fn is_real(&self) -> bool {
        self.im.is_zero()
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.re.is_zero() && self.im.is_zero()
    }

    fn bits(&self) -> u64 {
        bits(&self.re) + if self.im.is_zero() { 0 } else { bits(&self.im) }
    }

    pub(crate) fn to_c64(&self) -> EResult<C64> {
        let re = rat_to_f64(&self.re)?;
        let im = rat_to_f64(&self.im)?;
        Ok(C64::new(re, im))
    }

    /// The exact integer value, if real and integral.
    pub(crate) fn as_integer(&self) -> Option<&BigInt> {
        (self.is_real() && self.re.is_integer()).then(|| self.re.numer())
    }
}

impl Val {
    pub(crate) fn to_c64(&self) -> EResult<C64> {
        match self {
            Val::Exact(e) => e.to_c64(),
            Val::Approx(c) => Ok(*c),
            Val::Inf(_) => Err(EvalError::Undefined),
        }
    }

    pub(crate) fn is_exact_zero(&self) -> bool {
        matches!(self, Val::Exact(e) if e.is_zero())
    }
}

/// Arithmetic under a bit budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arith {
    pub(crate) max_bits: u64,
}

fn approx(c: C64) -> EResult<Val> {
    if !c.is_finite() {
        return Err(EvalError::TooComplex);
    }
    Ok(Val::Approx(c))
}

impl Arith {
    fn exact(&self, e: Exact) -> EResult<Val> {
        if e.bits() > self.max_bits {
            // Too big to keep exactly: continue in floats if the value fits.
            return approx(e.to_c64()?);
        }
        Ok(Val::Exact(e))
    }

    fn floats(a: &Val, b: &Val) -> EResult<(C64, C64)> {
        Ok((a.to_c64()?, b.to_c64()?))
    }

    pub(crate) fn add(&self, a: &Val, b: &Val) -> EResult<Val> {
        if let (Val::Exact(x), Val::Exact(y)) = (a, b) {
            return self.exact(Exact { re: &x.re + &y.re, im: &x.im + &y.im });
        }
        let (x, y) = Self::floats(a, b)?;
        approx(x.add(y))
    }

    pub(crate) fn neg(&self, a: &Val) -> EResult<Val> {
        Ok(match a {
            Val::Exact(x) => Val::Exact(Exact { re: -&x.re, im: -&x.im }),
            Val::Approx(c) => Val::Approx(c.neg()),
            Val::Inf(s) => Val::Inf(-s),
        })
    }

    pub(crate) fn mul(&self, a: &Val, b: &Val) -> EResult<Val> {
        if let (Val::Exact(x), Val::Exact(y)) = (a, b) {
            if x.bits() + y.bits() > self.max_bits {
                return self.float_mul(a, b);
            }
            if x.is_real() && y.is_real() {
                return self.exact(Exact::real(&x.re * &y.re));
            }
            return self.exact(Exact { re: &x.re * &y.re - &x.im * &y.im, im: &x.re * &y.im + &x.im * &y.re });
        }
        self.float_mul(a, b)
    }

    fn float_mul(&self, a: &Val, b: &Val) -> EResult<Val> {
        let (x, y) = Self::floats(a, b)?;
        let r = x.mul(y);
        underflow_guard(r, x.abs() != 0.0 && y.abs() != 0.0)
    }

    pub(crate) fn inv(&self, a: &Val) -> EResult<Val> {
        match a {
            Val::Exact(x) => {
                if x.is_zero() {
                    return Err(EvalError::Undefined);
                }
                if x.is_real() {
                    return self.exact(Exact::real(x.re.recip()));
                }
                let d = &x.re * &x.re + &x.im * &x.im;
                self.exact(Exact { re: &x.re / &d, im: -&x.im / &d })
            }
            Val::Approx(c) => {
                if c.abs() == 0.0 {
                    return Err(EvalError::Undefined);
                }
                underflow_guard(C64::real(1.0).div(*c), true)
            }
            Val::Inf(_) => Err(EvalError::Undefined),
        }
    }

    pub(crate) fn div(&self, a: &Val, b: &Val) -> EResult<Val> {
        let inv = self.inv(b)?;
        self.mul(a, &inv)
    }

    /// `a^b`, exact when `b` is an integer within budget or an exact root exists.
    pub(crate) fn pow(&self, a: &Val, b: &Val) -> EResult<Val> {
        if let (Val::Exact(x), Val::Exact(y)) = (a, b) {
            if y.is_real() && y.re.is_integer() {
                let n = y.re.numer();
                if let Some(v) = self.int_pow(x, n)? {
                    return Ok(v);
                }
            } else if y.is_real() && x.is_real() {
                // Rational exponent p/q: exact when base is a perfect q-th power.
                if let Some(q) = y.re.denom().to_u32().filter(|q| *q <= 64) {
                    if let Some(root) = self.exact_root(&x.re, q) {
                        let p = y.re.numer();
                        if let Some(v) = self.int_pow(&root, p)? {
                            return Ok(v);
                        }
                    }
                }
            }
        }
        let (x, y) = Self::floats(a, b)?;
        if x.abs() == 0.0 {
            // 0^0 = 1, as on the exact path above (and sympy's `0**0`): `(\pi - \pi)^0` is 1.
            return if y.re == 0.0 && y.im == 0.0 {
                Ok(Val::Exact(Exact::int(1)))
            } else if y.re > 0.0 {
                Ok(Val::Exact(Exact::int(0)))
            } else {
                Err(EvalError::Undefined)
            };
        }
        underflow_guard(x.pow(y), true)
    }

    fn int_pow(&self, x: &Exact, n: &BigInt) -> EResult<Option<Val>> {
        if x.is_zero() {
            return match n.sign() {
                num_bigint::Sign::Minus => Err(EvalError::Undefined),
                num_bigint::Sign::NoSign => Ok(Some(Val::Exact(Exact::int(1)))),
                num_bigint::Sign::Plus => Ok(Some(Val::Exact(Exact::int(0)))),
            };
        }
        // ±1 and ±i stay small for any exponent.
        let unit = x.bits() <= 3 && (x.re.abs().is_one() || x.im.abs().is_one());
        let e = match n.abs().to_u64() {
            Some(e) if unit || x.bits().saturating_mul(e) <= self.max_bits => e,
            _ => return Ok(None),
        };
        let base = if n.is_negative() {
            match self.inv(&Val::Exact(x.clone()))? {
                Val::Exact(b) => b,
                _ => return Ok(None),
            }
        } else {
            x.clone()
        };
        let mut result = Val::Exact(Exact::int(1));
        let mut b = Val::Exact(base);
        let mut e = e;
        while e > 0 {
            if e & 1 == 1 {
                result = self.mul(&result, &b)?;
            }
            e >>= 1;
            if e > 0 {
                b = self.mul(&b, &b)?;
            }
        }
        Ok(Some(result))
    }

    /// The exact `q`-th root of a rational (real; negative only for odd `q`).
    pub(crate) fn exact_root(&self, r: &BigRational, q: u32) -> Option<Exact> {
        if q == 0 || bits(r) > self.max_bits {
            return None;
        }
        let neg = r.is_negative();
        if neg && q & 1 == 0 {
            return None;
        }
        let num = r.numer().abs();
        let den = r.denom().clone();
        let rn = num.nth_root(q);
        let rd = den.nth_root(q);
        if num_traits::pow(rn.clone(), q as usize) != num || num_traits::pow(rd.clone(), q as usize) != den {
            return None;
        }
        let root = BigRational::new(if neg { -rn } else { rn }, rd);
        Some(Exact::real(root))
    }

    /// `n!` for an exact non-negative integer within the bit budget.
    pub(crate) fn factorial(&self, a: &Val) -> EResult<Val> {
        let n = match a {
            Val::Exact(x) => x.as_integer().ok_or(EvalError::Undefined)?,
            _ => return Err(EvalError::Undefined),
        };
        if n.is_negative() {
            return Err(EvalError::Undefined);
        }
        let n = n.to_u64().ok_or(EvalError::TooComplex)?;
        // log2(n!) ≈ n·log2(n) − 1.44·n; refuse before computing.
        let est = if n < 2 {
            0.0
        } else {
            let nf = n as f64;
            nf * nf.log2() - std::f64::consts::LOG2_E * nf
        };
        if est > self.max_bits as f64 {
            return Err(EvalError::TooComplex);
        }
        let mut acc = BigInt::one();
        for k in 2..=n {
            acc *= k;
        }
        Ok(Val::Exact(Exact::real(BigRational::from_integer(acc))))
    }

    /// `\binom{n}{k}` for an exact non-negative integer `k` (any `n`).
    pub(crate) fn binom(&self, n: &Val, k: &Val) -> EResult<Val> {
        let k = match k {
            Val::Exact(x) => x.as_integer().and_then(|k| k.to_u64()),
            _ => None,
        }
        .ok_or(EvalError::Undefined)?;
        if k > 5000 {
            return Err(EvalError::TooComplex);
        }
        if let Val::Exact(nx) = n {
            if let Some(ni) = nx.as_integer() {
                if ni.is_positive() && BigInt::from(k) > *ni {
                    return Ok(Val::Exact(Exact::int(0)));
                }
                // Use the smaller of k, n-k.
                if let Some(nu) = ni.to_u64() {
                    if nu >= k && nu - k < k {
                        return self.binom(n, &Val::Exact(Exact::int((nu - k) as i64)));
                    }
                }
            }
        }
        let mut acc = Val::Exact(Exact::int(1));
        for i in 0..k {
            let top = self.add(n, &Val::Exact(Exact::int(-(i as i64))))?;
            acc = self.mul(&acc, &top)?;
            acc = self.div(&acc, &Val::Exact(Exact::int(i as i64 + 1)))?;
        }
        Ok(acc)
    }
}

/// A float result that underflowed from non-zero inputs is too complex, not zero.
fn underflow_guard(c: C64, inputs_nonzero: bool) -> EResult<Val> {
    if !c.is_finite() {
        return Err(EvalError::TooComplex);
    }
    let m = c.abs();
    if inputs_nonzero && m < f64::MIN_POSITIVE {
        return Err(EvalError::TooComplex);
    }
    Ok(Val::Approx(c))
}

/// The integer `k` with `base^k == x`, for exact positive rationals (|k| ≤ 4096).
pub(crate) fn exact_log(base: &BigRational, x: &BigRational) -> Option<i64> {
    if !base.is_positive() || !x.is_positive() || base.is_one() {
        return None;
    }
    if x.is_one() {
        return Some(0);
    }
    let (big, sign) =
        if (x > &BigRational::one()) == (base > &BigRational::one()) { (x.clone(), 1) } else { (x.recip(), -1) };
    let mut acc = base.clone();
    for k in 1..=4096i64 {
        if acc == big {
            return Some(sign * k);
        }
        if acc.numer().bits() > big.numer().bits() + 1 && acc.denom().bits() > big.denom().bits() + 1 {
            return None;
        }
        acc = &acc * base;
        if acc.numer().bits() > 4 * big.numer().bits() + 8 || acc.denom().bits() > 4 * big.denom().bits() + 8 {
            return None;
        }
    }
    None
}

/// Whether `n` is even (used for real odd roots of negatives).
pub(crate) fn is_odd(n: &BigInt) -> bool {
    n.is_odd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: i64, d: i64) -> Val {
        Val::Exact(Exact::real(BigRational::new(BigInt::from(n), BigInt::from(d))))
    }
    const A: Arith = Arith { max_bits: 40_000 };

    #[test]
    fn exact_arithmetic_stays_exact() {
        let v = A.add(&ex(1, 2), &ex(1, 3)).expect("adds");
        assert_eq!(v, ex(5, 6));
        let v = A.pow(&ex(2, 3), &ex(-2, 1)).expect("pows");
        assert_eq!(v, ex(9, 4));
        let v = A.pow(&ex(8, 27), &ex(2, 3)).expect("root");
        assert_eq!(v, ex(4, 9));
    }

    #[test]
    fn huge_powers_and_factorials_are_refused() {
        let big = ex(10, 1);
        assert_eq!(
            A.pow(&big, &Val::Exact(Exact::real(BigRational::from_integer(BigInt::from(10).pow(10u32))))),
            Err(EvalError::TooComplex)
        );
        assert_eq!(A.factorial(&ex(100_000, 1)), Err(EvalError::TooComplex));
        assert!(A.factorial(&ex(2006, 1)).is_ok());
    }

    #[test]
    fn zero_to_the_zero_is_one_exact_or_approximate() {
        let zero = Val::Approx(C64::real(0.0));
        assert_eq!(A.pow(&ex(0, 1), &ex(0, 1)), Ok(ex(1, 1)));
        assert_eq!(A.pow(&zero, &ex(0, 1)), Ok(ex(1, 1)));
        assert_eq!(A.pow(&zero, &ex(2, 1)), Ok(ex(0, 1)));
        assert_eq!(A.pow(&zero, &ex(-1, 1)), Err(EvalError::Undefined));
        assert_eq!(C64::real(0.0).pow(C64::real(0.0)), C64::real(1.0));
    }

    #[test]
    fn division_by_zero_is_undefined() {
        assert_eq!(A.div(&ex(1, 1), &ex(0, 1)), Err(EvalError::Undefined));
    }

    #[test]
    fn float_underflow_is_an_error_not_zero() {
        let tiny = Val::Approx(C64::real(1e-200));
        assert_eq!(A.mul(&tiny, &tiny), Err(EvalError::TooComplex));
    }

    #[test]
    fn exact_logs() {
        let r = |n: i64, d: i64| BigRational::new(BigInt::from(n), BigInt::from(d));
        assert_eq!(exact_log(&r(2, 1), &r(8, 1)), Some(3));
        assert_eq!(exact_log(&r(2, 1), &r(1, 8)), Some(-3));
        assert_eq!(exact_log(&r(2, 1), &r(6, 1)), None);
    }

    #[test]
    fn binomials() {
        assert_eq!(A.binom(&ex(5, 1), &ex(2, 1)).expect("binom"), ex(10, 1));
        assert_eq!(A.binom(&ex(1000, 1), &ex(998, 1)).expect("binom"), ex(499_500, 1));
        assert_eq!(A.binom(&ex(3, 1), &ex(5, 1)).expect("binom"), ex(0, 1));
    }
}
