//! `phi4r-actors data synth|check`.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use phi4r_data::{JsonlReader, Messages, Preference, ProblemAnswer, PromptCompletion, SynthConfig, TeacherResponse};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DataCmd {
    /// Generate the embedded synthetic task: teacher rollouts, verified, into stage 1-4 sets, an eval set
    /// and a trained tokenizer; prints the counts as JSON.
    Synth(SynthArgs),
    /// Read a JSONL file in one of the supported formats and report how many records it holds.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// A TOML SynthConfig (unknown keys are errors); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Training problems (spread over the tiers).
    #[arg(long)]
    problems: Option<usize>,
    /// Teacher rollouts per problem.
    #[arg(long)]
    rollouts: Option<usize>,
    /// Probability of a slip per solution step.
    #[arg(long)]
    slip_rate: Option<f64>,
}

/// Record formats a user may bring.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// {"prompt", "completion"}
    PromptCompletion,
    /// {"messages": [{"role", "content"}]}
    Messages,
    /// {"prompt", "chosen", "rejected"}
    Preference,
    /// {"problem", "answer", "solution"?, "id"?}
    ProblemAnswer,
    /// {"problem", "answer", "response"}
    TeacherResponse,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The JSONL file.
    file: PathBuf,
    /// Its format.
    #[arg(long, value_enum)]
    format: Format,
    /// Skip malformed lines with a counted warning instead of failing.
    #[arg(long)]
    skip_bad_lines: bool,
}

pub fn run(cmd: DataCmd) -> anyhow::Result<()> {
    match cmd {
        DataCmd::Synth(a) => synth(a),
        DataCmd::Check(a) => check(a),
    }
}

fn synth(a: SynthArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => toml::from_str::<SynthConfig>(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}", p.display()))?,
        None => SynthConfig::default(),
    };
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    if let Some(v) = a.problems {
        cfg.problems = v;
    }
    if let Some(v) = a.rollouts {
        cfg.rollouts = v;
    }
    if let Some(v) = a.slip_rate {
        cfg.slip_rate = v;
    }
    let report = phi4r_data::synth::run(&cfg, &a.out)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn count<T: serde::de::DeserializeOwned>(a: &CheckArgs) -> anyhow::Result<(usize, usize)> {
    let mut r = JsonlReader::<T>::open(&a.file)?.skip_bad_lines(a.skip_bad_lines);
    let mut n = 0;
    for rec in r.by_ref() {
        rec?;
        n += 1;
    }
    for e in r.skip_errors() {
        eprintln!("warning: skipped {e}");
    }
    Ok((n, r.skipped()))
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let (records, skipped) = match a.format {
        Format::PromptCompletion => count::<PromptCompletion>(&a)?,
        Format::Messages => count::<Messages>(&a)?,
        Format::Preference => count::<Preference>(&a)?,
        Format::ProblemAnswer => count::<ProblemAnswer>(&a)?,
        Format::TeacherResponse => count::<TeacherResponse>(&a)?,
    };
    println!("{}", serde_json::json!({"file": a.file, "records": records, "skipped_bad_lines": skipped}));
    Ok(())
}
