//! The chat template and tokenization with loss masks.
//!
//! The default is Phi-4-mini's template:
//!
//! ```text
//! [<|system|>{system}<|end|>]<|user|>{prompt}<|end|><|assistant|>{completion}<|end|>
//! ```
//!
//! (the system block only when a system prompt is set). The markers are configurable for other models.
//!
//! **What is trained, and how generation stops.** The loss mask is 1 on the completion's tokens and on
//! the closing `<|end|>`, 0 on everything before (system, prompt, markers). So SFT teaches the model to
//! close its answer with `<|end|>`; no EOS is appended after it (Phi-4-mini's own chat data ends turns
//! the same way). Generation starts from [`prompt_ids`] (which ends with `<|assistant|>`) and stops at
//! `<|end|>` or EOS: [`ChatTemplate::stop_ids`].

use crate::error::{Error, Result};
use crate::schema::Message;
use phi4r_model::Tokenizer;
use serde::{Deserialize, Serialize};

/// Marker strings of a chat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatTemplate {
    /// Opens a system turn.
    pub system_marker: String,
    /// Opens a user turn.
    pub user_marker: String,
    /// Opens an assistant turn.
    pub assistant_marker: String,
    /// Closes every turn.
    pub end_marker: String,
    /// System prompt put before every conversation that has none (None: no system block).
    pub system_prompt: Option<String>,
}

impl Default for ChatTemplate {
    /// Phi-4-mini's markers, no system prompt.
    fn default() -> Self {
        ChatTemplate {
            system_marker: "<|system|>".into(),
            user_marker: "<|user|>".into(),
            assistant_marker: "<|assistant|>".into(),
            end_marker: "<|end|>".into(),
            system_prompt: None,
        }
    }
}

/// Token ids and their loss mask (1 = a training target).
///
/// `loss_mask[i] == 1` means token `i` is a target, predicted from position `i - 1` of the same
/// document; the first token of a document is never a target (see [`crate::next_token_targets`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizedExample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 0/1 per token, same length as `ids`.
    pub loss_mask: Vec<u8>,
}

impl TokenizedExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of target tokens.
    pub fn targets(&self) -> usize {
        self.loss_mask.iter().map(|&m| usize::from(m)).sum()
    }

    fn push(&mut self, ids: Vec<u32>, mask: u8) {
        self.loss_mask.extend(std::iter::repeat_n(mask, ids.len()));
        self.ids.extend(ids);
    }
}

impl ChatTemplate {
    /// Errors if a marker is empty (named by key).
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("system_marker", &self.system_marker),
            ("user_marker", &self.user_marker),
            ("assistant_marker", &self.assistant_marker),
            ("end_marker", &self.end_marker),
        ] {
            if v.is_empty() {
                return Err(Error::config(key, "must not be empty"));
            }
        }
        Ok(())
    }

    /// The text a completion follows: system block, user turn, assistant marker.
    pub fn prompt_text(&self, prompt: &str) -> String {
        let mut s = String::with_capacity(prompt.len() + 48);
        if let Some(sys) = &self.system_prompt {
            s.push_str(&self.system_marker);
            s.push_str(sys);
            s.push_str(&self.end_marker);
        }
        s.push_str(&self.user_marker);
        s.push_str(prompt);
        s.push_str(&self.end_marker);
        s.push_str(&self.assistant_marker);
        s
    }

    /// The trained text: completion and end marker.
    pub fn completion_text(&self, completion: &str) -> String {
        format!("{completion}{}", self.end_marker)
    }

    /// The whole example as text.
    pub fn render(&self, prompt: &str, completion: &str) -> String {
        self.prompt_text(prompt) + &self.completion_text(completion)
    }

    /// Ids at which generation stops: the end marker's and EOS's, where the tokenizer has them.
    pub fn stop_ids(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = tokenizer.token_to_id(&self.end_marker).into_iter().collect();
        ids.extend(tokenizer.eos_id().filter(|e| !ids.contains(e)));
        ids
    }

    fn marker(&self, role: &str) -> Result<&str> {
        match role {
            "system" => Ok(&self.system_marker),
            "user" => Ok(&self.user_marker),
            "assistant" => Ok(&self.assistant_marker),
            other => Err(Error::input(
                "ChatTemplate",
                format!("unknown role `{other}` (expected system, user or assistant)"),
            )),
        }
    }
}

/// Tokenizes `prompt` + `completion` with `template`: mask 0 on the prompt part, 1 on the completion and
/// the end marker.
pub fn tokenize_example(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
) -> Result<TokenizedExample> {
    let mut ex = TokenizedExample { ids: Vec::new(), loss_mask: Vec::new() };
    ex.push(tokenizer.encode(&template.prompt_text(prompt))?, 0);
    ex.push(tokenizer.encode(&template.completion_text(completion))?, 1);
    Ok(ex)
}

/// The ids generation starts from: the prompt part of the template, ending with the assistant marker.
pub fn prompt_ids(template: &ChatTemplate, tokenizer: &Tokenizer, prompt: &str) -> Result<Vec<u32>> {
    Ok(tokenizer.encode(&template.prompt_text(prompt))?)
}

/// Tokenizes a conversation: every assistant turn's content and end marker are targets, the rest is not.
/// The template's system prompt is added when the conversation has no system turn.
pub fn tokenize_messages(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
) -> Result<TokenizedExample> {
    let mut ex = TokenizedExample { ids: Vec::new(), loss_mask: Vec::new() };
    if let (Some(sys), false) = (&template.system_prompt, messages.iter().any(|m| m.role == "system")) {
        ex.push(tokenizer.encode(&format!("{}{sys}{}", template.system_marker, template.end_marker))?, 0);
    }
    for m in messages {
        let marker = template.marker(&m.role)?;
        if m.role == "assistant" {
            ex.push(tokenizer.encode(marker)?, 0);
            ex.push(tokenizer.encode(&template.completion_text(&m.content))?, 1);
        } else {
            ex.push(tokenizer.encode(&format!("{marker}{}{}", m.content, template.end_marker))?, 0);
        }
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let t = ChatTemplate::default();
        let texts: Vec<String> = (0..200)
            .map(|i| t.render(&format!("Tom has {i} pens."), &format!("The answer is \\boxed{{{i}}}.")))
            .collect();
        Tokenizer::train_bpe(texts.iter(), 300).expect("trains")
    }

    #[test]
    fn the_mask_covers_the_completion_and_the_end_marker_only() {
        let tok = tokenizer();
        let t = ChatTemplate::default();
        let ex = tokenize_example(&t, &tok, "Tom has 3 pens.", "The answer is \\boxed{3}.").expect("tokenizes");
        assert_eq!(ex.ids.len(), ex.loss_mask.len());
        let end = tok.token_to_id("<|end|>").expect("special");
        let asst = tok.token_to_id("<|assistant|>").expect("special");
        let a = ex.ids.iter().position(|&i| i == asst).expect("assistant marker");
        assert!(ex.loss_mask[..=a].iter().all(|&m| m == 0), "prompt and marker are not targets");
        assert!(ex.loss_mask[a + 1..].iter().all(|&m| m == 1), "completion and end are targets");
        assert_eq!(*ex.ids.last().expect("non-empty"), end);
        let completion = tok.decode(&ex.ids[a + 1..]).expect("decodes");
        assert_eq!(completion, "The answer is \\boxed{3}.<|end|>");
        let p = prompt_ids(&t, &tok, "Tom has 3 pens.").expect("tokenizes");
        assert_eq!(p, ex.ids[..=a].to_vec());
        assert_eq!(t.stop_ids(&tok), vec![end, tok.eos_id().expect("eos")]);
    }

    #[test]
    fn system_prompt_and_messages_follow_the_template() {
        let tok = tokenizer();
        let t = ChatTemplate { system_prompt: Some("Be brief.".into()), ..ChatTemplate::default() };
        assert_eq!(t.render("Q", "A"), "<|system|>Be brief.<|end|><|user|>Q<|end|><|assistant|>A<|end|>");
        let msgs = vec![
            Message { role: "user".into(), content: "Q".into() },
            Message { role: "assistant".into(), content: "A".into() },
        ];
        let m = tokenize_messages(&t, &tok, &msgs).expect("tokenizes");
        let e = tokenize_example(&t, &tok, "Q", "A").expect("tokenizes");
        assert_eq!(m, e, "a two-turn conversation equals the prompt-completion form");
        let bad = vec![Message { role: "robot".into(), content: "x".into() }];
        assert!(tokenize_messages(&t, &tok, &bad).expect_err("must fail").to_string().contains("robot"));
    }

    #[test]
    fn template_config_rejects_unknown_keys_and_empty_markers() {
        assert!(serde_json::from_str::<ChatTemplate>(r#"{"user":"x"}"#).is_err());
        let t: ChatTemplate = serde_json::from_str(r#"{"end_marker":""}"#).expect("parses");
        assert!(t.validate().expect_err("must fail").to_string().contains("end_marker"));
    }
}
