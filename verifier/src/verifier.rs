//! [`Verifier`]: extraction, normalization, parsing and comparison put together.

use std::borrow::Cow;

use crate::choice::{answer_letter, gold_letter, gold_letter_in_text, letter_in_text, standalone_letter};
use crate::config::{ExtractRule, VerifierConfig};
use crate::equiv::{Cmp, Decision};
use crate::extract::{extract, extract_indexed, final_part, matching_brace, prose_words, Extraction};
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
        if response.len() > limits.max_response_bytes || gold.len() > limits.max_response_bytes {
            return Verdict::new(Outcome::TooComplex, None);
        }
        if let Some(letter) = gold_letter_in_text(gold) {
            return self.verify_choice(letter, response, truncated);
        }
        let gold = self.gold_answer(gold);
        if gold.len() > limits.max_answer_bytes {
            return Verdict::new(Outcome::TooComplex, None);
        }
        let gold_norm = normalize(&gold);
        if let Some(letter) = gold_letter(&gold_norm) {
            return self.verify_choice(letter, response, truncated);
        }
        let rules = &self.config.extraction;
        let text = final_part(response);
        // Rules in priority order; an answer that is not math (prose after a cue, a bold
        // heading) gives way to the next rule, except a boxed one. The first answer found
        // decides when none is math.
        let mut first: Option<(Outcome, String)> = None;
        let mut from = 0;
        while from < rules.len() {
            let (found, idx) = extract_indexed(text, rules, from);
            let (answer, rule) = match found {
                Extraction::Truncated => return Verdict::new(Outcome::Truncated, None),
                Extraction::NotFound => break,
                Extraction::Found { answer, rule } => (answer, rule),
            };
            if truncated && !self.config.grade_truncated_answers {
                return Verdict::new(Outcome::Truncated, Some(answer));
            }
            let (outcome, is_math) = self.compare(&gold_norm, &answer, rule);
            if is_math || rule == ExtractRule::Boxed {
                return finish(outcome.unwrap_or(Outcome::NoAnswer), answer, truncated);
            }
            if first.is_none() {
                if let Some(o) = outcome {
                    first = Some((o, answer));
                }
            }
            from = idx + 1;
        }
        match first {
            Some((outcome, answer)) => finish(outcome, answer, truncated),
            None if truncated => Verdict::new(Outcome::Truncated, None),
            None => Verdict::new(Outcome::NoAnswer, None),
        }
    }

    /// The answer of a gold string. A bare expression (one line, no math delimiters, no box,
    /// at most one prose word) is used whole; otherwise the gold goes through the same
    /// extraction as a response (`$9$`, `\boxed{..}.\end{align*}`, a whole solution whose
    /// answer is its last box, `answer is 0.6666667`). A gold in which nothing is found is
    /// used whole.
    fn gold_answer<'g>(&self, gold: &'g str) -> Cow<'g, str> {
        let g = gold.trim();
        if let Some(inner) = g.strip_prefix("\\boxed{").and_then(|r| r.strip_suffix('}')) {
            let closes_at_end = matching_brace(g.as_bytes(), "\\boxed".len()) == Some(g.len() - 1);
            if closes_at_end && !inner.contains("\\boxed") {
                return Cow::Borrowed(inner);
            }
        }
        let delimited = g.contains('$')
            || g.contains("\\(")
            || g.contains("\\[")
            || g.contains("\\boxed")
            || g.contains("\\fbox")
            || g.contains("####");
        if !delimited && !g.contains('\n') && prose_words(g) < 2 {
            return Cow::Borrowed(g);
        }
        if let Some(joined) = joined_math_spans(g) {
            return Cow::Owned(joined);
        }
        match extract(g, &self.config.extraction) {
            Extraction::Found { answer, rule } if rule != ExtractRule::LastNumber || !delimited => Cow::Owned(answer),
            _ => Cow::Borrowed(g),
        }
    }

    /// Compare a normalized gold with a raw extracted answer: the outcome (`None` when a
    /// whole-response extraction turns out not to be an answer) and whether the answer was
    /// math (or a word answer to a word gold), so that extraction need not look further.
    fn compare(&self, gold_norm: &str, answer: &str, rule: ExtractRule) -> (Option<Outcome>, bool) {
        let limits = &self.config.limits;
        if answer.len() > limits.max_answer_bytes {
            return (Some(Outcome::TooComplex), true);
        }
        let pred_norm = normalize(answer);
        if self.config.string_fast_path && pred_norm == gold_norm {
            return (Some(Outcome::Correct), true);
        }
        let gold_text = is_text(gold_norm);
        if gold_text || is_text(&pred_norm) {
            let eq = loose_eq(gold_norm, &pred_norm);
            return (Some(outcome_of(eq)), eq || gold_text);
        }
        let pred = parse_or_last_side(&pred_norm, limits);
        let gold = match parse_or_last_side(gold_norm, limits) {
            Ok(g) => g,
            Err(ParseError::TooComplex) => return (Some(Outcome::TooComplex), true),
            Err(ParseError::Invalid) => {
                let eq = loose_eq(gold_norm, &pred_norm);
                let whole_not_math = rule == ExtractRule::WholeResponse && pred.is_err() && !eq;
                let outcome = if whole_not_math { None } else { Some(outcome_of(eq)) };
                return (outcome, eq || pred.is_ok());
            }
        };
        let pred = match pred {
            Ok(p) => p,
            Err(ParseError::TooComplex) => return (Some(Outcome::TooComplex), true),
            Err(ParseError::Invalid) => {
                let eq = loose_eq(gold_norm, &pred_norm);
                let outcome = if rule == ExtractRule::WholeResponse && !eq { None } else { Some(outcome_of(eq)) };
                return (outcome, eq);
            }
        };
        let outcome = match (Cmp { cfg: &self.config }).equivalent(&gold, &pred) {
            Decision::Equal => Outcome::Correct,
            Decision::NotEqual => Outcome::Wrong,
            Decision::TooComplex => Outcome::TooComplex,
        };
        (Some(outcome), true)
    }

    fn verify_choice(&self, letter: u8, response: &str, truncated: bool) -> Verdict {
        let text = final_part(response);
        let found = match extract(text, &self.config.extraction) {
            Extraction::Found { answer, .. } => Some(answer),
            Extraction::Truncated => return Verdict::new(Outcome::Truncated, None),
            Extraction::NotFound => None,
        };
        let highest = letter.max(b'D');
        let picked = found
            .as_deref()
            .and_then(|a| answer_letter(&normalize(a)).or_else(|| standalone_letter(a, highest, false)))
            .or_else(|| letter_in_text(text))
            .or_else(|| standalone_letter(text, highest, true));
        match picked {
            Some(l) => Verdict::new(outcome_of(l == letter), Some((l as char).to_string())),
            // A response that names no letter is no answer, not a guess.
            None if truncated => Verdict::new(Outcome::Truncated, None),
            None => Verdict::new(Outcome::NoAnswer, None),
        }
    }
}

/// A verdict on an extracted answer; a truncated response without an answer is truncated.
fn finish(outcome: Outcome, answer: String, truncated: bool) -> Verdict {
    let outcome = if outcome == Outcome::NoAnswer && truncated { Outcome::Truncated } else { outcome };
    let extracted = (outcome != Outcome::NoAnswer).then_some(answer);
    Verdict::new(outcome, extracted)
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

/// Parse; when the text does not parse but holds `=`, its last side (`\lim_{x \to 0}
/// \frac{\sin x}{x} = 1`, `17 \bmod 5 = 2`, `1 = \zzz = x = 0`).
fn parse_or_last_side(s: &str, limits: &crate::config::Limits) -> Result<crate::expr::Node, ParseError> {
    match parse(s, limits) {
        Err(ParseError::Invalid) => match s.rfind('=') {
            Some(p) if p + 1 < s.len() => parse(s[p + 1..].trim(), limits),
            _ => Err(ParseError::Invalid),
        },
        other => other,
    }
}

/// A gold made only of math spans joined by connectors (`$1$ and $2$ and $3$`, `$21,16$ or
/// $11$`) is the list of their contents.
fn joined_math_spans(g: &str) -> Option<String> {
    let mut parts = Vec::new();
    let mut rest = g;
    loop {
        let open = rest.find('$')?;
        if !crate::extract::is_connector(&rest[..open]) || rest[open..].starts_with("$$") {
            return None;
        }
        let close = rest[open + 1..].find('$')? + open + 1;
        parts.push(rest[open + 1..close].trim());
        rest = &rest[close + 1..];
        if !rest.contains('$') {
            if !crate::extract::is_connector(rest) || parts.len() < 2 {
                return None;
            }
            return Some(parts.join(", "));
        }
    }
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
