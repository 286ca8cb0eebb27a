//! `phi4r-actors eval`: accuracy of a checkpoint on `{"problem","answer"}` JSONL, per tier: pass@1 over k
//! samples (greedy by default) with its 95% Wilson interval, maj@k, and the shares of samples that stop on
//! their own, are truncated, or hold no answer (the logic is [`phi4r_rollout::evaluate`]). JSON on stdout,
//! a table on stderr unless `--json`.

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
    /// Prompts per generation batch [default: 16 on the CPU, where a decoding step of up to 16 rows runs
    /// the packed kernels and larger ones the general gemm (measured on `micro`: 16 is 1.15x faster than
    /// 32, with the same answers); 32 on a GPU].
    #[arg(long)]
    batch: Option<usize>,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Seed (for temperature > 0).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per problem (k > 1 needs --temperature > 0): pass@1 averaged over them, and maj@k.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// JSON on stdout only (without it, a table also goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write each problem's correct samples per tier (`per_problem`), for paired comparisons of two
    /// checkpoints on the same problems (the main job's Δ column); the JSON is then compact.
    #[arg(long)]
    per_problem: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let model = phi4r_model::load_frozen(&a.model, crate::cli::dtype(&dev), &dev)?;
    let tok = phi4r_model::load_tokenizer(&a.model, model.config())?
        .with_context(|| format!("{} has no tokenizer.json", a.model.display()))?;
    let records = JsonlReader::<ProblemAnswer>::open(&a.data)?.collect::<Result<Vec<_>, _>>()?;
    let problems = select_per_tier(records, a.per_tier);
    let cfg = EvalConfig {
        max_new_tokens: a.max_new_tokens,
        batch: a.batch.unwrap_or(if dev.is_cpu() { phi4r_model::kernels::SMALL_ROWS } else { 32 }),
        temperature: a.temperature,
        seed: a.seed,
        samples: a.samples,
        top_p: a.top_p,
    };
    let report = evaluate(&model, &tok, &ChatTemplate::default(), &problems, &cfg)?;
    let mut out = serde_json::to_value(&report)?;
    out["model"] = serde_json::to_value(&a.model)?;
    out["data"] = serde_json::to_value(&a.data)?;
    if a.per_problem {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        if let Some(o) = out.as_object_mut() {
            o.remove("per_problem");
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if !a.json {
        eprint!("{}", table(&report));
    }
    Ok(())
}

/// The report as a text table: one row per tier, then all.
fn table(r: &phi4r_rollout::EvalReport) -> String {
    let mut s = format!(
        "{:<6} {:>5} {:>3} {:>8} {:>17} {:>7} {:>8} {:>9} {:>9}\n",
        "tier", "n", "k", "pass@1", "95% interval", "maj@k", "stopped", "truncated", "no answer"
    );
    let row = |name: &str, t: &phi4r_rollout::TierResult| {
        format!(
            "{name:<6} {:>5} {:>3} {:>8.3} {:>17} {:>7.3} {:>8.3} {:>9.3} {:>9.3}\n",
            t.n,
            t.samples,
            t.accuracy,
            format!("[{:.3}, {:.3}]", t.interval[0], t.interval[1]),
            t.maj_at_k,
            t.stopped,
            t.truncated,
            t.no_answer
        )
    };
    for (name, t) in &r.tiers {
        s.push_str(&row(name, t));
    }
    s.push_str(&row("all", &r.overall));
    s
}
