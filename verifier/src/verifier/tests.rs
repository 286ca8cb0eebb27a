//! Behaviour of the verifier for every rule named in the issue.

use super::*;
use crate::config::{DegreePolicy, PercentPolicy};

fn ok(gold: &str, pred: &str) {
    let v = verify(gold, pred);
    assert_eq!(v.outcome, Outcome::Correct, "gold {gold:?} pred {pred:?}: {v:?}");
}

fn wrong(gold: &str, pred: &str) {
    let v = verify(gold, pred);
    assert_eq!(v.outcome, Outcome::Wrong, "gold {gold:?} pred {pred:?}: {v:?}");
}

fn with(cfg: VerifierConfig, gold: &str, pred: &str) -> Outcome {
    Verifier::new(cfg).verify(gold, pred).outcome
}

#[test]
fn extraction_forms() {
    ok("5", "so \\boxed{5}.");
    ok("5", "so \\fbox{5}.");
    ok("5", "so $\\boxed 5$.");
    ok("\\frac{1}{2}", "thus \\boxed{\\frac{1}{2}}");
    ok("3, 5", "The roots are $\\boxed{3}$ and $\\boxed{5}$.");
    ok("42", "Final Answer: The final answer is $42$. I hope it is correct.");
    ok("18", "Janet sells 9 eggs.\n#### 18");
    ok("18", "She makes 18.\nAnswer: 18");
    ok("73", "Adding up, we get **73**");
    ok("73", "I think the result is $73$ overall, probably");
    ok("73", "so \\(73\\) is what we get in the end");
    ok("73", "giving \\[73\\] as the total count");
    ok("2125", "#### 2,125");
}

#[test]
fn multiple_choice_letters() {
    for pred in [
        "(B)",
        "B.",
        "**B**",
        "Answer: B",
        "\\boxed{B}",
        "so the answer is (B) 42 cm",
        "Thinking...\nThe answer is B) the blue one",
        "\\boxed{\\text{(B)}}",
        "after all that I pick (B) here",
    ] {
        ok("B", pred);
    }
    wrong("B", "Answer: C");
    wrong("B", "\\boxed{A}");
    ok("\\text{(E)}", "\\boxed{\\text{(E)}}");
    ok("(C)", "The answer is C.");
    assert_eq!(verify("D", "no letter here at all").outcome, Outcome::NoAnswer);
}

#[test]
fn outcomes_no_answer_truncated_wrong() {
    assert_eq!(verify("5", "I am not sure what to do here.").outcome, Outcome::NoAnswer);
    assert_eq!(verify("5", "so it is \\boxed{\\frac{1}{").outcome, Outcome::Truncated);
    assert_eq!(verify_with("5", "let me think about the problem", true).outcome, Outcome::Truncated);
    assert_eq!(verify_with("5", "thus \\boxed{5}", true).outcome, Outcome::Correct);
    let strict = VerifierConfig { grade_truncated_answers: false, ..VerifierConfig::default() };
    assert_eq!(Verifier::new(strict).verify_with("5", "\\boxed{5}", true).outcome, Outcome::Truncated);
    wrong("5", "\\boxed{6}");
    wrong("5", "\\boxed{\\frac{1}{}}");
    let v = verify("5", "\\boxed{6}");
    assert_eq!(v.extracted.as_deref(), Some("6"));
    assert!(!v.correct);
}

#[test]
fn extraction_priority_is_configurable() {
    let text = "#### 7\nThe answer is \\boxed{8}";
    assert_eq!(verify("8", text).outcome, Outcome::Correct);
    let cfg =
        VerifierConfig { extraction: vec![ExtractRule::Gsm8kHash, ExtractRule::Boxed], ..VerifierConfig::default() };
    assert_eq!(with(cfg, "7", text), Outcome::Correct);
}

#[test]
fn normalization_rules() {
    ok("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)");
    ok("10080", "10,\\!080");
    ok("\\frac{17}{50}", "\\dfrac{17}{50}");
    ok("\\frac{17}{50}", "\\tfrac{17}{50}");
    ok("\\text{Evelyn}", "Evelyn");
    ok("\\text{east}", "\\textbf{East}");
    ok("15", "15\\mbox{ cm}^2");
    ok("864", "864 \\mbox{ inches}^2");
    ok("5.4", "5.4 \\text{ cents}");
    ok("18.90", "\\$18.90");
    ok("32348", "\\$32,\\!348");
    ok("36", "36 dollars");
    ok("7", "7 units");
    ok("90^\\circ", "90");
    ok("90", "90^\\circ");
    ok("90", "90^{\\circ}");
    ok("90", "90 degrees");
    ok("90", "90\\circ");
    ok("1000", "1,000");
    ok("1000", "1{,}000");
    ok("1000", "1\\,000");
    ok("1000", "1 000");
    ok("42", "42.");
    ok("5", "x = 5");
    ok("5", "k = 5");
    ok("x=5", "5");
    ok("\\frac{1}{2}", "\\frac12");
    ok("\\sqrt{2}", "\\sqrt2");
    ok("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2");
    ok("30^\\circ", "30^\\circ");
}

#[test]
fn numbers() {
    ok("123456789012345678901234567890", "123456789012345678901234567890");
    wrong("123456789012345678901234567890", "123456789012345678901234567891");
    ok("0.5", "\\frac{1}{2}");
    ok("\\frac{1}{2}", "1/2");
    ok(".35625", "\\frac{57}{160}");
    ok("2\\frac{1}{3}", "\\frac{7}{3}");
    ok("137 \\frac{1}{2}", "137.5");
    ok("1.5\\times 10^{3}", "1500");
    ok("1500", "1.5e3");
    ok("1500", "1.5 \\cdot 10^3");
    ok("2\\sqrt{2}", "\\sqrt{8}");
    ok("\\pi", "3.14159265");
    ok("12\\pi", "12 \\pi");
    ok("e^2", "e \\cdot e");
    ok("120", "5!");
    ok("10", "\\binom{5}{2}");
    ok("\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)");
    ok("\\frac{\\sqrt{3}}{2}", "\\cos\\frac{\\pi}{6}");
    ok("3", "\\log_2 8");
    ok("1", "\\ln e");
    ok("-2 + 7i", "7i - 2");
    ok("1+2i", "\\frac{5}{1-2i}");
    ok("i", "\\sqrt{-1}");
    wrong("1+2i", "1-2i");
    ok("-\\frac{\\pi}{6}", "-\\pi/6");
}

#[test]
fn integers_are_exact_and_float_tolerance_applies_to_decimals() {
    wrong("1000000", "1000001");
    wrong("1", "1.001");
    ok("\\frac{1}{3}", "0.333333");
    wrong("\\frac{1}{3}", "0.33");
    ok("0.15", "0.15");
    wrong("0.15", "0.1500100");
    let loose = VerifierConfig { float_rel_tol: 1e-2, ..VerifierConfig::default() };
    assert_eq!(with(loose, "\\frac{1}{3}", "0.333"), Outcome::Correct);
}

#[test]
fn false_positive_guards() {
    wrong("\\frac{1}{2004!}", "\\frac{1}{2006!}");
    // Beyond the float range and not exact: undecided, never equal.
    assert_eq!(verify("\\frac{\\sqrt{2}}{2004!}", "\\frac{\\sqrt{2}}{2006!}").outcome, Outcome::TooComplex);
    wrong("\\pm 2021", "2021");
    ok("\\pm 2021", "\\pm 2021");
    ok("\\pm 2021", "2021, -2021");
    wrong("3, 5", "3");
    wrong("3", "3, 5");
    ok("\\frac{639}{40}", "so $\\boxed{15\\frac{39}{40}}$ or $\\boxed{\\frac{639}{40}}$.");
    wrong("3, 5", "3, 5, 7");
    wrong("1 \\pm \\sqrt{19}", "1 + \\sqrt{19}");
    ok("1 \\pm \\sqrt{19}", "1 + \\sqrt{19}, 1 - \\sqrt{19}");
    wrong("10^{100}", "10^{100}+1");
    wrong("2", "2x");
    wrong("x", "y");
}

#[test]
fn symbolic_equivalence() {
    ok("\\sqrt{1/n}", "\\frac{1}{\\sqrt n}");
    ok("2(x+1)", "2x+2");
    ok("x^2-1", "(x-1)(x+1)");
    ok("6r^2-4r-24", "2(3r^2-2r-12)");
    ok("\\frac{11+9a}{20}", "\\frac{11}{20} + \\frac{9a}{20}");
    ok("\\sin^2 x + \\cos^2 x", "1");
    ok("p - q", "-q + p");
    ok("3R^2", "3 R^2");
    wrong("3R^2", "3r^2");
    wrong("x^2-1", "(x-1)^2");
}

#[test]
fn equations_and_systems() {
    ok("y = 2x + 3", "2x + 3 = y");
    ok("y = 2x + 3", "y = 3 + 2x");
    wrong("y = 2x + 3", "y = 2x - 3");
    ok("y = -2x", "-2x");
    ok("x = 1, y = 2", "y = 2, x = 1");
    wrong("x = 1, y = 2", "x = 2, y = 1");
    ok("3, 5", "x = 3 or x = 5");
}

#[test]
fn intervals_sets_tuples_matrices() {
    ok("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)");
    wrong("(3,4]", "(3,4)");
    wrong("[3,4]", "(3,4)");
    ok("x \\in [-2,7]", "[-2,7]");
    ok("[-2, 7]", "-2 \\le x \\le 7");
    ok("(5,\\infty)", "x > 5");
    ok("(1,-2)", "(1, -2)");
    wrong("(1,-2)", "(-2, 1)");
    ok("3, 5, 7", "7, 3, 5");
    ok("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5");
    ok("-2,1", "1, -2");
    ok("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", "\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}");
    wrong("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", "\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}");
    ok("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", "(0.2, -3.6)");
    ok("\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", "[\\pi^2/8, 5\\pi^2/4]");
}

#[test]
fn percent_policies() {
    ok("10\\%", "10\\%");
    ok("10\\%", "10");
    wrong("10\\%", "0.1");
    let frac = VerifierConfig { percent: PercentPolicy::Fraction, ..VerifierConfig::default() };
    assert_eq!(with(frac.clone(), "10\\%", "0.1"), Outcome::Correct);
    assert_eq!(with(frac, "10\\%", "10"), Outcome::Wrong);
    let lenient = VerifierConfig { percent: PercentPolicy::Lenient, ..VerifierConfig::default() };
    for p in ["10\\%", "10", "0.1"] {
        assert_eq!(with(lenient.clone(), "10\\%", p), Outcome::Correct, "{p}");
    }
    assert_eq!(with(lenient, "10\\%", "0.2"), Outcome::Wrong);
}

#[test]
fn degree_policies() {
    wrong("30^\\circ", "\\frac{\\pi}{6}");
    let rad = VerifierConfig { degrees: DegreePolicy::Radians, ..VerifierConfig::default() };
    assert_eq!(with(rad.clone(), "30^\\circ", "\\frac{\\pi}{6}"), Outcome::Correct);
    assert_eq!(with(rad, "30^\\circ", "30"), Outcome::Wrong);
    let lenient = VerifierConfig { degrees: DegreePolicy::Lenient, ..VerifierConfig::default() };
    for p in ["30^\\circ", "30", "\\frac{\\pi}{6}"] {
        assert_eq!(with(lenient.clone(), "30^\\circ", p), Outcome::Correct, "{p}");
    }
}

#[test]
fn text_answers() {
    ok("\\text{even}", "even");
    ok("\\text{Navin}", "\\text{navin}");
    wrong("\\text{even}", "odd");
    wrong("\\text{ellipse}", "\\text{circle}");
    ok("\\cot x", "\\frac{\\cos x}{\\sin x}");
}

#[test]
fn pathological_inputs_do_not_hang_or_panic() {
    let tower = verify("10^{10^{10^{10}}}", "\\boxed{10^{10^{10^{10}}}+1}");
    assert_eq!(tower.outcome, Outcome::TooComplex);
    assert!(verify("10^{10^{10^{10}}}", "\\boxed{10^{10^{10^{10}}}}").correct);
    let f = verify("1000!!!", "\\boxed{1001!!!}");
    assert_eq!(f.outcome, Outcome::TooComplex);
    let nested = format!("\\boxed{{{}1{}}}", "{".repeat(10_000), "}".repeat(10_000));
    assert_eq!(verify("1", &nested).outcome, Outcome::TooComplex);
    let big = "words ".repeat(200_000) + "\\boxed{42}";
    assert!(verify("42", &big).correct);
    let huge = "x".repeat(5 << 20);
    assert_eq!(verify("42", &huge).outcome, Outcome::TooComplex);
}

#[test]
fn realistic_model_outputs() {
    ok("0.75", "Therefore, the answer is $\\frac{3}{4}$.");
    ok("2, -3", "\\boxed{x = 2 \\text{ or } x = -3}");
    ok("2, -3", "\\boxed{-3, 2}");
    ok("1000", "\\boxed{\\$1,000}");
    ok("50", "\\boxed{50\\%}");
    ok("\\frac{\\sqrt{3}}{3}", "\\boxed{\\frac{1}{\\sqrt{3}}}");
    ok("\\frac{20000}{\\pi}", "\\boxed{6366.2}");
    ok("4210_{5}", "\\boxed{4210_5}");
    ok("3\\sqrt{13}", "\\boxed{\\sqrt{117}}");
    ok("\\frac12", "\\boxed{\\dfrac{1}{2}\\text{ hour}}");
    ok("C", "\\boxed{\\text{(C) } 12}");
    ok("\\infty", "\\boxed{\\infty}");
    ok("-\\infty", "\\boxed{-\\infty}");
    wrong("\\infty", "\\boxed{-\\infty}");
    ok("x^2+2x+1", "The final answer is $(x+1)^2$. I hope it is correct.");
    ok("\\frac{1}{2}", "**Answer:** $\\frac{1}{2}$");
    ok("5", "$$\\boxed{5}$$");
    wrong("2", "\\boxed{2.0001}");
    ok("(1,2)", "the point is \\boxed{(1, 2)}");
}
