//! String normalization of an extracted answer before parsing.
//!
//! Removes what carries no mathematical meaning: `\left`/`\right`, spacing commands
//! (`\!`, `\,`, `\;`, `\:`), `\dfrac`/`\tfrac` spellings, text wrappers (`\text{}`,
//! `\mathrm{}`, `\textbf{}`, `\mbox{}`, ...), dollar signs, trailing units and words (cm,
//! inches, dollars, cents, "units", ...), thousands separators (`1,000`, `1{,}000`,
//! `1\,000`, `1 000`) and trailing punctuation. Degree signs become `^\circ` and percent
//! signs `%`, so the parser can apply the configured [`crate::PercentPolicy`] /
//! [`crate::DegreePolicy`].

use crate::units::strip_trailing_units;

/// Commands whose braced argument is kept and the command dropped.
const WRAPPERS: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textnormal",
    "texttt",
    "textsf",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mathnormal",
    "mbox",
    "hbox",
    "operatorname",
    "boldsymbol",
    "bm",
    "emph",
    "displaystyle",
    "textstyle",
    "mathbb",
    "mathcal",
];

/// Commands dropped with nothing in their place.
const DROPPED: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "displaystyle",
    "textstyle",
    "limits",
    "nolimits",
];

/// Normalize an extracted answer (see the module docs).
pub fn normalize(raw: &str) -> String {
    let mut s = if raw.is_ascii() { raw.to_string() } else { map_unicode(raw) };
    if s.contains("\\\\") {
        s = single_escapes(&s);
    }
    if s.contains("<<") {
        s = drop_calculator_notes(&s);
    }
    s = rewrite_commands(&s);
    s = s.replace(" {, }", "").replace("{, }", "").replace("{,}", "");
    s = collapse_spaces(&s);
    loop {
        let before = s.len();
        s = strip_trailing_punct(&s);
        s = strip_trailing_units(&s);
        if s.len() == before {
            break;
        }
    }
    s = s.replace("^{\\circ}", "^\\circ").replace("^ \\circ", "^\\circ");
    if s.contains("\\circ") {
        s = bare_circ(&s);
    }
    s = words_as_commas(&s);
    s = merge_thousands(&s);
    s = decimal_comma(&s);
    s = cut_approx(&s);
    s = drop_trailing_prose(&s);
    s = brace_set(&s);
    if s.contains(':') {
        s = ratio_as_division(&s);
    }
    s.trim().to_string()
}

/// A ratio `7:32` (`S_{MBCN}:S = 7:32`, `V_1:V_2 = 11:21`) is a quotient. A colon that does
/// not stand between two values (`\{x : x > 0\}`, `:=`) is left alone.
fn ratio_as_division(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, ch) in s.char_indices() {
        if ch == ':' {
            let prev = b[..i].iter().rev().find(|c| **c != b' ');
            let next = b[i + 1..].iter().find(|c| **c != b' ');
            let value_end = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'}' | b')');
            let value_start = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'\\' | b'(' | b'{');
            if prev.is_some_and(value_end) && next.is_some_and(value_start) && !s.contains("\\{") {
                out.push('/');
                continue;
            }
        }
        out.push(ch);
    }
    out
}

/// A command written with a doubled backslash (`\\frac`, `\\left(`, as in golds copied from
/// escaped strings) is the command.
fn single_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            let letters = b[i + 2..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            if letters >= 2 {
                i += 1;
                continue;
            }
            out.push_str("\\\\");
            i += 2;
            continue;
        }
        let n = char_len(s, i);
        out.push_str(&s[i..i + n]);
        i += n;
    }
    out
}

/// A decimal comma: the whole answer is one number `d,dd` whose comma cannot be a thousands
/// separator (`1000,99`, `2,74`, `0,111`; the part after the comma is not three digits, or
/// the part before is `0` or longer than three digits). One digit after the comma (`1,2`) is
/// a list of two numbers, and `1,000` is a thousand.
fn decimal_comma(s: &str) -> String {
    let body = s.strip_prefix('-').unwrap_or(s);
    let Some((int, frac)) = body.split_once(',') else {
        return s.to_string();
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) || frac.len() < 2 {
        return s.to_string();
    }
    if frac.len() != 3 || int == "0" || int.len() > 3 {
        return s.replacen(',', ".", 1);
    }
    s.to_string()
}

/// `1/3 \approx 0.33` is the exact value before `\approx`; `x \approx 11` (a lone name before
/// it) is the value after it.
fn cut_approx(s: &str) -> String {
    match s.find("\\approx") {
        Some(p) if p > 0 && !s[..p].trim().is_empty() => {
            let before = s[..p].trim();
            let name = before.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
                && before.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'{' | b'}'));
            if name {
                s[p + "\\approx".len()..].trim().to_string()
            } else {
                before.to_string()
            }
        }
        _ => s.to_string(),
    }
}

/// A number followed only by prose words (`17 any text`, `79 g de cire`) is the number.
fn drop_trailing_prose(s: &str) -> String {
    let b = s.as_bytes();
    let num = b.iter().take_while(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'/' | b'%')).count();
    if num == 0 || num == b.len() || b[num] != b' ' {
        return s.to_string();
    }
    let rest = &s[num..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    let prose = words.iter().all(|w| w.len() >= 2 && w.bytes().all(|c| c.is_ascii_alphabetic()));
    if prose && !words.iter().any(|w| matches!(*w, "pi" | "sqrt" | "or" | "and" | "i")) {
        return s[..num].to_string();
    }
    s.to_string()
}

/// `{2, 3, 5}` (braces without backslashes around a comma list) is the set `\{2, 3, 5\}`.
fn brace_set(s: &str) -> String {
    if s.starts_with('{') && s.ends_with('}') && s.contains(',') {
        let inner = &s[1..s.len() - 1];
        if crate::extract::matching_brace(s.as_bytes(), 0) == Some(s.len() - 1) && !inner.contains('{') {
            return format!("\\{{{inner}\\}}");
        }
    }
    s.to_string()
}

/// GSM8K's calculator annotations `<<48/2=24>>` carry no answer.
fn drop_calculator_notes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("<<") {
        out.push_str(&rest[..p]);
        match rest[p..].find(">>") {
            Some(q) => rest = &rest[p + q + 2..],
            None => {
                rest = &rest[p..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn map_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            'π' => out.push_str("\\pi "),
            '√' => out.push_str("\\sqrt"),
            '°' => out.push_str("^\\circ "),
            '≤' | '⩽' => out.push_str("\\le "),
            '≥' | '⩾' => out.push_str("\\ge "),
            '≠' => out.push_str("\\ne "),
            '−' | '–' | '—' => out.push('-'),
            '×' => out.push_str("\\times "),
            '·' | '⋅' => out.push_str("\\cdot "),
            '÷' => out.push_str("\\div "),
            '∞' => out.push_str("\\infty "),
            '∪' => out.push_str("\\cup "),
            '±' => out.push_str("\\pm "),
            '∈' => out.push_str("\\in "),
            '\u{a0}' | '\u{2009}' | '\u{202f}' => out.push(' '),
            '€' | '£' | '¥' => {}
            '²' => out.push_str("^2"),
            '³' => out.push_str("^3"),
            '≈' => out.push_str("\\approx "),
            '。' | '，' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// One pass over the LaTeX commands: unwrap wrappers, drop spacing and sizing, respell
/// fractions, turn `\%` into `%` and drop dollar signs.
fn rewrite_commands(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    // For every open `{`: whether its closing `}` is written out.
    let mut keep_close: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_alphabetic() {
                    j += 1;
                }
                if j == start {
                    // Symbol command.
                    let Some(&sym) = b.get(start) else {
                        break;
                    };
                    match sym {
                        b'!' if out.ends_with(',') => {
                            // `10,\! 080`: a thousands separator; drop the space too.
                            let mut k = start + 1;
                            while k < b.len() && b[k] == b' ' {
                                k += 1;
                            }
                            i = k;
                            continue;
                        }
                        b'!' | b',' | b';' | b':' | b'>' => {}
                        b' ' => out.push(' '),
                        b'%' => out.push('%'),
                        b'$' => {}
                        b'\\' => out.push_str("\\\\"),
                        _ => {
                            out.push('\\');
                            push_char_at(&mut out, s, start);
                        }
                    }
                    i = start + char_len(s, start);
                    continue;
                }
                let name = &s[start..j];
                i = j;
                if DROPPED.contains(&name) {
                    if (name == "left" || name == "right") && b.get(j) == Some(&b'.') {
                        i = j + 1;
                    }
                    continue;
                }
                if WRAPPERS.contains(&name) {
                    let mut k = j;
                    while k < b.len() && b[k] == b' ' {
                        k += 1;
                    }
                    if b.get(k) == Some(&b'{') {
                        keep_close.push(false);
                        i = k + 1;
                        // `\text{ cm}`: keep a space so the unit stays a separate word.
                        out.push(' ');
                    }
                    continue;
                }
                match name {
                    "dfrac" | "tfrac" | "cfrac" => out.push_str("\\frac"),
                    "dbinom" | "tbinom" => out.push_str("\\binom"),
                    "quad" | "qquad" => out.push(' '),
                    // `\quadx_{2}`: a spacing command glued to the next name.
                    n if n.starts_with("qquad") || n.starts_with("quad") => {
                        out.push(' ');
                        out.push_str(n.trim_start_matches('q').trim_start_matches("uad"));
                    }
                    "lvert" | "rvert" | "vert" | "mid" => out.push('|'),
                    "lbrace" => out.push_str("\\{"),
                    "rbrace" => out.push_str("\\}"),
                    "degree" | "degrees" => out.push_str("^\\circ"),
                    "leq" | "leqslant" | "le" => out.push_str("\\le"),
                    "geq" | "geqslant" | "ge" => out.push_str("\\ge"),
                    "neq" | "ne" => out.push_str("\\ne"),
                    _ => {
                        out.push('\\');
                        out.push_str(name);
                    }
                }
            }
            b'{' => {
                keep_close.push(true);
                out.push('{');
                i += 1;
            }
            b'}' => {
                if keep_close.pop().unwrap_or(true) {
                    out.push('}');
                }
                i += 1;
            }
            b'$' => i += 1,
            b'~' => {
                out.push(' ');
                i += 1;
            }
            _ => {
                let n = char_len(s, i);
                out.push_str(&s[i..i + n]);
                i += n;
            }
        }
    }
    out
}

fn char_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

fn push_char_at(out: &mut String, s: &str, i: usize) {
    if let Some(c) = s[i..].chars().next() {
        out.push(c);
    }
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

fn strip_trailing_punct(s: &str) -> String {
    let mut t = s.trim_end();
    loop {
        let next = if let Some(rest) = t.strip_suffix("\\\\") {
            rest
        } else if t.ends_with("...") || t.ends_with("\\.") {
            break;
        } else {
            t.trim_end_matches(['.', ',', ';', ':', '?'])
        };
        let next = next.trim_end();
        if next.len() == t.len() {
            break;
        }
        t = next;
    }
    let t = t.trim_start().trim_start_matches(['=', ':']).trim_start();
    t.to_string()
}

/// `\circ` not already written as `^\circ` becomes `^\circ`.
fn bare_circ(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut rest = s;
    while let Some(p) = rest.find("\\circ") {
        let before = &rest[..p];
        out.push_str(before);
        if !before.ends_with('^') {
            out.push('^');
        }
        out.push_str("\\circ");
        rest = &rest[p + 5..];
    }
    out.push_str(rest);
    out
}

/// ` or ` / ` and ` between answers become a comma.
fn words_as_commas(s: &str) -> String {
    if !s.contains(" or ") && !s.contains(" and ") && !s.contains(")or(") {
        return s.to_string();
    }
    s.replace(" or ", ", ").replace(" and ", ", ").replace(")or(", "), (")
}

/// `1,000,000` → `1000000` outside brackets; `1 000` when the whole answer is one number.
fn merge_thousands(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b',') && !b.contains(&b' ') {
        return s.to_string();
    }
    // Whole answer `1 000 000`.
    if is_space_grouped(s) {
        return s.replace(' ', "");
    }
    let mut out = String::with_capacity(s.len());
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0
            && c.is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.' || b[i - 1] == b','))
        {
            // A number starts: is it `d{1,3}(,ddd)+` ?
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let lead = j - i;
            let mut k = j;
            let mut groups = 0;
            while k + 3 < b.len()
                && b[k] == b','
                && b[k + 1..k + 4].iter().all(u8::is_ascii_digit)
                && !b.get(k + 4).is_some_and(u8::is_ascii_digit)
            {
                k += 4;
                groups += 1;
            }
            if (1..=3).contains(&lead) && groups > 0 && b[i] != b'0' {
                for &d in &b[i..k] {
                    if d != b',' {
                        out.push(d as char);
                    }
                }
                i = k;
                continue;
            }
            out.push_str(&s[i..j]);
            i = j;
            continue;
        }
        let n = char_len(s, i);
        out.push_str(&s[i..i + n]);
        i += n;
    }
    out
}

fn is_space_grouped(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.split(' ');
    let Some(first) = parts.next() else {
        return false;
    };
    if first.is_empty() || first.len() > 3 || !first.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let mut n = 0;
    for p in parts {
        let digits = p.split('.').next().unwrap_or("");
        if digits.len() != 3 || !p.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return false;
        }
        n += 1;
    }
    n > 0
}

#[cfg(test)]
mod tests {
    use super::normalize as n;

    #[test]
    fn drops_left_right_and_spacing() {
        assert_eq!(n("\\left( 3, \\frac{\\pi}{2} \\right)"), "( 3, \\frac{\\pi}{2} )");
        assert_eq!(n("a\\!b\\,c\\;d\\:e"), "abcde");
        assert_eq!(n("\\left.x\\right|"), "x|");
    }

    #[test]
    fn respells_fractions() {
        assert_eq!(n("\\dfrac{17}{50}"), "\\frac{17}{50}");
        assert_eq!(n("\\tfrac12"), "\\frac12");
    }

    #[test]
    fn unwraps_text_commands() {
        assert_eq!(n("\\text{Evelyn}"), "Evelyn");
        assert_eq!(n("\\textbf{(B)}"), "(B)");
        assert_eq!(n("\\mathrm{e}^2"), "e^2");
        assert_eq!(n("15\\mbox{ cm}^2"), "15");
        assert_eq!(n("864 \\mbox{ inches}^2"), "864");
    }

    #[test]
    fn units_and_words() {
        assert_eq!(n("5.4 \\text{ cents}"), "5.4");
        assert_eq!(n("12 cm"), "12");
        assert_eq!(n("\\$18.90"), "18.90");
        assert_eq!(n("\\$32,\\!348"), "32348");
        assert_eq!(n("7 units"), "7");
        assert_eq!(n("30 degrees"), "30^\\circ");
        assert_eq!(n("\\frac{270}7\\text{ degrees}"), "\\frac{270}7^\\circ");
        assert_eq!(n("45 percent"), "45%");
        // A lone variable is not a unit.
        assert_eq!(n("2m"), "2m");
        assert_eq!(n("x+s"), "x+s");
    }

    #[test]
    fn degrees_and_percent_signs() {
        assert_eq!(n("106^\\circ"), "106^\\circ");
        assert_eq!(n("106^{\\circ}"), "106^\\circ");
        assert_eq!(n("106\\circ"), "106^\\circ");
        assert_eq!(n("10\\%"), "10%");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(n("1,000"), "1000");
        assert_eq!(n("1{,}000"), "1000");
        assert_eq!(n("1\\,000"), "1000");
        assert_eq!(n("1 000 000"), "1000000");
        assert_eq!(n("10,\\!080"), "10080");
        assert_eq!(n("11,\\! 111,\\! 111,\\! 100"), "11111111100");
        // Not separators: lists, decimals, tuples.
        assert_eq!(n("3, 5"), "3, 5");
        assert_eq!(n("1,-2"), "1,-2");
        assert_eq!(n("(1,000)"), "(1,000)");
        // A comma that cannot group thousands is a decimal comma (documented choice).
        assert_eq!(n("1,23"), "1.23");
        assert_eq!(n("1000,99"), "1000.99");
        assert_eq!(n("0,111"), "0.111");
        assert_eq!(n("1,2"), "1,2");
    }

    #[test]
    fn trailing_punctuation_and_connectors() {
        assert_eq!(n("42."), "42");
        assert_eq!(n("42.\\\\"), "42");
        assert_eq!(n("x = 3 or x = 5"), "x = 3, x = 5");
        assert_eq!(n("3 \\text{ and } 5"), "3, 5");
        assert_eq!(n("5!"), "5!");
    }

    #[test]
    fn calculator_notes_are_dropped() {
        assert_eq!(n("<<8=8>>8"), "8");
    }

    #[test]
    fn unicode_symbols() {
        assert_eq!(n("2π"), "2\\pi");
        assert_eq!(n("30°"), "30^\\circ");
        assert_eq!(n("−5"), "-5");
    }
}
