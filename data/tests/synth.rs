//! `synth::run` end to end: files, counts, determinism, disjoint splits, packing efficiency.

use phi4r_data::synth::run;
use phi4r_data::{
    pack, read_jsonl, tokenize_example, ChatTemplate, Overflow, Preference, ProblemAnswer, PromptCompletion,
    SynthConfig,
};
use phi4r_model::{AttentionLayout, Tokenizer};
use std::collections::HashSet;

fn small() -> SynthConfig {
    SynthConfig { problems: 600, eval_per_tier: 30, seed: 11, ..SynthConfig::default() }
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let (a, b, c) =
        (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let ra = run(&small(), a.path()).expect("runs");
    let rb = run(&small(), b.path()).expect("runs");
    assert_eq!(ra, rb);
    for f in &ra.files {
        let x = std::fs::read(a.path().join(f)).expect("read");
        let y = std::fs::read(b.path().join(f)).expect("read");
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    run(&SynthConfig { seed: 12, ..small() }, c.path()).expect("runs");
    assert_ne!(std::fs::read(a.path().join("stage1.jsonl")).ok(), std::fs::read(c.path().join("stage1.jsonl")).ok());
    let names: HashSet<_> = std::fs::read_dir(a.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names.len(), ra.files.len(), "no temporary files left: {names:?}");
}

#[test]
fn default_size_run_is_disjoint_verified_and_packs_densely() {
    // (Its speed is measured by `bench`, not asserted here.)
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = SynthConfig::default();
    let report = run(&cfg, dir.path()).expect("runs");

    // Counts add up.
    assert_eq!(report.problems, cfg.problems);
    assert_eq!(report.eval, cfg.eval_per_tier * cfg.tiers.len());
    assert_eq!(report.rollouts, cfg.problems * cfg.rollouts);
    assert_eq!(report.correct + report.incorrect, report.rollouts);
    assert_eq!(report.stage3 + report.stage3_skipped_no_correct + report.stage3_skipped_no_incorrect, report.problems);
    assert_eq!(report.stage4, report.problems);
    assert!(report.stage3 > report.problems / 4, "plenty of pairs");
    assert!((report.observed_slip_rate - cfg.slip_rate).abs() < 0.01, "slip rate {}", report.observed_slip_rate);
    assert!(report.correct_despite_slip * 100 < report.rollouts, "slips almost never cancel out");
    // Teacher accuracy falls with the tier.
    let acc: Vec<f64> = report.tiers.iter().map(|t| t.correct as f64 / t.rollouts as f64).collect();
    assert!(acc.windows(2).all(|w| w[0] > w[1]), "{acc:?}");
    // Completions stay short at the low tiers.
    for t in &report.tiers[..3] {
        assert!(t.mean_completion_tokens < 200.0, "tier {} completions: {}", t.tier, t.mean_completion_tokens);
    }

    // Files load back as their schemas.
    let p = |f: &str| dir.path().join(f);
    let stage1 = read_jsonl::<PromptCompletion>(&p("stage1.jsonl"), false).expect("loads").records;
    let stage2 = read_jsonl::<PromptCompletion>(&p("stage2.jsonl"), false).expect("loads").records;
    let stage3 = read_jsonl::<Preference>(&p("stage3.jsonl"), false).expect("loads").records;
    let stage4 = read_jsonl::<ProblemAnswer>(&p("stage4.jsonl"), false).expect("loads").records;
    let eval = read_jsonl::<ProblemAnswer>(&p("eval.jsonl"), false).expect("loads").records;
    assert_eq!(
        (stage1.len(), stage2.len(), stage3.len(), stage4.len(), eval.len()),
        (report.stage1, report.stage2, report.stage3, report.stage4, report.eval)
    );

    // Eval is disjoint from everything trained on (by problem text), and ids are unique.
    let eval_texts: HashSet<&str> = eval.iter().map(|e| e.problem.as_str()).collect();
    assert_eq!(eval_texts.len(), eval.len());
    let train_prompts = stage1
        .iter()
        .map(|r| &r.prompt)
        .chain(stage2.iter().map(|r| &r.prompt))
        .chain(stage3.iter().map(|r| &r.prompt))
        .chain(stage4.iter().map(|r| &r.problem));
    for t in train_prompts {
        assert!(!eval_texts.contains(t.as_str()), "train problem also in eval: {t}");
    }
    let ids: HashSet<_> = eval.iter().chain(&stage4).map(|r| r.id.clone().expect("id")).collect();
    assert_eq!(ids.len(), eval.len() + stage4.len());
    assert!(eval.iter().all(|e| e.tier.is_some()));

    // Rejection sampling kept what the verifier says.
    let gold: std::collections::HashMap<&str, &str> =
        stage4.iter().map(|r| (r.problem.as_str(), r.answer.as_str())).collect();
    for r in stage1.iter().chain(&stage2) {
        assert!(phi4r_verifier::verify(gold[r.prompt.as_str()], &r.completion).correct);
    }
    for r in &stage3 {
        assert!(phi4r_verifier::verify(gold[r.prompt.as_str()], &r.chosen).correct);
        assert!(!phi4r_verifier::verify(gold[r.prompt.as_str()], &r.rejected).correct);
    }
    let min_tier = cfg.stages.stage2_min_tier;
    let tier_of: std::collections::HashMap<&str, u8> =
        stage4.iter().map(|r| (r.problem.as_str(), r.tier.expect("tier"))).collect();
    assert!(stage2.iter().all(|r| tier_of[r.prompt.as_str()] >= min_tier));
    let distinct: HashSet<&str> = stage2.iter().map(|r| r.prompt.as_str()).collect();
    assert_eq!(distinct.len(), stage2.len(), "stage 2 is deduplicated");

    // Packing efficiency of stage 1, as reported and recomputed from the files at two row lengths.
    assert!(report.packing.efficiency >= 0.95, "{:?}", report.packing);
    let tok = Tokenizer::from_file(&p("tokenizer.json")).expect("tokenizer loads");
    assert_eq!(tok.vocab_size(), cfg.vocab_size);
    assert_eq!(tok.encode("1234567").expect("encodes").len(), 7, "digits are single tokens");
    let template = ChatTemplate::default();
    let docs: Vec<_> = stage1
        .iter()
        .map(|r| tokenize_example(&template, &tok, &r.prompt, &r.completion).expect("tokenizes"))
        .collect();
    for seq_len in [256, 512] {
        let packed = pack(&docs, seq_len, Overflow::Split, tok.pad_id().expect("pad")).expect("packs");
        eprintln!(
            "stage-1 packing at {seq_len}: {} rows, efficiency {:.4}, split {}",
            packed.rows.len(),
            packed.efficiency,
            packed.split_docs
        );
        assert!(packed.efficiency >= 0.95, "seq_len {seq_len}: {}", packed.efficiency);
        AttentionLayout::packed(seq_len, &packed.doc_lens()).expect("the model accepts the layout");
    }
}

#[test]
fn a_calibrated_low_tier_profile_runs() {
    // The CPU profile of DESIGN §7: tiers 1-3 only.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = SynthConfig {
        problems: 300,
        eval_per_tier: 20,
        tiers: phi4r_data::TierSpec::defaults()[..3].to_vec(),
        ..SynthConfig::default()
    };
    let report = run(&cfg, dir.path()).expect("runs");
    assert_eq!(report.tiers.len(), 3);
    // Stage 2 = the tier-3 problems with a correct rollout (one each).
    let tier3 = report.tiers[2].problems;
    assert!(report.stage2 <= tier3 && report.stage2 * 10 >= tier3 * 9, "{} of {tier3}", report.stage2);
}

#[test]
fn extra_held_out_problems_are_new_and_change_nothing_else() {
    let (a, b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let plain = run(&small(), a.path()).expect("runs");
    let cfg = SynthConfig { eval_extra_per_tier: 40, ..small() };
    let more = run(&cfg, b.path()).expect("runs");
    assert!(!plain.files.iter().any(|f| f == "eval_extra.jsonl") && !a.path().join("eval_extra.jsonl").exists());
    assert!(more.files.iter().any(|f| f == "eval_extra.jsonl"));
    assert_eq!(more.eval_extra, 40 * cfg.tiers.len());
    // The eval set and every training set are byte for byte those of the run without extras.
    for f in ["eval.jsonl", "stage1.jsonl", "stage2.jsonl", "stage3.jsonl", "stage4.jsonl", "tokenizer.json"] {
        let (x, y) = (std::fs::read(a.path().join(f)).expect("read"), std::fs::read(b.path().join(f)).expect("read"));
        assert!(x == y, "{f} changed with eval_extra_per_tier");
    }
    // The extras: 40 per tier, ids unique, texts shared with neither the eval set nor any training problem.
    let extra = read_jsonl::<ProblemAnswer>(&b.path().join("eval_extra.jsonl"), false).expect("loads").records;
    assert_eq!(extra.len(), more.eval_extra);
    for t in 1..=cfg.tiers.len() as u8 {
        assert_eq!(extra.iter().filter(|e| e.tier == Some(t)).count(), 40, "tier {t}");
    }
    let ids: HashSet<_> = extra.iter().map(|e| e.id.clone().expect("id")).collect();
    assert_eq!(ids.len(), extra.len());
    let seen: HashSet<String> = ["eval.jsonl", "stage4.jsonl"]
        .iter()
        .flat_map(|f| read_jsonl::<ProblemAnswer>(&b.path().join(f), false).expect("loads").records)
        .map(|r| r.problem)
        .collect();
    let texts: HashSet<&str> = extra.iter().map(|e| e.problem.as_str()).collect();
    assert_eq!(texts.len(), extra.len());
    assert!(texts.iter().all(|t| !seen.contains(*t)), "an extra problem is also an eval or training problem");
}
