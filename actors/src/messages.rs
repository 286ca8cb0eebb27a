//! Every message type of the actor system (DESIGN.md §3). Payloads are the lower crates' own types.
//!
//! The build enables ractor's `cluster` feature (messages will cross the network for scale-out), under
//! which each message type states its own `ractor::Message` impl; these are local-only.

use phi4r_learner::{DataCursor, FeedStep};
use ractor::RpcReplyPort;

/// To the dataset actor, which streams a stage's static data.
pub enum DatasetMsg {
    /// Reply with the next optimizer step's micro-batches; `None` once every epoch is served.
    Next(RpcReplyPort<Option<FeedStep>>),
    /// Continue from a checkpoint's data cursor.
    Seek(DataCursor),
}

impl ractor::Message for DatasetMsg {}

/// To a stage 1–3 learner actor.
pub enum LearnerMsg {
    /// Run one optimizer step, then schedule the next one.
    Step,
    /// Write a checkpoint and stop after the step in progress.
    Stop,
}

impl ractor::Message for LearnerMsg {}

/// To a stage-4 generator actor.
pub enum GeneratorMsg {
    /// Sample, verify, filter and balance one step's groups from `policy` (a frozen copy of the learner's
    /// weights at version `step`), starting from the too-easy memory `easy`; reply with what was
    /// collected, or the error's text.
    Collect {
        /// The weights to sample from (never `Var`-backed).
        policy: Box<phi4r_model::Phi3>,
        /// The prompts found too easy so far.
        easy: phi4r_replay::EasyMemory,
        /// The learner's step (= the policy version).
        step: u64,
        /// Where the collected groups go.
        reply: RpcReplyPort<Result<phi4r_replay::Collected, String>>,
    },
}

impl ractor::Message for GeneratorMsg {}

// ---- The streaming stage-4 runtime (`crate::runtime`). ----

/// Prompts handed to one generator for one sampling batch.
#[derive(Debug)]
pub struct Lease {
    /// The lease, for the books.
    pub id: phi4r_replay::LeaseId,
    /// The prompts.
    pub prompts: Vec<phi4r_replay::Prompt>,
}

/// To the prompt-source actor, which owns the prompts, the books and the pacing.
pub enum SourceMsg {
    /// Up to `max` prompts for `holder`, or `None` while paused or while pacing holds admission back.
    Lease {
        /// The generator asking.
        holder: phi4r_replay::Holder,
        /// Most prompts wanted.
        max: usize,
        /// The lease.
        reply: RpcReplyPort<Option<Lease>>,
    },
    /// A generator hands its sampled lease to a verifier; `false`: the lease is no longer open (discard).
    HandOver {
        /// The lease.
        lease: phi4r_replay::LeaseId,
        /// The generator.
        from: phi4r_replay::Holder,
        /// The verifier.
        to: phi4r_replay::Holder,
        /// Whether the hand-over was recorded.
        reply: RpcReplyPort<bool>,
    },
    /// A verifier delivers the scored lease to a balancer; `false`: not open (discard, never train twice).
    Delivered {
        /// The lease.
        lease: phi4r_replay::LeaseId,
        /// The verifier.
        holder: phi4r_replay::Holder,
        /// Whether the lease was closed as scored.
        reply: RpcReplyPort<bool>,
    },
    /// `holder` died or stopped: re-queue its prompts.
    Requeue(phi4r_replay::Holder),
    /// The books now.
    Books(RpcReplyPort<phi4r_replay::BookCounts>),
    /// The run ends: drop every open lease as `shutdown`, refuse new ones, reply with the final books.
    Close(RpcReplyPort<phi4r_replay::BookCounts>),
}

impl ractor::Message for SourceMsg {}

/// To a streaming generator: sample the next batch (it messages itself, so a stop lands between batches).
pub enum SampleMsg {
    /// Lease, sample, hand over; then again.
    Next,
}

impl ractor::Message for SampleMsg {}

/// To a verifier actor.
pub enum VerifierMsg {
    /// Score a sampled lease and deliver it to a balancer.
    Score {
        /// The lease (the verifier holds it now).
        lease: phi4r_replay::LeaseId,
        /// The sampled groups.
        groups: Vec<phi4r_replay::SampledGroup>,
    },
}

impl ractor::Message for VerifierMsg {}

/// To a reward-balancer actor.
pub enum BalancerMsg {
    /// Scored groups from a verifier.
    Groups(Vec<phi4r_replay::Group>),
    /// Re-check: drop stale groups, release a batch if one is ready (sent periodically).
    Tick,
}

impl ractor::Message for BalancerMsg {}

/// To the replay-buffer actor (bounded, staleness-checked batches for the learner).
pub enum ReplayMsg {
    /// Add a batch, or get it back when the buffer is full.
    Push(phi4r_replay::Batch, RpcReplyPort<Result<(), phi4r_replay::Batch>>),
    /// The oldest fresh batch, answered as soon as there is one.
    Take(RpcReplyPort<phi4r_replay::Batch>),
}

impl ractor::Message for ReplayMsg {}

/// To the streaming stage-4 learner.
pub enum StreamLearnerMsg {
    /// Take a batch from the replay buffer, train, publish the weights; then again.
    Step,
    /// Write a checkpoint now (between steps) and reply with its path.
    Checkpoint(RpcReplyPort<Result<std::path::PathBuf, String>>),
    /// Write a checkpoint and end the run.
    Stop,
}

impl ractor::Message for StreamLearnerMsg {}

/// To the root supervisor (the control endpoint's commands arrive here).
pub enum SupervisorMsg {
    /// Run with `n` generators: start new ones or stop the highest-numbered (each finishes its batch).
    Scale(usize, RpcReplyPort<Result<usize, String>>),
    /// The run's status.
    Status(RpcReplyPort<crate::runtime::Status>),
    /// The learner stopped: the run ends with this result.
    LearnerDone(Result<Box<crate::runtime::StreamSummary>, String>),
    /// The learner actor (for checkpoint and stop).
    Learner(RpcReplyPort<ractor::ActorRef<StreamLearnerMsg>>),
    /// The prompt source (for the cluster gateway).
    Source(RpcReplyPort<ractor::ActorRef<SourceMsg>>),
}

impl ractor::Message for SupervisorMsg {}
