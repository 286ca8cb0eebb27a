//! Stage 4 streamed (DESIGN.md §3): a prompt source, N generators, K verifiers, B reward balancers, a
//! replay buffer and the learner under one root supervisor. Rollouts flow while the learner trains:
//!
//! ```text
//! source ──Lease──▶ generator ──Score──▶ verifier ──Groups──▶ balancer ──Push──▶ replay ◀──Take── learner
//!   ▲ books: HandOver / Delivered / Requeue                                    weights (one Arc) ──▶ generators
//! ```
//!
//! - Every completion carries the policy version that sampled it and the sampler's log-probs. After each
//!   update the learner publishes one detached copy of its weights (`Arc<Policy>`), which every generator
//!   picks up before its next sampling batch.
//! - `rl.max_staleness` is enforced by pacing: the source hands out prompts only while the outstanding work
//!   fits `max_staleness + 1` batches ([`phi4r_replay::admission`]); a group that still arrives more than
//!   `max_staleness + stale_grace` versions late is dropped and counted as stale.
//! - The books ([`phi4r_replay::Books`], in the source) account for every prompt: a generator or verifier
//!   that dies is restarted by the supervisor and its leases are re-queued; a late delivery of a re-queued
//!   lease is refused, so nothing is trained twice.
//! - Tensor work runs on each role's compute thread ([`crate::compute::Compute`]); grading on tokio's
//!   blocking pool. Actors only pass messages and call the lower crates' logic.
//!
//! [`Runtime::start`] spawns a topology in-process; [`RuntimeHandle`] drives it (the control endpoint and
//! the tests use the same calls).

mod backend;
mod balance;
mod learner;
mod slots;
mod source;
mod supervisor;
mod workers;

pub use backend::{Sampling, SimSampler, SimTrainer, Trainer};
pub use learner::StreamSummary;
pub(crate) use slots::GeneratorSlots;
#[cfg(feature = "cluster")]
pub(crate) use workers::{hand_to_verifier, lease_seed};

/// The process group every generator joins (`ractor::pg`; remote ones too, synchronized across nodes).
pub const GENERATORS_GROUP: &str = "phi4r.generators";

use crate::compute::Compute;
use crate::messages::{StreamLearnerMsg, SupervisorMsg};
use crate::topology::Topology;
use indicatif::ProgressBar;
use phi4r_learner::{DataParallel, Learner, StageConfig};
use phi4r_model::Phi3;
use phi4r_replay::{BookCounts, EasyMemory, GroupSampler, PromptSource, RewardPolicyId};
use phi4r_verifier::{RewardPolicy, Verifier};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// One published version of the learner's weights: a detached copy, shared by every generator.
pub struct Policy {
    /// The learner's step when the copy was taken.
    pub version: u64,
    /// The weights (never `Var`-backed); `None` for a simulated learner.
    pub model: Option<Arc<Phi3>>,
}

/// Counters every actor updates and `status` reads (all monotone except the gauges marked so).
#[derive(Debug, Default)]
pub struct Counters {
    /// Completions sampled.
    pub completions: AtomicU64,
    /// Completion tokens sampled.
    pub tokens: AtomicU64,
    /// Completions sampled whose weights changed mid-sequence (`weight_sync = "in_flight"`).
    pub switched: AtomicU64,
    /// Completions sampled by generators on other machines (cluster nodes), also in `completions`.
    pub remote_completions: AtomicU64,
    /// Groups from cluster nodes trained on, also in `groups_trained`.
    pub remote_groups_trained: AtomicU64,
    /// Groups that reached a balancer.
    pub groups_seen: AtomicU64,
    /// Groups kept by the filters.
    pub groups_kept: AtomicU64,
    /// Groups dropped: every completion correct.
    pub dropped_all_correct: AtomicU64,
    /// Groups dropped: every completion wrong.
    pub dropped_all_wrong: AtomicU64,
    /// Groups dropped: completion lengths too uneven.
    pub dropped_length: AtomicU64,
    /// Groups dropped because they arrived (or waited) more than `max_staleness` versions late.
    pub dropped_stale: AtomicU64,
    /// Kept groups refused by a full balancer pool.
    pub dropped_pool_full: AtomicU64,
    /// Groups trained on.
    pub groups_trained: AtomicU64,
    /// Gauge: kept groups waiting in the balancers' pools.
    pub pending_groups: AtomicU64,
    /// Gauge: groups in batches waiting in the replay buffer.
    pub buffered_groups: AtomicU64,
    /// Gauge: prompts held by generators and verifiers (mirrors the books).
    pub in_flight: AtomicU64,
    /// Gauge: batches in the replay buffer.
    pub buffered_batches: AtomicU64,
    /// Gauge: scored groups on their way from a verifier to a balancer (closed in the books, not yet
    /// admitted).
    pub in_transit: AtomicU64,
    /// Gauge: groups of the batch the learner is training on (they count against the pacing until the
    /// new version is published, so no prompt is admitted for a version that is about to be left behind).
    pub training: AtomicU64,
}

impl Counters {
    fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    /// Work not yet through the filters: prompts held by generators and verifiers, and scored groups on
    /// their way to a balancer (the pacing counts each as one prompt).
    pub fn unfiltered(&self) -> usize {
        (Self::get(&self.in_flight) + Self::get(&self.in_transit)) as usize
    }

    /// Groups through the filters and not trained yet: in the pools, in the replay buffer, and the batch
    /// being trained (the pacing counts each as the `1 / keep_rate` prompts it took).
    pub fn kept_backlog(&self) -> usize {
        (Self::get(&self.pending_groups) + Self::get(&self.buffered_groups) + Self::get(&self.training)) as usize
    }

    /// Share of groups the filters kept so far (1 before any was seen).
    pub fn keep_rate(&self) -> f32 {
        let seen = Self::get(&self.groups_seen) - Self::get(&self.dropped_stale) - Self::get(&self.dropped_pool_full);
        if seen == 0 {
            1.0
        } else {
            Self::get(&self.groups_kept) as f32 / seen as f32
        }
    }

    /// The fate of every group so far.
    pub fn fates(&self) -> GroupFates {
        GroupFates {
            seen: Self::get(&self.groups_seen),
            trained: Self::get(&self.groups_trained),
            pending: Self::get(&self.pending_groups),
            buffered: Self::get(&self.buffered_groups),
            dropped: BTreeMap::from([
                ("all_correct".to_string(), Self::get(&self.dropped_all_correct)),
                ("all_wrong".to_string(), Self::get(&self.dropped_all_wrong)),
                ("non_uniform_length".to_string(), Self::get(&self.dropped_length)),
                ("stale".to_string(), Self::get(&self.dropped_stale)),
                ("pool_full".to_string(), Self::get(&self.dropped_pool_full)),
            ]),
        }
    }
}

/// What became of the groups that reached the balancers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupFates {
    /// Groups delivered to a balancer.
    pub seen: u64,
    /// Trained on.
    pub trained: u64,
    /// Waiting in a balancer's pool.
    pub pending: u64,
    /// In a batch in the replay buffer.
    pub buffered: u64,
    /// Dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
}

/// The reward policy of the moment, with the scoring sequence that makes a swap atomic.
struct RewardState {
    id: RewardPolicyId,
    policy: RewardPolicy,
    /// Leases whose scoring began so far.
    seq: u64,
    /// Per policy id: (first, last) scoring sequence number.
    used: BTreeMap<u32, (u64, u64)>,
}

/// State every actor of one run shares (one `Arc`).
pub struct Shared {
    weights: RwLock<Arc<Policy>>,
    version: AtomicU64,
    reward: RwLock<RewardState>,
    paused: AtomicBool,
    easy: Mutex<phi4r_replay::EasyMemory>,
    /// The counters.
    pub counters: Counters,
    pub(crate) verifiers: RwLock<Vec<ActorRef<crate::messages::VerifierMsg>>>,
    balancers: RwLock<Vec<ActorRef<crate::messages::BalancerMsg>>>,
    started: Instant,
    /// What each actor (by pid) is doing now, for `ctl status`.
    states: Mutex<std::collections::HashMap<u64, &'static str>>,
    /// Cluster nodes by name (empty without `--cluster-listen`), kept by the gateway.
    pub(crate) nodes: RwLock<BTreeMap<String, NodeStatus>>,
    /// The gateway of the cluster nodes, once `--cluster-listen` started it.
    #[cfg(feature = "cluster")]
    pub(crate) gateway: std::sync::OnceLock<ActorRef<crate::cluster::GatewayMsg>>,
    /// Test hook: the next generator batch panics on its compute thread after sampling (mid-batch).
    #[cfg(feature = "test-hooks")]
    pub panic_next_batch: AtomicBool,
}

impl Shared {
    fn new(policy: Policy, easy: phi4r_replay::EasyMemory) -> Self {
        let version = policy.version;
        Shared {
            weights: RwLock::new(Arc::new(policy)),
            version: AtomicU64::new(version),
            reward: RwLock::new(RewardState {
                id: RewardPolicyId(0),
                policy: RewardPolicy::Binary,
                seq: 0,
                used: BTreeMap::new(),
            }),
            paused: AtomicBool::new(false),
            easy: Mutex::new(easy),
            counters: Counters::default(),
            verifiers: RwLock::new(vec![]),
            balancers: RwLock::new(vec![]),
            started: Instant::now(),
            states: Mutex::new(std::collections::HashMap::new()),
            nodes: RwLock::new(BTreeMap::new()),
            #[cfg(feature = "cluster")]
            gateway: std::sync::OnceLock::new(),
            #[cfg(feature = "test-hooks")]
            panic_next_batch: AtomicBool::new(false),
        }
    }

    /// The latest published weights.
    pub fn policy(&self) -> Arc<Policy> {
        self.weights.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The learner's current policy version.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Publishes a new version of the weights (the learner, after each update).
    fn publish(&self, policy: Policy) {
        let version = policy.version;
        *self.weights.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        self.version.store(version, Ordering::Release);
        metrics::gauge!("phi4r_policy_version").set(version as f64);
    }

    /// Records what actor `pid` is doing now (`ctl status`).
    pub(crate) fn set_state(&self, pid: u64, state: &'static str) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, state);
    }

    /// What actor `pid` is doing (`running` when it never said).
    fn state(&self, pid: u64) -> &'static str {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).get(&pid).copied().unwrap_or("running")
    }

    /// Forgets a stopped actor's state.
    fn forget_state(&self, pid: u64) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }

    /// Whether generation is paused.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The reward policy a lease about to be scored uses, recorded under one lock with its sequence number:
    /// every lease whose scoring began before a swap uses the old policy, every later one the new.
    fn begin_scoring(&self) -> (RewardPolicyId, RewardPolicy) {
        let mut r = self.reward.write().unwrap_or_else(|e| e.into_inner());
        let seq = r.seq;
        r.seq += 1;
        let id = r.id;
        let e = r.used.entry(id.0).or_insert((seq, seq));
        e.1 = seq;
        (id, r.policy)
    }

    /// Swaps the reward policy for every verifier at once; returns its id.
    fn set_reward_policy(&self, policy: RewardPolicy) -> RewardPolicyId {
        let mut r = self.reward.write().unwrap_or_else(|e| e.into_inner());
        r.id = RewardPolicyId(r.id.0 + 1);
        r.policy = policy;
        tracing::info!(id = r.id.0, ?policy, "reward policy swapped");
        metrics::gauge!("phi4r_reward_policy_id").set(f64::from(r.id.0));
        r.id
    }

    /// The reward policy now.
    pub fn reward_policy(&self) -> (RewardPolicyId, RewardPolicy) {
        let r = self.reward.read().unwrap_or_else(|e| e.into_inner());
        (r.id, r.policy)
    }

    /// Per reward-policy id, the first and last scoring sequence number that used it (a swap is atomic
    /// when these ranges do not overlap).
    pub fn reward_policy_ranges(&self) -> BTreeMap<u32, (u64, u64)> {
        self.reward.read().unwrap_or_else(|e| e.into_inner()).used.clone()
    }
}

/// What a stage-4 generator samples with.
#[derive(Debug, Clone)]
pub struct SampleParams {
    /// Completions per prompt.
    pub group_size: usize,
    /// Longest completion.
    pub max_new_tokens: usize,
    /// Sampling temperature by policy version.
    pub temperature: phi4r_replay::TemperatureSchedule,
    /// The run's seed.
    pub seed: u64,
    /// Prompts per sampling batch.
    pub prompts_per_batch: usize,
    /// When generators take newer weights (`rl.weight_sync`).
    pub weight_sync: phi4r_learner::rl::WeightSync,
}

impl SampleParams {
    /// The sampling parameters of a stage config's `[rl]`.
    pub fn from_config(cfg: &StageConfig) -> Self {
        SampleParams {
            group_size: cfg.rl.group_size,
            max_new_tokens: cfg.rl.max_new_tokens,
            temperature: cfg.rl.temperature.clone(),
            seed: cfg.seed,
            prompts_per_batch: cfg.rl.prompts_per_step.clamp(1, cfg.rl.balance.batch_groups.max(1)),
            weight_sync: cfg.rl.weight_sync,
        }
    }
}

/// Everything a streaming stage-4 run needs.
pub struct RuntimeSetup {
    /// Roles and counts.
    pub topology: Topology,
    /// The thread budget to split between roles.
    pub threads: usize,
    /// The stage config (`[rl]`: group size, staleness, balance, temperature; seed).
    pub config: StageConfig,
    /// The learner ([`Learner`], resumed or fresh), or a stand-in.
    pub learner: Box<dyn Trainer>,
    /// The too-easy memory to start from (a resumed learner's).
    pub easy: EasyMemory,
    /// The prompts.
    pub source: PromptSource,
    /// How generators sample.
    pub sampling: Sampling,
    /// Where generators sample when it is not the learner's device (the topology file's
    /// `devices.generator`): each new version is copied there once.
    pub generator_device: Option<candle_core::Device>,
    /// Grades completions (the verifier actors' copy).
    pub verifier: Verifier,
    /// Run folder: checkpoints, metrics.jsonl, summary.json.
    pub out: PathBuf,
    /// Checkpoint and stop after this many steps in this process.
    pub stop_after: Option<u64>,
    /// Progress display.
    pub progress: ProgressBar,
}

/// A cluster node of the status table (`node --join`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Its name (`--name`, default host-pid).
    pub name: String,
    /// Whether its session is up.
    pub connected: bool,
    /// Its generators (as it last reported).
    pub generators: usize,
    /// Times it joined (a restarted node joins again under its name).
    pub joins: u64,
    /// Completions it delivered.
    pub completions: u64,
    /// Weight versions sent to it (once per version per node, not per generator).
    pub weight_versions_sent: u64,
    /// Bytes of weights sent to it.
    pub weight_bytes_sent: u64,
    /// Leases its generators hold now (issued, not yet delivered).
    pub open_leases: usize,
    /// Times its session dropped (its leases were re-queued each time).
    pub disconnects: u64,
}

/// An actor of the status table.
#[derive(Debug, Clone, Serialize)]
pub struct ActorStatus {
    /// Its role.
    pub role: String,
    /// Index within the role.
    pub index: usize,
    /// Whether it runs now.
    pub alive: bool,
    /// What it is doing: a generator `leasing`, `sampling`, `handing over` or `idle` (pacing holds
    /// admission back, or paused); a verifier `scoring` or `idle`; the learner `waiting for a batch`,
    /// `training` or `checkpointing`; the source, balancers and replay buffer `running`.
    pub state: String,
    /// Restarts after a failure.
    pub restarts: u64,
}

/// The run's status (`ctl status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `running`, `paused` or `stopping`.
    pub state: String,
    /// The topology, normalized.
    pub topology: String,
    /// The learner's policy version.
    pub policy_version: u64,
    /// The reward policy and its id.
    pub reward_policy: RewardPolicy,
    /// Its id (recorded on every completion it scored).
    pub reward_policy_id: u32,
    /// Every actor.
    pub actors: Vec<ActorStatus>,
    /// Prompts held by generators and verifiers.
    pub in_flight_prompts: u64,
    /// Kept groups waiting in the balancers.
    pub pending_groups: u64,
    /// Batches waiting in the replay buffer.
    pub buffered_batches: u64,
    /// Completions per second since the start.
    pub rollouts_per_s: f64,
    /// Completions sampled.
    pub completions: u64,
    /// Completions sampled whose weights changed mid-sequence (`rl.weight_sync = "in_flight"`).
    pub switched_completions: u64,
    /// The books, in prompts.
    pub books: BookCounts,
    /// The fate of every group.
    pub groups: GroupFates,
    /// Cluster nodes (`node --join`), with their generators.
    pub nodes: Vec<NodeStatus>,
    /// Seconds since the start.
    pub uptime_s: f64,
}

/// A cloneable handle that drives a running topology.
#[derive(Clone)]
pub struct RuntimeHandle {
    supervisor: ActorRef<SupervisorMsg>,
    learner: ActorRef<StreamLearnerMsg>,
    shared: Arc<Shared>,
}

/// How long a control call waits for the run to answer.
const CONTROL_TIMEOUT: Option<std::time::Duration> = Some(std::time::Duration::from_secs(600));

/// Asks `to` and waits (at most `timeout`), flattening ractor's errors into one that names `what`; a dead
/// peer is an error, so an actor that asks one fails and is restarted.
pub(crate) async fn ask<M: ractor::Message, R: Send + 'static>(
    to: &ActorRef<M>,
    msg: impl FnOnce(ractor::RpcReplyPort<R>) -> M,
    what: &str,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<R> {
    match to.call(msg, timeout).await {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => anyhow::bail!("{what}: no answer in {timeout:?}"),
        Ok(CallResult::SenderError) | Err(_) => anyhow::bail!("{what}: the actor asked has stopped"),
    }
}

impl RuntimeHandle {
    /// The run's status.
    pub async fn status(&self) -> anyhow::Result<Status> {
        ask(&self.supervisor, SupervisorMsg::Status, "status", CONTROL_TIMEOUT).await
    }

    /// Runs with `n` generators from now on; returns the count.
    pub async fn scale_generators(&self, n: usize) -> anyhow::Result<usize> {
        ask(&self.supervisor, |r| SupervisorMsg::Scale(n, r), "scale", CONTROL_TIMEOUT)
            .await?
            .map_err(anyhow::Error::msg)
    }

    /// Runs cluster node `node` with `n` generators from now on; returns the count.
    pub async fn scale_node(&self, node: &str, n: usize) -> anyhow::Result<usize> {
        #[cfg(feature = "cluster")]
        if let Some(gateway) = self.shared.gateway.get() {
            let wire = ask(
                gateway,
                |r| crate::cluster::GatewayMsg::ScaleNode(node.to_string(), n as u64, r),
                "scale node",
                CONTROL_TIMEOUT,
            )
            .await?;
            return wire.0.map(|n| n as usize).map_err(anyhow::Error::msg);
        }
        let _ = n;
        anyhow::bail!("scale --node {node}: this run has no cluster nodes (start it with --cluster-listen)")
    }

    /// The prompt source (the cluster gateway leases prompts for remote generators through it).
    #[cfg(feature = "cluster")]
    pub(crate) async fn source(&self) -> anyhow::Result<ActorRef<crate::messages::SourceMsg>> {
        ask(&self.supervisor, SupervisorMsg::Source, "source", CONTROL_TIMEOUT).await
    }

    /// Swaps the reward policy on every verifier; returns its id.
    pub fn set_reward_policy(&self, policy: RewardPolicy) -> RewardPolicyId {
        self.shared.set_reward_policy(policy)
    }

    /// Stops handing out prompts (in-flight batches finish; the learner trains what is ready, then waits).
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::Release);
        tracing::info!("paused");
    }

    /// Resumes handing out prompts.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::Release);
        tracing::info!("resumed");
    }

    /// Writes a checkpoint between two steps; returns its folder.
    pub async fn checkpoint(&self) -> anyhow::Result<PathBuf> {
        ask(&self.learner, StreamLearnerMsg::Checkpoint, "checkpoint", CONTROL_TIMEOUT)
            .await?
            .map_err(anyhow::Error::msg)
    }

    /// Ends the run after the step in progress, with a checkpoint.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.learner.send_message(StreamLearnerMsg::Stop).map_err(|_| anyhow::anyhow!("the run has ended"))
    }

    /// The state every actor shares (counters, policy, reward policy).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// A running topology.
pub struct Runtime {
    handle: RuntimeHandle,
    done: tokio::sync::oneshot::Receiver<Result<StreamSummary, String>>,
    join: tokio::task::JoinHandle<()>,
}

impl RuntimeSetup {
    /// The setup of a real run: `learner` (resumed or fresh) samples through `sampler`; with M > 1
    /// learners in the topology, it and M − 1 replicas train data-parallel ([`DataParallel`]), which
    /// refuses, naming the key, a config it does not support.
    #[allow(clippy::too_many_arguments)]
    pub fn real(
        topology: Topology,
        threads: usize,
        learner: Learner,
        source: PromptSource,
        sampler: GroupSampler,
        out: PathBuf,
        stop_after: Option<u64>,
        progress: ProgressBar,
    ) -> anyhow::Result<Self> {
        let config = learner.config().clone();
        let easy = learner.easy().cloned().unwrap_or_default();
        let learner: Box<dyn Trainer> = match topology.learners {
            0 | 1 => Box::new(learner),
            m => Box::new(DataParallel::new(learner, m)?),
        };
        Ok(RuntimeSetup {
            topology,
            threads,
            config,
            easy,
            learner,
            source,
            verifier: sampler.verifier().clone(),
            sampling: Sampling::Real(Box::new(sampler)),
            generator_device: None,
            out,
            stop_after,
            progress,
        })
    }
}

impl Runtime {
    /// Spawns the topology's actors on the current tokio runtime and starts training.
    pub async fn start(setup: RuntimeSetup) -> anyhow::Result<Runtime> {
        let RuntimeSetup {
            topology,
            threads,
            config: cfg,
            learner,
            easy,
            source,
            sampling,
            generator_device,
            verifier,
            out,
            stop_after,
            progress,
        } = setup;
        let budget = topology.budget(threads);
        let policy = learner.snapshot(generator_device.as_ref())?;
        let shared = Arc::new(Shared::new(policy, easy));
        let params = SampleParams::from_config(&cfg);
        let pad_id = sampling.pad_id();
        let compute = Compute::spawn_role("learner", learner, budget.learner)?;
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let args = supervisor::SupervisorArgs {
            topology,
            budget,
            shared: shared.clone(),
            source,
            sampling,
            verifier,
            params,
            config: cfg,
            learner: learner::StreamLearnerArgs { compute, pad_id, out, progress, stop_after, generator_device },
            done: done_tx,
        };
        let (supervisor, join) = Actor::spawn(None, supervisor::Supervisor, args).await?;
        let learner = match supervisor.call(SupervisorMsg::Learner, None).await {
            Ok(CallResult::Success(l)) => l,
            _ => anyhow::bail!("the supervisor did not start the learner"),
        };
        Ok(Runtime { handle: RuntimeHandle { supervisor, learner, shared }, done, join })
    }

    /// A handle for control calls.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// Waits for the run to end; its summary, or the learner's error with its cause chain.
    pub async fn wait(self) -> anyhow::Result<StreamSummary> {
        let result = self.done.await.map_err(|_| anyhow::anyhow!("the stage-4 supervisor stopped without a result"))?;
        let _ = self.join.await;
        result.map_err(|e| anyhow::anyhow!("stage rl stopped: {e}"))
    }
}
