//! Property tests: `verify(x, x)` for generated expressions; a number against itself written
//! another way is correct and against a different number wrong; reasoning tags never leak an
//! answer; no input panics (timing lives in the benchmark).

use phi4r_verifier::{verify, verify_with, Outcome};
use proptest::prelude::*;

/// A generated expression in LaTeX and its plain-text spelling.
fn expr() -> impl Strategy<Value = (String, String)> {
    let leaf = prop_oneof![
        (0u64..100_000).prop_map(|n| (n.to_string(), n.to_string())),
        (1u64..1000, 1u64..1000).prop_map(|(a, b)| (format!("\\frac{{{a}}}{{{b}}}"), format!("({a}/{b})"))),
        (0u64..1000, 1u32..99).prop_map(|(a, b)| (format!("{a}.{b:02}"), format!("{a}.{b:02}"))),
        prop::sample::select(vec!["x", "y", "n"]).prop_map(|v| (v.to_string(), v.to_string())),
        Just(("\\pi".to_string(), "pi".to_string())),
        (2u64..50).prop_map(|n| (format!("\\sqrt{{{n}}}"), format!("sqrt({n})"))),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|((a, pa), (b, pb))| (format!("{a} + {b}"), format!("{pa} + {pb}"))),
            (inner.clone(), inner.clone()).prop_map(|((a, pa), (b, pb))| (
                format!("\\left({a}\\right) \\cdot \\left({b}\\right)"),
                format!("({pa})*({pb})")
            )),
            (inner.clone(), 0u32..4)
                .prop_map(|((a, pa), k)| (format!("\\left({a}\\right)^{{{k}}}"), format!("({pa})^{k}"))),
            inner.clone().prop_map(|(a, pa)| (format!("\\sqrt{{{a}}}"), format!("sqrt({pa})"))),
            inner.prop_map(|(a, pa)| (format!("-\\left({a}\\right)"), format!("-({pa})"))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_expressions_verify_against_themselves((latex, plain) in expr()) {
        let v = verify(&latex, &latex);
        prop_assert_eq!(v.outcome, Outcome::Correct, "{}", latex);
        let v = verify(&latex, &format!("Hence the answer is $\\boxed{{{latex}}}$."));
        prop_assert_eq!(v.outcome, Outcome::Correct, "{}", latex);
        // The plain spelling means the same; budgets may leave it undecided, never wrong.
        let v = verify(&latex, &plain);
        prop_assert!(matches!(v.outcome, Outcome::Correct | Outcome::TooComplex), "{} vs {}: {:?}", latex, plain, v);
    }

    #[test]
    fn random_strings_never_panic(gold in ".{0,40}", response in ".{0,200}", t in any::<bool>()) {
        let v = verify_with(&gold, &response, t);
        prop_assert_eq!(v.correct, v.outcome == Outcome::Correct);
    }

    #[test]
    fn latex_like_strings_never_panic(
        gold in "[0-9a-z\\\\{}()\\[\\]^_.,=+*/ !%$-]{0,30}",
        response in "[0-9a-z\\\\{}()\\[\\]^_.,=+*/ !%$-]{0,80}",
    ) {
        let _ = verify(&gold, &response);
        let _ = verify(&gold, &format!("\\boxed{{{response}}}"));
    }

    #[test]
    fn a_number_equals_itself_written_another_way(n in 0u64..10_000_000, d in 1u64..50) {
        let g = n.to_string();
        for form in [
            format!("{n}.0"),
            format!("\\frac{{{}}}{{{d}}}", n * d),
            format!("$ {n} $"),
            format!("<think>maybe {} or {}</think>\n\\boxed{{{n}}}", n + 1, n + 2),
            format!("<answer>{n}</answer>"),
            format!("The answer is {n}."),
            format!("La réponse est {n}."),
            format!("答案是{n}。"),
        ] {
            let v = verify(&g, &form);
            prop_assert_eq!(v.outcome, Outcome::Correct, "{} vs {}", g, form);
        }
        // Thousands separators in the response, the gold plain.
        if n >= 1000 {
            let s = n.to_string();
            let head = s.len() % 3;
            let mut grouped = s[..head].to_string();
            for (k, c) in s[head..].chars().enumerate() {
                if k % 3 == 0 && !grouped.is_empty() {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            prop_assert_eq!(verify(&g, &format!("\\boxed{{{grouped}}}")).outcome, Outcome::Correct, "{}", grouped);
        }
    }

    #[test]
    fn a_different_integer_is_wrong(n in 0u64..10_000_000, k in 1u64..1000) {
        let g = n.to_string();
        for m in [n + k, n.saturating_sub(k).max(1) - 1] {
            if m == n {
                continue;
            }
            for form in [format!("\\boxed{{{m}}}"), format!("{m}"), format!("The answer is {m}."), format!("$x = {m}$")] {
                let v = verify(&g, &form);
                prop_assert_eq!(v.outcome, Outcome::Wrong, "{} vs {}", g, form);
            }
        }
    }

    #[test]
    fn decimal_comma_equals_decimal_point(a in 0u64..100_000, b in 0u32..100) {
        let gold = format!("{a}.{b:02}");
        prop_assert_eq!(verify(&gold, &format!("{a},{b:02}")).outcome, Outcome::Correct, "{}", gold);
    }

    #[test]
    fn an_answer_only_inside_the_thinking_is_no_answer(n in 0u64..1000) {
        let v = verify(&n.to_string(), &format!("<think>so it is \\boxed{{{n}}}</think>I am not sure."));
        prop_assert_eq!(v.outcome, Outcome::NoAnswer);
        let v = verify(&n.to_string(), &format!("<think>the answer is {n}"));
        prop_assert_eq!(v.outcome, Outcome::NoAnswer);
    }

    #[test]
    fn pathological_towers_and_factorials_are_bounded(a in 2u32..20, b in 2u32..20, bangs in 1usize..5) {
        let tower = format!("{a}^{{{b}^{{{a}^{{{b}^{{{a}}}}}}}}}");
        let v = verify(&tower, &format!("\\boxed{{{tower} + 1}}"));
        prop_assert!(v.outcome != Outcome::Correct, "{}", tower);
        let f = format!("{}{}", 100 * a, "!".repeat(bangs));
        let v = verify(&f, &format!("\\boxed{{{f}}}"));
        prop_assert_eq!(v.outcome, Outcome::Correct);
    }
}

/// Only proves that the pathological inputs end (any outcome but `truncated`) without a panic;
/// their times are in the benchmark.
#[test]
fn pathological_cases_of_the_issue_never_panic() {
    for (name, gold, response) in phi4r_verifier::bench::pathological_cases() {
        let v = verify(&gold, &response);
        assert_ne!(v.outcome, Outcome::Truncated, "{name}: {v:?}");
    }
}

/// The fuzz target's checks on every input of its seed corpus (`fuzz/corpus/extract_parse`),
/// so the corpus is exercised without cargo-fuzz.
#[test]
fn fuzz_corpus_inputs_keep_the_fuzz_targets_invariants() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/extract_parse");
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let data = std::fs::read(entry?.path())?;
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let (gold, response) = text.split_once('\0').unwrap_or((text, text));
        let v = verify(gold, response);
        assert_eq!(v.correct, v.outcome == Outcome::Correct);
        let w = verify_with(response, gold, true);
        assert_eq!(w.correct, w.outcome == Outcome::Correct);
        assert_ne!(w.outcome, Outcome::NoAnswer, "{text:?}");
        n += 1;
    }
    assert!(n >= 30, "corpus has {n} inputs");
    Ok(())
}
