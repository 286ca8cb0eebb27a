//! [`Verifier`]: extraction, normalization, parsing and comparison put together.

use crate::choice::{answer_letter, gold_letter, letter_in_text};
use crate::config::{ExtractRule, VerifierConfig};
use crate::equiv::{Cmp, Decision};
use crate::extract::{extract, Extraction};
use crate::normalize::normalize;
use crate::parse::{parse, ParseError};
use crate::verdict::{Outcome, Verdict};

/// A math answer verifier. Cheap to clone; holds only its configuration.
///
/// Deterministic, never panics, and bounded in time and memory by
/// [`crate::Limits`] on any input.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    config: VerifierConfig,
}

impl Verifier {
    /// A verifier with the given configuration.
    pub fn new(config: VerifierConfig) -> Self {
        Verifier { config }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verify a complete response against the gold answer.
    ///
    /// ```
    /// use phi4r_verifier::{Outcome, Verifier};
    /// let v = Verifier::default();
    /// let verdict = v.verify("\\frac{1}{2}", "Half of it: the answer is $\\boxed{0.5}$.");
    /// assert_eq!(verdict.outcome, Outcome::Correct);
    /// assert_eq!(verdict.extracted.as_deref(), Some("0.5"));
    /// ```
    pub fn verify(&self, gold: &str, response: &str) -> Verdict {
        self.verify_with(gold, response, false)
    }

    /// Like [`Verifier::verify`]; `truncated` says the generator cut the response off
    /// (it hit its token limit). A truncated response without a final answer is
    /// [`Outcome::Truncated`], not [`Outcome::NoAnswer`]; one with an answer is graded
    /// unless [`VerifierConfig::grade_truncated_answers`] is off.
    pub fn verify_with(&self, gold: &str, response: &str, truncated: bool) -> Verdict {
        let limits = &self.config.limits;
        if response.len() > limits.max_response_bytes {
            return Verdict::new(Outcome::TooComplex, None);
        }
        let gold = gold_answer(gold);
        if gold.len() > limits.max_answer_bytes {
            return Verdict::new(Outcome::TooComplex, None);
        }
        let gold_norm = normalize(gold);
        if let Some(letter) = gold_letter(&gold_norm) {
            return self.verify_choice(letter, response, truncated);
        }
        match extract(response, &self.config.extraction) {
            Extraction::Truncated => Verdict::new(Outcome::Truncated, None),
            Extraction::NotFound => Verdict::new(if truncated { Outcome::Truncated } else { Outcome::NoAnswer }, None),
            Extraction::Found { answer, rule } => {
                if truncated && !self.config.grade_truncated_answers {
                    return Verdict::new(Outcome::Truncated, Some(answer));
                }
                let outcome = self.compare(&gold_norm, &answer, rule);
                let outcome = match outcome {
                    // A bare response that is not math is no answer, not a wrong one.
                    Some(o) => o,
                    None if truncated => Outcome::Truncated,
                    None => Outcome::NoAnswer,
                };
                let extracted = (outcome != Outcome::NoAnswer).then_some(answer);
                Verdict::new(outcome, extracted)
            }
        }
    }

    /// Compare a normalized gold with a raw extracted answer. `None` when a whole-response
    /// extraction turns out not to be an answer.
    fn compare(&self, gold_norm: &str, answer: &str, rule: ExtractRule) -> Option<Outcome> {
        let limits = &self.config.limits;
        if answer.len() > limits.max_answer_bytes {
            return Some(Outcome::TooComplex);
        }
        let pred_norm = normalize(answer);
        if self.config.string_fast_path && pred_norm == gold_norm {
            return Some(Outcome::Correct);
        }
        if is_text(gold_norm) || is_text(&pred_norm) {
            return Some(outcome_of(loose_eq(gold_norm, &pred_norm)));
        }
        let pred = parse(&pred_norm, limits);
        if rule == ExtractRule::WholeResponse && pred.is_err() {
            return None;
        }
        let gold = match parse(gold_norm, limits) {
            Ok(g) => g,
            Err(ParseError::TooComplex) => return Some(Outcome::TooComplex),
            Err(ParseError::Invalid) => return Some(outcome_of(loose_eq(gold_norm, &pred_norm))),
        };
        let pred = match pred {
            Ok(p) => p,
            Err(ParseError::TooComplex) => return Some(Outcome::TooComplex),
            Err(ParseError::Invalid) => return Some(outcome_of(loose_eq(gold_norm, &pred_norm))),
        };
        Some(match (Cmp { cfg: &self.config }).equivalent(&gold, &pred) {
            Decision::Equal => Outcome::Correct,
            Decision::NotEqual => Outcome::Wrong,
            Decision::TooComplex => Outcome::TooComplex,
        })
    }

    fn verify_choice(&self, letter: u8, response: &str, truncated: bool) -> Verdict {
        let found = match extract(response, &self.config.extraction) {
            Extraction::Found { answer, .. } => Some(answer),
            Extraction::Truncated => return Verdict::new(Outcome::Truncated, None),
            Extraction::NotFound => None,
        };
        let picked = found.as_deref().and_then(|a| answer_letter(&normalize(a))).or_else(|| letter_in_text(response));
        match (picked, found) {
            (Some(l), _) => {
                let outcome = outcome_of(l == letter);
                Verdict::new(outcome, Some((l as char).to_string()))
            }
            (None, Some(text)) => Verdict::new(Outcome::Wrong, Some(text)),
            (None, None) if truncated => Verdict::new(Outcome::Truncated, None),
            (None, None) => Verdict::new(Outcome::NoAnswer, None),
        }
    }
}

/// Verify `response` against `gold` with the default configuration.
///
/// ```
/// use phi4r_verifier::{verify, Outcome};
/// assert!(verify("2x+2", "so we get $\\boxed{2(x+1)}$").correct);
/// assert_eq!(verify("18", "#### 17").outcome, Outcome::Wrong);
/// assert_eq!(verify("18", "I am not sure at all.").outcome, Outcome::NoAnswer);
/// ```
pub fn verify(gold: &str, response: &str) -> Verdict {
    Verifier::default().verify(gold, response)
}

/// [`verify`] for a response the generator may have cut off (see [`Verifier::verify_with`]).
pub fn verify_with(gold: &str, response: &str, truncated: bool) -> Verdict {
    Verifier::default().verify_with(gold, response, truncated)
}

fn outcome_of(equal: bool) -> Outcome {
    if equal {
        Outcome::Correct
    } else {
        Outcome::Wrong
    }
}

/// A gold written as `\boxed{..}` is unwrapped.
fn gold_answer(gold: &str) -> &str {
    let g = gold.trim();
    if let Some(inner) = g.strip_prefix("\\boxed{").and_then(|r| r.strip_suffix('}')) {
        return inner;
    }
    g
}

/// A word answer (`east`, `Evelyn`, `no solution`): letters and spaces, a word of ≥ 3 letters.
fn is_text(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_alphabetic() || *c == b' ') {
        return false;
    }
    let long_word = s.split(' ').any(|w| {
        w.len() >= 3
            && !matches!(
                w,
                "pi" | "inf"
                    | "infty"
                    | "infinity"
                    | "sqrt"
                    | "sin"
                    | "cos"
                    | "tan"
                    | "cot"
                    | "sec"
                    | "csc"
                    | "log"
                    | "exp"
            )
    });
    long_word
}

/// Case-, space- and brace-insensitive string equality (for answers that do not parse).
fn loose_eq(a: &str, b: &str) -> bool {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | '\\'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests;
