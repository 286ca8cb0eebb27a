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
