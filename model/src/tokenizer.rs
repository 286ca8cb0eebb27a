//! Tokenizers: load any Hugging Face `tokenizer.json`, or train the byte-level BPE of the embedded
//! default offline (digits split one per token; chat-template, EOS and PAD special tokens).

use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, TokenizerImpl};

/// End of sequence (Phi-4-mini's `<|endoftext|>`).
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// Padding.
pub const PAD_TOKEN: &str = "<|pad|>";
/// Special tokens of the embedded default, in id order: EOS, PAD, then Phi-4-mini's chat-template markers.
pub const SPECIAL_TOKENS: [&str; 6] = [EOS_TOKEN, PAD_TOKEN, "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"];

/// A loaded tokenizer with the ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab={})", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Tokenizer { inner })
    }

    /// Parses `tokenizer.json` text.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: tokenizers::Tokenizer = json.parse().map_err(tok_err)?;
        Ok(Tokenizer { inner })
    }

    /// Trains a byte-level BPE with `vocab_size` entries (special tokens included) on `texts`.
    /// Deterministic for the same texts.
    pub fn train_bpe<I, S>(texts: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tk: TokenizerImpl<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper> =
            TokenizerImpl::new(BPE::default());
        tk.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        tk.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        tk.with_post_processor(Some(PostProcessorWrapper::ByteLevel(ByteLevel::new(false, false, true))));
        tk.train(&mut trainer, texts).map_err(tok_err)?;
        Self::from_json(&tk.to_string(false).map_err(tok_err)?)
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(tok_err)
    }

    /// Writes `tokenizer.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, self.to_json()?.as_bytes())
    }

    /// Vocabulary size including added (special) tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The end-of-sequence id: `<|endoftext|>`, else `</s>`, else `<|end|>`.
    pub fn eos_id(&self) -> Option<u32> {
        [EOS_TOKEN, "</s>", "<|end|>"].iter().find_map(|t| self.token_to_id(t))
    }

    /// The padding id: `<|pad|>`, else the EOS id.
    pub fn pad_id(&self) -> Option<u32> {
        self.token_to_id(PAD_TOKEN).or_else(|| self.eos_id())
    }

    /// Token ids of `text` (special-token strings in the text map to their ids; no BOS is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// Errors unless every id this tokenizer can produce fits in a model of `vocab_size`.
    pub fn check_fits(&self, vocab_size: usize) -> Result<()> {
        if self.vocab_size() > vocab_size {
            return Err(Error::TokenizerTooLarge { tokenizer_vocab: self.vocab_size(), model_vocab: vocab_size });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        (0..300)
            .map(|i| format!("Tom has {i} apples and buys {} more. {i} + {} = {}", i % 7, i % 7, i + i % 7))
            .collect()
    }

    #[test]
    fn trains_splits_digits_and_round_trips() {
        let tok = Tokenizer::train_bpe(corpus().iter(), 300).expect("trains");
        assert!(tok.vocab_size() <= 300);
        assert_eq!(tok.token_to_id(EOS_TOKEN), Some(0));
        assert_eq!(tok.token_to_id(PAD_TOKEN), Some(1));
        assert_eq!(tok.token_to_id("<|end|>"), Some(5));
        let text = "<|user|>What is 123 + 45?<|end|>";
        let ids = tok.encode(text).expect("encodes");
        assert_eq!(tok.decode(&ids).expect("decodes"), text);
        assert_eq!(ids[0], 3, "special token kept whole");
        // Every digit is its own token.
        let digits = tok.encode("9876543210").expect("encodes");
        assert_eq!(digits.len(), 10);
        // Deterministic.
        let again = Tokenizer::train_bpe(corpus().iter(), 300).expect("trains");
        assert_eq!(again.to_json().expect("json"), tok.to_json().expect("json"));
    }

    #[test]
    fn too_large_tokenizer_is_rejected() {
        let tok = Tokenizer::train_bpe(corpus().iter(), 300).expect("trains");
        let e = tok.check_fits(100).unwrap_err().to_string();
        assert!(e.contains("vocab_size is 100"), "{e}");
    }
}
