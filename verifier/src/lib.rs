//! Math answer verifier for phi4r: rewards for stage 4 and rejection sampling for
//! stages 1–3.
//!
//! Pure Rust, no ML dependencies. `verify(gold, response)` finds the final answer in a
//! model response, normalizes both answers, parses them into expression trees and
//! compares their meaning. It is deterministic, never panics, and is bounded in time and
//! memory (outcome [`Outcome::TooComplex`] when a budget is exceeded).
//!
//! Map of the crate:
//! - [`verifier`]: [`Verifier`], [`verify`], [`verify_with`] — the entry points.
//! - [`config`]: [`VerifierConfig`], [`ExtractRule`] (priority order), [`PercentPolicy`],
//!   [`DegreePolicy`], [`Limits`] (budgets).
//! - [`verdict`]: [`Verdict`] and [`Outcome`] (correct / wrong / no answer / truncated /
//!   too complex).
//! - [`reward`]: [`RewardPolicy`], outcome → scalar reward.
//! - [`mod@extract`]: finding the final answer (`\boxed{}`, "the answer is", `####`, ...).
//! - `choice`: multiple-choice letters.
//! - [`mod@normalize`], `units`: LaTeX and unit clean-up before parsing.
//! - `parse`, `expr`: recursive-descent parser into an expression tree, with budgets.
//! - `value`, `complex`, `eval`: exact Gaussian-rational and complex-float evaluation.
//! - `canon`: `x \in S` → `S`, inequalities → intervals, `±` → two answers.
//! - `equiv`: structural and numeric equivalence (sets, tuples, intervals, equations,
//!   matrices, expressions in variables).
//! - [`jsonl`]: batch annotation of `{"gold", "pred"}` lines for the CLI.
//! - [`evalset`]: reading `shared/data/eval/*.jsonl`.
//! - [`mod@agreement`]: agreement with the reference verdicts of other graders' test suites.
//! - [`mod@bench`]: the throughput benchmark over MATH-500 and GSM8K.
//! - [`error`]: [`Error`] / [`Result`] for the I/O-facing parts.
//!
//! Must not depend on any ML crate, on `tokio` or on `ractor`.
#![warn(missing_docs)]

pub mod agreement;
pub mod bench;
mod canon;
mod choice;
mod complex;
pub mod config;
mod equiv;
pub mod error;
mod eval;
pub mod evalset;
mod expr;
pub mod extract;
pub mod jsonl;
pub mod normalize;
mod parse;
pub mod reward;
mod units;
mod value;
pub mod verdict;
pub mod verifier;

pub use agreement::{agreement, AgreementReport, GraderCase, SuiteAgreement};
pub use bench::{BenchReport, PathologicalTiming, SetReport};
pub use config::{DegreePolicy, ExtractRule, Limits, PercentPolicy, VerifierConfig};
pub use error::{Error, Result};
pub use evalset::{load_eval_file, EvalRecord};
pub use extract::{extract, Extraction};
pub use jsonl::{annotate_line, annotate_line_verdict, LineError, Summary};
pub use normalize::normalize;
pub use reward::RewardPolicy;
pub use verdict::{Outcome, Verdict};
pub use verifier::{verify, verify_with, Verifier};
