//! Verifier configuration: extraction order, tolerances, policies and budgets.
//!
//! Every field has a default that matches the behaviour documented in the crate
//! README; a run config can override any of them (serde, unknown keys rejected).

use serde::{Deserialize, Serialize};

/// One way of finding the final answer in a model response.
///
/// The verifier tries the rules of [`VerifierConfig::extraction`] in order and
/// uses the first one that finds something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractRule {
    /// The last `\boxed{..}` / `\fbox{..}` (nested braces, `\boxed 5`). Several boxes on
    /// the last boxed line, separated only by connectors (`,`, `and`, `or`, `$`), are joined
    /// into one comma list.
    Boxed,
    /// "the final answer is X" / "the answer is X" (last occurrence, up to the end of the sentence).
    FinalAnswerPhrase,
    /// GSM8K's `#### X` (last occurrence, rest of the line).
    Gsm8kHash,
    /// A line starting with `Answer:` / `Final answer:` (last such line).
    AnswerLine,
    /// The last markdown bold `**X**` (at most 100 bytes inside).
    Bold,
    /// The last `$..$`, `$$..$$`, `\(..\)` or `\[..\]`.
    MathDelimiters,
    /// The whole response, when it is one line (≤ 1024 bytes, at most one prose word) that parses as math
    /// (a bare answer such as `18` or `x = \frac12`).
    WholeResponse,
    /// The last number in the response that is not part of a word (`1,000.99€`, `13/28`,
    /// `4000千克`; not the `2` of `AZYUK2A`). Last in the default order: it answers prose with
    /// no cue and no math, as the reference graders do.
    LastNumber,
}

impl ExtractRule {
    /// The default priority order.
    pub fn default_order() -> Vec<ExtractRule> {
        vec![
            ExtractRule::Boxed,
            ExtractRule::Gsm8kHash,
            ExtractRule::FinalAnswerPhrase,
            ExtractRule::AnswerLine,
            ExtractRule::WholeResponse,
            ExtractRule::Bold,
            ExtractRule::MathDelimiters,
            ExtractRule::LastNumber,
        ]
    }
}

/// How a percent sign is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PercentPolicy {
    /// `%` is a unit and is dropped: gold `10\%` accepts `10\%` and `10`, not `0.1`.
    #[default]
    Strip,
    /// `%` means ÷100: gold `10\%` accepts `10\%` and `0.1`, not `10`.
    Fraction,
    /// Either reading: gold `10\%` accepts `10\%`, `10` and `0.1`.
    Lenient,
}

/// How a degree sign (`^\circ`, `°`, "degrees") is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DegreePolicy {
    /// The degree sign is a unit and is dropped: gold `30^\circ` accepts `30`, not `\frac{\pi}{6}`.
    #[default]
    Strip,
    /// `x^\circ` means `x·π/180`: gold `30^\circ` accepts `\frac{\pi}{6}`, not `30`.
    Radians,
    /// Either reading: gold `30^\circ` accepts `30^\circ`, `30` and `\frac{\pi}{6}`.
    Lenient,
}

/// Budgets that bound the time and memory of one verification.
///
/// When a budget is exceeded and nothing else decides the comparison, the outcome is
/// [`crate::Outcome::TooComplex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Responses longer than this are not searched (outcome too complex).
    pub max_response_bytes: usize,
    /// Extracted answers (and golds) longer than this are not parsed.
    pub max_answer_bytes: usize,
    /// Most nodes of one parsed expression tree.
    pub max_nodes: usize,
    /// Deepest nesting of one parsed expression.
    pub max_depth: usize,
    /// Most digits of one number literal.
    pub max_digits: usize,
    /// Most bits of an exact intermediate (numerator + denominator); beyond, floats are used.
    pub max_bits: u64,
    /// Most elements compared as an unordered set (matching is quadratic).
    pub max_set_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: 4 << 20,
            max_answer_bytes: 4096,
            max_nodes: 4096,
            max_depth: 64,
            max_digits: 2000,
            max_bits: 40_000,
            max_set_len: 64,
        }
    }
}

/// Configuration of a [`crate::Verifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifierConfig {
    /// Extraction rules, tried in this order.
    pub extraction: Vec<ExtractRule>,
    /// Relative tolerance for values that are not both exact (default `5e-6`: a value
    /// correctly rounded to 6 significant digits is accepted).
    pub float_rel_tol: f64,
    /// Absolute tolerance used only when one side is exactly zero.
    pub float_abs_tol: f64,
    /// How `%` is read.
    pub percent: PercentPolicy,
    /// How `^\circ` is read.
    pub degrees: DegreePolicy,
    /// Grade an answer found in a response the generator cut off (else: truncated outcome).
    pub grade_truncated_answers: bool,
    /// Accept at once when the normalized answer strings are identical (turn off to time
    /// the full parse-and-compare path).
    pub string_fast_path: bool,
    /// Time and memory budgets.
    pub limits: Limits,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            extraction: ExtractRule::default_order(),
            float_rel_tol: 5e-6,
            float_abs_tol: 1e-10,
            percent: PercentPolicy::default(),
            degrees: DegreePolicy::default(),
            grade_truncated_answers: true,
            string_fast_path: true,
            limits: Limits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_json() {
        let cfg = VerifierConfig::default();
        let text = serde_json::to_string(&cfg).expect("serializable");
        let back: VerifierConfig = serde_json::from_str(&text).expect("parses back");
        assert_eq!(cfg, back);
    }

    #[test]
    fn partial_config_uses_defaults_and_rejects_unknown_keys() {
        let cfg: VerifierConfig =
            serde_json::from_str(r#"{"percent":"lenient","extraction":["gsm8k_hash"]}"#).expect("parses");
        assert_eq!(cfg.percent, PercentPolicy::Lenient);
        assert_eq!(cfg.extraction, vec![ExtractRule::Gsm8kHash]);
        assert_eq!(cfg.limits, Limits::default());
        assert!(serde_json::from_str::<VerifierConfig>(r#"{"nope":1}"#).is_err());
    }
}
