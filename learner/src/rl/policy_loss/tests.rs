use super::*;
use crate::rl::close;
use candle_core::{Device, Var};
use proptest::prelude::*;

fn grad(g: &candle_core::backprop::GradStore, v: &Var) -> Result<Vec<Vec<f32>>> {
    Ok(g.get(v.as_tensor()).ok_or_else(|| Error::input("test", "no grad"))?.to_vec2::<f32>()?)
}

/// logps = old + ln(ratio) with old = -1, so exp(logp - old) = ratio.
fn logps_for(ratios: &[[f32; 2]; 2], dev: &Device) -> Result<(Var, Tensor)> {
    let lp: Vec<Vec<f32>> = ratios.iter().map(|r| r.iter().map(|x| -1.0 + x.ln()).collect()).collect();
    Ok((Var::new(lp, dev)?, Tensor::new(&[[-1f32, -1.], [-1., -1.]], dev)?))
}

// verl compute_policy_loss_vanilla by hand; ratios [[1.1, 1.5], [0.5, 0.7]], advantages per sequence
// [1, -1], mask [[1, 1], [1, 0]], eps 0.2:
//   (0,0) r 1.1 in range       -> max(-1.1, -1.1) = -1.1
//   (0,1) r 1.5, A > 0         -> max(-1.5, -1.2) = -1.2   clipped high
//   (1,0) r 0.5, A < 0         -> max( 0.5,  0.8) =  0.8   clipped low
//   (1,1) masked
//   token-mean (-1.1 - 1.2 + 0.8) / 3 = -0.5; seq-mean ((-2.3 / 2) + 0.8 / 1) / 2 = -0.175;
//   seq-mean-token-sum (-1.5) / 2 = -0.75; clipfrac 2/3 (1/3 high, 1/3 low)
//   ppo_kl = -(ln 1.1 + ln 1.5 + ln 0.5) / 3 = 0.0641240
//   d token-mean / d logp = -A * r / 3 where unclipped: [[-0.3666667, 0], [0, 0]]
//   clip-higher (high 0.6): (0,1) unclipped -> (-1.1 - 1.5 + 0.8) / 3 = -0.6, clipfrac 1/3
#[test]
fn clipped_surrogate_matches_verl_by_hand() -> Result<()> {
    let dev = Device::Cpu;
    let (lp, old) = logps_for(&[[1.1, 1.5], [0.5, 0.7]], &dev)?;
    let adv = Tensor::new(&[1f32, -1.], &dev)?;
    let mask = Tensor::new(&[[1f32, 1.], [1., 0.]], &dev)?;
    let run = |clip, agg| clipped_surrogate(lp.as_tensor(), &old, &adv, &mask, clip, agg, None);
    let out = run(Clip::default(), LossAgg::TokenMean)?;
    close(out.loss.to_scalar::<f32>()?, -0.5, 1e-6);
    close(out.clip_fraction as f32, 2.0 / 3.0, 1e-6);
    close(out.clip_high_fraction as f32, 1.0 / 3.0, 1e-6);
    close(out.clip_low_fraction as f32, 1.0 / 3.0, 1e-6);
    close(out.approx_kl as f32, 0.064_124, 1e-6);
    let g = grad(&out.loss.backward()?, &lp)?;
    for (a, b) in g.concat().iter().zip([-0.366_666_7, 0.0, 0.0, 0.0]) {
        close(*a, b, 1e-6);
    }
    close(run(Clip::default(), LossAgg::SeqMean)?.loss.to_scalar::<f32>()?, -0.175, 1e-6);
    close(run(Clip::default(), LossAgg::TokenSum)?.loss.to_scalar::<f32>()?, -0.75, 1e-6);
    let higher = run(Clip { low: 0.2, high: 0.6 }, LossAgg::TokenMean)?;
    close(higher.loss.to_scalar::<f32>()?, -0.6, 1e-6);
    close(higher.clip_fraction as f32, 1.0 / 3.0, 1e-6);
    // Per-token advantages of the same values give the same loss; a wrong shape is refused.
    let adv_bt = Tensor::new(&[[1f32, 1.], [-1., -1.]], &dev)?;
    let same = clipped_surrogate(lp.as_tensor(), &old, &adv_bt, &mask, Clip::default(), LossAgg::TokenMean, None)?;
    close(same.loss.to_scalar::<f32>()?, -0.5, 1e-6);
    let bad = Tensor::new(&[1f32, -1., 0.], &dev)?;
    assert!(clipped_surrogate(lp.as_tensor(), &old, &bad, &mask, Clip::default(), LossAgg::TokenMean, None).is_err());
    Ok(())
}

// verl tis: learner old [-1, -1], sampler [-1.2, -3.0], cap 2:
//   exp([0.2, 2.0]) = [1.2214028, 7.389056] -> clamp(max=2) = [1.2214028, 2.0]; clipped share 1/2.
//   As loss weights with ratio 1 and A = 1 (pg = -1 per token): token-mean (-1.2214028 - 2) / 2 = -1.6107014
#[test]
fn truncated_is_weights_cap_and_report_the_clipped_share() -> Result<()> {
    let dev = Device::Cpu;
    let old = Tensor::new(&[[-1f32, -1.]], &dev)?;
    let sampler = Tensor::new(&[[-1.2f32, -3.0]], &dev)?;
    let mask = Tensor::new(&[[1f32, 1.]], &dev)?;
    let is = truncated_is_weights(&old, &sampler, &mask, 2.0)?;
    let w = is.weights.to_vec2::<f32>()?;
    close(w[0][0], 1.221_402_8, 1e-6);
    close(w[0][1], 2.0, 1e-6);
    close(is.clipped_share as f32, 0.5, 1e-9);
    let adv = Tensor::new(&[1f32], &dev)?;
    let out = clipped_surrogate(&old, &old, &adv, &mask, Clip::default(), LossAgg::TokenMean, Some(&is.weights))?;
    close(out.loss.to_scalar::<f32>()?, -1.610_701_4, 1e-6);
    assert!(truncated_is_weights(&old, &sampler, &mask, 0.0).is_err());
    Ok(())
}

#[test]
fn aggregate_of_an_empty_mask_is_zero() -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::new(&[[3f32, 4.]], &dev)?;
    let m = Tensor::new(&[[0f32, 0.]], &dev)?;
    for agg in [LossAgg::TokenMean, LossAgg::SeqMean, LossAgg::TokenSum] {
        assert_eq!(aggregate(&x, &m, agg)?.to_scalar::<f32>()?, 0.0);
    }
    Ok(())
}

proptest! {
    // Inside the trust region (1 - low < ratio < 1 + high) the clip never binds: the loss equals the
    // unclipped -A * ratio aggregated the same way, and the clip fraction is 0.
    #[test]
    fn clipped_equals_unclipped_inside_the_trust_region(
        rows in proptest::collection::vec(
            (proptest::collection::vec((-0.2f32..0.17, any::<bool>()), 3), -2.0f32..2.0, -3.0f32..0.0),
            1..4,
        ),
        agg in prop_oneof![Just(LossAgg::TokenMean), Just(LossAgg::SeqMean), Just(LossAgg::TokenSum)],
    ) {
        let dev = Device::Cpu;
        let old: Vec<Vec<f32>> = rows.iter().map(|(_, _, o)| vec![*o; 3]).collect();
        let lp: Vec<Vec<f32>> = rows.iter().map(|(t, _, o)| t.iter().map(|(d, _)| o + d).collect()).collect();
        let mask: Vec<Vec<f32>> = rows.iter().map(|(t, _, _)| t.iter().map(|(_, m)| f32::from(u8::from(*m))).collect()).collect();
        let adv: Vec<f32> = rows.iter().map(|(_, a, _)| *a).collect();
        let (lp, old, mask) = (Tensor::new(lp, &dev)?, Tensor::new(old, &dev)?, Tensor::new(mask, &dev)?);
        let adv = Tensor::new(adv, &dev)?;
        let out = clipped_surrogate(&lp, &old, &adv, &mask, Clip::default(), agg, None)?;
        let unclipped = (adv.unsqueeze(1)?.broadcast_as(lp.dims2()?)?.neg()? * (&lp - &old)?.exp()?)?;
        let want = aggregate(&unclipped, &mask, agg)?.to_scalar::<f32>()?;
        let got = out.loss.to_scalar::<f32>()?;
        prop_assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        prop_assert_eq!(out.clip_fraction, 0.0);
    }
}
