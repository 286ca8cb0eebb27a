//! Multiple-choice answers (GPQA's A–D and beyond).
//!
//! A gold answer that is a single capital letter (`B`, `(B)`, `\text{(B)}`) makes the
//! verifier compare letters: it extracts with the configured rules, reads a letter from
//! what they found (`(B)`, `B.`, `**B**`, `B) 42 cm`, `Option B`), and falls back to the
//! last standalone `(B)` or a line starting `B.` / `B)`.

/// The letter of a multiple-choice gold answer (already normalized), if it is one.
pub(crate) fn gold_letter(norm: &str) -> Option<u8> {
    let t = norm.trim();
    let t = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')).unwrap_or(t).trim();
    let b = t.as_bytes();
    (b.len() == 1 && b[0].is_ascii_uppercase()).then(|| b[0])
}

/// The letter an extracted answer names, if any.
pub(crate) fn answer_letter(norm: &str) -> Option<u8> {
    let mut t = norm.trim().trim_matches('*').trim();
    for prefix in ["option", "choice", "answer:", "answer"] {
        if t.len() > prefix.len() && t.is_char_boundary(prefix.len()) && t[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            t = t[prefix.len()..].trim_start_matches([' ', ':']);
        }
    }
    let b = t.as_bytes();
    if b.len() == 1 && b[0].is_ascii_alphabetic() {
        return Some(b[0].to_ascii_uppercase());
    }
    if b.len() >= 3 && b[0] == b'(' && b[1].is_ascii_uppercase() && b[2] == b')' {
        return Some(b[1]);
    }
    if b.len() >= 2 && b[0].is_ascii_uppercase() && matches!(b[1], b'.' | b')' | b':' | b' ') {
        return Some(b[0]);
    }
    // `B。 不是 A`, `B不是 A`: a letter followed by CJK text or punctuation.
    if b.len() >= 2 && b[0].is_ascii_uppercase() && !b[1].is_ascii() {
        return Some(b[0]);
    }
    None
}

/// The letter of a gold written as a labelled choice (`(D) Alina`, `C Cecile`, `C. x = 42`,
/// `A Peter\nCelina bum`, or any of these after "answer is"), read from its first line.
pub(crate) fn gold_letter_in_text(gold: &str) -> Option<u8> {
    let g = gold.trim();
    let g = match g.rfind("answer is") {
        Some(p) => g[p + "answer is".len()..].trim_start_matches([' ', ':']).trim_start(),
        None => g,
    };
    let line = g.lines().next()?.trim().as_bytes();
    match line {
        [b'(', l, b')', b' ', ..] if l.is_ascii_uppercase() => Some(*l),
        [l, b'.' | b')', b' ', rest @ ..] if l.is_ascii_uppercase() && !rest.is_empty() => Some(*l),
        [l, b' ', n, m, ..] if l.is_ascii_uppercase() && n.is_ascii_uppercase() && m.is_ascii_lowercase() => Some(*l),
        _ => None,
    }
}

/// A standalone capital letter from `A` to `highest` (not part of a word, not `I'm`): the
/// first one of `text`, or the last one when `last`. `I` counts only when `highest` is past it.
pub(crate) fn standalone_letter(text: &str, highest: u8, last: bool) -> Option<u8> {
    let b = text.as_bytes();
    let ok = |i: usize| {
        let c = b[i];
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'\\' || b[i - 1] == b'\'');
        let after = b.get(i + 1).is_none_or(|n| {
            !n.is_ascii()
                || n.is_ascii_whitespace()
                || matches!(n, b'.' | b',' | b')' | b':' | b';' | b'!' | b'?' | b'"')
        });
        (b'A'..=highest).contains(&c) && (c != b'I' || highest > b'I') && before && after
    };
    if last {
        (0..b.len()).rev().find(|&i| ok(i)).map(|i| b[i])
    } else {
        (0..b.len()).find(|&i| ok(i)).map(|i| b[i])
    }
}

/// Fallback: the last standalone `(X)`, or the last line that starts with `X.` / `X)`.
pub(crate) fn letter_in_text(text: &str) -> Option<u8> {
    let b = text.as_bytes();
    let mut i = b.len();
    while i >= 3 {
        i -= 1;
        if b[i] == b')' && b[i - 1].is_ascii_uppercase() && b[i - 2] == b'(' {
            let before_ok = i < 3 || !b[i - 3].is_ascii_alphanumeric();
            if before_ok {
                return Some(b[i - 1]);
            }
        }
    }
    for line in text.rsplit('\n') {
        let l = line.trim().as_bytes();
        if l.len() >= 2 && l[0].is_ascii_uppercase() && matches!(l[1], b'.' | b')') {
            return Some(l[0]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_letters() {
        assert_eq!(gold_letter("B"), Some(b'B'));
        assert_eq!(gold_letter("(E)"), Some(b'E'));
        assert_eq!(gold_letter("x"), None);
        assert_eq!(gold_letter("AB"), None);
    }

    #[test]
    fn answer_letters() {
        assert_eq!(answer_letter("(B)"), Some(b'B'));
        assert_eq!(answer_letter("B."), Some(b'B'));
        assert_eq!(answer_letter("**C**"), Some(b'C'));
        assert_eq!(answer_letter("B) 42 cm"), Some(b'B'));
        assert_eq!(answer_letter("Option D"), Some(b'D'));
        assert_eq!(answer_letter("d"), Some(b'D'));
        assert_eq!(answer_letter("42"), None);
    }

    #[test]
    fn letters_in_free_text() {
        assert_eq!(letter_in_text("I think it is (C) because"), Some(b'C'));
        assert_eq!(letter_in_text("A. no\nB. yes"), Some(b'B'));
        assert_eq!(letter_in_text("nothing"), None);
    }
}
