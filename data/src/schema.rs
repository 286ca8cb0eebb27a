//! The record types of the JSONL files users already have (TRL's formats) and that `synth` writes.
//!
//! | record | fields | used for |
//! |---|---|---|
//! | [`PromptCompletion`] | `prompt`, `completion` | stages 1–2 (LM on the completion) |
//! | [`Messages`] | `messages: [{role, content}]` | stages 1–2, conversational form |
//! | [`Preference`] | `prompt`, `chosen`, `rejected` | stage 3 (DPO) |
//! | [`ProblemAnswer`] | `problem`, `answer` (+ `solution`, `id`, `tier`) | stage-4 prompts and evaluation |
//! | [`TeacherResponse`] | `problem`, `answer`, `response` | a real teacher's rollouts, rejection-sampled |
//!
//! Unknown fields are ignored (real files carry extra columns: MATH-500's `level`, AIME's `url`); missing
//! fields are errors. A gold `answer` may be a JSON string or number; it is kept as a string.

use serde::{Deserialize, Deserializer, Serialize};

/// A prompt and the completion trained on (TRL's standard prompt-completion format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCompletion {
    /// The user's message (the chat template wraps it).
    pub prompt: String,
    /// The assistant's answer; the loss covers it.
    pub completion: String,
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

/// A conversation (TRL's conversational format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// The turns in order.
    pub messages: Vec<Message>,
}

/// A preference pair for DPO: a correct and an incorrect response to the same prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    /// The user's message.
    pub prompt: String,
    /// The preferred (correct) completion.
    pub chosen: String,
    /// The dispreferred (incorrect) completion.
    pub rejected: String,
}

/// A problem with its gold answer: RL prompts and evaluation sets (`../shared/data/eval/*.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemAnswer {
    /// The problem statement.
    pub problem: String,
    /// The gold answer (a JSON number in the file is read as its text).
    #[serde(deserialize_with = "string_or_number")]
    pub answer: String,
    /// A reference solution, where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
    /// Identifier, unique within its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Difficulty tier of a synthetic problem (1 = easiest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<u8>,
}

/// One response of a real teacher (a large model) to a problem, as a user brings it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherResponse {
    /// The problem statement (responses to the same text are grouped).
    pub problem: String,
    /// The gold answer (string or number).
    #[serde(deserialize_with = "string_or_number")]
    pub answer: String,
    /// The teacher's full response, ending in its final answer.
    pub response: String,
}

/// Reads a JSON string, or a JSON number as its decimal text (`18` → `"18"`, `2.5` → `"2.5"`).
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Gold {
        Text(String),
        Number(serde_json::Number),
    }
    match Gold::deserialize(d) {
        Ok(Gold::Text(s)) => Ok(s),
        Ok(Gold::Number(n)) => Ok(n.to_string()),
        Err(_) => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numeric_gold_is_read_as_text_and_extra_fields_are_ignored() {
        let pa: ProblemAnswer =
            serde_json::from_str(r#"{"problem":"1+1?","answer":2,"level":3,"url":"x"}"#).expect("parses");
        assert_eq!(pa.answer, "2");
        assert_eq!(pa.id, None);
        let pa: ProblemAnswer = serde_json::from_str(r#"{"problem":"p","answer":-2.5}"#).expect("parses");
        assert_eq!(pa.answer, "-2.5");
        let bad = serde_json::from_str::<ProblemAnswer>(r#"{"problem":"p","answer":[1]}"#).expect_err("must fail");
        assert!(bad.to_string().contains("string or a number"), "{bad}");
        let out = serde_json::to_string(&ProblemAnswer {
            problem: "p".into(),
            answer: "3".into(),
            solution: None,
            id: None,
            tier: None,
        })
        .expect("serializes");
        assert_eq!(out, r#"{"problem":"p","answer":"3"}"#, "absent optional fields are not written");
    }

    #[test]
    fn missing_field_is_named() {
        let e = serde_json::from_str::<Preference>(r#"{"prompt":"p","chosen":"c"}"#).expect_err("must fail");
        assert!(e.to_string().contains("`rejected`"), "{e}");
    }

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T) {
        let line = serde_json::to_string(v).expect("serializes");
        assert!(!line.contains('\n'), "one record per line");
        let back: T = serde_json::from_str(&line).expect("parses");
        assert_eq!(&back, v);
    }

    proptest! {
        #[test]
        fn every_schema_round_trips(a in ".*", b in ".*", c in ".*", id in proptest::option::of(".*"),
                                    sol in proptest::option::of(".*"), tier in proptest::option::of(1u8..=6)) {
            roundtrip(&PromptCompletion { prompt: a.clone(), completion: b.clone() });
            roundtrip(&Messages { messages: vec![Message { role: "user".into(), content: a.clone() },
                                                 Message { role: "assistant".into(), content: b.clone() }] });
            roundtrip(&Preference { prompt: a.clone(), chosen: b.clone(), rejected: c.clone() });
            roundtrip(&ProblemAnswer { problem: a.clone(), answer: b.clone(), solution: sol, id, tier });
            roundtrip(&TeacherResponse { problem: a, answer: b, response: c });
        }
    }
}
