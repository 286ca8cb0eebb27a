//! `phi4r-actors generate`.

use anyhow::Context;
use clap::Args;
use phi4r_model::Tokenizer;
use phi4r_rollout::{generate, SamplingConfig, StopRule};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Checkpoint folder (with tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Prompt text.
    #[arg(long)]
    prompt: String,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Stop strings (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON (text, tokens, log-probs, finish reason) instead of the text.
    #[arg(long)]
    json: bool,
}

/// The embedded default tokenizer: the synthetic task's byte-level BPE (digits split, chat-template and
/// EOS/PAD special tokens), trained offline.
pub fn default_tokenizer(vocab_size: usize) -> anyhow::Result<Tokenizer> {
    let cfg = phi4r_data::SynthConfig { vocab_size, ..Default::default() };
    Ok(phi4r_data::synth::train_tokenizer(&cfg)?)
}

pub fn run(a: GenerateArgs) -> anyhow::Result<()> {
    let dev = crate::cli::device()?;
    let model = phi4r_model::load_frozen(&a.model, crate::cli::dtype(&dev), &dev)?;
    let tok = phi4r_model::load_tokenizer(&a.model, model.config())?
        .with_context(|| format!("{} has no tokenizer.json", a.model.display()))?;
    let prompt = tok.encode(&a.prompt)?;
    if prompt.is_empty() {
        anyhow::bail!("--prompt: encodes to no tokens");
    }
    let cfg = SamplingConfig {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        max_new_tokens: a.max_new_tokens,
        min_new_tokens: 0,
        stop_strings: a.stop,
        seed: a.seed,
    };
    let mut eos: Vec<u32> = model.config().eos_token_id.clone();
    eos.extend(tok.eos_id());
    eos.extend(tok.token_to_id("<|end|>"));
    let stop = StopRule { eos_ids: eos, tokenizer: Some(&tok) };
    let g = generate(&model, &[prompt], &cfg, &stop)?.remove(0);
    let text = tok.decode(&g.tokens)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"text": text, "tokens": g.tokens, "logprobs": g.logprobs, "finish_reason": g.finish})
        );
    } else {
        println!("{text}");
    }
    Ok(())
}
