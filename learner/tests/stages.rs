//! Learner behavior through the public API on a tiny model: gradient accumulation, exact resume,
//! bad-step handling and DPO with a cached reference.

use anyhow::Result;
use candle_core::{DType, Device};
use phi4r_learner::{
    latest_checkpoint, lm_step, DataCursor, Error, Grads, Learner, LmBatch, PairBatch, PairId, Stage, StageConfig,
    StepEvent,
};
use phi4r_model::TrainableModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::{tiny, VOCAB};
const SEQ: usize = 16;

fn model(seed: u64) -> Result<TrainableModel> {
    Ok(TrainableModel::init(&tiny(), seed, DType::F32, &Device::Cpu)?)
}

/// Packed rows of 2–3 documents each, with prompt tokens (mask 0) and completion tokens (mask 1);
/// the same `index` always gives the same rows.
fn packed_batch(index: u64, rows: usize) -> Result<LmBatch> {
    let mut rng = StdRng::seed_from_u64(1000 + index);
    let (mut ids, mut masks, mut lens) = (vec![], vec![], vec![]);
    for _ in 0..rows {
        let (mut row, mut mask, mut docs) = (vec![], vec![], vec![]);
        while row.len() < SEQ - 3 {
            let len = rng.random_range(3..=7).min(SEQ - row.len());
            let prompt = rng.random_range(1..len);
            for i in 0..len {
                row.push(rng.random_range(1..VOCAB as u32));
                mask.push(u8::from(i >= prompt));
            }
            docs.push(len);
        }
        let pad = SEQ - row.len();
        row.extend(std::iter::repeat_n(0, pad));
        mask.extend(std::iter::repeat_n(0, pad));
        ids.push(row);
        masks.push(mask);
        lens.push(docs);
    }
    Ok(LmBatch::from_packed(SEQ, &ids, &masks, &lens)?)
}

fn mid_config() -> StageConfig {
    StageConfig {
        stage: Stage::Mid,
        seq_len: SEQ,
        batch_size: 4,
        micro_batch: 2,
        lr: 1e-2,
        warmup_ratio: 0.25,
        weight_decay: 0.1,
        max_grad_norm: 0.5,
        ..StageConfig::seed(Stage::Mid)
    }
}

/// The micro-batches of the learner's next step (4 rows a step), and the data cursor after it, as a feed
/// would hand them over.
fn next_step(learner: &Learner) -> Result<(Vec<LmBatch>, DataCursor)> {
    let first = learner.state().step * 2;
    let after = DataCursor { epoch: 0, position: (first + 2) * 2 };
    Ok((vec![packed_batch(first, 2)?, packed_batch(first + 1, 2)?], after))
}

/// One step as the learner actor takes it: train, then record the feed's cursor.
fn take_step(learner: &mut Learner) -> Result<StepEvent> {
    let (batches, cursor) = next_step(learner)?;
    let ev = learner.train_step(&batches)?;
    learner.record_data_cursor(cursor);
    Ok(ev)
}

fn weights(learner: &Learner) -> Result<Vec<(String, Vec<f32>)>> {
    let mut out = vec![];
    for (name, var) in learner.trainable().vars() {
        out.push((name, var.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?));
    }
    Ok(out)
}

fn max_abs_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn accumulated_micro_batches_equal_the_full_batch_token_mean() -> Result<()> {
    let m = model(1)?;
    let vars: Vec<_> = m.vars().into_iter().map(|(_, v)| v).collect();
    let full = packed_batch(7, 4)?;
    let parts = [full.select_rows(&[0])?, full.select_rows(&[1, 2])?, full.select_rows(&[3])?];
    let n = full.loss_tokens();
    assert_ne!(parts[0].loss_tokens() * 4, n, "the parts must hold unequal token counts for the test to mean anything");
    let whole = lm_step(&m.model, &vars, &full, n)?;
    let mut acc: Option<Grads> = None;
    let mut loss = 0.0;
    for p in &parts {
        let out = lm_step(&m.model, &vars, p, n)?;
        loss += out.stats.loss;
        match &mut acc {
            Some(a) => a.accumulate(out.grads)?,
            None => acc = Some(out.grads),
        }
    }
    assert!((loss - whole.stats.loss).abs() < 1e-5, "{loss} vs {}", whole.stats.loss);
    let acc = acc.expect("three parts");
    for (a, w) in acc.tensors().iter().zip(whole.grads.tensors()) {
        let (a, w) = (a.as_ref().expect("grad"), w.as_ref().expect("grad"));
        let diff = (a - w)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff <= 1e-5, "gradient differs by {diff}");
    }
    Ok(())
}

#[test]
fn resume_continues_exactly() -> Result<()> {
    const N: usize = 3;
    let cfg = mid_config();
    let dir = tempfile::tempdir()?;

    let mut straight = Learner::new(model(3)?, cfg.clone(), 2 * N as u64)?;
    for _ in 0..2 * N {
        assert!(!take_step(&mut straight)?.skipped);
    }

    let mut first = Learner::new(model(3)?, cfg.clone(), 2 * N as u64)?;
    for _ in 0..N {
        take_step(&mut first)?;
    }
    first.save_checkpoint(dir.path())?;
    let state_at_save = first.state().clone();
    drop(first);

    let mut resumed = Learner::resume(dir.path(), cfg, DType::F32, &Device::Cpu)?;
    assert_eq!(resumed.state(), &state_at_save, "step, cursor and counters come back");
    assert_eq!(resumed.state().cursor, DataCursor { epoch: 0, position: (N * 4) as u64 });
    for _ in 0..N {
        take_step(&mut resumed)?;
    }

    let diff = max_abs_diff(&weights(&straight)?, &weights(&resumed)?);
    assert_eq!(diff, 0.0, "resumed weights are bit-identical to the straight run's");
    assert_eq!(straight.state(), resumed.state());
    assert_eq!(straight.optimizer().state_bytes()?, resumed.optimizer().state_bytes()?);
    assert!(resumed.is_finished());
    Ok(())
}

/// bf16 weights (the CUDA default) train through the optimizer's f32 masters: the loss falls, the
/// variables stay bf16, and a resumed run continues bit for bit (the masters travel in the optimizer
/// state, so no update is lost to bf16 rounding at the checkpoint).
#[test]
fn bf16_trains_through_f32_masters_and_resumes_exactly() -> Result<()> {
    const N: usize = 3;
    let cfg = mid_config();
    let dir = tempfile::tempdir()?;
    let bf16 = || -> Result<TrainableModel> { Ok(TrainableModel::init(&tiny(), 3, DType::BF16, &Device::Cpu)?) };
    // The loss on fixed batches falls as in f32 (`training_lowers_the_loss`).
    let (learner, _) = fifteen_steps_on_fixed_batches(bf16()?)?;
    assert_eq!(learner.optimizer().master_count(), learner.trainable().vars().len());
    assert!(learner.trainable().vars().iter().all(|(_, v)| v.dtype() == DType::BF16));

    let mut straight = Learner::new(bf16()?, cfg.clone(), 2 * N as u64)?;
    for _ in 0..2 * N {
        assert!(!take_step(&mut straight)?.skipped);
    }

    let mut part = Learner::new(bf16()?, cfg.clone(), 2 * N as u64)?;
    for _ in 0..N {
        take_step(&mut part)?;
    }
    part.save_checkpoint(dir.path())?;
    drop(part);
    let mut resumed = Learner::resume(dir.path(), cfg, DType::BF16, &Device::Cpu)?;
    for _ in 0..N {
        take_step(&mut resumed)?;
    }
    assert_eq!(max_abs_diff(&weights(&straight)?, &weights(&resumed)?), 0.0);
    assert_eq!(straight.optimizer().state_bytes()?, resumed.optimizer().state_bytes()?);
    Ok(())
}

/// 15 steps on the same two micro-batches (no warm-up or decay); asserts the loss fell below 70% of the
/// first step's. Returns the learner and the first step's event.
fn fifteen_steps_on_fixed_batches(model: TrainableModel) -> Result<(Learner, StepEvent)> {
    let cfg = StageConfig { warmup_ratio: 0.0, max_grad_norm: 1.0, weight_decay: 0.0, ..mid_config() };
    let mut learner = Learner::new(model, cfg, 20)?;
    let batches = vec![packed_batch(0, 2)?, packed_batch(1, 2)?];
    let first = learner.train_step(&batches)?;
    let mut last = first.clone();
    for _ in 0..14 {
        last = learner.train_step(&batches)?;
    }
    assert!(last.loss < 0.7 * first.loss, "loss {} -> {}", first.loss, last.loss);
    Ok((learner, first))
}

#[test]
fn training_lowers_the_loss() -> Result<()> {
    let (_, first) = fifteen_steps_on_fixed_batches(model(4)?)?;
    let batches = [packed_batch(0, 2)?, packed_batch(1, 2)?];
    assert_eq!(first.loss_tokens, batches.iter().map(LmBatch::loss_tokens).sum::<usize>());
    assert_eq!(first.sequences, 4);
    assert!(first.grad_norm > 0.0 && first.lr > 0.0);
    Ok(())
}

fn with_nan(batch: &LmBatch) -> Result<LmBatch> {
    let (b, t) = batch.dims();
    let mut mask = batch.loss_mask().to_vec();
    mask[1] = f32::NAN;
    Ok(LmBatch::new(b, t, batch.input_ids().to_vec(), batch.targets().to_vec(), mask, batch.layout().clone())?)
}

#[test]
fn non_finite_steps_are_skipped_and_too_many_stop_the_stage() -> Result<()> {
    let cfg = StageConfig { max_bad_steps: 3, ..mid_config() };
    let dir = tempfile::tempdir()?;
    let mut learner = Learner::new(model(5)?, cfg.clone(), 20)?;
    let good = vec![packed_batch(0, 2)?, packed_batch(1, 2)?];
    let bad = vec![packed_batch(0, 2)?, with_nan(&packed_batch(1, 2)?)?];

    learner.train_step(&good)?;
    let saved = learner.save_checkpoint(dir.path())?;
    let before = weights(&learner)?;
    let ev = learner.train_step(&bad)?;
    assert!(ev.skipped && !ev.loss.is_finite());
    assert_eq!(ev.bad_steps_in_row, 1);
    assert_eq!(max_abs_diff(&before, &weights(&learner)?), 0.0, "a skipped step leaves the weights alone");
    assert_eq!(learner.optimizer().steps(), 1, "and the moments");

    assert_eq!(learner.train_step(&good)?.bad_steps_in_row, 0, "a good step resets the count");
    assert!(learner.train_step(&bad)?.skipped);
    assert!(learner.train_step(&bad)?.skipped);
    match learner.train_step(&bad) {
        Err(Error::TooManyBadSteps { count: 3, .. }) => {}
        other => panic!("expected TooManyBadSteps, got {other:?}"),
    }
    assert_eq!(learner.state().bad_steps_total, 4);

    assert_eq!(latest_checkpoint(dir.path())?, Some(saved));
    let back = Learner::resume(dir.path(), cfg, DType::F32, &Device::Cpu)?;
    assert_eq!(max_abs_diff(&before, &weights(&back)?), 0.0, "the last good checkpoint is intact");
    Ok(())
}

/// Pairs sharing a prompt per pair: the chosen completion repeats a fixed pattern, the rejected one is
/// random; masks cover the completion only.
fn pairs(first_id: u64, n: usize) -> Result<PairBatch> {
    let mut rng = StdRng::seed_from_u64(77 + first_id);
    let (mut chosen, mut rejected, mut ids) = (vec![], vec![], vec![]);
    for k in 0..n {
        let prompt: Vec<u32> = (0..4).map(|_| rng.random_range(1..VOCAB as u32)).collect();
        let side = |completion: Vec<u32>| {
            let mut ids = prompt.clone();
            ids.extend(&completion);
            let mut mask = vec![0u8; prompt.len()];
            mask.extend(vec![1u8; completion.len()]);
            (ids, mask)
        };
        chosen.push(side(vec![5, 6, 7, 8, 2]));
        rejected.push(side((0..rng.random_range(3..7)).map(|_| rng.random_range(1..VOCAB as u32)).collect()));
        ids.push(PairId(first_id + k as u64));
    }
    Ok(PairBatch::from_padded(ids, &chosen, &rejected, 0)?)
}

#[test]
fn dpo_widens_the_margin_with_a_reference_computed_once() -> Result<()> {
    let cfg = StageConfig { lr: 5e-3, batch_size: 4, micro_batch: 2, seq_len: SEQ, ..StageConfig::seed(Stage::Dpo) };
    let dir = tempfile::tempdir()?;
    let policy = model(6)?;
    let reference = policy.model.frozen()?;
    let mut learner = Learner::new(policy, cfg.clone(), 10)?.with_reference(reference);
    let step = [pairs(0, 2)?, pairs(2, 2)?];

    let first = learner.dpo_step(&step)?;
    assert_eq!(first.dpo.ref_computed, 4);
    assert!(first.dpo.margin.abs() < 1e-3, "policy = reference at the start: margin {}", first.dpo.margin);
    assert!((first.step.loss - std::f64::consts::LN_2).abs() < 1e-3, "loss starts at ln 2: {}", first.step.loss);
    let mut last = first.clone();
    for _ in 0..5 {
        last = learner.dpo_step(&step)?;
        assert_eq!(last.dpo.ref_computed, 0, "reference log-probs are cached");
    }
    assert!(last.dpo.margin > first.dpo.margin + 0.05, "margin {} -> {}", first.dpo.margin, last.dpo.margin);
    assert_eq!(last.dpo.reward_accuracy, 1.0);
    assert!(last.step.loss < first.step.loss);
    assert!(learner.train_step(&[packed_batch(0, 1)?]).is_err(), "the LM step is not a DPO-stage step");

    learner.save_checkpoint(dir.path())?;
    // No reference after resume: the cached log-probs travel with the checkpoint.
    let mut resumed = Learner::resume(dir.path(), cfg, DType::F32, &Device::Cpu)?;
    assert_eq!(resumed.ref_cache().len(), 4);
    let ev = resumed.dpo_step(&step)?;
    assert_eq!(ev.dpo.ref_computed, 0);
    let unseen = resumed.dpo_step(&[pairs(10, 2)?]);
    assert!(unseen.is_err(), "a new pair without a reference model is an error");
    Ok(())
}
