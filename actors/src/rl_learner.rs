//! The stage-4 learner actor (first wiring: synchronous and on-policy, one generator). Each `Step`:
//! 1. a frozen copy of the weights (version = step) and the too-easy memory from the learner's compute
//!    thread;
//! 2. `GeneratorMsg::Collect` to the generator actor, which samples, verifies, filters and balances on
//!    its own compute thread;
//! 3. [`train_collected`] (the GRPO update) on the learner's compute thread, a checkpoint when due;
//! 4. the report becomes metrics, a `metrics.jsonl` line and progress.
//!
//! A streaming runtime replaces step 2 by N generators feeding a replay buffer; the rest stays.

use crate::compute::Compute;
use crate::learner::error_chain;
use crate::messages::{GeneratorMsg, LearnerMsg};
use indicatif::ProgressBar;
use phi4r_learner::rl::{train_collected, RlStepReport};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// How stage 4 ended.
#[derive(Debug, Clone, Serialize)]
pub struct RlSummary {
    /// Steps run in this process.
    pub steps: u64,
    /// Of those, steps with nothing to train (every group filtered out).
    pub idle_steps: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub bad_steps: u64,
    /// Mean sampled reward over the last 10 steps.
    pub final_reward_mean: f64,
    /// Mean sampled accuracy over the last 10 steps.
    pub final_accuracy: f64,
    /// Completions sampled.
    pub completions: u64,
    /// Tokens trained on (prompt + completion, padding excluded).
    pub tokens: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Steps per second, sampling included.
    pub steps_per_s: f64,
    /// Share of the wall time spent sampling and verifying.
    pub sampling_share: f64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// Start-up arguments.
pub struct RlLearnerArgs {
    /// The compute thread owning the `Learner`.
    pub compute: Compute,
    /// The generator actor that collects each step's groups.
    pub generator: ActorRef<GeneratorMsg>,
    /// Padding id of training batches.
    pub pad_id: u32,
    /// Output folder (checkpoints, metrics.jsonl).
    pub out: PathBuf,
    /// Progress display.
    pub progress: ProgressBar,
    /// Receives the summary (or the error) when the stage ends.
    pub done: tokio::sync::oneshot::Sender<Result<RlSummary, String>>,
    /// Checkpoint and stop after this many steps in this process.
    pub stop_after: Option<u64>,
}

/// Per-run state.
pub struct RlLearnerState {
    args: Option<RlLearnerArgs>,
    compute: Compute,
    generator: ActorRef<GeneratorMsg>,
    pad_id: u32,
    out: PathBuf,
    progress: ProgressBar,
    metrics: std::fs::File,
    started: Instant,
    sampling_s: f64,
    steps: u64,
    idle: u64,
    bad: u64,
    completions: u64,
    tokens: u64,
    recent: Vec<(f64, f64)>,
    checkpoint: Option<PathBuf>,
    stop_after: Option<u64>,
}

/// The stage-4 learner actor.
pub struct RlLearnerActor;

impl RlLearnerState {
    fn summary(&self) -> RlSummary {
        let wall_s = self.started.elapsed().as_secs_f64();
        let n = self.recent.len().max(1) as f64;
        RlSummary {
            steps: self.steps,
            idle_steps: self.idle,
            bad_steps: self.bad,
            final_reward_mean: self.recent.iter().map(|r| r.0).sum::<f64>() / n,
            final_accuracy: self.recent.iter().map(|r| r.1).sum::<f64>() / n,
            completions: self.completions,
            tokens: self.tokens,
            wall_s,
            steps_per_s: self.steps as f64 / wall_s.max(1e-9),
            sampling_share: self.sampling_s / wall_s.max(1e-9),
            checkpoint: self.checkpoint.clone(),
        }
    }

    fn record(&mut self, r: &RlStepReport) -> anyhow::Result<()> {
        let (ev, c) = (&r.step, &r.collect);
        self.steps += 1;
        self.idle += u64::from(r.rl.is_none());
        self.bad += u64::from(ev.skipped && r.rl.is_some());
        self.completions += c.completions as u64;
        self.tokens += ev.tokens as u64;
        self.sampling_s += c.sampling_s;
        self.recent.push((c.reward_mean, c.accuracy));
        if self.recent.len() > 10 {
            self.recent.remove(0);
        }
        metrics::counter!("phi4r_learner_steps_total").increment(1);
        metrics::counter!("phi4r_learner_tokens_total").increment(ev.tokens as u64);
        metrics::counter!("phi4r_rl_completions_total").increment(c.completions as u64);
        metrics::gauge!("phi4r_rl_reward_mean").set(c.reward_mean);
        metrics::gauge!("phi4r_rl_accuracy").set(c.accuracy);
        metrics::gauge!("phi4r_rl_temperature").set(f64::from(c.temperature));
        metrics::gauge!("phi4r_rl_response_len_tokens").set(c.response_len_mean);
        rl_gauges(ev, r.rl.as_ref());
        let mut line = serde_json::to_value(ev)?;
        if let (Some(obj), serde_json::Value::Object(collect)) = (line.as_object_mut(), serde_json::to_value(c)?) {
            obj.extend(collect);
        }
        line["rl"] = serde_json::to_value(&r.rl)?;
        line["elapsed_s"] = self.started.elapsed().as_secs_f64().into();
        writeln!(self.metrics, "{line}")?;
        self.progress.set_position(ev.step);
        self.progress.set_message(format!(
            "reward {:+.3} acc {:.3} T {:.2} kl {:.4}",
            c.reward_mean,
            c.accuracy,
            c.temperature,
            r.rl.as_ref().map_or(0.0, |rl| rl.kl)
        ));
        Ok(())
    }

    /// Ends the stage with `reason` (the last good checkpoint stays the one to resume from).
    fn fail(&mut self, me: &ActorRef<LearnerMsg>, reason: String) -> Result<(), ActorProcessingErr> {
        self.finish(Err(reason));
        me.stop(None);
        Ok(())
    }

    fn finish(&mut self, result: Result<RlSummary, String>) {
        self.progress.finish_and_clear();
        if let Some(args) = self.args.take() {
            let _ = args.done.send(result);
        }
    }
}

impl Actor for RlLearnerActor {
    type Msg = LearnerMsg;
    type State = RlLearnerState;
    type Arguments = RlLearnerArgs;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, a: RlLearnerArgs) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(&a.out)?;
        let metrics = std::fs::OpenOptions::new().create(true).append(true).open(a.out.join("metrics.jsonl"))?;
        Ok(RlLearnerState {
            compute: a.compute.clone(),
            generator: a.generator.clone(),
            pad_id: a.pad_id,
            out: a.out.clone(),
            progress: a.progress.clone(),
            stop_after: a.stop_after,
            args: Some(a),
            metrics,
            started: Instant::now(),
            sampling_s: 0.0,
            steps: 0,
            idle: 0,
            bad: 0,
            completions: 0,
            tokens: 0,
            recent: vec![],
            checkpoint: None,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: LearnerMsg,
        st: &mut RlLearnerState,
    ) -> Result<(), ActorProcessingErr> {
        // Every failure ends the run with its cause (and its chain) reported to the CLI, instead of an
        // `Err` that would stop the actor and leave only "stopped without a result".
        match step(&me, msg, st).await {
            Ok(()) => Ok(()),
            Err(e) => st.fail(&me, error_chain(e.as_ref())),
        }
    }
}

/// One message's work: a stop (final checkpoint and summary) or one step.
async fn step(me: &ActorRef<LearnerMsg>, msg: LearnerMsg, st: &mut RlLearnerState) -> Result<(), ActorProcessingErr> {
    if let LearnerMsg::Stop = msg {
        let out = st.out.clone();
        match st.compute.call(move |l| l.save_checkpoint(&out)).await? {
            Ok(path) => st.checkpoint = Some(path),
            Err(e) => st.finish(Err(format!("final checkpoint: {e}"))),
        }
        let summary = st.summary();
        st.finish(Ok(summary));
        me.stop(None);
        return Ok(());
    }
    let prep = st
        .compute
        .call(|l| -> phi4r_learner::Result<_> {
            Ok((Box::new(l.model().frozen()?), l.easy().cloned().unwrap_or_default(), l.state().step))
        })
        .await?;
    let (policy, easy, step) = match prep {
        Ok(p) => p,
        Err(e) => return st.fail(me, format!("frozen policy copy: {e}")),
    };
    let collected = match st.generator.call(|reply| GeneratorMsg::Collect { policy, easy, step, reply }, None).await? {
        CallResult::Success(Ok(c)) => c,
        CallResult::Success(Err(e)) => return st.fail(me, format!("generator: {e}")),
        CallResult::Timeout | CallResult::SenderError => {
            return st.fail(me, "the generator did not answer".into());
        }
    };
    let (out, pad_id) = (st.out.clone(), st.pad_id);
    let (report, ckpt, finished) = st
        .compute
        .call(move |l| {
            let report = train_collected(l, collected, pad_id);
            let ckpt = (report.is_ok() && l.checkpoint_due()).then(|| l.save_checkpoint(&out));
            (report, ckpt, l.is_finished())
        })
        .await?;
    if let Some(c) = ckpt {
        st.checkpoint = Some(c?);
    }
    match report {
        Ok(r) => {
            st.record(&r)?;
            if finished || st.stop_after.is_some_and(|n| st.steps >= n) {
                me.send_message(LearnerMsg::Stop)?;
            } else {
                me.send_message(LearnerMsg::Step)?;
            }
        }
        Err(e) => return st.fail(me, e.to_string()),
    }
    Ok(())
}

/// The learner's stage-4 gauges after a step (synchronous and streamed runs alike).
pub(crate) fn rl_gauges(ev: &phi4r_learner::StepEvent, rl: Option<&phi4r_learner::RlStats>) {
    metrics::gauge!("phi4r_learner_lr").set(ev.lr);
    let Some(rl) = rl else { return };
    metrics::gauge!("phi4r_learner_loss").set(ev.loss);
    metrics::gauge!("phi4r_rl_kl").set(rl.kl);
    metrics::gauge!("phi4r_rl_clip_fraction").set(rl.clip_fraction);
    metrics::gauge!("phi4r_rl_entropy").set(rl.entropy);
    metrics::gauge!("phi4r_rl_overlong_masked").set(rl.overlong.masked as f64);
    if let Some(v) = rl.value_loss {
        metrics::gauge!("phi4r_rl_value_loss").set(v);
    }
    if let Some(e) = rl.explained_variance.filter(|e| e.is_finite()) {
        metrics::gauge!("phi4r_rl_explained_variance").set(e);
    }
}
