//! The stage 1–3 learner actor: asks the dataset actor for a step's batches, runs the step on the compute
//! thread, turns the step's event into metrics, a `metrics.jsonl` line and progress, and schedules the
//! next step by messaging itself (so `Stop` is handled between steps).

use crate::compute::Compute;
use crate::messages::{DatasetMsg, LearnerMsg};
use indicatif::ProgressBar;
use phi4r_learner::{DpoStats, Error as LearnerError, StageBatch, StepEvent};
use ractor::{call_t, Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// How a stage ended.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// Optimizer steps run in this process.
    pub steps: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// Mean loss of the last 10 steps.
    pub final_loss: f64,
    /// Tokens trained on (padding excluded).
    pub tokens: u64,
    /// Wall time of the stage, seconds.
    pub wall_s: f64,
    /// `tokens / wall_s`, the whole pipeline included.
    pub tokens_per_s: f64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Last DPO statistics (stage dpo only).
    pub dpo: Option<DpoStats>,
}

/// Start-up arguments.
pub struct LearnerArgs {
    /// The compute thread owning the `Learner`.
    pub compute: Compute,
    /// Where batches come from.
    pub dataset: ActorRef<DatasetMsg>,
    /// Stage output folder (checkpoints, metrics.jsonl).
    pub out: PathBuf,
    /// Progress display (hidden when stderr is not a terminal).
    pub progress: ProgressBar,
    /// Receives the summary (or the error) when the stage ends.
    pub done: tokio::sync::oneshot::Sender<Result<StageSummary, String>>,
    /// Checkpoint and stop after this many steps in this process (the schedule is unchanged; `--resume`
    /// continues).
    pub stop_after: Option<u64>,
}

/// Per-stage state.
pub struct LearnerState {
    args: Option<LearnerArgs>,
    compute: Compute,
    dataset: ActorRef<DatasetMsg>,
    out: PathBuf,
    progress: ProgressBar,
    metrics: std::fs::File,
    started: Instant,
    steps: u64,
    skipped: u64,
    tokens: u64,
    recent_loss: Vec<f64>,
    checkpoint: Option<PathBuf>,
    dpo: Option<DpoStats>,
    stop_after: Option<u64>,
}

/// The learner actor.
pub struct LearnerActor;

enum Outcome {
    Step(StepEvent, Option<DpoStats>),
    Failed(String),
}

impl LearnerState {
    fn summary(&self) -> StageSummary {
        let wall_s = self.started.elapsed().as_secs_f64();
        let n = self.recent_loss.len().max(1) as f64;
        StageSummary {
            steps: self.steps,
            skipped_steps: self.skipped,
            final_loss: self.recent_loss.iter().sum::<f64>() / n,
            tokens: self.tokens,
            wall_s,
            tokens_per_s: self.tokens as f64 / wall_s.max(1e-9),
            checkpoint: self.checkpoint.clone(),
            dpo: self.dpo.clone(),
        }
    }

    fn record(&mut self, ev: &StepEvent, dpo: Option<&DpoStats>) -> anyhow::Result<()> {
        self.steps += 1;
        self.skipped += u64::from(ev.skipped);
        self.tokens += ev.tokens as u64;
        if !ev.skipped {
            self.recent_loss.push(ev.loss);
            if self.recent_loss.len() > 10 {
                self.recent_loss.remove(0);
            }
        }
        let rate = self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        metrics::counter!("phi4r_learner_steps_total").increment(1);
        metrics::counter!("phi4r_learner_tokens_total").increment(ev.tokens as u64);
        if ev.skipped {
            metrics::counter!("phi4r_learner_bad_steps_total").increment(1);
        }
        metrics::gauge!("phi4r_learner_loss").set(ev.loss);
        metrics::gauge!("phi4r_learner_lr").set(ev.lr);
        metrics::gauge!("phi4r_learner_grad_norm").set(ev.grad_norm);
        metrics::gauge!("phi4r_learner_tokens_per_second").set(rate);
        let mut line = serde_json::to_value(ev)?;
        line["tokens_per_s"] = rate.into();
        line["elapsed_s"] = self.started.elapsed().as_secs_f64().into();
        if let Some(d) = dpo {
            line["dpo"] = serde_json::to_value(d)?;
            metrics::gauge!("phi4r_learner_dpo_margin").set(d.margin);
            metrics::gauge!("phi4r_learner_dpo_reward_accuracy").set(d.reward_accuracy);
        }
        writeln!(self.metrics, "{line}")?;
        self.progress.set_position(ev.step);
        self.progress.set_message(format!("loss {:.4} lr {:.2e} {:.0} tok/s", ev.loss, ev.lr, rate));
        if ev.skipped {
            self.progress.println(format!("step {}: non-finite loss or gradient, update skipped", ev.step));
        }
        Ok(())
    }

    fn finish(&mut self, result: Result<StageSummary, String>) {
        self.progress.finish_and_clear();
        if let Some(args) = self.args.take() {
            let _ = args.done.send(result);
        }
    }
}

impl Actor for LearnerActor {
    type Msg = LearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(&self, _me: ActorRef<Self::Msg>, a: LearnerArgs) -> Result<Self::State, ActorProcessingErr> {
        std::fs::create_dir_all(&a.out)?;
        let stop_after = a.stop_after;
        let metrics = std::fs::OpenOptions::new().create(true).append(true).open(a.out.join("metrics.jsonl"))?;
        Ok(LearnerState {
            compute: a.compute.clone(),
            dataset: a.dataset.clone(),
            out: a.out.clone(),
            progress: a.progress.clone(),
            args: Some(a),
            metrics,
            started: Instant::now(),
            steps: 0,
            skipped: 0,
            tokens: 0,
            recent_loss: vec![],
            checkpoint: None,
            dpo: None,
            stop_after,
        })
    }

    async fn handle(
        &self,
        me: ActorRef<Self::Msg>,
        msg: LearnerMsg,
        st: &mut LearnerState,
    ) -> Result<(), ActorProcessingErr> {
        // Every failure ends the stage with its cause (and its chain) reported to the CLI, instead of an
        // `Err` that would stop the actor and leave only "stopped without a result".
        if let Err(e) = step(&me, msg, st).await {
            st.finish(Err(error_chain(e.as_ref())));
            me.stop(None);
        }
        Ok(())
    }
}

/// `e` and its sources, `: `-separated.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(&format!(": {s}"));
        next = s.source();
    }
    out
}

/// One message's work: a step, or the end of the stage (final checkpoint and summary).
async fn step(me: &ActorRef<LearnerMsg>, msg: LearnerMsg, st: &mut LearnerState) -> Result<(), ActorProcessingErr> {
    let next = match msg {
        LearnerMsg::Stop => None,
        LearnerMsg::Step => call_t!(st.dataset, DatasetMsg::Next, 600_000)?,
    };
    let Some(step) = next else {
        // End of data (or a stop request): final checkpoint, then report.
        let out = st.out.clone();
        match st.compute.call(move |l| l.save_checkpoint(&out)).await? {
            Ok(path) => st.checkpoint = Some(path),
            Err(e) => st.finish(Err(format!("final checkpoint: {e}"))),
        }
        let summary = st.summary();
        st.finish(Ok(summary));
        me.stop(None);
        return Ok(());
    };
    let out = st.out.clone();
    let result = st
        .compute
        .call(move |l| {
            let ev = match step.batch {
                StageBatch::Lm(b) => l.train_step(&b).map(|e| (e, None)),
                StageBatch::Pairs(p) => l.dpo_step(&p).map(|e| (e.step, Some(e.dpo))),
            };
            if ev.is_ok() {
                l.record_data_cursor(step.cursor);
            }
            let ckpt = match (&ev, l.checkpoint_due()) {
                (Ok(_), true) => Some(l.save_checkpoint(&out)),
                _ => None,
            };
            (ev, ckpt, l.is_finished())
        })
        .await?;
    let (ev, ckpt, finished) = result;
    if let Some(c) = ckpt {
        st.checkpoint = Some(c?);
    }
    if let (Ok((ev, _)), Some(hang)) = (&ev, hang_after_step()) {
        if ev.step == hang {
            // Test hook (PHI4R_TEST_HANG_AFTER_STEP): stay alive, doing nothing, until killed, so a
            // test can SIGKILL the process at a known point after a checkpoint.
            eprintln!("PHI4R_TEST_HANG_AFTER_STEP: hanging after step {hang} until killed");
            std::future::pending::<()>().await;
        }
    }
    match ev.map(|(e, d)| Outcome::Step(e, d)).unwrap_or_else(|e: LearnerError| Outcome::Failed(e.to_string())) {
        Outcome::Step(ev, dpo) => {
            st.record(&ev, dpo.as_ref())?;
            st.dpo = dpo.or(st.dpo.take());
            if finished || st.stop_after.is_some_and(|n| st.steps >= n) {
                me.send_message(LearnerMsg::Stop)?;
            } else {
                me.send_message(LearnerMsg::Step)?;
            }
        }
        Outcome::Failed(reason) => {
            // TooManyBadSteps and friends: stop with the last good checkpoint untouched.
            st.finish(Err(reason));
            me.stop(None);
        }
    }
    Ok(())
}

/// `PHI4R_TEST_HANG_AFTER_STEP=N`: after step N (and its checkpoint, if one is due) the learner hangs
/// until the process is killed. For the tests that prove resume after a SIGKILL; unset in normal use.
fn hang_after_step() -> Option<u64> {
    std::env::var("PHI4R_TEST_HANG_AFTER_STEP").ok().and_then(|v| v.parse().ok())
}
