//! The embedded default data set: synthetic problems, teacher rollouts, rejection sampling, tokenizer.
//!
//! [`run`] writes into a folder:
//!
//! | file | records |
//! |---|---|
//! | `stage1.jsonl` | [`PromptCompletion`]: every distinct correct rollout |
//! | `stage2.jsonl` | [`PromptCompletion`]: the harder deduplicated subset (tiers ≥ `stages.stage2_min_tier`) |
//! | `stage3.jsonl` | [`Preference`](crate::Preference): (correct, incorrect) pairs |
//! | `stage4.jsonl` | [`ProblemAnswer`] with `id` and `tier`: every training problem (RL prompts) |
//! | `eval.jsonl` | [`ProblemAnswer`] with `id` and `tier`: held-out problems, `eval_per_tier` per tier |
//! | `eval_extra.jsonl` | the same: `eval_extra_per_tier` more held-out problems per tier (only when > 0) |
//! | `tokenizer.json` | BPE trained on the chat-formatted training text (digits split) |
//! | `synth_report.json` | the [`SynthReport`] |
//!
//! Every file is written atomically, and the whole output is a function of the config (seed included).
//! Eval problems are generated first and no training problem shares an eval problem's text.

use crate::chat::{tokenize_example, ChatTemplate};
use crate::error::{Error, Result};
use crate::jsonl::write_jsonl;
use crate::packing::{pack, Overflow};
use crate::problem::{generate, Problem, TierSpec};
use crate::rejection::{build_stages, GradedProblem, GradedResponse, StageConfig};
use crate::schema::{ProblemAnswer, PromptCompletion};
use crate::teacher::{SlipKind, Teacher};
use phi4r_model::Tokenizer;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Configuration of the synthetic data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Seed of everything (problems, eval split, teacher).
    pub seed: u64,
    /// Training problems, split evenly over the tiers (earlier tiers get the remainder).
    pub problems: usize,
    /// Teacher rollouts per training problem.
    pub rollouts: usize,
    /// Teacher slip probability per opportunity (each operation and the final copy).
    pub slip_rate: f64,
    /// The tiers, easiest first (tier label = index + 1).
    pub tiers: Vec<TierSpec>,
    /// Held-out evaluation problems per tier (DESIGN §7: ≥ 200 for a per-stage table).
    pub eval_per_tier: usize,
    /// More held-out problems per tier, written to `eval_extra.jsonl` (0: no file). Drawn after the
    /// training problems from a stream of their own, distinct from every eval and training problem, so
    /// neither `eval.jsonl` nor the training sets change with it. The main job evaluates stage 4's tiers
    /// on them too: a paired comparison on 4× the problems resolves a gain of half the size.
    pub eval_extra_per_tier: usize,
    /// Vocabulary size of the trained tokenizer (special tokens included).
    pub vocab_size: usize,
    /// Selection of the stage sets.
    pub stages: StageConfig,
    /// The chat template used for the tokenizer's training text and the packing report.
    pub template: ChatTemplate,
    /// Row length for the stage-1 packing report.
    pub pack_seq_len: usize,
    /// What the packing report does with examples longer than a row.
    pub overflow: Overflow,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 0,
            problems: 5000,
            rollouts: 4,
            slip_rate: 0.1,
            tiers: TierSpec::defaults(),
            eval_per_tier: 200,
            eval_extra_per_tier: 0,
            // 256 bytes + 6 specials + ~250 merges: the names, items and phrase words of the task. Digits
            // stay single tokens. A small vocabulary keeps the embedding of a ~1M-parameter model small.
            vocab_size: 512,
            stages: StageConfig::default(),
            template: ChatTemplate::default(),
            pack_seq_len: 512,
            overflow: Overflow::Split,
        }
    }
}

impl SynthConfig {
    /// Checks every key; errors name it.
    pub fn validate(&self) -> Result<()> {
        if self.problems == 0 {
            return Err(Error::config("problems", "must be > 0"));
        }
        if self.rollouts == 0 {
            return Err(Error::config("rollouts", "must be > 0"));
        }
        if !(0.0..=1.0).contains(&self.slip_rate) {
            return Err(Error::config("slip_rate", format!("{} is not in 0..=1", self.slip_rate)));
        }
        if self.tiers.is_empty() || self.tiers.len() > 255 {
            return Err(Error::config("tiers", "must list 1..=255 tiers"));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            t.validate(&format!("tiers[{i}]"))?;
        }
        if !(300..=1_000_000).contains(&self.vocab_size) {
            return Err(Error::config(
                "vocab_size",
                format!("{} is not in 300..=1000000 (256 bytes + specials + merges)", self.vocab_size),
            ));
        }
        if self.pack_seq_len == 0 {
            return Err(Error::config("pack_seq_len", "must be > 0"));
        }
        self.stages.validate("stages")?;
        self.template.validate().map_err(|e| match e {
            Error::Config { key, reason } => Error::config(format!("template.{key}"), reason),
            other => other,
        })
    }

    /// Training problems of tier index `i`.
    fn problems_of(&self, i: usize) -> usize {
        let n = self.tiers.len();
        self.problems / n + usize::from(i < self.problems % n)
    }
}

/// Per-tier counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierReport {
    /// Tier label (1 = easiest).
    pub tier: u8,
    /// Operations per problem.
    pub ops: usize,
    /// Training problems.
    pub problems: usize,
    /// Eval problems.
    pub eval: usize,
    /// Teacher rollouts.
    pub rollouts: usize,
    /// Correct rollouts.
    pub correct: usize,
    /// Stage-1 examples.
    pub stage1: usize,
    /// Mean tokens of a stage-1 example (template included).
    pub mean_tokens: f64,
    /// Mean completion tokens of a stage-1 example (end marker included).
    pub mean_completion_tokens: f64,
    /// Longest stage-1 example in tokens.
    pub max_tokens: usize,
}

/// The stage-1 packing report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackingReport {
    /// Row length.
    pub seq_len: usize,
    /// Overflow policy.
    pub overflow: Overflow,
    /// Packed documents.
    pub docs: usize,
    /// Rows.
    pub rows: usize,
    /// Real tokens.
    pub real_tokens: usize,
    /// `real_tokens / (rows × seq_len)`.
    pub efficiency: f64,
    /// Documents truncated.
    pub truncated_docs: usize,
    /// Documents split.
    pub split_docs: usize,
}

/// Everything [`run`] counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    /// The seed.
    pub seed: u64,
    /// The configured slip rate.
    pub slip_rate: f64,
    /// Per tier.
    pub tiers: Vec<TierReport>,
    /// Training problems.
    pub problems: usize,
    /// Eval problems.
    pub eval: usize,
    /// Extra held-out problems (`eval_extra.jsonl`).
    #[serde(default)]
    pub eval_extra: usize,
    /// Generated problems dropped because one of the other side (training / held-out) has the same text.
    pub eval_collisions_dropped: usize,
    /// Generated problems dropped as duplicates of an earlier one of the same split.
    pub duplicates_dropped: usize,
    /// Teacher rollouts.
    pub rollouts: usize,
    /// Correct rollouts.
    pub correct: usize,
    /// Incorrect rollouts.
    pub incorrect: usize,
    /// Rollouts per verifier outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// Slip opportunities (operations + final copies over all rollouts).
    pub slip_opportunities: usize,
    /// Slips made.
    pub slips: usize,
    /// `slips / slip_opportunities`.
    pub observed_slip_rate: f64,
    /// Slips per kind.
    pub slips_by_kind: BTreeMap<String, usize>,
    /// Rollouts the verifier judged correct although the teacher slipped (a slip that cancelled out).
    pub correct_despite_slip: usize,
    /// Stage-1 examples.
    pub stage1: usize,
    /// Correct rollouts left out of stage 1 as exact duplicates.
    pub stage1_duplicates_dropped: usize,
    /// Stage-2 examples.
    pub stage2: usize,
    /// Stage-3 pairs.
    pub stage3: usize,
    /// Problems without a correct rollout (no pair).
    pub stage3_skipped_no_correct: usize,
    /// Problems without an incorrect rollout (no pair).
    pub stage3_skipped_no_incorrect: usize,
    /// Stage-4 prompts.
    pub stage4: usize,
    /// Vocabulary size of the trained tokenizer.
    pub tokenizer_vocab: usize,
    /// Packing of stage 1.
    pub packing: PackingReport,
    /// Files written, relative to the output folder.
    pub files: Vec<String>,
}

/// Most training texts the tokenizer is trained on.
const TOKENIZER_TEXTS: usize = 2000;

/// Distinct RNG streams derived from one seed (splitmix64 of seed and stream).
fn stream(seed: u64, stream: u64) -> StdRng {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Draws problems with distinct texts, never one whose text is forbidden (the eval set's).
struct Drawer<'a> {
    cfg: &'a SynthConfig,
    rng: StdRng,
    /// Generated problems dropped as duplicates of an earlier one of the same split.
    duplicates: usize,
    /// Generated problems dropped because their text is forbidden.
    collisions: usize,
}

impl Drawer<'_> {
    /// `n` problems of tier index `ti` whose texts are not in `taken` nor `forbidden`; adds them to `taken`.
    fn draw(
        &mut self,
        ti: usize,
        n: usize,
        split: &str,
        taken: &mut HashSet<String>,
        forbidden: &HashSet<String>,
    ) -> Result<Vec<Problem>> {
        let tier = ti as u8 + 1;
        let mut out = Vec::with_capacity(n);
        let mut attempts = 0usize;
        while out.len() < n {
            attempts += 1;
            if attempts > 20 * n + 1000 {
                return Err(Error::config(
                    format!("tiers[{ti}]"),
                    format!(
                        "cannot generate {n} distinct {split} problems (got {}); widen the tier or ask for fewer",
                        out.len()
                    ),
                ));
            }
            let p =
                generate(tier, &self.cfg.tiers[ti], format!("synth-{split}-t{tier}-{:06}", out.len()), &mut self.rng);
            if forbidden.contains(&p.text) {
                self.collisions += 1;
            } else if !taken.insert(p.text.clone()) {
                self.duplicates += 1;
            } else {
                out.push(p);
            }
        }
        Ok(out)
    }
}

fn problem_answer(p: &Problem) -> ProblemAnswer {
    ProblemAnswer {
        problem: p.text.clone(),
        answer: p.answer.to_string(),
        solution: None,
        id: Some(p.id.clone()),
        tier: Some(p.tier),
    }
}

/// The embedded default tokenizer on its own (what `phi4r-actors model init` ships without
/// `--tokenizer`): a byte-level BPE of `cfg.vocab_size` trained, as [`run`] trains it, on chat-formatted
/// teacher rollouts of a spread of problems from every tier.
pub fn train_tokenizer(cfg: &SynthConfig) -> Result<Tokenizer> {
    cfg.validate()?;
    let mut drawer = Drawer { cfg, rng: stream(cfg.seed, 2), duplicates: 0, collisions: 0 };
    let per_tier = TOKENIZER_TEXTS.div_ceil(cfg.tiers.len().max(1));
    let mut taken = HashSet::new();
    let teacher = Teacher::new(cfg.slip_rate)?;
    let mut rng = stream(cfg.seed, 3);
    let mut corpus = Vec::with_capacity(per_tier * cfg.tiers.len());
    for ti in 0..cfg.tiers.len() {
        for p in drawer.draw(ti, per_tier, "train", &mut taken, &HashSet::new())? {
            let r = teacher.rollout(&p, &mut rng);
            corpus.push(cfg.template.render(&problem_answer(&p).problem, &r.text));
        }
    }
    Ok(Tokenizer::train_bpe(corpus.iter(), cfg.vocab_size)?)
}

/// Generates the synthetic data set described by `cfg` into `out_dir` (created if absent) and reports
/// what it counted. Deterministic for a config.
pub fn run(cfg: &SynthConfig, out_dir: &Path) -> Result<SynthReport> {
    cfg.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;

    // Eval first, from its own stream, so the eval set does not depend on the training size.
    let mut eval_drawer = Drawer { cfg, rng: stream(cfg.seed, 1), duplicates: 0, collisions: 0 };
    let mut eval_texts = HashSet::new();
    let mut eval = Vec::new();
    for ti in 0..cfg.tiers.len() {
        eval.extend(eval_drawer.draw(ti, cfg.eval_per_tier, "eval", &mut eval_texts, &HashSet::new())?);
    }
    let mut train_drawer = Drawer { cfg, rng: stream(cfg.seed, 2), duplicates: 0, collisions: 0 };
    let mut train_texts = HashSet::new();
    let mut train = Vec::new();
    for ti in 0..cfg.tiers.len() {
        train.extend(train_drawer.draw(ti, cfg.problems_of(ti), "train", &mut train_texts, &eval_texts)?);
    }
    let mut extra_drawer = Drawer { cfg, rng: stream(cfg.seed, 4), duplicates: 0, collisions: 0 };
    let mut extra = Vec::new();
    if cfg.eval_extra_per_tier > 0 {
        for ti in 0..cfg.tiers.len() {
            extra.extend(extra_drawer.draw(ti, cfg.eval_extra_per_tier, "evalx", &mut eval_texts, &train_texts)?);
        }
    }
    let (dup, collided) = (
        eval_drawer.duplicates + train_drawer.duplicates + extra_drawer.duplicates,
        train_drawer.collisions + extra_drawer.collisions,
    );

    // Teacher rollouts, verified.
    let teacher = Teacher::new(cfg.slip_rate)?;
    let mut teacher_rng = stream(cfg.seed, 3);
    let (mut opportunities, mut slips, mut correct_despite_slip) = (0usize, 0usize, 0usize);
    let mut slips_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut graded = Vec::with_capacity(train.len());
    for p in &train {
        let pa = problem_answer(p);
        let mut responses = Vec::with_capacity(cfg.rollouts);
        for _ in 0..cfg.rollouts {
            let r = teacher.rollout(p, &mut teacher_rng);
            opportunities += r.opportunities;
            slips += r.slips.len();
            for k in &r.slips {
                let name = match k {
                    SlipKind::WrongIntermediate => "wrong_intermediate",
                    SlipKind::SkippedStep => "skipped_step",
                    SlipKind::WrongFinalCopy => "wrong_final_copy",
                };
                *slips_by_kind.entry(name.to_string()).or_default() += 1;
            }
            let outcome = phi4r_verifier::verify(&pa.answer, &r.text).outcome;
            if outcome == phi4r_verifier::Outcome::Correct && !r.slips.is_empty() {
                correct_despite_slip += 1;
            }
            responses.push(GradedResponse { response: r.text, outcome });
        }
        graded.push(GradedProblem { problem: pa, responses });
    }
    let sets = build_stages(&graded, &cfg.stages);

    // Tokenizer on chat-formatted training text. The vocabulary is the task's few hundred words, which a
    // spread-out sample of problems already holds; training on every rollout would take seconds more.
    let stride = graded.len().div_ceil(TOKENIZER_TEXTS).max(1);
    let corpus: Vec<String> = graded
        .iter()
        .step_by(stride)
        .flat_map(|g| g.responses.first().map(|r| cfg.template.render(&g.problem.problem, &r.response)))
        .collect();
    let tokenizer = Tokenizer::train_bpe(corpus.iter(), cfg.vocab_size)?;
    drop(corpus);

    // Stage-1 token statistics and the packing report.
    let pad = tokenizer.pad_id().ok_or_else(|| Error::input("synth::run", "trained tokenizer has no pad token"))?;
    let mut docs = Vec::with_capacity(sets.stage1.len());
    let mut tiers: Vec<TierReport> = cfg
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| TierReport {
            tier: i as u8 + 1,
            ops: t.ops,
            problems: cfg.problems_of(i),
            eval: cfg.eval_per_tier,
            rollouts: cfg.problems_of(i) * cfg.rollouts,
            correct: 0,
            stage1: 0,
            mean_tokens: 0.0,
            mean_completion_tokens: 0.0,
            max_tokens: 0,
        })
        .collect();
    for g in &graded {
        let ti = usize::from(g.problem.tier.unwrap_or(1)) - 1;
        tiers[ti].correct += g.correct().count();
    }
    for (ex, &src) in sets.stage1.iter().zip(&sets.stage1_source) {
        let PromptCompletion { prompt, completion } = ex;
        let doc = tokenize_example(&cfg.template, &tokenizer, prompt, completion)?;
        let ti = usize::from(graded[src].problem.tier.unwrap_or(1)) - 1;
        let t = &mut tiers[ti];
        t.stage1 += 1;
        t.mean_tokens += doc.len() as f64;
        t.mean_completion_tokens += doc.targets() as f64;
        t.max_tokens = t.max_tokens.max(doc.len());
        docs.push(doc);
    }
    for t in &mut tiers {
        if t.stage1 > 0 {
            t.mean_tokens /= t.stage1 as f64;
            t.mean_completion_tokens /= t.stage1 as f64;
        }
    }
    let packed = pack(&docs, cfg.pack_seq_len, cfg.overflow, pad)?;
    let packing = PackingReport {
        seq_len: cfg.pack_seq_len,
        overflow: cfg.overflow,
        docs: packed.docs,
        rows: packed.rows.len(),
        real_tokens: packed.real_tokens,
        efficiency: packed.efficiency,
        truncated_docs: packed.truncated_docs,
        split_docs: packed.split_docs,
    };
    drop(packed);
    drop(docs);

    // Files.
    let eval_records: Vec<ProblemAnswer> = eval.iter().map(problem_answer).collect();
    write_jsonl(&out_dir.join("stage1.jsonl"), &sets.stage1)?;
    write_jsonl(&out_dir.join("stage2.jsonl"), &sets.stage2)?;
    write_jsonl(&out_dir.join("stage3.jsonl"), &sets.stage3)?;
    write_jsonl(&out_dir.join("stage4.jsonl"), &sets.stage4)?;
    write_jsonl(&out_dir.join("eval.jsonl"), &eval_records)?;
    if !extra.is_empty() {
        write_jsonl(&out_dir.join("eval_extra.jsonl"), extra.iter().map(problem_answer).collect::<Vec<_>>())?;
    }
    tokenizer.save(&out_dir.join("tokenizer.json"))?;
    let c = &sets.counts;
    let report = SynthReport {
        seed: cfg.seed,
        slip_rate: cfg.slip_rate,
        tiers,
        problems: train.len(),
        eval: eval.len(),
        eval_extra: extra.len(),
        eval_collisions_dropped: collided,
        duplicates_dropped: dup,
        rollouts: c.responses,
        correct: c.correct,
        incorrect: c.incorrect,
        outcomes: c.outcomes.clone(),
        slip_opportunities: opportunities,
        slips,
        observed_slip_rate: if opportunities > 0 { slips as f64 / opportunities as f64 } else { 0.0 },
        slips_by_kind,
        correct_despite_slip,
        stage1: c.stage1,
        stage1_duplicates_dropped: c.stage1_duplicates_dropped,
        stage2: c.stage2,
        stage3: c.stage3,
        stage3_skipped_no_correct: c.stage3_skipped_no_correct,
        stage3_skipped_no_incorrect: c.stage3_skipped_no_incorrect,
        stage4: c.stage4,
        tokenizer_vocab: tokenizer.vocab_size(),
        packing,
        files: [
            "stage1.jsonl",
            "stage2.jsonl",
            "stage3.jsonl",
            "stage4.jsonl",
            "eval.jsonl",
            "eval_extra.jsonl",
            "tokenizer.json",
            "synth_report.json",
        ]
        .into_iter()
        .filter(|f| *f != "eval_extra.jsonl" || !extra.is_empty())
        .map(String::from)
        .collect(),
    };
    let json =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::input("synth::run", format!("report to JSON: {e}")))?;
    phi4r_model::write_atomic(&out_dir.join("synth_report.json"), &json)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let bad = |f: fn(&mut SynthConfig)| {
            let mut c = SynthConfig::default();
            f(&mut c);
            c.validate().expect_err("must fail").to_string()
        };
        assert!(bad(|c| c.slip_rate = 2.0).contains("`slip_rate`"));
        assert!(bad(|c| c.rollouts = 0).contains("`rollouts`"));
        assert!(bad(|c| c.tiers[2].ops = 0).contains("`tiers[2].ops`"));
        assert!(bad(|c| c.template.user_marker.clear()).contains("`template.user_marker`"));
        assert!(bad(|c| c.stages.stage2_per_problem = 0).contains("`stages.stage2_per_problem`"));
        SynthConfig::default().validate().expect("defaults are valid");
        let parsed: std::result::Result<SynthConfig, _> = serde_json::from_str(r#"{"seeed": 1}"#);
        assert!(parsed.expect_err("must fail").to_string().contains("seeed"));
    }

    #[test]
    fn problems_split_evenly_over_tiers() {
        let c = SynthConfig { problems: 20, ..SynthConfig::default() };
        let per: Vec<usize> = (0..6).map(|i| c.problems_of(i)).collect();
        assert_eq!(per, vec![4, 4, 3, 3, 3, 3]);
    }
}
