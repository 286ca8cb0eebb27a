//! Stage 4's section of the stage config (`[rl]` in `configs/stages/rl.toml`): group size, how many prompts
//! to draw, the algorithm as a tagged choice, the KL anchor, the loss aggregation, the temperature
//! schedule and the replay crate's filter and balance configs.

use crate::error::{Error, Result};
use crate::rl::{AdvNorm, Clip, LossAgg, Overlong};
use phi4r_replay::BalanceConfig;
use phi4r_replay::{CollectParams, TemperatureSchedule};
use serde::{Deserialize, Serialize};

/// The policy-gradient algorithm and its own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RlAlgo {
    /// GRPO (DeepSeekMath §4.1.2): group-relative advantages, the clipped surrogate with clip-higher
    /// (DAPO §3.1), π_old = the sampler's log-probs.
    Grpo {
        /// Divide a group's centered rewards by its std (GRPO); false is Dr. GRPO's `r − mean`.
        norm_std: bool,
        /// Lower clip ε: the ratio is clipped at `1 − eps_low`.
        eps_low: f64,
        /// Upper clip ε: the ratio is clipped at `1 + eps_high` (DAPO's clip-higher: 0.28).
        eps_high: f64,
    },
    /// PPO (Schulman et al. 2017) as RLHF stacks run it (OpenRLHF, verl): a value head on the policy's
    /// final hidden state ([`crate::rl::Critic`]), GAE(γ, λ) with the outcome reward on the last completion
    /// token, advantages whitened over the step, the clipped surrogate and a clipped value loss.
    Ppo {
        /// Lower clip ε of the ratio.
        eps_low: f64,
        /// Upper clip ε of the ratio.
        eps_high: f64,
        /// GAE discount γ.
        gamma: f64,
        /// GAE λ (1 with γ 1: Monte Carlo returns, the robust choice while the critic starts from zero).
        lambda: f64,
        /// The value loss's clip around the values at the start of the step (verl `cliprange_value`).
        value_clip: f64,
        /// The value head's own learning rate (constant; its own AdamW).
        value_lr: f64,
    },
}

impl Default for RlAlgo {
    fn default() -> Self {
        RlAlgo::Grpo { norm_std: true, eps_low: 0.2, eps_high: 0.28 }
    }
}

impl RlAlgo {
    /// PPO with the defaults of `stage rl --algo ppo`: the GRPO clip range, γ = λ = 1, value clip 0.5
    /// (verl), value lr 1e-3.
    pub fn ppo() -> Self {
        RlAlgo::Ppo { eps_low: 0.2, eps_high: 0.28, gamma: 1.0, lambda: 1.0, value_clip: 0.5, value_lr: 1e-3 }
    }

    /// The algorithm's name (`grpo`, `ppo`).
    pub fn name(&self) -> &'static str {
        match self {
            RlAlgo::Grpo { .. } => "grpo",
            RlAlgo::Ppo { .. } => "ppo",
        }
    }
}

impl RlAlgo {
    /// How group-relative advantages are normalized (PPO's sequence-level advantage is not used: GAE
    /// replaces it in the step; the group's std-normalized one is kept as its metric).
    pub fn adv_norm(&self) -> AdvNorm {
        match *self {
            RlAlgo::Grpo { norm_std: false, .. } => AdvNorm::None,
            RlAlgo::Grpo { norm_std: true, .. } | RlAlgo::Ppo { .. } => AdvNorm::default(),
        }
    }

    /// The ratio's clip range.
    pub fn clip(&self) -> Clip {
        match *self {
            RlAlgo::Grpo { eps_low, eps_high, .. } | RlAlgo::Ppo { eps_low, eps_high, .. } => {
                Clip { low: eps_low, high: eps_high }
            }
        }
    }
}

/// What π_old is in the clipped ratio, and how stale or mismatched sampler log-probs are corrected.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OffPolicy {
    /// π_old = the sampler's stored log-probs (exact on-policy; with staleness, the behaviour policy's).
    #[default]
    Sampler,
    /// AReaL's decoupled objective (Fu et al. 2025), which is also verl's truncated IS: π_old = the
    /// learner's own log-probs at the start of the step (the proximal policy, one extra forward), and each
    /// token's loss weighted by `min(π_prox / π_sampler, cap)`, so stale versions (or a sampler with
    /// other kernels or precision) enter through a bounded weight, not through the clip.
    Decoupled {
        /// Cap of the importance weight (verl `tis_imp_ratio_cap`; 2.0 is common).
        cap: f64,
    },
}

/// When the streaming runtime's generators take a newer policy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSync {
    /// Between sampling batches: every token of a completion comes from one version.
    #[default]
    BetweenBatches,
    /// Between two decoding steps, keeping the KV cache (PipelineRL, Magistral): no generator waits for
    /// its batch to end, and each completion records the version of every token
    /// (`version_switches`); the sampler's per-token log-probs make the importance ratios per token.
    InFlight,
}

/// Hyper-parameters of stage 4 (RLVR). Seed defaults in [`RlConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// Completions sampled per prompt (GRPO's G).
    pub group_size: usize,
    /// Prompts drawn in the first generation round of a step; later rounds draw what the balancer asks
    /// for ([`phi4r_replay::Balancer::prompts_to_request`]).
    pub prompts_per_step: usize,
    /// Generation rounds per step at most (the first included) before training on what was kept.
    pub max_draw_rounds: usize,
    /// Longest completion, tokens (prompt + completion must fit `seq_len`).
    pub max_new_tokens: usize,
    /// The algorithm.
    pub algo: RlAlgo,
    /// Weight of the k3 KL to the frozen reference (0: no reference pass).
    pub kl_coef: f64,
    /// How per-token losses become one number.
    pub loss_agg: LossAgg,
    /// Sampling temperature by step (the recipe: linear 1.0 → 0.6, then 0.6).
    pub temperature: TemperatureSchedule,
    /// Filters and reward re-balancing (`balance.batch_groups` groups are trained per step).
    pub balance: BalanceConfig,
    /// The streaming runtime (`--topology`): how many policy versions a trained completion may lag behind
    /// the learner (0 = synchronous on-policy). Enforced by pacing how many prompts are handed out; what
    /// still arrives too late is dropped and counted as `stale`.
    pub max_staleness: u64,
    /// The streaming runtime: versions beyond `max_staleness` a group may lag before it is dropped. The
    /// pacing still aims at `max_staleness`, so only the groups that overshoot it (filters that kept more
    /// than the observed rate predicted, a slow lease) are let through, one version more off-policy
    /// (the clipped ratio is taken against their own sampler's log-probs), instead of having been sampled
    /// for nothing. 0: every group beyond `max_staleness` is dropped.
    pub stale_grace: u64,
    /// The streaming runtime: whether generators switch weights between batches (default) or in flight.
    /// Staleness is judged on a completion's first token either way.
    pub weight_sync: WeightSync,
    /// Passes over each step's batch (PPO's epochs); each pass takes `mini_batches` optimizer updates.
    /// The policy version advances once per step, whatever the number of updates.
    pub epochs: usize,
    /// Optimizer updates per pass: the step's micro-batches split into this many mini-batches (at most
    /// one per micro-batch), reshuffled after the first pass.
    pub mini_batches: usize,
    /// Completions cut at `max_new_tokens` (DAPO §3.4): masked from the loss, penalized, or left alone.
    pub overlong: Overlong,
    /// π_old and the importance-sampling correction of stale or mismatched sampler log-probs.
    pub off_policy: OffPolicy,
}

impl RlConfig {
    /// What [`phi4r_replay::collect_groups`] needs for `step` of a stage seeded with `seed`.
    pub fn collect_params(&self, seed: u64, step: u64) -> CollectParams {
        CollectParams {
            group_size: self.group_size,
            prompts_per_step: self.prompts_per_step,
            max_draw_rounds: self.max_draw_rounds,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature.at(step),
            balance: self.balance,
            seed,
            step,
        }
    }

    /// The streaming runtime's drop bound: a group lagging more versions than this is dropped as stale
    /// (`max_staleness + stale_grace`; the pacing aims at `max_staleness`).
    pub fn drop_staleness(&self) -> u64 {
        self.max_staleness.saturating_add(self.stale_grace)
    }
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig {
            group_size: 8,
            prompts_per_step: 64,
            max_draw_rounds: 4,
            max_new_tokens: 24_576,
            algo: RlAlgo::default(),
            kl_coef: 0.02,
            loss_agg: LossAgg::TokenMean,
            temperature: TemperatureSchedule::Linear { start: 1.0, end: 0.6, steps: 100 },
            balance: BalanceConfig { batch_groups: 32, max_pending_groups: 128, ..BalanceConfig::default() },
            max_staleness: 1,
            stale_grace: 0,
            weight_sync: WeightSync::default(),
            epochs: 1,
            mini_batches: 1,
            overlong: Overlong::default(),
            off_policy: OffPolicy::default(),
        }
    }
}

impl RlConfig {
    /// Checks ranges and combinations; errors name the key under `rl.`.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, key: &str, reason: String| if ok { Ok(()) } else { Err(Error::config(key, reason)) };
        check(self.group_size >= 2, "rl.group_size", format!("must be at least 2, got {}", self.group_size))?;
        check(self.prompts_per_step >= 1, "rl.prompts_per_step", "must be at least 1".into())?;
        check(self.max_draw_rounds >= 1, "rl.max_draw_rounds", "must be at least 1".into())?;
        check(self.max_new_tokens >= 1, "rl.max_new_tokens", "must be at least 1".into())?;
        match self.algo {
            RlAlgo::Grpo { eps_low, eps_high, .. } | RlAlgo::Ppo { eps_low, eps_high, .. } => {
                check(
                    eps_low.is_finite() && (0.0..1.0).contains(&eps_low),
                    "rl.algo.eps_low",
                    format!("must be in [0, 1), got {eps_low}"),
                )?;
                check(
                    eps_high.is_finite() && eps_high >= 0.0,
                    "rl.algo.eps_high",
                    format!("must be a finite number >= 0, got {eps_high}"),
                )?;
            }
        }
        if let RlAlgo::Ppo { gamma, lambda, value_clip, value_lr, .. } = self.algo {
            for (v, key) in [(gamma, "rl.algo.gamma"), (lambda, "rl.algo.lambda")] {
                check((0.0..=1.0).contains(&v), key, format!("must be in [0, 1], got {v}"))?;
            }
            check(
                value_clip.is_finite() && value_clip > 0.0,
                "rl.algo.value_clip",
                format!("must be a finite number > 0, got {value_clip}"),
            )?;
            check(
                value_lr.is_finite() && value_lr > 0.0,
                "rl.algo.value_lr",
                format!("must be a finite number > 0, got {value_lr}"),
            )?;
        }
        if let OffPolicy::Decoupled { cap } = self.off_policy {
            check(
                cap.is_finite() && cap > 0.0,
                "rl.off_policy.cap",
                format!("must be a finite number > 0, got {cap}"),
            )?;
        }
        check(self.epochs >= 1, "rl.epochs", "must be at least 1".into())?;
        check(self.mini_batches >= 1, "rl.mini_batches", "must be at least 1".into())?;
        if let Overlong::SoftPenalty { cache_len } = self.overlong {
            check(
                cache_len >= 1 && cache_len <= self.max_new_tokens,
                "rl.overlong.cache_len",
                format!("must be in [1, rl.max_new_tokens = {}], got {cache_len}", self.max_new_tokens),
            )?;
        }
        check(
            self.kl_coef.is_finite() && self.kl_coef >= 0.0,
            "rl.kl_coef",
            format!("must be a finite number >= 0, got {}", self.kl_coef),
        )?;
        let temps = match self.temperature {
            TemperatureSchedule::Constant { temperature } => vec![temperature],
            TemperatureSchedule::Linear { start, end, .. } => vec![start, end],
        };
        for t in temps {
            check(
                t.is_finite() && t > 0.0,
                "rl.temperature",
                format!("must be finite and > 0 (RL samples; greedy has no group spread), got {t}"),
            )?;
        }
        self.balance.validate().map_err(|e| match e {
            phi4r_replay::Error::Config { key, reason } => Error::config(format!("rl.balance.{key}"), reason),
            other => Error::config("rl.balance", other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_rl_key() {
        let bad = RlConfig { group_size: 1, ..RlConfig::default() };
        assert!(matches!(bad.validate(), Err(Error::Config { key, .. }) if key == "rl.group_size"));
        let mut bad = RlConfig::default();
        bad.balance.filter.max_length_cv = -1.0;
        assert!(matches!(bad.validate(), Err(Error::Config { key, .. }) if key == "rl.balance.filter.max_length_cv"));
        assert!(RlConfig::default().validate().is_ok());
    }

    #[test]
    fn the_grace_moves_the_drop_bound_not_the_pacing() {
        let c = RlConfig::default();
        assert_eq!((c.stale_grace, c.drop_staleness()), (0, c.max_staleness), "no grace by default");
        let c: RlConfig = toml::from_str("max_staleness = 2\nstale_grace = 1\n").expect("parses");
        assert_eq!((c.max_staleness, c.drop_staleness()), (2, 3));
        assert!(toml::from_str::<RlConfig>("stale_grace = -1\n").is_err(), "a count, never negative");
    }
}
