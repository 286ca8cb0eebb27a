//! `phi4r-actors verify`: one verdict, or a JSONL batch annotated line by line.

use anyhow::Context;
use clap::Args;
use phi4r_verifier::{annotate_line_verdict, Summary, Verifier, VerifierConfig};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Gold answer (with --response).
    #[arg(long, requires = "response", conflicts_with = "jsonl")]
    gold: Option<String>,
    /// Model response or bare answer (with --gold).
    #[arg(long, requires = "gold")]
    response: Option<String>,
    /// The response was cut by the length limit.
    #[arg(long)]
    truncated: bool,
    /// JSONL file of {"gold": ..., "pred": ...} lines (other fields kept; "-" for stdin).
    #[arg(long, required_unless_present = "gold")]
    jsonl: Option<PathBuf>,
    /// Verifier config (TOML; unknown keys are errors).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn load_config(path: &Option<PathBuf>) -> anyhow::Result<VerifierConfig> {
    match path {
        None => Ok(VerifierConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", p.display()))
        }
    }
}

pub fn run(a: VerifyArgs) -> anyhow::Result<()> {
    let verifier = Verifier::new(load_config(&a.config)?);
    if let (Some(gold), Some(response)) = (&a.gold, &a.response) {
        let v = verifier.verify_with(gold, response, a.truncated);
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let path = a.jsonl.context("--jsonl or --gold/--response is required")?;
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut summary = Summary::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: reading", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match annotate_line_verdict(&line, &verifier) {
            Ok((value, verdict)) => {
                summary.add(&verdict);
                serde_json::to_writer(&mut out, &value)?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                summary.add_malformed();
                eprintln!("{}:{}: skipped malformed line: {e}", path.display(), i + 1);
            }
        }
    }
    out.flush()?;
    eprintln!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
