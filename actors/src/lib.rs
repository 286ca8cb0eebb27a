//! The phi4r actor system (DESIGN.md §3) and the `phi4r-actors` command line, as a library so the runtime
//! is testable in-process: spawn a topology, drive it, inspect it. The binary (`main.rs`) only parses
//! the command line and calls [`cli::run`].
//!
//! - [`topology`]: `--topology` (`4gen-1learn`, `2gen-1learn-2ver-1bal`, or a TOML file) and the thread
//!   budget of each role.
//! - [`runtime`]: stage 4 streamed: prompt source, generators, verifiers, reward balancers, replay buffer
//!   and learner under one supervisor, with the books that keep every prompt accounted for.
//! - [`control`]: the HTTP control endpoint (`status`, `scale`, `reward-policy`, `pause`, `resume`,
//!   `checkpoint`, `stop`, `/metrics`) and its client.
//! - [`metrics_catalog`]: every Prometheus metric with its help text.
//! - [`compute`]: the dedicated OS threads that own tensor state.
//! - [`pipeline`]: the main job (`phi4r-actors --topology 4gen-1learn`): all four stages, evaluated.

pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod compute;
pub mod control;
mod dataset;
mod generator;
mod learner;
pub mod messages;
pub mod metrics_catalog;
pub mod pipeline;
pub mod plots;
mod rl_learner;
pub mod runtime;
pub mod topology;
