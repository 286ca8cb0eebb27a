//! Fuzz extraction, normalization, parsing and comparison.
//!
//! Input: UTF-8 `gold NUL response` (or the whole input as both). Checks that nothing
//! panics and that a verdict is self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phi4r_verifier::{extract, normalize, verify, verify_with, ExtractRule, Outcome};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (gold, response) = text.split_once('\0').unwrap_or((text, text));
    let _ = extract(response, &ExtractRule::default_order());
    let _ = normalize(gold);
    let v = verify(gold, response);
    assert_eq!(v.correct, v.outcome == Outcome::Correct);
    // The response as a gold answer exercises the parser on both sides.
    let w = verify_with(response, gold, true);
    assert_eq!(w.correct, w.outcome == Outcome::Correct);
    assert_ne!(w.outcome, Outcome::NoAnswer);
});
