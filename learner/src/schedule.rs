//! Learning-rate schedules: linear warmup, then cosine, linear or no decay — a pure function of the
//! step, like nanoGPT's `get_lr`, so resuming needs only the step counter.

use serde::{Deserialize, Serialize};

/// What happens after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Half a cosine from the peak down to the floor (`get_cosine_schedule_with_warmup`).
    #[default]
    Cosine,
    /// A straight line from the peak down to the floor (`get_linear_schedule_with_warmup`).
    Linear,
    /// Stay at the peak.
    Constant,
}

/// Linear warmup over the first `ceil(warmup_ratio × total_steps)` steps, then [`Decay`] down to
/// `peak_lr × min_lr_ratio` at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Learning rate at the end of warmup.
    pub peak_lr: f64,
    /// Optimizer steps in the whole stage.
    pub total_steps: u64,
    /// Share of `total_steps` spent warming up (0.1 in the seed).
    pub warmup_ratio: f64,
    /// Shape of the decay.
    pub decay: Decay,
    /// Floor of the decay as a share of `peak_lr`.
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Warmup steps: `ceil(warmup_ratio × total_steps)`, as transformers' `get_warmup_steps`.
    pub fn warmup_steps(&self) -> u64 {
        (self.warmup_ratio * self.total_steps as f64).ceil() as u64
    }

    /// Learning rate of optimizer step `step` (0-based).
    ///
    /// ```text
    /// # nanoGPT get_lr, with the decay shape and floor as parameters:
    /// if it < warmup: return lr * (it + 1) / (warmup + 1)
    /// ratio = min(1, (it - warmup) / (total - warmup))
    /// cosine: min_lr + 0.5 * (1 + cos(pi * ratio)) * (lr - min_lr);  linear: min_lr + (1 - ratio) * (lr - min_lr)
    /// ```
    ///
    /// ```
    /// use phi4r_learner::{Decay, LrSchedule};
    /// let s = LrSchedule { peak_lr: 1e-3, total_steps: 100, warmup_ratio: 0.1, decay: Decay::Cosine, min_lr_ratio: 0.1 };
    /// assert!(s.lr_at(0) < s.lr_at(9));
    /// assert_eq!(s.lr_at(10), 1e-3);
    /// assert!((s.lr_at(100) - 1e-4).abs() < 1e-12);
    /// ```
    pub fn lr_at(&self, step: u64) -> f64 {
        let warmup = self.warmup_steps();
        if step < warmup {
            return self.peak_lr * (step + 1) as f64 / (warmup + 1) as f64;
        }
        let min_lr = self.peak_lr * self.min_lr_ratio;
        let span = self.total_steps.saturating_sub(warmup);
        let ratio = if span == 0 { 1.0 } else { ((step - warmup) as f64 / span as f64).min(1.0) };
        match self.decay {
            Decay::Constant => self.peak_lr,
            Decay::Cosine => min_lr + 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()) * (self.peak_lr - min_lr),
            Decay::Linear => min_lr + (1.0 - ratio) * (self.peak_lr - min_lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(decay: Decay) -> LrSchedule {
        LrSchedule { peak_lr: 1.0, total_steps: 20, warmup_ratio: 0.1, decay, min_lr_ratio: 0.0 }
    }

    #[test]
    fn warms_up_linearly_to_the_peak() {
        let s = sched(Decay::Cosine);
        assert_eq!(s.warmup_steps(), 2);
        assert_eq!([s.lr_at(0), s.lr_at(1), s.lr_at(2)], [1.0 / 3.0, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn cosine_halves_midway_and_reaches_the_floor() {
        let s = sched(Decay::Cosine);
        assert!((s.lr_at(11) - 0.5).abs() < 1e-12, "{}", s.lr_at(11));
        assert_eq!(s.lr_at(20), 0.0);
        assert_eq!(s.lr_at(1000), 0.0, "clamped past the end");
        let floor = LrSchedule { min_lr_ratio: 0.1, ..s };
        assert!((floor.lr_at(20) - 0.1).abs() < 1e-12);
        assert!((2..20).all(|i| s.lr_at(i) >= s.lr_at(i + 1)), "monotone decay");
    }

    #[test]
    fn linear_and_constant_decays() {
        let l = sched(Decay::Linear);
        assert!((l.lr_at(11) - 0.5).abs() < 1e-12);
        assert!((l.lr_at(6) - (1.0 - 4.0 / 18.0)).abs() < 1e-12);
        let c = sched(Decay::Constant);
        assert_eq!(c.lr_at(19), 1.0);
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = LrSchedule { warmup_ratio: 0.0, ..sched(Decay::Linear) };
        assert_eq!(s.lr_at(0), 1.0);
        let one = LrSchedule { total_steps: 1, ..s };
        assert_eq!(one.lr_at(0), 1.0);
    }
}
