//! `phi4r-actors eval`: greedy accuracy of a checkpoint on `{"problem","answer"}` JSONL, per tier, with
//! 95% Wilson intervals and the share of samples that stop on their own (the logic is
//! [`phi4r_rollout::evaluate`]).

use anyhow::Context;
use clap::Args;
use phi4r_data::{ChatTemplate, JsonlReader, ProblemAnswer};
use phi4r_rollout::{evaluate, select_per_tier, EvalConfig};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint folder (with tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// {"problem","answer"} JSONL (an optional "tier" groups the report).
    #[arg(long)]
    data: PathBuf,
    /// Problems per tier (0 = all).
    #[arg(long, default_value_t = 0)]
    per_tier: usize,
    /// Maximum new tokens per answer.
    #[arg(long, default_value_t = 320)]
    max_new_tokens: usize,
    /// Prompts per generation batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed (for temperature > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let model = phi4r_model::load_frozen(&a.model, candle_core::DType::F32, &dev)?;
    let tok = phi4r_model::load_tokenizer(&a.model, model.config())?
        .with_context(|| format!("{} has no tokenizer.json", a.model.display()))?;
    let records = JsonlReader::<ProblemAnswer>::open(&a.data)?.collect::<Result<Vec<_>, _>>()?;
    let problems = select_per_tier(records, a.per_tier);
    let cfg = EvalConfig { max_new_tokens: a.max_new_tokens, batch: a.batch, temperature: a.temperature, seed: a.seed };
    let report = evaluate(&model, &tok, &ChatTemplate::default(), &problems, &cfg)?;
    let mut out = serde_json::to_value(&report)?;
    out["model"] = serde_json::to_value(&a.model)?;
    out["data"] = serde_json::to_value(&a.data)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
