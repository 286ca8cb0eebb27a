//! Batch verification of JSONL lines, for `phi4r-actors verify --jsonl FILE`.
//!
//! Each line is an object `{"gold": .., "pred": ..}` (strings or numbers; `pred` is a
//! bare answer or a full response; an optional boolean `truncated` is honoured). The
//! annotated line keeps every other field and adds `correct`, `outcome` and `extracted`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::verdict::{Outcome, Verdict};
use crate::verifier::Verifier;

/// Why one JSONL line could not be verified. The caller adds the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The line is JSON but not an object.
    #[error("expected a JSON object with \"gold\" and \"pred\"")]
    NotObject,
    /// A required field is absent.
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// A field is neither a string nor a number.
    #[error("field \"{0}\" must be a string or a number")]
    BadField(&'static str),
}

fn text_field(obj: &Map<String, Value>, name: &'static str) -> Result<String, LineError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(LineError::MissingField(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(LineError::BadField(name)),
    }
}

/// Verify one JSONL line and return it with `correct`, `outcome` and `extracted` added.
///
/// ```
/// use phi4r_verifier::{annotate_line, Verifier};
/// let v = Verifier::default();
/// let out = annotate_line(r#"{"id": 7, "gold": "1/2", "pred": "\\frac{1}{2}"}"#, &v).unwrap();
/// assert_eq!(out["correct"], true);
/// assert_eq!(out["id"], 7);
/// assert!(annotate_line(r#"{"gold": "1"}"#, &v).unwrap_err().to_string().contains("pred"));
/// ```
pub fn annotate_line(line: &str, verifier: &Verifier) -> Result<Value, LineError> {
    let (value, _) = annotate_line_verdict(line, verifier)?;
    Ok(value)
}

/// [`annotate_line`], also returning the [`Verdict`] (for a [`Summary`]).
pub fn annotate_line_verdict(line: &str, verifier: &Verifier) -> Result<(Value, Verdict), LineError> {
    let value: Value = serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(LineError::NotObject);
    };
    let gold = text_field(&obj, "gold")?;
    let pred = text_field(&obj, "pred")?;
    let truncated = obj.get("truncated").and_then(Value::as_bool).unwrap_or(false);
    let verdict = verifier.verify_with(&gold, &pred, truncated);
    obj.insert("correct".into(), Value::Bool(verdict.correct));
    obj.insert("outcome".into(), Value::String(verdict.outcome.as_str().into()));
    obj.insert("extracted".into(), verdict.extracted.clone().map_or(Value::Null, Value::String));
    Ok((Value::Object(obj), verdict))
}

/// Counts of a batch: per outcome, malformed lines, and accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Verified lines.
    pub total: u64,
    /// Lines per outcome.
    pub correct: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Responses without a final answer.
    pub no_answer: u64,
    /// Truncated responses.
    pub truncated: u64,
    /// Undecided within the budgets.
    pub too_complex: u64,
    /// Lines that could not be read (not counted in `total`).
    pub malformed: u64,
    /// `correct / total` (0 when empty).
    pub accuracy: f64,
}

impl Summary {
    /// Count one verdict.
    pub fn add(&mut self, verdict: &Verdict) {
        self.total += 1;
        match verdict.outcome {
            Outcome::Correct => self.correct += 1,
            Outcome::Wrong => self.wrong += 1,
            Outcome::NoAnswer => self.no_answer += 1,
            Outcome::Truncated => self.truncated += 1,
            Outcome::TooComplex => self.too_complex += 1,
        }
        self.accuracy = self.correct as f64 / self.total as f64;
    }

    /// Count one malformed line.
    pub fn add_malformed(&mut self) {
        self.malformed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_other_fields_and_adds_three() {
        let v = Verifier::default();
        let out = annotate_line(r#"{"gold": 18, "pred": "so she makes $18.\n#### 18", "source": "gsm8k"}"#, &v)
            .expect("annotates");
        assert_eq!(out["source"], "gsm8k");
        assert_eq!(out["correct"], true);
        assert_eq!(out["outcome"], "correct");
        assert_eq!(out["extracted"], "18");
    }

    #[test]
    fn reports_what_is_wrong_with_a_line() {
        let v = Verifier::default();
        assert!(matches!(annotate_line("{", &v), Err(LineError::Json(_))));
        assert_eq!(annotate_line("[1]", &v), Err(LineError::NotObject));
        assert_eq!(annotate_line(r#"{"pred":"1"}"#, &v), Err(LineError::MissingField("gold")));
        assert_eq!(annotate_line(r#"{"gold":"1","pred":[1]}"#, &v), Err(LineError::BadField("pred")));
    }

    #[test]
    fn no_answer_has_null_extracted_and_truncated_flag_is_read() {
        let v = Verifier::default();
        let out = annotate_line(r#"{"gold":"1","pred":"hmm, let me think about it"}"#, &v).expect("annotates");
        assert_eq!(out["outcome"], "no_answer");
        assert!(out["extracted"].is_null());
        let out = annotate_line(r#"{"gold":"1","pred":"hmm, let me think about it","truncated":true}"#, &v)
            .expect("annotates");
        assert_eq!(out["outcome"], "truncated");
    }

    #[test]
    fn summary_counts_and_accuracy() {
        let mut s = Summary::default();
        s.add(&Verdict::new(Outcome::Correct, None));
        s.add(&Verdict::new(Outcome::Wrong, None));
        s.add(&Verdict::new(Outcome::NoAnswer, None));
        s.add(&Verdict::new(Outcome::Correct, None));
        s.add_malformed();
        assert_eq!((s.total, s.correct, s.wrong, s.no_answer, s.malformed), (4, 2, 1, 1, 1));
        assert!((s.accuracy - 0.5).abs() < 1e-12);
        let j = serde_json::to_value(&s).expect("serializable");
        assert_eq!(j["correct"], 2);
    }
}
