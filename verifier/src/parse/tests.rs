//! Parser tests.

use super::*;

fn p(s: &str) -> PResult<Node> {
    parse(s, &Limits::default())
}

#[test]
fn parses_common_answers() {
    for s in [
        "\\frac{1}{2}",
        "\\frac12",
        "\\frac 59",
        "\\frac9{19}",
        "\\sqrt2",
        "\\sqrt[3]{x}",
        "2\\sqrt{113}",
        "-2 + 7i",
        "x^8 + x^7 + 1",
        "( 3, \\frac{\\pi}{2} )",
        "(-\\infty, 0]",
        "(0,9) \\cup (9,36)",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\{1\\pm\\sqrt{5},-2\\}",
        "x \\in [-2,7]",
        "5x - 7y + 11z + 4 = 0",
        "\\cot x",
        "\\sin^2 x + \\cos^2 x",
        "\\log_2 8",
        "|x-1|",
        "10!",
        "\\binom{5}{2}",
        "1.5e3",
        "(a+5)(b+2)",
        "3, 5, 7",
        "sqrt(2)/2",
        "204_5",
    ] {
        assert!(p(s).is_ok(), "{s}: {:?}", p(s));
    }
}

#[test]
fn mixed_numbers_add() {
    let n = p("2\\frac{1}{3}").expect("parses");
    assert!(matches!(n, Node::Add(_)), "{n:?}");
    let n = p("2\\frac{x}{3}").expect("parses");
    assert!(matches!(n, Node::Mul(_)), "{n:?}");
}

#[test]
fn rejects_garbage() {
    for s in ["", "(", "1 +", "\\frac{1}", "\\unknown", "#", "{{1}", "-|2 z+ [\0\0"] {
        assert!(p(s).is_err(), "{s}");
    }
}

#[test]
fn deep_nesting_is_too_complex_not_a_crash() {
    let s = format!("{}1{}", "{".repeat(10_000), "}".repeat(10_000));
    assert_eq!(p(&s), Err(ParseError::TooComplex));
    let s = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let lim = Limits { max_answer_bytes: 1 << 20, ..Limits::default() };
    assert_eq!(parse(&s, &lim), Err(ParseError::TooComplex));
    let s = format!("1{}", "!".repeat(1000));
    assert_eq!(p(&s), Err(ParseError::TooComplex));
    let s = "-".repeat(1000) + "1";
    assert_eq!(p(&s), Err(ParseError::TooComplex));
}

#[test]
fn long_numbers_are_budgeted() {
    let s = "9".repeat(5000);
    assert_eq!(p(&s), Err(ParseError::TooComplex));
    assert!(p("1e999999").is_err());
    assert!(is_zero_literal(&p("0").expect("parses")));
}
