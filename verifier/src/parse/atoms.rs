//! Literals and macro arguments: numbers (decimals, scientific notation, digit
//! budget), `{..}` groups, one-character arguments (`\\frac12`), exponents and subscripts.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Pow;

use super::{PResult, ParseError, Parser};
use crate::expr::{Constant, Node};

impl Parser<'_> {
    pub(super) fn subscript_text(&mut self) -> PResult<String> {
        self.skip_ws();
        let start = self.pos;
        let end = match self.s.get(self.pos) {
            Some(b'{') => {
                let close = crate::extract::matching_brace(self.s, self.pos).ok_or(ParseError::Invalid)?;
                self.pos = close + 1;
                return Ok(self.src[start + 1..close].trim().to_string());
            }
            Some(c) if c.is_ascii_digit() => {
                let mut j = self.pos;
                while j < self.s.len() && self.s[j].is_ascii_digit() {
                    j += 1;
                }
                j
            }
            Some(c) if c.is_ascii_alphabetic() => self.pos + 1,
            _ => return Err(ParseError::Invalid),
        };
        self.pos = end;
        Ok(self.src[start..end].to_string())
    }

    pub(super) fn exponent(&mut self) -> PResult<Node> {
        self.enter()?;
        let out = match self.peek() {
            Some(b'{') => self.group(),
            Some(b'-') => {
                self.pos += 1;
                let e = self.exponent()?;
                self.node(Node::Neg(Box::new(e)))
            }
            Some(b'+') => {
                self.pos += 1;
                self.exponent()
            }
            Some(c) if c.is_ascii_alphabetic() => {
                self.pos += 1;
                self.letter(c)
            }
            _ => self.atom(),
        };
        self.leave();
        out
    }

    /// `{ ... }` group.
    pub(super) fn group(&mut self) -> PResult<Node> {
        self.expect(b'{')?;
        let n = self.top()?;
        self.expect(b'}')?;
        Ok(n)
    }

    /// A macro argument: `{..}`, one digit, one letter, or one command atom (`\frac12`, `\sqrt\pi`).
    pub(super) fn arg(&mut self) -> PResult<Node> {
        match self.peek() {
            Some(b'{') => self.group(),
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                self.node(Node::Num { value: BigRational::from_integer(BigInt::from(c - b'0')), decimal: false })
            }
            Some(c) if c.is_ascii_alphabetic() => {
                self.pos += 1;
                self.letter(c)
            }
            Some(b'\\') => self.atom(),
            _ => Err(ParseError::Invalid),
        }
    }

    pub(super) fn letter(&mut self, c: u8) -> PResult<Node> {
        let n = match c {
            b'e' => Node::Const(Constant::E),
            b'i' => Node::Const(Constant::I),
            _ => Node::Var((c as char).to_string()),
        };
        self.node(n)
    }

    pub(super) fn number(&mut self) -> PResult<Node> {
        let s = self.s;
        let start = self.pos;
        let mut j = start;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        let int_end = j;
        let mut frac_end = j;
        if j < s.len() && s[j] == b'.' && s.get(j + 1).is_some_and(u8::is_ascii_digit) {
            frac_end = j + 1;
            while frac_end < s.len() && s[frac_end].is_ascii_digit() {
                frac_end += 1;
            }
        }
        let mut exp: i64 = 0;
        let mut end = frac_end;
        let mut sci = false;
        if end < s.len() && (s[end] == b'e' || s[end] == b'E') {
            let mut k = end + 1;
            let neg = s.get(k) == Some(&b'-');
            if matches!(s.get(k), Some(b'-' | b'+')) {
                k += 1;
            }
            let ds = k;
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            if k > ds && k - ds <= 6 {
                let v: i64 = self.src[ds..k].parse().map_err(|_| ParseError::Invalid)?;
                exp = if neg { -v } else { v };
                end = k;
                sci = true;
            }
        }
        if int_end == start && frac_end == int_end {
            return Err(ParseError::Invalid);
        }
        let digits = (int_end - start) + frac_end.saturating_sub(int_end + 1);
        if digits as u64 + exp.unsigned_abs() > self.limits.max_digits as u64 {
            return Err(ParseError::TooComplex);
        }
        let mut mantissa = String::with_capacity(digits);
        mantissa.push_str(&self.src[start..int_end]);
        if frac_end > int_end {
            mantissa.push_str(&self.src[int_end + 1..frac_end]);
        }
        let frac_digits = frac_end.saturating_sub(int_end + 1) as i64;
        let m = BigInt::parse_bytes(mantissa.as_bytes(), 10).ok_or(ParseError::Invalid)?;
        let scale = exp - frac_digits;
        let ten = BigInt::from(10);
        let value = if scale >= 0 {
            BigRational::from_integer(m * Pow::pow(&ten, scale.unsigned_abs()))
        } else {
            BigRational::new(m, Pow::pow(&ten, scale.unsigned_abs()))
        };
        self.pos = end;
        self.node(Node::Num { value, decimal: frac_end > int_end || sci })
    }
}
