//! The result of one verification: [`Outcome`] and [`Verdict`].

use serde::{Deserialize, Serialize};

/// What the verifier decided about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An answer was found and it is equivalent to the gold answer.
    Correct,
    /// An answer was found and it is not equivalent to the gold answer (this includes an
    /// answer that does not parse, and a partial answer to a "find all" question).
    Wrong,
    /// The response holds no recognizable final answer.
    NoAnswer,
    /// The response was cut off (by the generator, or inside an unclosed `\boxed{`) before
    /// a final answer.
    Truncated,
    /// A budget (size, depth, digits, bits) was exceeded before the comparison could be
    /// decided, e.g. `10^{10^{10^{10}}}` against a different expression.
    TooComplex,
}

impl Outcome {
    /// All outcomes, in a fixed order (for tables and summaries).
    pub const ALL: [Outcome; 5] =
        [Outcome::Correct, Outcome::Wrong, Outcome::NoAnswer, Outcome::Truncated, Outcome::TooComplex];

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Correct => "correct",
            Outcome::Wrong => "wrong",
            Outcome::NoAnswer => "no_answer",
            Outcome::Truncated => "truncated",
            Outcome::TooComplex => "too_complex",
        }
    }
}

/// The verdict on one response: the outcome and the answer that was extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `outcome == Outcome::Correct`.
    pub correct: bool,
    /// The decision.
    pub outcome: Outcome,
    /// The final answer found in the response (before normalization), if any.
    pub extracted: Option<String>,
}

impl Verdict {
    /// A verdict with `correct` derived from `outcome`.
    pub fn new(outcome: Outcome, extracted: Option<String>) -> Self {
        Verdict { correct: outcome == Outcome::Correct, outcome, extracted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_serializes_snake_case() {
        for o in Outcome::ALL {
            let s = serde_json::to_string(&o).expect("serializable");
            assert_eq!(s, format!("\"{}\"", o.as_str()));
        }
    }

    #[test]
    fn verdict_json_has_correct_outcome_extracted() {
        let v = Verdict::new(Outcome::Correct, Some("5".into()));
        let j = serde_json::to_value(&v).expect("serializable");
        assert_eq!(j["correct"], true);
        assert_eq!(j["outcome"], "correct");
        assert_eq!(j["extracted"], "5");
        let back: Verdict = serde_json::from_value(j).expect("round trip");
        assert_eq!(back, v);
    }
}
