//! phi4r's data: the embedded synthetic task and everything that turns text into training rows.
//!
//! - [`problem`]: multi-step arithmetic word problems in difficulty tiers ([`TierSpec`], [`Problem`]),
//!   generated deterministically from a seed; the words live in [`words`].
//! - [`arith`]: how one arithmetic step is written, with a digit-level scratchpad for multi-digit steps.
//! - [`teacher`]: the programmatic teacher ([`Teacher`]) whose rollouts slip at a configured rate; real
//!   teachers' responses come as JSONL ([`read_teacher_responses`]).
//! - [`rejection`]: verified responses → the stage 1-4 sets ([`build_stages`]).
//! - [`synth`]: all of the above end to end, written to a folder with a trained tokenizer ([`synth::run`]).
//! - [`schema`] and [`jsonl`]: the record types users already have (TRL's formats) and a streaming
//!   reader whose errors name file, line and field ([`JsonlReader`]).
//! - [`chat`]: the chat template (Phi-4-mini's by default) and tokenization with loss masks.
//! - [`packing`] (stage 1) and [`batching`]: fixed-length packed rows with document boundaries; the
//!   seeded, length-bucketed order in which a stage serves its items each epoch ([`epoch_order`]). [`next_token_targets`] says how masks align with targets.
//!
//! Depends on `phi4r-model` (tokenizer, atomic writes) and `phi4r-verifier` only; everything is
//! synchronous and deterministic (RNGs are seeded and passed in).
#![warn(missing_docs)]

pub mod arith;
pub mod batching;
pub mod chat;
pub mod error;
pub mod jsonl;
pub mod packing;
pub mod problem;
pub mod rejection;
pub mod schema;
pub mod synth;
pub mod targets;
pub mod teacher;
pub mod words;

pub use arith::{render_step, Op, Slip};
pub use batching::{epoch_order, epoch_seed};
pub use chat::{prompt_ids, tokenize_example, tokenize_messages, ChatTemplate, TokenizedExample};
pub use error::{Error, Result};
pub use jsonl::{read_jsonl, write_jsonl, JsonlReader, Loaded};
pub use packing::{pack, DocPiece, Overflow, PackedRow, PackedRows};
pub use problem::{generate, Operand, Problem, Step, TierSpec};
pub use rejection::{
    build_stages, group_teacher_responses, GradedProblem, GradedResponse, StageConfig, StageCounts, StageSets,
};
pub use schema::{Message, Messages, Preference, ProblemAnswer, PromptCompletion, TeacherResponse};
pub use synth::{PackingReport, SynthConfig, SynthReport, TierReport};
pub use targets::next_token_targets;
pub use teacher::{read_teacher_responses, Rollout, SlipKind, Teacher};
