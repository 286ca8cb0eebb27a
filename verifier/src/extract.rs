//! Finding the final answer in a full model response.
//!
//! Every rule is a hand-written linear scan (no regex), so extraction from a 1 MB
//! response takes about a millisecond. Rules are tried in the order of
//! [`crate::VerifierConfig::extraction`].

use crate::config::ExtractRule;

/// What extraction found in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extraction {
    /// A final answer (raw text, not yet normalized) and the rule that found it.
    Found {
        /// The answer text as written in the response.
        answer: String,
        /// The rule that found it.
        rule: ExtractRule,
    },
    /// The response ends inside an unclosed `\boxed{`: it was cut off while writing its answer.
    Truncated,
    /// No rule found an answer.
    NotFound,
}

/// Find the final answer of `response`, trying `rules` in order.
///
/// ```
/// use phi4r_verifier::{extract, ExtractRule, Extraction};
/// let rules = ExtractRule::default_order();
/// let found = extract("so $x = \\boxed{\\frac{1}{2}}$.", &rules);
/// assert_eq!(found, Extraction::Found { answer: "\\frac{1}{2}".into(), rule: ExtractRule::Boxed });
/// ```
pub fn extract(response: &str, rules: &[ExtractRule]) -> Extraction {
    extract_from(final_part(response), rules, 0)
}

/// The part of a response that holds its final answer: what stands inside the last
/// `<answer>..</answer>` (R1-style prompts ask for it), else what stands after the last
/// `</think>`. A response that opens `<think>` and never closes it is all reasoning: its
/// final part is empty, so a number inside the thinking is never taken for the answer.
pub fn final_part(response: &str) -> &str {
    if !response.as_bytes().contains(&b'<') {
        return response;
    }
    if let Some(open) = response.rfind("<answer>") {
        let inner = &response[open + "<answer>".len()..];
        return inner.find("</answer>").map_or(inner, |e| &inner[..e]);
    }
    if let Some(close) = response.rfind("</think>") {
        return &response[close + "</think>".len()..];
    }
    if response.contains("<think>") {
        return "";
    }
    response
}

/// [`extract`] on text already reduced by [`final_part`], trying `rules[from..]`; also
/// returns the index of the rule that found the answer, so a caller can go on with the rules
/// after it when that answer turns out not to be math.
pub(crate) fn extract_from(text: &str, rules: &[ExtractRule], from: usize) -> Extraction {
    extract_indexed(text, rules, from).0
}

/// [`extract_from`] and the index of the rule that decided.
pub(crate) fn extract_indexed(response: &str, rules: &[ExtractRule], from: usize) -> (Extraction, usize) {
    // One fast byte search each decides whether the rules that need `\`, `$`, `#` or `*`
    // have anything to look at (a long response without them costs no substring scans).
    let has = |c: char| response.contains(c);
    let (backslash, dollar, hash, star) = (has('\\'), has('$'), has('#'), has('*'));
    for (idx, &rule) in rules.iter().enumerate().skip(from) {
        let absent = match rule {
            ExtractRule::Boxed => !backslash,
            ExtractRule::MathDelimiters => !backslash && !dollar,
            ExtractRule::Gsm8kHash => !hash,
            ExtractRule::Bold => !star,
            _ => false,
        };
        if absent {
            continue;
        }
        let found = match rule {
            ExtractRule::Boxed => match boxed(response) {
                Boxed::Found(a) => Some(a),
                Boxed::Unclosed => return (Extraction::Truncated, idx),
                Boxed::None => None,
            },
            ExtractRule::FinalAnswerPhrase => answer_phrase(response),
            ExtractRule::Gsm8kHash => gsm8k_hash(response),
            ExtractRule::AnswerLine => answer_line(response),
            ExtractRule::Bold => bold(response).map(str::to_string),
            ExtractRule::MathDelimiters => match math_delimited_at(response) {
                // A conclusion in a later sentence, after the last formula, states the answer as
                // a number (`… $d = \frac{90}{n}$. … Therefore, there are 12 sequences.`):
                // the number wins, as the rightmost match wins in Math-Verify.
                Some((_, end)) if rules[idx..].contains(&ExtractRule::LastNumber) => {
                    match number_in_later_sentence(response, end) {
                        Some(n) => {
                            return (Extraction::Found { answer: n.to_string(), rule: ExtractRule::LastNumber }, idx)
                        }
                        None => math_delimited(response).map(str::to_string),
                    }
                }
                _ => math_delimited(response).map(str::to_string),
            },
            ExtractRule::WholeResponse => whole_response(response).map(str::to_string),
            ExtractRule::LastNumber if (dollar || backslash) && refused_inline_math(response) => None,
            ExtractRule::LastNumber => last_number(response).map(str::to_string),
        };
        if let Some(answer) = found {
            let trimmed = answer.trim();
            if !trimmed.is_empty() {
                return (Extraction::Found { answer: trimmed.to_string(), rule }, idx);
            }
        }
    }
    (Extraction::NotFound, rules.len())
}

enum Boxed {
    Found(String),
    Unclosed,
    None,
}

/// Start of the next `\boxed` / `\fbox` command at or after `from`, and the index just
/// past its name.
fn next_box(s: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < s.len() {
        let j = i + memchr(b'\\', &s[i..])?;
        let rest = &s[j + 1..];
        if rest.starts_with(b"boxed") {
            return Some((j, j + 6));
        }
        if rest.starts_with(b"fbox") {
            return Some((j, j + 5));
        }
        i = j + 1;
    }
    None
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Start of the last `\boxed` / `\fbox` command.
fn last_box(s: &str) -> Option<(usize, usize)> {
    let a = s.rfind("\\boxed").map(|p| (p, p + 6));
    let b = s.rfind("\\fbox").map(|p| (p, p + 5));
    match (a, b) {
        (Some(x), Some(y)) => Some(if x.0 > y.0 { x } else { y }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Argument of a box command whose name ends at `after`: `(content range, end)`.
/// `Err(())` when the braces are not closed.
fn box_arg(s: &[u8], after: usize) -> Result<Option<(usize, usize, usize)>, ()> {
    let mut i = after;
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
        i += 1;
    }
    if i >= s.len() {
        return Err(());
    }
    if s[i] == b'{' {
        let start = i + 1;
        match matching_brace(s, i) {
            Some(close) => Ok(Some((start, close, close + 1))),
            None => Err(()),
        }
    } else if i == after {
        // `\boxedx`: not a box command.
        Ok(None)
    } else {
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t' | b'\n' | b'$' | b'\\') {
            i += 1;
        }
        // `\boxed 5.` ends its sentence with the period.
        let mut end = i;
        while end > start && matches!(s[end - 1], b'.' | b',') {
            end -= 1;
        }
        Ok(Some((start, end, i)))
    }
}

/// Index of the `}` closing the `{` at `open`, skipping escaped `\{` / `\}`.
/// Iterative, so deep nesting cannot overflow the stack.
pub(crate) fn matching_brace(s: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Text between two boxes that still counts as "one answer in several boxes": connectors,
/// punctuation and at most one other word (`\boxed{1} papers and \boxed{2} bins`).
pub(crate) fn is_connector(gap: &str) -> bool {
    let mut rest = gap;
    let mut free_word = true;
    loop {
        rest = rest.trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ',' | ';' | '$' | '&' | '.' | '(' | ')' | '[' | ']' | '}')
        });
        if rest.is_empty() {
            return true;
        }
        let mut advanced = false;
        for word in [
            "and",
            "or",
            "\\text{and}",
            "\\text{or}",
            "\\text{ and }",
            "\\text{ or }",
            "\\quad",
            "\\qquad",
            "\\text{",
            "\\(",
            "\\)",
            "\\,",
            "\\;",
        ] {
            if let Some(r) = rest.strip_prefix(word) {
                rest = r;
                advanced = true;
                break;
            }
        }
        if !advanced {
            // A label for the next box: `\boxed{..} \) and \( y_2 = \boxed{..}`.
            let b = rest.as_bytes();
            let name = b.iter().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'{' | b'}')).count();
            if name > 0 && b[0].is_ascii_alphabetic() && name <= 8 {
                let after = rest[name..].trim_start();
                if let Some(r) = after.strip_prefix('=') {
                    rest = r;
                    continue;
                }
            }
            // `for part (a)`: which part of the question the next box answers.
            if let Some(r) = strip_part_label(rest) {
                rest = r;
                continue;
            }
            // One other word, next to an `and` / `or` (`papers and`).
            let word = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let next = rest[word..].trim_start();
            let joined = next.starts_with("and") || next.starts_with("or") || gap.trim_end().ends_with("and");
            if word == 0 || !free_word || !joined {
                return false;
            }
            free_word = false;
            rest = &rest[word..];
        }
    }
}

/// `for part (a)`, `part b`, `for (ii)` at the start of `s`: the rest after it.
fn strip_part_label(s: &str) -> Option<&str> {
    let mut rest = s;
    let mut words = 0;
    let mut part = false;
    for word in ["for ", "part "] {
        if let Some(r) = rest.strip_prefix(word) {
            rest = r.trim_start();
            words += 1;
            part |= word == "part ";
        }
    }
    if words == 0 {
        return None;
    }
    let inner = rest.strip_prefix('(');
    let body = inner.unwrap_or(rest);
    let label = body.bytes().take_while(u8::is_ascii_alphanumeric).count();
    if label == 0 || label > 3 {
        return None;
    }
    let after = &body[label..];
    match inner {
        Some(_) => after.strip_prefix(')'),
        // Without parentheses only after `part` (`for x` is prose).
        None if part => Some(after),
        None => None,
    }
}

/// Whether the text before `at` on its line leaves a math span open (`$`, `$$`, `\(`, `\[`).
fn inside_math(line: &str) -> bool {
    let b = line.as_bytes();
    let mut open = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if matches!(b.get(i + 1), Some(b'(' | b'[')) => {
                open = true;
                i += 1;
            }
            b'\\' if matches!(b.get(i + 1), Some(b')' | b']')) => {
                open = false;
                i += 1;
            }
            b'\\' => i += 1,
            b'$' => {
                if b.get(i + 1) == Some(&b'$') {
                    i += 1;
                }
                open = !open;
            }
            _ => {}
        }
        i += 1;
    }
    open
}

/// Two boxes inside one math span (`$\boxed{35} ++ \boxed{4}$`,
/// `$$\boxed{(3,3)} \text{ for part (a) and } \boxed{(1,1)}$$`) are one answer when they stand
/// close (under 10 bytes apart) or a separator (`and`, `or`, `,`, `;`) stands within 70 bytes
/// between them, as Math-Verify joins them.
fn same_span_join(line_before: &str, gap: &str) -> bool {
    if gap.len() >= 70 || gap.contains(['$', '\n']) || gap.contains("\\)") || gap.contains("\\]") {
        return false;
    }
    if !inside_math(line_before) {
        return false;
    }
    if gap.len() < 10 {
        return true;
    }
    let lower = gap.to_ascii_lowercase();
    if lower.contains("answer") {
        return false;
    }
    gap.contains([',', ';']) || lower.split(|c: char| !c.is_ascii_alphabetic()).any(|w| w == "and" || w == "or")
}

fn boxed(text: &str) -> Boxed {
    let s = text.as_bytes();
    let Some((last_start, last_after)) = last_box(text) else {
        return Boxed::None;
    };
    let last = match box_arg(s, last_after) {
        Err(()) => return Boxed::Unclosed,
        Ok(None) => return Boxed::None,
        Ok(Some(arg)) => arg,
    };
    // "The final answer is $10,455$" stated after the last box (an intermediate `\boxed{255}`)
    // is the answer: the phrase rule reads it.
    let tail = text[last.2..].to_ascii_lowercase();
    if tail.contains("final answer is") && !tail.contains("final answer is $\\boxed") {
        return Boxed::None;
    }
    // Earlier boxes on the same line, joined when only connectors separate them.
    let line_start = text[..last_start].rfind('\n').map_or(0, |p| p + 1);
    let mut parts: Vec<(usize, usize, usize, usize)> = Vec::new(); // (cmd start, content start, content end, end)
    let mut from = line_start;
    while let Some((start, after)) = next_box(s, from) {
        if start >= last_start {
            break;
        }
        match box_arg(s, after) {
            Ok(Some((a, b, end))) if end <= last_start => {
                parts.push((start, a, b, end));
                from = end;
            }
            _ => from = after,
        }
        if parts.len() > 64 {
            break;
        }
    }
    parts.push((last_start, last.0, last.1, last.2));
    // Keep the longest run of boxes ending at the last one with connector-only gaps.
    let mut first = parts.len() - 1;
    while first > 0 {
        let gap = &text[parts[first - 1].3..parts[first].0];
        if !is_connector(gap) && !same_span_join(&text[line_start..parts[first - 1].0], gap) {
            break;
        }
        first -= 1;
    }
    if first == parts.len() - 1 {
        return Boxed::Found(text[last.0..last.1].to_string());
    }
    let joined: Vec<&str> = parts[first..].iter().map(|p| text[p.1..p.2].trim()).filter(|t| !t.is_empty()).collect();
    Boxed::Found(joined.join(", "))
}

/// Cut `s` at the end of its first sentence: a newline, or a period that is not a decimal point.
fn sentence(s: &str) -> &str {
    let b = s.as_bytes();
    let mut in_math = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\n' => return &s[..i],
            // `。` (U+3002, bytes E3 80 82) ends a sentence in Chinese and Japanese.
            0xE3 if b.get(i + 1) == Some(&0x80) && b.get(i + 2) == Some(&0x82) => return &s[..i],
            b'$' => in_math = !in_math,
            b'.' if !in_math => {
                let next = b.get(i + 1).copied();
                let prev_digit = i > 0 && b[i - 1].is_ascii_digit();
                let next_digit = next.is_some_and(|n| n.is_ascii_digit());
                if !(prev_digit && next_digit) && (next.is_none() || next == Some(b' ')) {
                    return &s[..i];
                }
            }
            _ => {}
        }
    }
    s
}

fn clean_inline(s: &str) -> String {
    let t = s.trim().trim_start_matches([':', '*', ' ', '"']).trim_end_matches(['*', ' ', '"']);
    let t = t.trim_end_matches(['.', ' ']);
    // A quote written escaped (`is \"$12$ and $13$\".`) quotes the answer too.
    // (The closing `"` is trimmed above, which leaves its backslash.)
    let t = match t.strip_prefix("\\\"") {
        Some(inner) => inner.strip_suffix('\\').unwrap_or(inner).trim(),
        None => t,
    };
    t.to_string()
}

/// Cue phrases that introduce a final answer, in the languages graders support (matched
/// ASCII case-insensitively, so `Answer is` and `RéPONSE:` both match). At most 64.
const CUES: &[&str] = &[
    "answer is",
    "answer:",
    "answer :",
    "réponse est",
    "réponse :",
    "réponse:",
    "antwort ist",
    "antwort lautet",
    "antwort:",
    "respuesta es",
    "respuesta:",
    "risposta è",
    "risposta:",
    "resposta é",
    "resposta:",
    "ответ:",
    "ответ —",
    "ответ равен",
    "ответ будет",
    "Ответ:",
    "答案是",
    "答案为",
    "答案：",
    "答案:",
    "答えは",
    "答え：",
    "解答：",
    "정답은",
    "답은",
    "정답:",
    "답:",
    "الإجابة هي",
    "الجواب هو",
    "الإجابة:",
    "उत्तर है",
    "उत्तर:",
    "jibu ni",
    "jibu:",
];

/// The last cue phrase of the text (ASCII case-insensitive): one backward pass that tries the
/// cues only where a cue's first letter stands, so a 1 MB response costs about a millisecond.
fn last_cue(text: &str) -> Option<(usize, &'static str)> {
    let b = text.as_bytes();
    // For each first byte, the cues (bit k = CUES[k]) that start with it.
    let mut by_first = [0u64; 256];
    for (k, c) in CUES.iter().enumerate() {
        by_first[usize::from(c.as_bytes()[0].to_ascii_lowercase())] |= 1 << k;
    }
    (0..b.len()).rev().find_map(|i| {
        let mut bits = by_first[usize::from(b[i].to_ascii_lowercase())];
        while bits != 0 {
            let c = CUES[bits.trailing_zeros() as usize];
            bits &= bits - 1;
            if b.len() - i >= c.len() && b[i..i + c.len()].eq_ignore_ascii_case(c.as_bytes()) {
                return Some((i, c));
            }
        }
        None
    })
}

fn answer_phrase(text: &str) -> Option<String> {
    let (p, cue) = last_cue(text)?;
    let rest = &text[p + cue.len()..];
    let rest = rest.trim_start_matches([' ', ':', '*', '：']);
    let rest = rest.strip_prefix("therefore").unwrap_or(rest);
    let ans = clean_inline(sentence(rest));
    let ans = prose_answer(&ans);
    (!ans.is_empty()).then_some(ans)
}

/// A cue phrase followed by prose (`Janeth aura encore 220 $ à payer`, `The largest $n$ is 34`):
/// the text without its non-ASCII words when that leaves math, else its first number. Text
/// with fewer than two prose words is returned as it is.
fn prose_answer(ans: &str) -> String {
    let ascii: String;
    let t = if ans.is_ascii() {
        ans
    } else {
        ascii = ans.chars().map(|c| if c.is_ascii() { c } else { ' ' }).collect();
        ascii.trim()
    };
    if prose_words(t) < 2 {
        if t.is_empty() {
            return ans.to_string();
        }
        return t.to_string();
    }
    match first_number(t) {
        Some(n) => n.to_string(),
        None => ans.to_string(),
    }
}

/// Words of two or more ASCII letters that are not LaTeX commands, `\text{..}` arguments or
/// math words.
pub(crate) fn prose_words(t: &str) -> usize {
    count_words(t, false)
}

/// Words of two or more ASCII letters that are not LaTeX commands or math words; with `skip_braced`,
/// a word right after `{` (a `\text{..}` or `\mathrm{..}` argument) does not count either.
fn count_words(t: &str, skip_braced: bool) -> usize {
    let b = t.as_bytes();
    let mut words = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let escaped = start > 0 && b[start - 1] == b'\\';
            let braced = skip_braced && start >= 1 && b[start - 1] == b'{';
            if i - start >= 2 && !escaped && !braced && !is_math_word(&t[start..i]) {
                words += 1;
            }
        } else {
            i += 1;
        }
    }
    words
}

fn is_math_word(w: &str) -> bool {
    matches!(
        w,
        "pi" | "sqrt"
            | "sin"
            | "cos"
            | "tan"
            | "cot"
            | "sec"
            | "csc"
            | "log"
            | "ln"
            | "exp"
            | "inf"
            | "infty"
            | "arcsin"
            | "arccos"
            | "arctan"
            | "or"
            | "and"
    )
}

fn gsm8k_hash(text: &str) -> Option<String> {
    let p = text.rfind("####")?;
    let rest = text[p + 4..].trim_start_matches('#');
    let line = rest.split('\n').next().unwrap_or("");
    let ans = clean_inline(line);
    (!ans.is_empty()).then_some(ans)
}

fn answer_line(text: &str) -> Option<String> {
    for line in text.rsplit('\n') {
        let l = line.trim().trim_start_matches(['*', '#', ' ', '>', '-']);
        for prefix in ["final answer:", "answer:", "final answer**:", "answer**:"] {
            if l.len() >= prefix.len()
                && l.is_char_boundary(prefix.len())
                && l[..prefix.len()].eq_ignore_ascii_case(prefix)
            {
                let ans = prose_answer(&clean_inline(&l[prefix.len()..]));
                if !ans.is_empty() {
                    return Some(ans);
                }
            }
        }
    }
    None
}

fn bold(text: &str) -> Option<&str> {
    let end = text.rfind("**")?;
    let start = text[..end].rfind("**")? + 2;
    let inner = text[start..end].trim();
    if inner.is_empty() || inner.len() > 100 || inner.contains('\n') {
        return None;
    }
    let inner =
        strip_prefix_ci(inner, "final answer:").or_else(|| strip_prefix_ci(inner, "answer:")).unwrap_or(inner).trim();
    Some(inner.trim_end_matches('.'))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// The last number of `text` after byte `after` when a sentence ends between them (a period
/// and a space or newline, or a newline).
fn number_in_later_sentence(text: &str, after: usize) -> Option<&str> {
    let tail = text.get(after..)?;
    let n = last_number(tail)?;
    let start = n.as_ptr() as usize - tail.as_ptr() as usize;
    let between = &tail[..start];
    let ends_sentence = between.contains(". ") || between.contains(".\n") || between.contains('\n');
    ends_sentence.then_some(n)
}

/// [`math_delimited`]'s content range and the end of its closing delimiter.
fn math_delimited_at(text: &str) -> Option<(&str, usize)> {
    let inner = math_delimited(text)?;
    let start = inner.as_ptr() as usize - text.as_ptr() as usize;
    let end = start + inner.len();
    // Past the closing delimiter (`$`, `$$`, `\)`, `\]`), whitespace first.
    let rest = &text[end..];
    let rest_trim = rest.trim_start();
    let mut close = end + (rest.len() - rest_trim.len());
    for d in ["$$", "$", "\\)", "\\]"] {
        if rest_trim.starts_with(d) {
            close += d.len();
            break;
        }
    }
    Some((inner, close))
}

/// The last `$..$`, `$$..$$`, `\(..\)` or `\[..\]`, whichever closes last. Scans back
/// from the end, so its cost is the distance from the end, not the response length.
fn math_delimited(text: &str) -> Option<&str> {
    let mut best: Option<(usize, usize)> = None; // (content start, content end)
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        if let Some(c) = text.rfind(close) {
            if let Some(o) = text[..c].rfind(open) {
                if best.is_none_or(|(_, e)| c > e) {
                    best = Some((o + 2, c));
                }
            }
        }
    }
    if let Some(c) = last_dollar(text, text.len()) {
        let double = c > 0 && text.as_bytes()[c - 1] == b'$';
        let range = if double {
            text[..c - 1].rfind("$$").map(|o| (o + 2, c - 1))
        } else {
            last_dollar(text, c).map(|o| (o + 1, c))
        };
        if let Some((a, b)) = range {
            if a <= b && best.is_none_or(|(_, e)| b > e) {
                best = Some((a, b));
            }
        }
    }
    let (a, b) = best?;
    // Inline math (`$..$`, `\(..\)`) stays on one line; display math may span lines.
    let display = text[..a].ends_with("$$") || text[..a].ends_with("\\[");
    if !display && text[a..b].contains('\n') {
        return None;
    }
    let inner = text[a..b].trim();
    (!inner.is_empty()).then_some(inner)
}

/// The last math span is inline (`$..$`, `\(..\)`) and spans lines: a grader that requires
/// the answer on its line refuses it, and no number inside it counts either.
fn refused_inline_math(text: &str) -> bool {
    let Some(c) = last_dollar(text, text.len()) else {
        return text.rfind("\\)").zip(text.rfind("\\(")).is_some_and(|(c, o)| o < c && text[o..c].contains('\n'));
    };
    let double = c > 0 && text.as_bytes()[c - 1] == b'$';
    !double && last_dollar(text, c).is_some_and(|o| text[o..c].contains('\n'))
}

/// The last `$` before `end` that is not escaped as `\$`.
fn last_dollar(text: &str, end: usize) -> Option<usize> {
    let s = text.as_bytes();
    let mut e = end;
    while let Some(p) = s[..e].iter().rposition(|&c| c == b'$') {
        if p > 0 && s[p - 1] == b'\\' {
            e = p;
            continue;
        }
        return Some(p);
    }
    None
}

/// The response itself when it looks like a bare answer: one short line, not prose.
fn whole_response(text: &str) -> Option<&str> {
    let t = text.trim();
    if t.is_empty() || t.len() > 1024 || t.contains('\n') {
        return None;
    }
    if last_dollar(t, t.len()).is_some() || t.contains("\\(") || t.contains("\\[") || t.contains("\\boxed") {
        return None;
    }
    (count_words(t, true) < 2).then_some(t.trim_end_matches('.'))
}

/// The last number of the text that is not part of a word (`AZYUK2A` holds none):
/// digits with thousands commas and a decimal point or comma (`1,000.99`, `2,74`), a sign,
/// and a fraction `13/28`.
fn last_number(text: &str) -> Option<&str> {
    let s = text.as_bytes();
    let mut end = s.len();
    loop {
        let last_digit = s[..end].iter().rposition(u8::is_ascii_digit)?;
        let (start, stop) = number_at(s, last_digit);
        let glued = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic());
        // A short lower-case unit may follow (`1,000.99m²`, `5kg`); a letter before never.
        let unit = s[stop..].iter().take_while(|c| c.is_ascii_lowercase()).count();
        let after_ok = !glued(s.get(stop)) || (unit <= 2 && !glued(s.get(stop + unit)));
        if after_ok && (start == 0 || !glued(s.get(start - 1))) {
            return Some(&text[start..stop]);
        }
        end = start;
    }
}

/// The first number of the text that is not part of a word (see [`last_number`]).
fn first_number(text: &str) -> Option<&str> {
    let s = text.as_bytes();
    let mut from = 0;
    while let Some(d) = s[from..].iter().position(u8::is_ascii_digit) {
        let (start, stop) = number_at(s, from + d);
        let glued = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphabetic());
        if !glued(s.get(stop)) && (start == 0 || !glued(s.get(start - 1))) {
            return Some(&text[start..stop]);
        }
        from = stop.max(from + d + 1);
    }
    None
}

/// The extent of the number around the digit at `at`.
fn number_at(s: &[u8], at: usize) -> (usize, usize) {
    let part = |c: u8| c.is_ascii_digit() || matches!(c, b'.' | b',' | b'/');
    let mut start = at;
    while start > 0 && part(s[start - 1]) {
        start -= 1;
    }
    let mut stop = at + 1;
    while stop < s.len() && part(s[stop]) {
        stop += 1;
    }
    while start < stop && !s[start].is_ascii_digit() {
        start += 1;
    }
    while stop > start && !s[stop - 1].is_ascii_digit() {
        stop -= 1;
    }
    if start > 0 && s[start - 1] == b'-' {
        start -= 1;
    }
    (start, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Extraction {
        extract(s, &ExtractRule::default_order())
    }
    fn found(s: &str) -> Option<String> {
        match ex(s) {
            Extraction::Found { answer, .. } => Some(answer),
            _ => None,
        }
    }

    #[test]
    fn last_boxed_with_nested_braces() {
        assert_eq!(
            found("first \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}.\n").as_deref(),
            Some("\\frac{1}{\\sqrt{2}}")
        );
        assert_eq!(found("so \\fbox{7}").as_deref(), Some("7"));
        assert_eq!(found("escaped \\boxed{\\{1,2\\}}").as_deref(), Some("\\{1,2\\}"));
    }

    #[test]
    fn boxed_without_braces() {
        assert_eq!(found("The answer is $\\boxed 5$.").as_deref(), Some("5"));
        assert_eq!(found("thus \\boxed 12.").as_deref(), Some("12"));
    }

    #[test]
    fn several_boxes_on_the_last_line_are_joined() {
        assert_eq!(found("Solutions: $\\boxed{3}$ and $\\boxed{5}$.").as_deref(), Some("3, 5"));
        // An intermediate box on the same line but separated by prose is not joined.
        assert_eq!(found("we get \\boxed{2} for x, so the answer is \\boxed{5}").as_deref(), Some("5"));
        // Boxes in one math span: close together, or a separator between them (as Math-Verify).
        assert_eq!(found("$\\boxed{35} ++++++ \\boxed{4}$").as_deref(), Some("35, 4"));
        assert_eq!(
            found("$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$").as_deref(),
            Some("(3, 3), (1, 1)")
        );
        assert_eq!(found("$\\boxed{2} \\text{ is wrong; the answer is } \\boxed{5}$").as_deref(), Some("5"));
        assert_eq!(found("so \\boxed{35} ++++++ \\boxed{4}").as_deref(), Some("4"));
        // A label before the next box: `y_1 = \boxed{..}` and `y_2 = \boxed{..}`.
        assert_eq!(
            found("\\( y_1 = \\boxed{x + 1} \\) and \\( y_2 = \\boxed{x - 2} \\)").as_deref(),
            Some("x + 1, x - 2")
        );
        // Boxes on earlier lines are not joined.
        assert_eq!(found("\\boxed{2}\nthen \\boxed{5}").as_deref(), Some("5"));
    }

    #[test]
    fn unclosed_last_box_is_truncated() {
        assert_eq!(ex("so the answer is \\boxed{\\frac{1}{"), Extraction::Truncated);
    }

    #[test]
    fn final_answer_phrase() {
        assert_eq!(found("Final Answer: The final answer is $42$. I hope it is correct.").as_deref(), Some("$42$"));
        assert_eq!(found("Thus the answer is 3.5.").as_deref(), Some("3.5"));
        assert_eq!(
            found("Final Answer: The final answer is \\\"$12 $ and $13 $\\\". I hope it is correct.").as_deref(),
            Some("$12 $ and $13 $")
        );
    }

    #[test]
    fn gsm8k_hash_line() {
        assert_eq!(found("48/2 = 24\n#### 2,125").as_deref(), Some("2,125"));
    }

    #[test]
    fn answer_line_and_bold_and_delimiters() {
        assert_eq!(found("reasoning\nAnswer: B\n").as_deref(), Some("B"));
        assert_eq!(found("work work.\nSo we get **73** apples in all").as_deref(), Some("73"));
        assert_eq!(found("compute it: we get \\(x = 4\\) in total").as_deref(), Some("x = 4"));
        assert_eq!(found("We compute things and get $1$ and then $2+2$ overall").as_deref(), Some("2+2"));
        assert_eq!(found("display \\[ \\frac12 \\] as result").as_deref(), Some("\\frac12"));
        // A number in a later sentence than the last formula concludes.
        assert_eq!(found("so $d = \\frac{90}{n}$. Therefore there are 12 sequences.").as_deref(), Some("12"));
        // In the same sentence it does not.
        assert_eq!(found("the chance is $\\frac{1}{6}$ since a die has 6 faces").as_deref(), Some("\\frac{1}{6}"));
    }

    #[test]
    fn bare_answers_and_prose() {
        assert_eq!(found("  18 ").as_deref(), Some("18"));
        assert_eq!(found("x = \\frac{1}{2}").as_deref(), Some("x = \\frac{1}{2}"));
        assert_eq!(ex("I have no idea what this is"), Extraction::NotFound);
    }

    #[test]
    fn last_number_rule_is_opt_in() {
        let r = extract("there were 3 cats and 1,200 dogs today", &[ExtractRule::LastNumber]);
        assert_eq!(r, Extraction::Found { answer: "1,200".into(), rule: ExtractRule::LastNumber });
    }

    #[test]
    fn deep_braces_do_not_overflow() {
        let s = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
        assert!(matches!(ex(&s), Extraction::Found { .. }));
    }
}
