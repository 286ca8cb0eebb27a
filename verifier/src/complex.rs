//! A minimal complex `f64` for the approximate evaluation path.
//!
//! Only what answers need: arithmetic, principal `sqrt`/`ln`/`pow`, `exp` and the
//! trigonometric and hyperbolic functions with their principal inverses.

use std::f64::consts::FRAC_PI_2;

/// A complex number in double precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct C64 {
    pub(crate) re: f64,
    pub(crate) im: f64,
}

impl C64 {
    pub(crate) const I: C64 = C64 { re: 0.0, im: 1.0 };

    pub(crate) fn new(re: f64, im: f64) -> C64 {
        C64 { re, im }
    }

    pub(crate) fn real(re: f64) -> C64 {
        C64 { re, im: 0.0 }
    }

    pub(crate) fn is_real(self) -> bool {
        self.im == 0.0
    }

    pub(crate) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }

    pub(crate) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }

    pub(crate) fn arg(self) -> f64 {
        self.im.atan2(self.re)
    }

    pub(crate) fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }

    pub(crate) fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }

    pub(crate) fn neg(self) -> C64 {
        C64::new(-self.re, -self.im)
    }

    pub(crate) fn mul(self, o: C64) -> C64 {
        if self.is_real() && o.is_real() {
            return C64::real(self.re * o.re);
        }
        C64::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }

    pub(crate) fn div(self, o: C64) -> C64 {
        if self.is_real() && o.is_real() {
            return C64::real(self.re / o.re);
        }
        let d = o.re * o.re + o.im * o.im;
        C64::new((self.re * o.re + self.im * o.im) / d, (self.im * o.re - self.re * o.im) / d)
    }

    pub(crate) fn exp(self) -> C64 {
        let m = self.re.exp();
        if self.im == 0.0 {
            return C64::real(m);
        }
        C64::new(m * self.im.cos(), m * self.im.sin())
    }

    pub(crate) fn ln(self) -> C64 {
        if self.is_real() && self.re > 0.0 {
            return C64::real(self.re.ln());
        }
        C64::new(self.abs().ln(), self.arg())
    }

    pub(crate) fn sqrt(self) -> C64 {
        if self.is_real() {
            return if self.re >= 0.0 { C64::real(self.re.sqrt()) } else { C64::new(0.0, (-self.re).sqrt()) };
        }
        let r = self.abs();
        let re = ((r + self.re) / 2.0).sqrt();
        let im = ((r - self.re) / 2.0).sqrt().copysign(self.im);
        C64::new(re, im)
    }

    /// Principal power `self^e`.
    pub(crate) fn pow(self, e: C64) -> C64 {
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re == 0.0 && e.im == 0.0 {
                C64::real(1.0)
            } else if e.re > 0.0 {
                C64::real(0.0)
            } else {
                C64::real(f64::NAN)
            };
        }
        if self.is_real() && e.is_real() && (self.re > 0.0 || e.re.fract() == 0.0) {
            return C64::real(self.re.powf(e.re));
        }
        e.mul(self.ln()).exp()
    }

    pub(crate) fn sin(self) -> C64 {
        if self.is_real() {
            return C64::real(self.re.sin());
        }
        C64::new(self.re.sin() * self.im.cosh(), self.re.cos() * self.im.sinh())
    }

    pub(crate) fn cos(self) -> C64 {
        if self.is_real() {
            return C64::real(self.re.cos());
        }
        C64::new(self.re.cos() * self.im.cosh(), -self.re.sin() * self.im.sinh())
    }

    pub(crate) fn sinh(self) -> C64 {
        self.exp().sub(self.neg().exp()).mul(C64::real(0.5))
    }

    pub(crate) fn cosh(self) -> C64 {
        self.exp().add(self.neg().exp()).mul(C64::real(0.5))
    }

    /// `asin z = -i ln(iz + sqrt(1 - z²))`.
    pub(crate) fn asin(self) -> C64 {
        if self.is_real() && self.re.abs() <= 1.0 {
            return C64::real(self.re.asin());
        }
        let one = C64::real(1.0);
        let w = C64::I.mul(self).add(one.sub(self.mul(self)).sqrt());
        C64::I.neg().mul(w.ln())
    }

    pub(crate) fn acos(self) -> C64 {
        if self.is_real() && self.re.abs() <= 1.0 {
            return C64::real(self.re.acos());
        }
        C64::real(FRAC_PI_2).sub(self.asin())
    }

    /// `atan z = (i/2) ln((i + z)/(i - z))`.
    pub(crate) fn atan(self) -> C64 {
        if self.is_real() {
            return C64::real(self.re.atan());
        }
        let w = C64::I.add(self).div(C64::I.sub(self)).ln();
        C64::new(0.0, 0.5).mul(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: C64, b: C64) -> bool {
        a.sub(b).abs() < 1e-12
    }

    #[test]
    fn principal_branches() {
        assert!(close(C64::real(-4.0).sqrt(), C64::new(0.0, 2.0)));
        assert!(close(C64::I.mul(C64::I), C64::real(-1.0)));
        assert!(close(C64::real(-1.0).ln(), C64::new(0.0, std::f64::consts::PI)));
        assert!(close(C64::real(2.0).asin().sin(), C64::real(2.0)));
        assert!(close(
            C64::new(0.3, 0.4).atan().mul(C64::real(1.0)).sin().div(C64::new(0.3, 0.4).atan().cos()),
            C64::new(0.3, 0.4)
        ));
        assert!(close(C64::real(2.0).pow(C64::real(0.5)), C64::real(2f64.sqrt())));
    }
}
