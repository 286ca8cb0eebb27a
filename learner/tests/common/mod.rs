//! What the learner's integration tests share: the model they train.

use phi4r_model::Phi3Config;

/// The vocabulary of [`tiny`].
pub const VOCAB: usize = 64;

/// A 2-layer, 32-wide Phi-3 over [`VOCAB`] tokens: trains in milliseconds.
pub fn tiny() -> Phi3Config {
    Phi3Config {
        vocab_size: VOCAB,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        ..Phi3Config::tiny()
    }
}
