//! PPO's generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous Control
//! Using Generalized Advantage Estimation", eq. 16), per sequence, with the outcome reward on the final
//! completion token ([`outcome_rewards`]) and verl's masked whitening ([`whiten`]).

use crate::error::{Error, Result};

/// The per-token reward of an outcome-rewarded completion: `reward` on the last position where `mask`
/// is non-zero, 0 elsewhere (all 0 for an empty mask).
///
/// ```text
/// # reference (verl, token_level_scores): scores[i, valid_response_length[i] - 1] = reward[i]
/// ```
///
/// # Shapes
/// `mask`: (t) → (t)
pub fn outcome_rewards(mask: &[f32], reward: f32) -> Vec<f32> {
    let mut out = vec![0.0; mask.len()];
    if let Some(last) = mask.iter().rposition(|&m| m != 0.0) {
        out[last] = reward;
    }
    out
}

/// GAE(γ, λ) advantages and returns of one sequence, scanning backwards:
/// `δ_t = r_t + γ V_{t+1} − V_t`, `A_t = δ_t + γ λ A_{t+1}`, `R_t = A_t + V_t`.
///
/// Masked positions (`mask` 0: padding, or tokens excluded from the loss) are skipped: they neither
/// bootstrap nor carry an advantage, and their outputs are 0. Past the last valid token `V = 0`.
///
/// ```text
/// # reference (verl core_algos.compute_gae_advantage_return):
/// nextvalues, lastgaelam = 0, 0
/// for t in reversed(range(T)):
///     delta = rewards[:, t] + gamma * nextvalues - values[:, t]
///     lastgaelam_ = delta + gamma * lam * lastgaelam
///     nextvalues = values[:, t] * mask[:, t] + (1 - mask[:, t]) * nextvalues
///     lastgaelam = lastgaelam_ * mask[:, t] + (1 - mask[:, t]) * lastgaelam
///     advantages[:, t] = lastgaelam
/// returns = advantages + values
/// ```
///
/// # Shapes
/// `rewards`, `values`, `mask`: (t) → (advantages (t), returns (t))
pub fn gae(rewards: &[f32], values: &[f32], mask: &[f32], gamma: f32, lambda: f32) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = rewards.len();
    if values.len() != t || mask.len() != t {
        return Err(Error::input(
            "gae",
            format!("rewards has {t} tokens, values {}, mask {}", values.len(), mask.len()),
        ));
    }
    let (gamma, lambda) = (f64::from(gamma), f64::from(lambda));
    let mut advantages = vec![0.0f32; t];
    let mut returns = vec![0.0f32; t];
    let (mut next_value, mut last_gae) = (0.0f64, 0.0f64);
    for i in (0..t).rev() {
        if mask[i] == 0.0 {
            continue;
        }
        let v = f64::from(values[i]);
        let delta = f64::from(rewards[i]) + gamma * next_value - v;
        last_gae = delta + gamma * lambda * last_gae;
        next_value = v;
        advantages[i] = last_gae as f32;
        returns[i] = (last_gae + v) as f32;
    }
    Ok((advantages, returns))
}

/// Whitens `x` over the positions where `mask` is non-zero, `(x − mean) / sqrt(var + 1e-8)` with the
/// unbiased masked variance; masked positions become 0. Fewer than two valid positions: returned
/// centered only.
///
/// ```text
/// # reference (verl torch_functional.masked_whiten):
/// mean = masked_mean(values, mask); var = masked_var(values, mask)   # var * n / (n - 1)
/// whitened = (values - mean) * torch.rsqrt(var + 1e-8)
/// ```
///
/// # Shapes
/// `x`, `mask`: (b·t) flattened over the whole batch → (b·t)
pub fn whiten(x: &[f32], mask: &[f32]) -> Result<Vec<f32>> {
    if x.len() != mask.len() {
        return Err(Error::input("whiten", format!("x has {} values, mask {}", x.len(), mask.len())));
    }
    let valid = || x.iter().zip(mask).filter(|(_, &m)| m != 0.0).map(|(&v, _)| f64::from(v));
    let n = valid().count() as f64;
    if n == 0.0 {
        return Ok(vec![0.0; x.len()]);
    }
    let mean = valid().sum::<f64>() / n;
    let scale = if n < 2.0 {
        1.0
    } else {
        let var = valid().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        1.0 / (var + 1e-8).sqrt()
    };
    Ok(x.iter().zip(mask).map(|(&v, &m)| if m == 0.0 { 0.0 } else { ((f64::from(v) - mean) * scale) as f32 }).collect())
}

/// PPO's targets for a `(b, t)` batch, row-major: each row's outcome reward ([`outcome_rewards`]) goes on
/// its last valid position, then [`gae`] per row over the critic's `values`. Returns `(advantages,
/// returns)`, both `(b·t)` with zeros where `mask` is 0; advantages are not whitened yet (that is over the
/// whole step: [`whiten`]).
///
/// # Shapes
/// `values`, `mask`: (b·t); `rewards`: (b) → (b·t), (b·t)
pub fn ppo_targets(
    values: &[f32],
    mask: &[f32],
    rewards: &[f32],
    gamma: f64,
    lambda: f64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let b = rewards.len();
    if b == 0 || values.len() != mask.len() || !values.len().is_multiple_of(b) {
        return Err(Error::input(
            "ppo_targets",
            format!("{} values, {} mask entries, {b} rewards", values.len(), mask.len()),
        ));
    }
    let t = values.len() / b;
    let (mut advantages, mut returns) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
    for (r, &reward) in rewards.iter().enumerate() {
        let row = r * t..(r + 1) * t;
        let (a, ret) = gae(
            &outcome_rewards(&mask[row.clone()], reward),
            &values[row.clone()],
            &mask[row],
            gamma as f32,
            lambda as f32,
        )?;
        advantages.extend(a);
        returns.extend(ret);
    }
    Ok((advantages, returns))
}

/// `1 − Var(returns − values) / Var(returns)` over the positions where `mask` is non-zero (verl
/// `vf_explained_var`): 1 is a perfect critic, 0 one no better than the mean, negative a harmful one.
/// NaN when the returns do not vary.
pub fn explained_variance(values: &[f32], returns: &[f32], mask: &[f32]) -> f64 {
    let valid: Vec<(f64, f64)> = values
        .iter()
        .zip(returns)
        .zip(mask)
        .filter(|(_, &m)| m != 0.0)
        .map(|((&v, &r), _)| (f64::from(v), f64::from(r)))
        .collect();
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let xs: Vec<f64> = xs.collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let var_r = var(&mut valid.iter().map(|&(_, r)| r));
    if valid.is_empty() || var_r == 0.0 {
        return f64::NAN;
    }
    1.0 - var(&mut valid.iter().map(|&(v, r)| r - v)) / var_r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::close;

    // By hand (gamma 0.9, lambda 0.8, gamma * lambda = 0.72), rewards [0, 0, 1], values [0.5, 0.6, 0.7]:
    //   t=2: delta = 1 + 0 - 0.7 = 0.3;              A = 0.3
    //   t=1: delta = 0 + 0.9 * 0.7 - 0.6 = 0.03;     A = 0.03 + 0.72 * 0.3 = 0.246
    //   t=0: delta = 0 + 0.9 * 0.6 - 0.5 = 0.04;     A = 0.04 + 0.72 * 0.246 = 0.21712
    //   returns = A + V = [0.71712, 0.846, 1.0]
    #[test]
    fn gae_matches_the_recurrence_by_hand() -> Result<()> {
        let rewards = outcome_rewards(&[1.0, 1.0, 1.0], 1.0);
        assert_eq!(rewards, vec![0.0, 0.0, 1.0]);
        let (adv, ret) = gae(&rewards, &[0.5, 0.6, 0.7], &[1.0; 3], 0.9, 0.8)?;
        for (a, b) in adv.iter().zip([0.21712, 0.246, 0.3]) {
            close(*a, b, 1e-6);
        }
        for (a, b) in ret.iter().zip([0.71712, 0.846, 1.0]) {
            close(*a, b, 1e-6);
        }
        Ok(())
    }

    // verl's masked recurrence, rewards [0, 1, 0], values [0.5, 0.6, 9.0], mask [1, 1, 0]:
    //   t=2 masked: skipped (its value 9.0 is never bootstrapped);  t=1: delta = 1 - 0.6 = 0.4; A = 0.4
    //   t=0: delta = 0.9 * 0.6 - 0.5 = 0.04; A = 0.04 + 0.72 * 0.4 = 0.328
    #[test]
    fn gae_skips_masked_positions() -> Result<()> {
        let mask = [1.0, 1.0, 0.0];
        assert_eq!(outcome_rewards(&mask, -1.0), vec![0.0, -1.0, 0.0]);
        let (adv, ret) = gae(&[0.0, 1.0, 0.0], &[0.5, 0.6, 9.0], &mask, 0.9, 0.8)?;
        for (a, b) in adv.iter().zip([0.328, 0.4, 0.0]) {
            close(*a, b, 1e-6);
        }
        assert_eq!(ret[2], 0.0);
        assert!(gae(&[0.0], &[0.0, 1.0], &[1.0], 1.0, 1.0).is_err());
        Ok(())
    }

    // gamma = lambda = 1: A_t = R - V_t (Monte Carlo), so returns are the final reward everywhere.
    #[test]
    fn gae_with_unit_discounts_is_monte_carlo() -> Result<()> {
        let values = [0.3, -0.2, 0.9, 0.1];
        let (adv, ret) = gae(&outcome_rewards(&[1.0; 4], -1.0), &values, &[1.0; 4], 1.0, 1.0)?;
        for i in 0..4 {
            close(ret[i], -1.0, 1e-6);
            close(adv[i], -1.0 - values[i], 1e-6);
        }
        Ok(())
    }

    // Two rows of t = 3, gamma = lambda = 1: row 0 (mask [0, 1, 1], reward +1, values [9, 0.2, 0.4]) ->
    // advantages [0, 0.8, 0.6], returns [0, 1, 1]; row 1 (mask [1, 0, 0], reward -1, value 0.5) ->
    // advantage -1.5, return -1.
    #[test]
    fn ppo_targets_put_each_reward_on_its_rows_last_token() -> Result<()> {
        let values = [9.0, 0.2, 0.4, 0.5, 7.0, 7.0];
        let mask = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        let (adv, ret) = ppo_targets(&values, &mask, &[1.0, -1.0], 1.0, 1.0)?;
        for (a, b) in adv.iter().zip([0.0, 0.8, 0.6, -1.5, 0.0, 0.0]) {
            close(*a, b, 1e-6);
        }
        assert_eq!(ret, vec![0.0, 1.0, 1.0, -1.0, 0.0, 0.0]);
        assert!(ppo_targets(&values, &mask, &[1.0; 4], 1.0, 1.0).is_err());
        Ok(())
    }

    // numpy: r = [1, 1, -1, -1]; v = [0.5, 0.5, -0.5, -0.5]: var(r - v) = 0.25, var(r) = 1 -> 0.75;
    // v = 0 -> 0; the masked-out last position is ignored.
    #[test]
    fn explained_variance_by_hand() {
        let (r, m) = ([1.0, 1.0, -1.0, -1.0, 5.0], [1.0, 1.0, 1.0, 1.0, 0.0]);
        close(explained_variance(&[0.5, 0.5, -0.5, -0.5, 0.0], &r, &m) as f32, 0.75, 1e-6);
        close(explained_variance(&[0.0; 5], &r, &m) as f32, 0.0, 1e-6);
        assert!(explained_variance(&[0.0; 2], &[1.0, 1.0], &[1.0, 1.0]).is_nan());
    }

    // torch: x = [1., 2., 3., 100.], mask = [1, 1, 1, 0]: mean 2, unbiased var 1 -> [-1, 0, 1, 0]
    #[test]
    fn whiten_matches_verl_masked_whiten() -> Result<()> {
        let w = whiten(&[1.0, 2.0, 3.0, 100.0], &[1.0, 1.0, 1.0, 0.0])?;
        for (a, b) in w.iter().zip([-1.0, 0.0, 1.0, 0.0]) {
            close(*a, b, 1e-6);
        }
        assert_eq!(whiten(&[5.0], &[0.0])?, vec![0.0]);
        Ok(())
    }
}
