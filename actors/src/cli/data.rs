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
    /// Rollout DPO pairs from a model's own samples: sample k completions of each problem, verify them,
    /// and pair a correct one with an incorrect one of the same problem ({"prompt","chosen","rejected"}).
    Pairs(PairsArgs),
}

#[derive(Debug, Args)]
pub struct PairsArgs {
    /// The policy checkpoint that samples (e.g. the stage-2 model).
    #[arg(long)]
    model: PathBuf,
    /// {"problem","answer"[,"tier"]} JSONL (e.g. data synth's stage4.jsonl).
    #[arg(long)]
    problems: PathBuf,
    /// Where the pairs go.
    #[arg(long)]
    out: PathBuf,
    /// Completions sampled per problem.
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Longest completion; a completion cut by it is never used.
    #[arg(long, default_value_t = 320)]
    max_new_tokens: usize,
    /// Problems sampled at most (an evenly spaced subset of the file).
    #[arg(long)]
    max_problems: Option<usize>,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
        DataCmd::Pairs(a) => pairs(a),
    }
}

fn pairs(a: PairsArgs) -> anyhow::Result<()> {
    use phi4r_replay::{score_group, GroupSampler, Prompt, PromptId};
    let dev = crate::cli::device()?;
    let model = phi4r_model::load_frozen(&a.model, crate::cli::dtype(&dev), &dev)
        .with_context(|| format!("--model {}", a.model.display()))?;
    let tok = phi4r_model::load_tokenizer(&a.model, model.config())?
        .with_context(|| format!("--model {} has no tokenizer.json", a.model.display()))?;
    let template = phi4r_data::ChatTemplate::default();
    let all = JsonlReader::<ProblemAnswer>::open(&a.problems)?.collect::<Result<Vec<_>, _>>()?;
    // An evenly spaced subset, so a file sorted by tier gives every tier its share.
    let n = a.max_problems.unwrap_or(all.len()).min(all.len());
    let mut problems = Vec::with_capacity(n);
    for k in 0..n {
        let i = k * all.len() / n.max(1);
        let p = &all[i];
        let ids = phi4r_data::prompt_ids(&template, &tok, &p.problem)?;
        let prompt = Prompt { id: PromptId(i as u64 + 1), ids, gold: p.answer.clone(), tier: p.tier.unwrap_or(0) };
        problems.push((p.problem.clone(), prompt));
    }
    let stop = template.stop_ids(&tok);
    let verifier = phi4r_verifier::Verifier::default();
    let sampler = GroupSampler::new(tok.clone(), stop.clone(), verifier.clone(), 256)?;
    let prompts: Vec<Prompt> = problems.iter().map(|(_, p)| p.clone()).collect();
    let started = std::time::Instant::now();
    let groups = sampler.sample_unscored(
        &model,
        &prompts,
        a.samples.max(2),
        a.temperature,
        a.max_new_tokens,
        a.seed,
        phi4r_replay::PolicyVersion(0),
    )?;
    let (mut out, mut mixed, mut correct, mut total) = (String::new(), 0, 0, 0);
    for ((problem, _), g) in problems.iter().zip(groups) {
        // Only completions that stopped on their own; the stop token is not part of the text.
        let scored =
            score_group(&verifier, &phi4r_verifier::RewardPolicy::Binary, phi4r_replay::RewardPolicyId(0), g.clone());
        let mut texts: Vec<(String, bool)> = vec![];
        for (raw, sc) in g.completions.iter().zip(&scored.completions) {
            if raw.finish == phi4r_rollout::FinishReason::Length {
                continue;
            }
            let ids = match raw.tokens.split_last() {
                Some((last, body)) if stop.contains(last) => body,
                _ => &raw.tokens[..],
            };
            texts.push((tok.decode(ids)?, sc.is_positive()));
        }
        total += texts.len();
        correct += texts.iter().filter(|t| t.1).count();
        let good = texts.iter().find(|t| t.1);
        let bad = texts.iter().find(|t| !t.1);
        if let (Some(c), Some(r)) = (good, bad) {
            mixed += 1;
            let pair = Preference {
                prompt: problem.clone(),
                chosen: c.0.trim().to_string(),
                rejected: r.0.trim().to_string(),
            };
            out.push_str(&serde_json::to_string(&pair)?);
            out.push('\n');
        }
    }
    phi4r_model::write_atomic(&a.out, out.as_bytes())?;
    println!(
        "{}",
        serde_json::json!({"problems": problems.len(), "samples": a.samples, "completions_stopped": total,
            "accuracy": correct as f64 / total.max(1) as f64, "pairs": mixed, "out": a.out,
            "wall_s": started.elapsed().as_secs_f64()})
    );
    Ok(())
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
