//! The words of the synthetic task: people, items, containers, and the sentence templates of prompts.
//!
//! Templates use placeholders filled by [`fill`]: `{N}` the main person, `{P}` / `{o}` / `{poss}` their
//! pronouns (He/She, him/her, his/her), `{F}` and `{G}` two other people, `{I}` the items (plural), `{B}`
//! a container (plural), and the numbers `{a}`, `{b}`, `{k}`.

use serde::{Deserialize, Serialize};

/// Grammatical gender of a person's pronouns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pronoun {
    /// he / him / his
    He,
    /// she / her / her
    She,
}

impl Pronoun {
    fn forms(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Pronoun::He => ("He", "him", "his"),
            Pronoun::She => ("She", "her", "her"),
        }
    }
}

/// People: (name, pronoun).
pub const PEOPLE: [(&str, Pronoun); 20] = [
    ("Ava", Pronoun::She),
    ("Mia", Pronoun::She),
    ("Lily", Pronoun::She),
    ("Emma", Pronoun::She),
    ("Zoe", Pronoun::She),
    ("Nora", Pronoun::She),
    ("Ruth", Pronoun::She),
    ("Sara", Pronoun::She),
    ("Lena", Pronoun::She),
    ("Ida", Pronoun::She),
    ("Tom", Pronoun::He),
    ("Ben", Pronoun::He),
    ("Sam", Pronoun::He),
    ("Leo", Pronoun::He),
    ("Max", Pronoun::He),
    ("Omar", Pronoun::He),
    ("Raj", Pronoun::He),
    ("Ivan", Pronoun::He),
    ("Hugo", Pronoun::He),
    ("Noah", Pronoun::He),
];

/// Countable items (plural).
pub const ITEMS: [&str; 20] = [
    "apples", "pens", "marbles", "stickers", "coins", "books", "cards", "shells", "stamps", "beads", "cookies", "eggs",
    "toys", "rocks", "buttons", "pencils", "candles", "plums", "nuts", "seeds",
];

/// Containers (plural), for "`{a}` `{B}` of `{b}`".
pub const CONTAINERS: [&str; 6] = ["bags", "boxes", "packs", "jars", "bowls", "baskets"];

/// Opening sentence with a number: `{a}` items.
pub const START_NUMBER: [&str; 2] = ["{N} has {a} {I}.", "{N} collects {a} {I}."];
/// Opening sentence with a product: `{a}` containers of `{b}`.
pub const START_GROUP: [&str; 2] = ["{N} has {a} {B} of {b} {I}.", "{N} buys {a} {B} with {b} {I} in each."];
/// `+ k`
pub const ADD: [&str; 4] =
    ["{P} buys {k} more.", "{P} finds {k} more.", "{F} gives {o} {k} more.", "{P} gets {k} more."];
/// `- k`
pub const SUB: [&str; 4] = ["{P} gives {k} to {F}.", "{P} loses {k}.", "{P} sells {k}.", "{P} uses {k}."];
/// `* k`
pub const MUL: [&str; 2] = ["{P} ends up with {k} times as many.", "Then {poss} {I} are multiplied by {k}."];
/// `/ k`
pub const DIV: [&str; 2] = ["{P} splits them into {k} equal groups and keeps one group.", "{P} keeps 1/{k} of them."];
/// `+ (a * b)`
pub const ADD_MUL: [&str; 2] = ["{F} gives {o} {a} {B} of {b}.", "{P} buys {a} {B} with {b} in each."];
/// `- (a * b)`
pub const SUB_MUL: [&str; 2] = ["{P} sells {a} {B} of {b}.", "{P} gives {a} friends {b} each."];
/// `+ (a / b)`
pub const ADD_DIV: [&str; 2] = ["{F} has {a} {I} and gives {o} 1/{b} of them.", "{P} wins 1/{b} of {F}'s {a} {I}."];
/// `+ (a + b)`
pub const ADD_ADD: [&str; 2] = ["{F} gives {o} {a} and {G} gives {o} {b}.", "{P} finds {a} at home and {b} at school."];
/// `- (a + b)`
pub const SUB_ADD: [&str; 2] = ["{P} gives {a} to {F} and {b} to {G}.", "{P} sells {a} on Monday and {b} on Tuesday."];
/// The question.
pub const QUESTION: [&str; 2] = ["How many {I} does {N} have now?", "How many {I} does {N} have in the end?"];

/// The names and nouns a problem's sentences refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cast {
    /// The main person.
    pub name: String,
    /// Their pronouns.
    pub pronoun: Pronoun,
    /// Two other people.
    pub others: [String; 2],
    /// The items counted (plural).
    pub item: String,
    /// The container of grouped items (plural).
    pub container: String,
}

/// Fills the placeholders of `template` with `cast` and the numbers `a`, `b`, `k`.
pub fn fill(template: &str, cast: &Cast, a: i64, b: i64, k: i64) -> String {
    let (he, him, his) = cast.pronoun.forms();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let key = &rest[open + 1..open + close];
        match key {
            "N" => out.push_str(&cast.name),
            "P" => out.push_str(he),
            "o" => out.push_str(him),
            "poss" => out.push_str(his),
            "F" => out.push_str(&cast.others[0]),
            "G" => out.push_str(&cast.others[1]),
            "I" => out.push_str(&cast.item),
            "B" => out.push_str(&cast.container),
            "a" => out.push_str(&a.to_string()),
            "b" => out.push_str(&b.to_string()),
            "k" => out.push_str(&k.to_string()),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast() -> Cast {
        Cast {
            name: "Ava".into(),
            pronoun: Pronoun::She,
            others: ["Tom".into(), "Ben".into()],
            item: "pens".into(),
            container: "boxes".into(),
        }
    }

    #[test]
    fn fills_every_placeholder() {
        assert_eq!(fill(ADD[2], &cast(), 0, 0, 5), "Tom gives her 5 more.");
        assert_eq!(fill(START_GROUP[0], &cast(), 3, 4, 0), "Ava has 3 boxes of 4 pens.");
        assert_eq!(fill(MUL[1], &cast(), 0, 0, 2), "Then her pens are multiplied by 2.");
        assert_eq!(fill(SUB_ADD[0], &cast(), 1, 2, 0), "She gives 1 to Tom and 2 to Ben.");
    }

    #[test]
    fn every_template_uses_known_placeholders() {
        let all = [
            &START_NUMBER[..],
            &START_GROUP,
            &ADD,
            &SUB,
            &MUL,
            &DIV,
            &ADD_MUL,
            &SUB_MUL,
            &ADD_DIV,
            &ADD_ADD,
            &SUB_ADD,
            &QUESTION,
        ];
        for t in all.iter().flat_map(|g| g.iter()) {
            let s = fill(t, &cast(), 1, 2, 3);
            assert!(!s.contains('{') && !s.contains('}'), "{t} -> {s}");
        }
    }
}
