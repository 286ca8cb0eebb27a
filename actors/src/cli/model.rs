//! `phi4r-actors model init|logits`.

use anyhow::{bail, Context};
use candle_core::Tensor;
use clap::{Args, Subcommand};
use phi4r_model::{AttentionLayout, Phi3Config, Preset, Tokenizer, TrainableModel};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Write a randomly initialized checkpoint (config.json, model.safetensors, tokenizer.json).
    Init(InitArgs),
    /// Print the logits of every position of a token sequence as JSON.
    Logits(LogitsArgs),
    /// Print the token ids of a text under a checkpoint's tokenizer as JSON.
    Tokenize(TokenizeArgs),
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Checkpoint folder (with tokenizer.json) or a tokenizer.json file.
    #[arg(long)]
    model: PathBuf,
    /// Text to encode.
    #[arg(long)]
    text: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Architecture preset: tiny, small or phi4-mini.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Vocabulary size (default: the tokenizer's size when --tokenizer is given, else the preset's).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// A tokenizer.json to ship with the checkpoint (default: train the embedded byte-level BPE).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Initialization seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// Checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// Comma-separated token ids.
    #[arg(long)]
    ids: String,
}

pub fn run(cmd: ModelCmd) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Init(a) => init(a),
        ModelCmd::Logits(a) => logits(a),
        ModelCmd::Tokenize(a) => tokenize(a),
    }
}

fn tokenize(a: TokenizeArgs) -> anyhow::Result<()> {
    let path = if a.model.is_dir() { a.model.join(phi4r_model::TOKENIZER_FILE) } else { a.model.clone() };
    let tok = Tokenizer::from_file(&path)?;
    println!("{}", serde_json::json!({ "ids": tok.encode(&a.text)? }));
    Ok(())
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let preset: Preset = a.preset.parse()?;
    let mut cfg = Phi3Config::preset(preset);
    let tokenizer = match &a.tokenizer {
        Some(p) => Tokenizer::from_file(p)?,
        None => crate::cli::generate::default_tokenizer(a.vocab_size.unwrap_or(cfg.vocab_size).min(cfg.vocab_size))?,
    };
    cfg.vocab_size = match (a.vocab_size, &a.tokenizer) {
        (Some(v), _) => v,
        (None, Some(_)) => tokenizer.vocab_size().max(if preset == Preset::Phi4Mini { cfg.vocab_size } else { 0 }),
        (None, None) => cfg.vocab_size,
    };
    tokenizer.check_fits(cfg.vocab_size)?;
    cfg.eos_token_id = tokenizer.eos_id().into_iter().collect();
    cfg.bos_token_id = tokenizer.eos_id();
    cfg.pad_token_id = tokenizer.pad_id();
    cfg.validate()?;
    let dev = crate::cli::device()?;
    let dtype = crate::cli::dtype(&dev);
    let tm = TrainableModel::init(&cfg, a.seed, dtype, &dev)?;
    phi4r_model::save(&tm.model, Some(&tokenizer), &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "{}",
        serde_json::json!({"out": a.out, "params": cfg.num_params(), "vocab_size": cfg.vocab_size, "preset": a.preset})
    );
    Ok(())
}

fn parse_ids(s: &str) -> anyhow::Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .enumerate()
        .map(|(i, x)| x.parse::<u32>().with_context(|| format!("--ids: entry {i} `{x}` is not a token id")))
        .collect()
}

fn logits(a: LogitsArgs) -> anyhow::Result<()> {
    let ids = parse_ids(&a.ids)?;
    if ids.is_empty() {
        bail!("--ids: no token ids given");
    }
    let dev = crate::cli::device()?;
    let model = phi4r_model::load_frozen(&a.model, crate::cli::dtype(&dev), &dev)?;
    let t = ids.len();
    let input = Tensor::from_vec(ids, (1, t), &dev)?;
    let logits = model.forward(&input, &AttentionLayout::full(1, t))?.squeeze(0)?.to_dtype(candle_core::DType::F32)?;
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    println!("{}", serde_json::json!({ "logits": rows }));
    Ok(())
}
