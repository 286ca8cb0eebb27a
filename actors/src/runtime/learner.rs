//! The streaming stage-4 learner actor: takes the oldest fresh batch from the replay buffer, trains on it
//! on its compute thread ([`phi4r_learner::rl::train_groups`]), publishes the new weights to every
//! generator, writes a checkpoint when due, and records metrics. Time spent waiting for a batch is its
//! idle time.

use super::Shared;
use crate::compute::Compute;
use crate::messages::{ReplayMsg, StreamLearnerMsg, SupervisorMsg};
use indicatif::ProgressBar;
use phi4r_learner::rl::RlTrainReport;
use phi4r_replay::{Batch, PolicyVersion, Versioned};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one ask for a batch waits before the learner looks at its mailbox again.
const TAKE_WAIT: Duration = Duration::from_millis(200);

/// How a streamed stage 4 ended.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Steps run in this process.
    pub steps: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub bad_steps: u64,
    /// Mean sampled reward of the groups trained in the last 10 steps.
    pub final_reward_mean: f64,
    /// Completions sampled (every generator).
    pub completions: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Steps per second.
    pub steps_per_s: f64,
    /// Completions sampled per second.
    pub rollouts_per_s: f64,
    /// Share of the wall time the learner waited for a batch.
    pub learner_idle_fraction: f64,
    /// The same once the pipeline is full: from the end of the first step on (None before a second step).
    pub learner_idle_fraction_full: Option<f64>,
    /// Mean policy lag of the trained groups, versions.
    pub mean_policy_lag: f64,
    /// Largest policy lag of a trained group.
    pub max_policy_lag: u64,
    /// Mean lag of the trained tokens behind the learner, versions, each token judged by the version
    /// that sampled it.
    pub mean_token_lag: f64,
    /// The same with every token judged by its completion's first token: what the token lag would be
    /// without in-flight updates. Equal to `mean_token_lag` with `rl.weight_sync = "between_batches"`.
    pub mean_token_lag_at_start: f64,
    /// Trained completions whose weights changed mid-sequence.
    pub switched_completions: u64,
    /// Versions published to the generators.
    pub weights_published: u64,
    /// Bytes of one published version (a detached copy of every weight, on the generators' device).
    pub weights_bytes: u64,
    /// Mean seconds to make one published copy (a transfer when learner and generators are on
    /// different devices).
    pub weights_publish_s_mean: f64,
    /// The books at the end, in prompts (open leases dropped as `shutdown`).
    pub books: phi4r_replay::BookCounts,
    /// The fate of every group.
    pub groups: super::GroupFates,
    /// Restarts of generators and verifiers.
    pub restarts: u64,
    /// Completions sampled on cluster nodes (`node --join`), also in `completions`.
    pub remote_completions: u64,
    /// Groups from cluster nodes trained on.
    pub remote_groups_trained: u64,
    /// The cluster nodes at the end.
    pub nodes: Vec<super::NodeStatus>,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

pub(super) struct StreamLearnerArgs {
    pub compute: Compute<Box<dyn super::Trainer>>,
    pub pad_id: u32,
    pub out: PathBuf,
    pub progress: ProgressBar,
    pub stop_after: Option<u64>,
    pub generator_device: Option<candle_core::Device>,
}

pub(super) struct LearnerArgs {
    pub a: StreamLearnerArgs,
    pub replay: ActorRef<ReplayMsg>,
    pub shared: Arc<Shared>,
    pub supervisor: ActorRef<SupervisorMsg>,
}

pub(super) struct LearnerState {
    a: StreamLearnerArgs,
    replay: ActorRef<ReplayMsg>,
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
    metrics: std::fs::File,
    started: Instant,
    idle_s: f64,
    /// (idle seconds, when) at the end of the first step.
    first: Option<(f64, Instant)>,
    steps: u64,
    bad: u64,
    tokens: u64,
    lags: (u64, u64, u64),
    /// (sum of token lags, the same judged by first tokens, tokens, completions with a mid-sequence switch).
    token_lags: (u64, u64, u64, u64),
    /// (versions published, seconds copying them, bytes of the last).
    publish: (u64, f64, u64),
    recent: Vec<f64>,
    checkpoint: Option<PathBuf>,
    finished: bool,
    /// Its own pid (the key of its state in `ctl status`).
    pid: u64,
}

impl LearnerState {
    /// The summary; books and restarts are filled in by the supervisor.
    fn summary(&self) -> StreamSummary {
        let wall_s = self.started.elapsed().as_secs_f64().max(1e-9);
        let c = &self.shared.counters;
        let completions = c.completions.load(Ordering::Relaxed);
        StreamSummary {
            steps: self.steps,
            bad_steps: self.bad,
            final_reward_mean: self.recent.iter().sum::<f64>() / self.recent.len().max(1) as f64,
            completions,
            tokens: self.tokens,
            wall_s,
            steps_per_s: self.steps as f64 / wall_s,
            rollouts_per_s: completions as f64 / wall_s,
            learner_idle_fraction: self.idle_s / wall_s,
            learner_idle_fraction_full: self
                .first
                .filter(|_| self.steps >= 2)
                .map(|(idle, at)| (self.idle_s - idle) / at.elapsed().as_secs_f64().max(1e-9)),
            mean_policy_lag: self.lags.0 as f64 / self.lags.1.max(1) as f64,
            max_policy_lag: self.lags.2,
            mean_token_lag: self.token_lags.0 as f64 / self.token_lags.2.max(1) as f64,
            mean_token_lag_at_start: self.token_lags.1 as f64 / self.token_lags.2.max(1) as f64,
            switched_completions: self.token_lags.3,
            weights_published: self.publish.0,
            weights_bytes: self.publish.2,
            weights_publish_s_mean: self.publish.1 / self.publish.0.max(1) as f64,
            books: phi4r_replay::BookCounts::default(),
            groups: c.fates(),
            restarts: 0,
            remote_completions: c.remote_completions.load(Ordering::Relaxed),
            remote_groups_trained: c.remote_groups_trained.load(Ordering::Relaxed),
            nodes: vec![],
            checkpoint: self.checkpoint.clone(),
        }
    }

    fn record(&mut self, r: &RlTrainReport, batch: &Batch, version: u64) -> anyhow::Result<()> {
        let ev = &r.step;
        self.steps += 1;
        self.bad += u64::from(ev.skipped && r.rl.is_some());
        self.tokens += ev.tokens as u64;
        let current = PolicyVersion(version);
        let mut lag_sum = 0;
        for g in &batch.groups {
            let lag = g.policy_version().staleness(current);
            metrics::histogram!("phi4r_rl_policy_lag").record(lag as f64);
            lag_sum += lag;
            self.lags.2 = self.lags.2.max(lag);
        }
        self.lags.0 += lag_sum;
        self.lags.1 += batch.groups.len() as u64;
        let (mut token_lag, mut tokens, mut temperature, mut completions) = (0u64, 0u64, 0f64, 0usize);
        for c in batch.groups.iter().flat_map(|g| &g.completions) {
            temperature += f64::from(c.temperature);
            completions += 1;
            token_lag += c.token_versions().iter().map(|v| v.staleness(current)).sum::<u64>();
            tokens += c.len() as u64;
            self.token_lags.1 += c.policy_version.staleness(current) * c.len() as u64;
            self.token_lags.3 += u64::from(!c.version_switches.is_empty());
        }
        self.token_lags.0 += token_lag;
        self.token_lags.2 += tokens;
        let rewards: Vec<f64> = batch.groups.iter().flat_map(|g| g.rewards()).map(f64::from).collect();
        let reward_mean = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
        self.recent.push(reward_mean);
        if self.recent.len() > 10 {
            self.recent.remove(0);
        }
        self.shared.counters.groups_trained.fetch_add(batch.groups.len() as u64, Ordering::Relaxed);
        let remote = batch.groups.iter().filter(|g| g.node.is_some()).count();
        self.shared.counters.remote_groups_trained.fetch_add(remote as u64, Ordering::Relaxed);
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        metrics::counter!("phi4r_learner_steps_total").increment(1);
        metrics::counter!("phi4r_learner_tokens_total").increment(ev.tokens as u64);
        metrics::gauge!("phi4r_learner_idle_fraction").set(self.idle_s / wall);
        metrics::gauge!("phi4r_rl_reward_mean").set(reward_mean);
        crate::rl_learner::rl_gauges(ev, r.rl.as_ref());
        let mut line = serde_json::to_value(ev)?;
        line["rl"] = serde_json::to_value(&r.rl)?;
        line["reward_mean"] = reward_mean.into();
        line["groups"] = batch.groups.len().into();
        line["positive_share"] = batch.positive_share.into();
        // Which tiers the step trained on (groups per tier): where the learning signal came from.
        let mut by_tier = std::collections::BTreeMap::<String, u64>::new();
        for g in &batch.groups {
            *by_tier.entry(g.prompt.tier.to_string()).or_default() += 1;
        }
        line["groups_by_tier"] = serde_json::to_value(by_tier)?;
        // The trained completions' mean sampling temperature (the annealing schedule, as sampled).
        line["temperature"] = (temperature / completions.max(1) as f64).into();
        line["in_band"] = batch.in_band.into();
        line["policy_lag_mean"] = (lag_sum as f64 / batch.groups.len().max(1) as f64).into();
        line["token_lag_mean"] = (token_lag as f64 / tokens.max(1) as f64).into();
        line["completions_sampled"] = self.shared.counters.completions.load(Ordering::Relaxed).into();
        line["learner_idle_fraction"] = (self.idle_s / wall).into();
        line["elapsed_s"] = wall.into();
        writeln!(self.metrics, "{line}")?;
        self.a.progress.set_position(ev.step);
        self.a.progress.set_message(format!("reward {reward_mean:+.3} idle {:.0}%", 100.0 * self.idle_s / wall));
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<PathBuf, String> {
        self.shared.set_state(self.pid, "checkpointing");
        let out = self.a.out.clone();
        let easy = self.shared.easy.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let path = self
            .a
            .compute
            .call(move |l| l.checkpoint(&out, easy))
            .await
            .and_then(|r| r)
            .map_err(|e| format!("{e:#}"))?;
        self.checkpoint = Some(path.clone());
        Ok(path)
    }

    /// Ends the run: final checkpoint, summary to the supervisor.
    async fn finish(&mut self, me: &ActorRef<StreamLearnerMsg>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let result = match self.checkpoint().await {
            Ok(_) => Ok(Box::new(self.summary())),
            Err(e) => Err(format!("final checkpoint: {e}")),
        };
        self.a.progress.finish_and_clear();
        let _ = self.supervisor.send_message(SupervisorMsg::LearnerDone(result));
        me.stop(None);
    }

    /// One step: wait for a batch (up to [`TAKE_WAIT`]), train, publish, checkpoint when due.
    async fn step(&mut self, me: &ActorRef<StreamLearnerMsg>) -> anyhow::Result<()> {
        let waited = Instant::now();
        self.shared.set_state(self.pid, "waiting for a batch");
        let batch = match self.replay.call(ReplayMsg::Take, Some(TAKE_WAIT)).await? {
            CallResult::Success(b) => b,
            CallResult::Timeout => {
                self.idle_s += waited.elapsed().as_secs_f64();
                me.send_message(StreamLearnerMsg::Step)?;
                return Ok(());
            }
            CallResult::SenderError => anyhow::bail!("the replay buffer is gone"),
        };
        self.idle_s += waited.elapsed().as_secs_f64();
        self.shared.set_state(self.pid, "training");
        let easy = self.shared.easy.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (out, pad_id) = (self.a.out.clone(), self.a.pad_id);
        let to = self.a.generator_device.clone();
        let groups = batch.groups.clone();
        let (report, version, policy, publish_s, ckpt, finished) = self
            .a
            .compute
            .call(move |l| -> anyhow::Result<_> {
                let version = l.version();
                let report = l.train(&groups, easy.clone(), pad_id)?;
                let t = Instant::now();
                let policy = l.snapshot(to.as_ref())?;
                let publish_s = t.elapsed().as_secs_f64();
                let ckpt = l.checkpoint_due().then(|| l.checkpoint(&out, easy)).transpose()?;
                Ok((report, version, policy, publish_s, ckpt, l.is_finished()))
            })
            .await??;
        self.publish.0 += 1;
        self.publish.1 += publish_s;
        self.publish.2 = policy.model.as_ref().map_or(0, |m| m.weight_bytes() as u64);
        self.shared.publish(policy);
        self.shared.counters.training.store(0, Ordering::Relaxed);
        if ckpt.is_some() {
            self.checkpoint = ckpt;
        }
        self.record(&report, &batch, version)?;
        if self.first.is_none() {
            self.first = Some((self.idle_s, Instant::now()));
        }
        if finished || self.a.stop_after.is_some_and(|n| self.steps >= n) {
            me.send_message(StreamLearnerMsg::Stop)?;
        } else {
            me.send_message(StreamLearnerMsg::Step)?;
        }
        Ok(())
    }
}

pub(super) struct StreamLearnerActor;

impl Actor for StreamLearnerActor {
    type Msg = StreamLearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        me: ActorRef<StreamLearnerMsg>,
        a: LearnerArgs,
    ) -> Result<LearnerState, ActorProcessingErr> {
        std::fs::create_dir_all(&a.a.out)?;
        let metrics = std::fs::OpenOptions::new().create(true).append(true).open(a.a.out.join("metrics.jsonl"))?;
        tracing::info!("learner started");
        me.send_message(StreamLearnerMsg::Step)?;
        Ok(LearnerState {
            a: a.a,
            replay: a.replay,
            shared: a.shared,
            supervisor: a.supervisor,
            metrics,
            started: Instant::now(),
            idle_s: 0.0,
            first: None,
            steps: 0,
            bad: 0,
            tokens: 0,
            lags: (0, 0, 0),
            token_lags: (0, 0, 0, 0),
            publish: (0, 0.0, 0),
            recent: vec![],
            checkpoint: None,
            finished: false,
            pid: me.get_id().pid(),
        })
    }

    async fn handle(
        &self,
        me: ActorRef<StreamLearnerMsg>,
        msg: StreamLearnerMsg,
        st: &mut LearnerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StreamLearnerMsg::Step if !st.finished => {
                if let Err(e) = st.step(&me).await {
                    // A learner failure ends the run: the cause goes to the user, the last good
                    // checkpoint stays the one to resume from.
                    let cause = format!("{e:#}");
                    tracing::error!(error = %cause, "learner failed");
                    st.finished = true;
                    st.a.progress.finish_and_clear();
                    let _ = st.supervisor.send_message(SupervisorMsg::LearnerDone(Err(cause)));
                    me.stop(None);
                }
            }
            StreamLearnerMsg::Step => {}
            StreamLearnerMsg::Checkpoint(reply) => {
                let r = st.checkpoint().await;
                let _ = reply.send(r);
            }
            StreamLearnerMsg::Stop => st.finish(&me).await,
        }
        Ok(())
    }
}
