//! Stage 4's learner step through the public API on a tiny model: zero advantages move nothing, the KL to
//! an identical reference is 0, and the step's loss is the rl functions' value (by micro-batch shares).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use phi4r_learner::rl::{aggregate, clipped_surrogate, k3_kl, train_collected};
use phi4r_learner::{Learner, LossAgg, RlAlgo, RlBatch, RlConfig, RlRow, Stage, StageConfig};
use phi4r_model::loss::token_logps;
use phi4r_model::TrainableModel;
use phi4r_replay::{CollectReport, Collected};
use phi4r_replay::{EasyMemory, FilterCounts, PromptId};

mod common;
use common::{tiny, VOCAB};

fn config(kl_coef: f64, loss_agg: LossAgg) -> StageConfig {
    StageConfig {
        seq_len: 32,
        micro_batch: 2,
        lr: 1e-2,
        weight_decay: 0.0,
        max_steps: Some(10),
        rl: RlConfig { kl_coef, loss_agg, max_new_tokens: 16, ..RlConfig::default() },
        ..StageConfig::seed(Stage::Rl)
    }
}

fn learner(kl_coef: f64, loss_agg: LossAgg) -> Result<Learner> {
    let model = TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?;
    let reference = model.model.frozen()?;
    Ok(Learner::new(model, config(kl_coef, loss_agg), 10)?.with_reference(reference))
}

/// Four completions of two prompts, of unequal lengths.
struct Rows {
    prompts: Vec<Vec<u32>>,
    completions: Vec<Vec<u32>>,
    logps: Vec<Vec<f32>>,
}

fn rows() -> Rows {
    Rows {
        prompts: vec![vec![1, 2, 3], vec![1, 2, 3], vec![4, 5], vec![4, 5]],
        completions: vec![vec![7, 8, 9], vec![10, 11], vec![12, 13, 14, 15], vec![16]],
        logps: vec![vec![-4.0, -4.3, -4.1], vec![-4.2, -3.9], vec![-4.1, -4.2, -4.0, -4.4], vec![-4.15]],
    }
}

fn batch(r: &Rows, advantages: &[f32], range: std::ops::Range<usize>) -> Result<RlBatch> {
    let rows: Vec<RlRow> = range
        .map(|i| RlRow {
            prompt: &r.prompts[i],
            completion: &r.completions[i],
            sampler_logps: &r.logps[i],
            temperature: 1.0,
            advantage: advantages[i],
            reward: advantages[i].signum(),
        })
        .collect();
    Ok(RlBatch::new(&rows, 0)?)
}

fn weights(l: &Learner) -> Result<Vec<Vec<f32>>> {
    l.trainable().vars().into_iter().map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)).collect()
}

#[test]
fn zero_advantages_without_kl_leave_the_weights_bit_identical() -> Result<()> {
    let mut l = learner(0.0, LossAgg::TokenMean)?;
    let before = weights(&l)?;
    let r = rows();
    let ev = l.rl_step(&[batch(&r, &[0.0; 4], 0..2)?, batch(&r, &[0.0; 4], 2..4)?])?;
    assert!(!ev.step.skipped);
    assert_eq!(ev.step.loss, 0.0);
    assert_eq!((ev.rl.kl, ev.rl.advantage_abs_mean, ev.rl.completions, ev.rl.completion_tokens), (0.0, 0.0, 4, 10));
    assert!(ev.rl.entropy > 0.0 && ev.rl.entropy <= (VOCAB as f64).ln() + 1e-6, "{}", ev.rl.entropy);
    assert_eq!(weights(&l)?, before);
    Ok(())
}

#[test]
fn the_kl_to_an_identical_reference_is_zero_at_the_first_step() -> Result<()> {
    let mut l = learner(0.04, LossAgg::TokenMean)?;
    let r = rows();
    let ev = l.rl_step(&[batch(&r, &[1.0, -1.0, 0.5, -0.5], 0..4)?])?;
    assert!(ev.rl.kl.abs() < 1e-7, "kl {}", ev.rl.kl);
    assert!(!ev.step.skipped && ev.step.grad_norm > 0.0);
    // The policy moved, so the second step sees a positive KL.
    let ev = l.rl_step(&[batch(&r, &[1.0, -1.0, 0.5, -0.5], 0..4)?])?;
    assert!(ev.rl.kl > 0.0, "kl {}", ev.rl.kl);
    Ok(())
}

// The step's loss equals the rl functions called directly on the whole batch, whatever the micro-batch
// split: for each aggregation, two micro-batches of 2 vs the value of
//   clipped_surrogate(logps, sampler_logps, A, mask, clip(0.2, 0.28), agg).loss
//     + kl_coef * aggregate(k3_kl(logps, ref_logps), mask, agg)
// with the reference a perturbed copy, so the KL is not 0.
#[test]
fn the_step_loss_is_the_rl_functions_value_for_every_aggregation() -> Result<()> {
    let kl_coef = 0.1;
    let advantages = [1.2, -0.7, 0.4, -0.9];
    for agg in [LossAgg::TokenMean, LossAgg::SeqMean, LossAgg::TokenSum] {
        let model = TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?;
        let reference = TrainableModel::init(&tiny(), 4, DType::F32, &Device::Cpu)?.model.frozen()?;
        let policy = model.model.frozen()?;
        let r = rows();
        let whole = batch(&r, &advantages, 0..4)?;
        let t = whole.lm().tensors(&Device::Cpu)?;
        let (b, tt) = whole.lm().dims();
        let logps = token_logps(&policy.forward(&t.input_ids, whole.lm().layout())?, &t.targets)?;
        let ref_logps = token_logps(&reference.forward(&t.input_ids, whole.lm().layout())?, &t.targets)?;
        let old = Tensor::from_slice(whole.old_logps(), (b, tt), &Device::Cpu)?;
        let adv = Tensor::from_slice(whole.advantages(), b, &Device::Cpu)?;
        let clip = RlAlgo::default().clip();
        let pg = clipped_surrogate(&logps, &old, &adv, &t.loss_mask, clip, agg, None)?;
        let kl = aggregate(&k3_kl(&logps, &ref_logps)?, &t.loss_mask, agg)?;
        let expected = f64::from(pg.loss.to_scalar::<f32>()?) + kl_coef * f64::from(kl.to_scalar::<f32>()?);

        let mut l = Learner::new(model, config(kl_coef, agg), 10)?.with_reference(reference);
        let ev = l.rl_step(&[batch(&r, &advantages, 0..2)?, batch(&r, &advantages, 2..4)?])?;
        assert!((ev.step.loss - expected).abs() < 1e-5, "{agg:?}: step {} vs direct {expected}", ev.step.loss);
        assert!(ev.rl.kl > 0.0 && ev.rl.clip_fraction >= 0.0);
        assert!((ev.rl.advantage_mean - 0.0).abs() < 1e-6);
    }
    Ok(())
}

fn report(policy_version: u64) -> CollectReport {
    CollectReport {
        policy_version,
        temperature: 1.0,
        rounds: 1,
        prompts: 2,
        completions: 8,
        correct: 0,
        reward_mean: -1.0,
        accuracy: 0.0,
        response_len_mean: 4.0,
        truncated_share: 0.0,
        filter: FilterCounts { no_signal_wrong: 2, ..FilterCounts::default() },
        refused_groups: 0,
        trained_groups: 0,
        positive_share: None,
        in_band: false,
        sampling_s: 0.0,
    }
}

// A step whose groups were all filtered out advances the clock (the policy version) without an update and
// without counting as a bad step; groups sampled by another version are refused; the easy memory is kept.
#[test]
fn an_empty_collection_is_an_idle_step_and_another_version_is_refused() -> Result<()> {
    let mut l = learner(0.04, LossAgg::TokenMean)?;
    let before = weights(&l)?;
    let mut easy = EasyMemory::new();
    easy.insert(PromptId(7));
    let r = train_collected(&mut l, Collected { groups: vec![], easy: easy.clone(), report: report(0) }, 0)?;
    assert!(r.rl.is_none() && r.step.skipped && r.step.step == 1 && r.step.bad_steps_in_row == 0);
    assert_eq!(weights(&l)?, before);
    assert_eq!(l.easy(), Some(&easy));
    let stale = train_collected(&mut l, Collected { groups: vec![], easy, report: report(0) }, 0);
    assert!(stale.is_err(), "version 0 groups at step 1");
    Ok(())
}

// π_old from the sampler and π_θ from the learner are the same distribution when nothing has been
// updated yet: completions sampled at T = 0.6 by the learner's own weights give a ratio of 1 on every
// token (approx_kl ≈ 0, nothing clipped). Before the learner tempered its logits by the row's
// temperature, this ratio was exp(log π_T − log π_1) ≠ 1.
#[test]
fn the_samplers_tempered_log_probs_are_the_learners_at_the_first_step() -> Result<()> {
    use phi4r_rollout::{generate, SamplingConfig, StopRule};
    let mut l = learner(0.0, LossAgg::TokenMean)?;
    let policy = l.model().frozen()?;
    let prompts = vec![vec![1u32, 2, 3], vec![4u32, 5]];
    let cfg = SamplingConfig { temperature: 0.6, max_new_tokens: 8, min_new_tokens: 8, seed: 9, ..Default::default() };
    let gens = generate(&policy, &prompts, &cfg, &StopRule::default())?;
    let rows: Vec<RlRow> = gens
        .iter()
        .zip(&prompts)
        .zip([1.0f32, -1.0])
        .map(|((g, p), a)| RlRow {
            prompt: p,
            completion: &g.tokens,
            sampler_logps: &g.logprobs,
            temperature: 0.6,
            advantage: a,
            reward: a,
        })
        .collect();
    let ev = l.rl_step(&[RlBatch::new(&rows, 0)?])?;
    assert!(ev.rl.approx_kl.abs() < 1e-5, "approx_kl {}", ev.rl.approx_kl);
    assert_eq!(ev.rl.clip_fraction, 0.0);
    Ok(())
}

fn ppo_config(epochs: usize, mini_batches: usize) -> StageConfig {
    let mut c = config(0.0, LossAgg::TokenMean);
    c.rl.algo = RlAlgo::ppo();
    c.rl.epochs = epochs;
    c.rl.mini_batches = mini_batches;
    c
}

// PPO: the critic starts at zero, so at the first step its explained variance is exactly 0 and the value
// loss is 0.5 · mean(R²) over tokens, here R = ±1 on every token (γ = λ = 1): 0.5. After the step the
// head has moved towards the returns, the checkpoint carries it beside the HF files, and a resumed run's
// next step is bit-identical to a straight run's (the head and its moments come back).
#[test]
fn ppo_trains_a_value_head_and_resumes_it_exactly() -> Result<()> {
    let r = rows();
    let adv = [1.0, -1.0, 1.0, -1.0];
    let model = || TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu);
    let mut l = Learner::new(model()?, ppo_config(1, 1), 10)?;
    let ev = l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    assert_eq!(ev.rl.explained_variance, Some(0.0));
    let vloss = ev.rl.value_loss.ok_or_else(|| anyhow::anyhow!("no value loss"))?;
    assert!((vloss - 0.5).abs() < 1e-6, "value loss {vloss}");
    assert_eq!(ev.rl.updates, 1);
    let ev2 = l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    let ev2_loss = ev2.rl.value_loss.ok_or_else(|| anyhow::anyhow!("no value loss"))?;
    assert!(ev2_loss < vloss, "the critic learned: {ev2_loss} < {vloss}");
    assert!(ev2.rl.explained_variance.is_some_and(|e| e > 0.0), "{:?}", ev2.rl.explained_variance);

    let dir = tempfile::tempdir()?;
    let ckpt = l.save_checkpoint(dir.path())?;
    assert!(ckpt.join(phi4r_learner::rl::VALUE_HEAD_FILE).is_file());
    assert!(ckpt.join(phi4r_learner::rl::VALUE_OPTIMIZER_FILE).is_file());
    let straight = l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    let mut resumed = Learner::resume(dir.path(), ppo_config(1, 1), DType::F32, &Device::Cpu)?;
    let again = resumed.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    assert_eq!(weights(&resumed)?, weights(&l)?);
    assert_eq!(again.rl.value_loss, straight.rl.value_loss);
    std::fs::remove_file(ckpt.join(phi4r_learner::rl::VALUE_HEAD_FILE))?;
    assert!(Learner::resume(dir.path(), ppo_config(1, 1), DType::F32, &Device::Cpu).is_err());
    Ok(())
}

// `rl.mini_batches = 2` over two micro-batches is two updates, each on its own micro-batch: the same
// weights as two one-batch steps of a learner with one update per step (constant lr, sampler log-probs
// as π_old in both). `rl.epochs = 2` doubles the updates, and the second pass sees a moved policy.
#[test]
fn mini_batches_and_epochs_are_sequential_updates() -> Result<()> {
    let r = rows();
    let adv = [1.2, -0.7, 0.4, -0.9];
    let mut cfg = config(0.0, LossAgg::TokenMean);
    cfg.rl.mini_batches = 2;
    let mut split = Learner::new(TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?, cfg.clone(), 10)?;
    let ev = split.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    assert_eq!((ev.rl.updates, ev.step.step), (2, 1));
    let mut one =
        Learner::new(TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?, config(0.0, LossAgg::TokenMean), 10)?;
    one.rl_step(&[batch(&r, &adv, 0..2)?])?;
    one.rl_step(&[batch(&r, &adv, 2..4)?])?;
    for (a, b) in weights(&split)?.iter().flatten().zip(weights(&one)?.iter().flatten()) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    cfg.rl.epochs = 2;
    let mut twice = Learner::new(TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?, cfg, 10)?;
    let ev = twice.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
    assert_eq!(ev.rl.updates, 4);
    assert!(ev.rl.approx_kl.abs() > 1e-6, "the second pass measures drift from the sampler");
    Ok(())
}

/// Each row's summed completion log-prob under the learner's current weights (temperature 1).
fn row_logps(l: &Learner, b: &RlBatch) -> Result<Vec<f32>> {
    let t = b.lm().tensors(&Device::Cpu)?;
    let logits = l.model().forward(&t.input_ids, b.lm().layout())?;
    Ok(phi4r_learner::sequence_logps(&logits, &t.targets, &t.loss_mask)?.to_vec1()?)
}

// The direction of the update, for GRPO and PPO alike: one step raises the log-probability of the
// completions with a positive advantage (reward +1) and lowers those with a negative one (reward −1).
#[test]
fn a_step_makes_rewarded_completions_likelier_and_punished_ones_less_likely() -> Result<()> {
    let r = rows();
    let adv = [1.0, -1.0, 1.0, -1.0];
    for algo in [RlAlgo::default(), RlAlgo::ppo()] {
        let mut cfg = config(0.0, LossAgg::TokenMean);
        cfg.rl.algo = algo;
        let mut l = Learner::new(TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?, cfg, 10)?;
        let whole = batch(&r, &adv, 0..4)?;
        let before = row_logps(&l, &whole)?;
        l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
        let after = row_logps(&l, &whole)?;
        for (i, a) in adv.iter().enumerate() {
            let moved = after[i] - before[i];
            assert!(moved * a > 0.0, "{}: row {i} (advantage {a}) moved by {moved}", algo.name());
        }
    }
    Ok(())
}

// The decoupled objective: π_old is the learner's own log-probs at the start of the step, so at the first
// pass the ratio is exactly 1 (approx_kl 0, nothing clipped) however far the sampler's log-probs are;
// the sampler enters only through min(π_prox / π_sampler, cap). Sampler log-probs 3 nats below the
// learner's give weights e³ ≈ 20: every token is capped at 2, so the step's loss is twice that of the
// sampler objective on up-to-date sampler log-probs (ratio 1 there too).
#[test]
fn the_decoupled_objective_clips_around_the_learner_and_caps_the_sampler_weight() -> Result<()> {
    let mut r = rows();
    let adv = [1.0, -1.0, 0.5, -0.5];
    let mut cfg = config(0.0, LossAgg::TokenMean);
    cfg.rl.off_policy = phi4r_learner::OffPolicy::Decoupled { cap: 2.0 };
    let model = || TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu);
    let mut decoupled = Learner::new(model()?, cfg, 10)?;
    // The learner's own log-probs of the completions, minus 3 nats: a very stale sampler.
    let probe = batch(&r, &adv, 0..4)?;
    let t = probe.lm().tensors(&Device::Cpu)?;
    let own =
        token_logps(&decoupled.model().forward(&t.input_ids, probe.lm().layout())?, &t.targets)?.to_vec2::<f32>()?;
    for (i, lp) in r.logps.iter_mut().enumerate() {
        let p = r.prompts[i].len();
        for (j, x) in lp.iter_mut().enumerate() {
            *x = own[i][p + j - 1] - 3.0;
        }
    }
    let dev = decoupled.rl_step(&[batch(&r, &adv, 0..4)?])?;
    assert!(dev.rl.approx_kl.abs() < 1e-6 && dev.rl.clip_fraction == 0.0, "{:?}", dev.rl);
    assert_eq!(dev.rl.is_capped_share, Some(1.0));
    // A plain learner whose sampler log-probs are its own (ratio 1).
    let mut plain = Learner::new(model()?, config(0.0, LossAgg::TokenMean), 10)?;
    for (i, lp) in r.logps.iter_mut().enumerate() {
        let p = r.prompts[i].len();
        for (j, x) in lp.iter_mut().enumerate() {
            *x = own[i][p + j - 1];
        }
    }
    let ev = plain.rl_step(&[batch(&r, &adv, 0..4)?])?;
    assert_eq!(ev.rl.is_capped_share, None);
    assert!(ev.step.loss.abs() > 1e-3, "a loss to compare: {}", ev.step.loss);
    assert!((dev.step.loss - 2.0 * ev.step.loss).abs() < 1e-5, "{} vs 2 × {}", dev.step.loss, ev.step.loss);
    Ok(())
}

// Data-parallel learners (`<N>gen-2learn`): two replicas, each on half the micro-batches, their gradients
// summed and applied by both, give the single learner's update on the whole batch — weights within 1e-5
// after two steps, for each aggregation, with the KL anchor on — and the replicas stay identical.
#[test]
fn two_data_parallel_learners_on_half_batches_equal_one_on_the_whole() -> Result<()> {
    use phi4r_learner::DataParallel;
    let r = rows();
    let adv = [1.2, -0.7, 0.4, -0.9];
    for agg in [LossAgg::TokenMean, LossAgg::SeqMean, LossAgg::TokenSum] {
        let make = || -> Result<Learner> {
            let model = TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?;
            let reference = TrainableModel::init(&tiny(), 4, DType::F32, &Device::Cpu)?.model.frozen()?;
            Ok(Learner::new(model, config(0.1, agg), 10)?.with_reference(reference))
        };
        let mut one = make()?;
        let mut two = DataParallel::new(make()?, 2)?;
        for _ in 0..2 {
            let micro = [batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?];
            let a = one.rl_step(&micro)?;
            let b = two.rl_step(&micro)?;
            assert!((a.step.loss - b.step.loss).abs() < 1e-6, "{agg:?}: loss {} vs {}", a.step.loss, b.step.loss);
            assert!((a.rl.kl - b.rl.kl).abs() < 1e-6 && a.rl.completions == b.rl.completions);
        }
        let (w1, w2) = (weights(&one)?, weights(two.leader())?);
        let worst = w1.iter().flatten().zip(w2.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{agg:?}: max weight difference {worst}");
        let mut replicas = vec![];
        two.for_each(|l| replicas.push(weights(l).expect("weights")));
        assert_eq!(replicas[0], replicas[1], "the replicas stay identical");
    }
    let mut ppo = config(0.0, LossAgg::TokenMean);
    ppo.rl.algo = RlAlgo::ppo();
    let l = Learner::new(TrainableModel::init(&tiny(), 3, DType::F32, &Device::Cpu)?, ppo, 10)?;
    assert!(DataParallel::new(l, 2).is_err(), "PPO is refused by name");
    Ok(())
}

// bf16 weights (the CUDA default, `--dtype auto` on a GPU) take every stage-4 step path: GRPO with the KL
// to a bf16 reference, PPO's value head, and the decoupled objective's step-start pass. Each step is a
// good one with finite figures, the weights stay bf16 and move, and the KL to the step-start weights is
// exactly 0 at the first step (the tempered log-probs are f32 whatever the model's dtype).
#[test]
fn bf16_models_take_every_rl_step_path() -> Result<()> {
    let r = rows();
    let adv = [1.0, -1.0, 0.5, -0.5];
    let bf16 = || TrainableModel::init(&tiny(), 3, DType::BF16, &Device::Cpu);
    let as_f32 = |l: &Learner| -> Result<Vec<Vec<f32>>> {
        let vars = l.trainable().vars();
        assert!(vars.iter().all(|(_, v)| v.dtype() == DType::BF16), "the variables stay bf16");
        vars.into_iter().map(|(_, v)| Ok(v.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)).collect()
    };
    let mut ppo = ppo_config(1, 1);
    ppo.lr = 1e-2;
    let mut decoupled = config(0.0, LossAgg::TokenMean);
    decoupled.rl.off_policy = phi4r_learner::OffPolicy::Decoupled { cap: 2.0 };
    for (name, cfg, kl) in
        [("grpo+kl", config(0.1, LossAgg::SeqMean), true), ("ppo", ppo, false), ("decoupled", decoupled, false)]
    {
        let model = bf16()?;
        let reference = model.model.frozen()?;
        let mut l = Learner::new(model, cfg, 10)?.with_reference(reference);
        let before = as_f32(&l)?;
        let ev = l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
        assert!(!ev.step.skipped && ev.step.loss.is_finite() && ev.step.grad_norm > 0.0, "{name}: {:?}", ev.step);
        if kl {
            assert_eq!(ev.rl.kl, 0.0, "{name}: the reference is the step-start model");
        }
        assert_ne!(as_f32(&l)?, before, "{name}: the weights moved");
        let again = l.rl_step(&[batch(&r, &adv, 0..2)?, batch(&r, &adv, 2..4)?])?;
        assert!(again.step.loss.is_finite(), "{name}: {:?}", again.step);
        if kl {
            assert!(again.rl.kl > 0.0, "{name}: the policy left the reference: {}", again.rl.kl);
        }
    }
    Ok(())
}
