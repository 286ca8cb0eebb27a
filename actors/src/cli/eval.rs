//! `phi4r-actors eval`: greedy accuracy of a checkpoint on `{"problem","answer"}` JSONL, per tier, and
//! the share of samples that stop on their own (end token before the length limit).

use anyhow::Context;
use clap::Args;
use phi4r_data::{prompt_ids, ChatTemplate, JsonlReader, ProblemAnswer};
use phi4r_rollout::{generate, FinishReason, SamplingConfig, StopRule};
use serde_json::json;
use std::collections::BTreeMap;
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
    let template = ChatTemplate::default();
    let mut by_tier: BTreeMap<u8, Vec<ProblemAnswer>> = BTreeMap::new();
    for rec in JsonlReader::<ProblemAnswer>::open(&a.data)? {
        let r = rec?;
        let list = by_tier.entry(r.tier.unwrap_or(0)).or_default();
        if a.per_tier == 0 || list.len() < a.per_tier {
            list.push(r);
        }
    }
    let stop = StopRule { eos_ids: template.stop_ids(&tok), tokenizer: Some(&tok) };
    let cfg = SamplingConfig {
        temperature: a.temperature,
        max_new_tokens: a.max_new_tokens,
        seed: a.seed,
        ..Default::default()
    };
    let mut tiers = serde_json::Map::new();
    let (mut total, mut correct, mut stopped) = (0usize, 0usize, 0usize);
    for (tier, problems) in &by_tier {
        let (mut c, mut s) = (0usize, 0usize);
        for chunk in problems.chunks(a.batch.max(1)) {
            let prompts =
                chunk.iter().map(|p| prompt_ids(&template, &tok, &p.problem)).collect::<Result<Vec<_>, _>>()?;
            for (p, g) in chunk.iter().zip(generate(&model, &prompts, &cfg, &stop)?) {
                let text = tok.decode(&g.tokens)?;
                let finished = g.finish != FinishReason::Length;
                s += usize::from(finished);
                c += usize::from(phi4r_verifier::verify_with(&p.answer, &text, !finished).correct);
            }
        }
        let n = problems.len();
        tiers.insert(
            tier.to_string(),
            json!({"n": n, "accuracy": c as f64 / n.max(1) as f64, "stopped": s as f64 / n.max(1) as f64}),
        );
        total += n;
        correct += c;
        stopped += s;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "model": a.model, "data": a.data, "n": total,
            "accuracy": correct as f64 / total.max(1) as f64,
            "stopped": stopped as f64 / total.max(1) as f64,
            "tiers": tiers,
        }))?
    );
    Ok(())
}
