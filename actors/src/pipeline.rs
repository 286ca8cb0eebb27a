//! The main job: `phi4r-actors --topology 4gen-1learn` runs the whole recipe on the embedded default and
//! prints the per-stage table.
//!
//! Synthetic task and tokenizer (`data synth`: teacher rollouts, rejection sampling, stage sets, a held-out
//! eval set) → a random-init model → stage 1 (mid, packed) → stage 2 (SFT, unpacked) → stage 3 (DPO, the
//! stage-2 model as reference) → stage 4 (GRPO, streamed through the actor runtime with the requested
//! topology), with a greedy evaluation after every stage. Each step is the same subcommand a user would
//! run, as a child process of this binary, so each stage's own checks, checkpoints, metrics and resume
//! apply unchanged; the run folder holds every command's output, the configs used, `report.json` and
//! `report.md`.

use crate::cli::stage::AlgoName;
use crate::topology::Topology;
use anyhow::Context;
use clap::ValueEnum;
use phi4r_rollout::{paired_difference, PairedDifference};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// How much the main job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// A smoke run in about 3 minutes: few steps, small eval; stage 1 must beat the base model.
    Quick,
    /// The calibrated default: 12-14 minutes on a 2-core AVX-512 machine (measured on three seeds), about 22
    /// on a 2-core AVX2 one.
    Default,
    /// Longer stages and the full eval set.
    Full,
}

/// The knobs of a profile.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Model preset.
    pub preset: &'static str,
    /// Training problems of the synthetic task.
    pub problems: usize,
    /// Teacher rollouts per problem.
    pub rollouts: usize,
    /// Held-out problems per tier evaluated after each stage.
    pub eval_per_tier: usize,
    /// Completion limit of the evaluation.
    pub eval_max_new_tokens: usize,
    /// More held-out problems per tier (`data/eval_extra.jsonl`) on which the stage-3 and stage-4
    /// models are also evaluated, on stage 4's tiers only: the table's last column, stage 4's gain on
    /// `eval_per_tier + eval_extra_per_tier` problems per tier (0: no column).
    pub eval_extra_per_tier: usize,
    /// Optimizer steps of stage 1.
    pub mid_steps: u64,
    /// Stage 1's learning rate.
    pub mid_lr: f64,
    /// Stage 1's packed row length, tokens. Long enough for the longest synthetic document (prompt and
    /// solution, up to ~440 tokens): at 256, a fifth of them were cut, and the second piece trained as
    /// a document without its problem.
    pub mid_seq_len: usize,
    /// Stage 1's sequences per optimizer step (packed rows of `mid_seq_len` tokens), one forward each
    /// step up to 16.
    pub mid_batch: usize,
    /// Optimizer steps of stage 2.
    pub sft_steps: u64,
    /// Optimizer steps of stage 3.
    pub dpo_steps: u64,
    /// `--dpo-pairs policy`: problems the stage-2 model samples 4 completions of.
    pub policy_pair_problems: usize,
    /// `--dpo-pairs policy`: stage 3's learning rate (on-policy pairs tolerate more than the teacher's
    /// 1e-6 of the dpo config's cpu profile; measured: 1e-6 +0.2, 5e-6 +0.7, 2e-5 −0.8 points).
    pub policy_dpo_lr: f64,
    /// Stage 4's prompt pool: at most this many training problems of each chosen tier (the first ones of
    /// `stage4.jsonl`). Small enough that stage 4 passes over it several times, so the prompts it found too
    /// easy or set aside as too hard are skipped on the next pass.
    pub rl_prompts_per_tier: usize,
    /// Steps of stage 4.
    pub rl_steps: u64,
    /// Stage 4's learning rate.
    pub rl_lr: f64,
}

impl Profile {
    /// The plan of this profile.
    pub fn plan(self) -> Plan {
        match self {
            Profile::Quick => Plan {
                preset: "micro",
                problems: 1500,
                rollouts: 2,
                eval_per_tier: 50,
                eval_max_new_tokens: 256,
                eval_extra_per_tier: 50,
                mid_steps: 300,
                mid_lr: 3e-3,
                mid_seq_len: 448,
                mid_batch: 9,
                sft_steps: 20,
                dpo_steps: 10,
                policy_pair_problems: 500,
                policy_dpo_lr: 5e-6,
                rl_prompts_per_tier: 300,
                rl_steps: 4,
                rl_lr: 3e-5,
            },
            Profile::Default => Plan {
                preset: "micro",
                problems: 5000,
                rollouts: 4,
                eval_per_tier: 200,
                eval_max_new_tokens: 320,
                // 200 per tier carry ±3.2 points of paired noise on three tiers; stage 4's gain (2-5
                // points) cleared it in 6 of 15 runs, and on 1,800 other problems in 14 of 15.
                eval_extra_per_tier: 600,
                // Measured on seeds 0 / 1 / 2 (the same tokens and time): 700 steps of 32 rows of 256
                // tokens reach 0.40 / 0.19 / 0.22 overall, 1,400 steps of 16 rows 0.62 / 0.48 / 0.43;
                // 1,400 steps of 9 rows of 448 tokens (no document cut) 0.53 / 0.72 / 0.60.
                mid_steps: 1400,
                mid_lr: 3e-3,
                mid_seq_len: 448,
                mid_batch: 9,
                sft_steps: 100,
                dpo_steps: 30,
                policy_pair_problems: 2000,
                policy_dpo_lr: 5e-6,
                rl_prompts_per_tier: 300,
                // Every step trains `batch_groups` = 4 groups since a balancer releases a partial batch
                // only when the learner would starve: 240 steps train as many groups (~950) as 300 did when
                // a third of the steps were partial, and gained +3.0 / +3.5 / +5.8 on the seeds' tiers.
                rl_steps: 240,
                rl_lr: 3e-5,
            },
            Profile::Full => Plan {
                preset: "tiny",
                problems: 5000,
                rollouts: 4,
                eval_per_tier: 200,
                eval_max_new_tokens: 320,
                eval_extra_per_tier: 600, // as `default`'s
                mid_steps: 800,
                mid_lr: 2e-3,
                mid_seq_len: 448,
                mid_batch: 18,
                sft_steps: 200,
                dpo_steps: 40,
                policy_pair_problems: 2000,
                policy_dpo_lr: 5e-6,
                // Not measured end to end with `tiny`; on `micro`, 60-80 steps of stage 4 stayed inside
                // the noise; `default`'s 240 whole-batch steps cleared it on three seeds (measured with `micro`).
                rl_prompts_per_tier: 300,
                rl_steps: 240,
                rl_lr: 1e-5,
            },
        }
    }
}

/// Where stage 3's preference pairs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoPairs {
    /// The synthetic teacher's correct and incorrect rollouts (`data synth`'s stage3.jsonl).
    Teacher,
    /// The stage-2 model's own samples, verified: a correct and an incorrect completion of the same problem
    /// (`data pairs`).
    Policy,
}

/// The stages of the main job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    /// The synthetic data and the random-init model.
    Data,
    /// Stage 1.
    Mid,
    /// Stage 2.
    Sft,
    /// Stage 3.
    Dpo,
    /// Stage 4.
    Rl,
}

impl StageName {
    fn as_str(self) -> &'static str {
        match self {
            StageName::Data => "data",
            StageName::Mid => "mid",
            StageName::Sft => "sft",
            StageName::Dpo => "dpo",
            StageName::Rl => "rl",
        }
    }

    /// The name in `report.json`'s `stages` and the plots: `base` for the random-init row.
    fn report_name(self) -> &'static str {
        match self {
            StageName::Data => "base",
            other => other.as_str(),
        }
    }

    fn row(self) -> &'static str {
        match self {
            StageName::Data => "base (random init)",
            StageName::Mid => "+ mid-training",
            StageName::Sft => "+ SFT",
            StageName::Dpo => "+ rollout DPO",
            StageName::Rl => "+ RLVR",
        }
    }
}

/// What the main job was asked.
#[derive(Debug, Clone)]
pub struct PipelineArgs {
    /// Stage 4's topology.
    pub topology: Topology,
    /// How much to do.
    pub profile: Profile,
    /// The run folder (default `runs/<UTC timestamp>`).
    pub run_dir: Option<PathBuf>,
    /// The seed of the whole run, data included.
    pub seed: u64,
    /// Re-run from this stage (earlier ones must be finished in the run folder).
    pub from_stage: Option<StageName>,
    /// Continue an interrupted run: finished stages are kept, an unfinished one resumes.
    pub resume: bool,
    /// Compute threads, passed to every step.
    pub threads: usize,
    /// Where stage 3's pairs come from.
    pub dpo_pairs: DpoPairs,
    /// Stage 4's algorithm.
    pub algo: AlgoName,
    /// Stage 4's scale-out flags (empty: no nodes).
    pub cluster: crate::cli::stage::ClusterFlags,
    /// `--device` and `--dtype`, passed to every step.
    pub device: phi4r_model::DeviceSpec,
    /// See `device`.
    pub dtype: phi4r_model::DTypeSpec,
    /// Print `report.json` on stdout instead of the table.
    pub json: bool,
}

/// Stage 4's prompts: the training problems (`stage4.jsonl`) of the hardest three tiers the model before it
/// solves 10–90% of the time on the eval set (RL learns from mixed groups only: DESIGN §7), or, if no tier
/// is in that band, the best tier below 90%; at most `per_tier` of each tier, in the file's order (the
/// pool stage 4 passes over). Written to `data/rl_prompts.jsonl`; the tiers go to
/// `rl_tiers.json`. The cap keeps a weak model's ~5 minutes of stage 4 on the top tiers: with every tier in
/// the band (1–5 on seed 2 of `default`) it spent them on tiers 1–3 and left tiers 4–6 inside the noise
/// (README, "The main job").
fn rl_prompts(r: &Runner, before: Option<&Value>, per_tier: usize) -> anyhow::Result<PathBuf> {
    let acc: Vec<(u64, f64)> = before
        .and_then(|e| e["tiers"].as_object())
        .map(|t| t.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v["accuracy"].as_f64()?))).collect())
        .unwrap_or_default();
    let tiers = choose_rl_tiers(&acc);
    let src_path = r.p("data/stage4.jsonl");
    let src = std::fs::read_to_string(&src_path).with_context(|| format!("{}", src_path.display()))?;
    let (out, taken) = rl_pool(&src, &tiers, per_tier).with_context(|| format!("{}", src_path.display()))?;
    let path = r.p("data/rl_prompts.jsonl");
    phi4r_model::write_atomic(&path, out.as_bytes())?;
    phi4r_model::write_atomic(&r.p("rl_tiers.json"), serde_json::to_string(&tiers)?.as_bytes())?;
    eprintln!(
        "[phi4r] stage rl prompts: tiers {tiers:?}, {taken:?} prompts by tier (accuracy before stage 4: {acc:?})"
    );
    Ok(path)
}

/// The lines of `src` (JSONL with a `tier` each) whose tier is in `tiers`, at most `per_tier` of each, in
/// order; and how many of each tier were taken. A malformed line is an error naming its number.
fn rl_pool(src: &str, tiers: &[u64], per_tier: usize) -> anyhow::Result<(String, BTreeMap<u64, usize>)> {
    let mut out = String::new();
    let mut taken: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, line) in src.lines().enumerate() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        let Some(t) = v["tier"].as_u64().filter(|t| tiers.contains(t)) else { continue };
        let n = taken.entry(t).or_default();
        if *n < per_tier {
            *n += 1;
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok((out, taken))
}

/// Greedy eval accuracy band of the tiers stage 4 trains on.
const RL_BAND: std::ops::RangeInclusive<f64> = 0.1..=0.9;

/// At most this many tiers train in stage 4: the hardest of those in [`RL_BAND`].
const RL_MAX_TIERS: usize = 3;

/// The hardest [`RL_MAX_TIERS`] tiers whose accuracy lies in [`RL_BAND`]; else the most accurate tier
/// below its top; else tier 1.
fn choose_rl_tiers(acc: &[(u64, f64)]) -> Vec<u64> {
    let mut band: Vec<u64> = acc.iter().filter(|(_, a)| RL_BAND.contains(a)).map(|(t, _)| *t).collect();
    band.sort_unstable();
    if !band.is_empty() {
        return band.split_off(band.len().saturating_sub(RL_MAX_TIERS));
    }
    acc.iter()
        .filter(|(_, a)| *a < *RL_BAND.end())
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(vec![1], |(t, _)| vec![*t])
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    stage: StageName,
    label: &'static str,
    eval: Value,
    /// Wall time of the stage and its evaluation in this process (None: kept from an earlier run).
    wall_s: Option<f64>,
}

/// The embedded stage configs (written into the run folder with the run's seed).
const CONFIGS: [(&str, &str); 4] = [
    ("mid", include_str!("../../configs/stages/mid.toml")),
    ("sft", include_str!("../../configs/stages/sft.toml")),
    ("dpo", include_str!("../../configs/stages/dpo.toml")),
    ("rl", include_str!("../../configs/stages/rl.toml")),
];

/// The largest divisor of `batch` that is at most `max` (sequences per forward/backward).
fn micro_batch(batch: usize, max: usize) -> usize {
    (1..=max.min(batch).max(1)).rev().find(|m| batch.is_multiple_of(*m)).unwrap_or(1)
}

/// A stage config with its top-level `seed` set to `seed`.
fn seeded_config(text: &str, seed: u64) -> String {
    text.lines()
        .map(|l| if l.starts_with("seed = ") { format!("seed = {seed}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

struct Runner {
    bin: PathBuf,
    dir: PathBuf,
    threads: usize,
    device: phi4r_model::DeviceSpec,
    dtype: phi4r_model::DTypeSpec,
}

impl Runner {
    /// Runs `phi4r-actors <args>` (stderr shown, stdout saved to `out` when given and returned).
    fn run(&self, what: &str, args: &[String], out: Option<&Path>) -> anyhow::Result<String> {
        let mut all = vec![
            "--threads".to_string(),
            self.threads.to_string(),
            "--device".into(),
            self.device.to_string(),
            "--dtype".into(),
            self.dtype.to_string(),
        ];
        all.extend(args.iter().cloned());
        eprintln!("[phi4r] {what}: phi4r-actors {}", all.join(" "));
        let o = Command::new(&self.bin)
            .args(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("{what}: starting {}", self.bin.display()))?;
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        if !o.status.success() {
            anyhow::bail!(
                "{what} failed ({}); the run folder {} keeps what was done, `--resume` continues",
                o.status,
                self.dir.display()
            );
        }
        if let Some(p) = out {
            phi4r_model::write_atomic(p, stdout.as_bytes())?;
        }
        Ok(stdout)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The latest checkpoint of a stage folder.
fn latest(stage_dir: &Path) -> anyhow::Result<PathBuf> {
    let name = std::fs::read_to_string(stage_dir.join("latest"))
        .with_context(|| format!("{}: no checkpoint (is the stage finished?)", stage_dir.display()))?;
    Ok(stage_dir.join(name.trim()))
}

/// Runs the main job; prints the table; returns the report.
pub fn run(a: PipelineArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    let plan = a.profile.plan();
    let dir = match &a.run_dir {
        Some(d) => d.clone(),
        None => PathBuf::from("runs").join(timestamp()),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("--run-dir {}", dir.display()))?;
    let r = Runner {
        bin: std::env::current_exe()?,
        dir: dir.clone(),
        threads: a.threads,
        device: a.device,
        dtype: a.dtype,
    };
    let args_json = serde_json::json!({
        "topology": a.topology.to_string(), "profile": a.profile, "seed": a.seed, "plan": plan,
        "dpo_pairs": a.dpo_pairs, "algo": format!("{:?}", a.algo).to_lowercase(),
    });
    let args_file = dir.join("pipeline.json");
    if let Ok(old) = std::fs::read_to_string(&args_file) {
        let old: Value = serde_json::from_str(&old).with_context(|| format!("{}", args_file.display()))?;
        // What the finished stages depend on (the plan: another version's steps or row length would mix
        // two recipes in one table); `--dpo-pairs` and `--algo` may change with `--from-stage`.
        let same = ["topology", "profile", "seed", "plan"].iter().all(|k| old[k] == args_json[k]);
        if (a.resume || a.from_stage.is_some()) && !same {
            anyhow::bail!(
                "{}: this run folder was started with {old}, not {args_json}; use another --run-dir",
                args_file.display()
            );
        }
    }
    phi4r_model::write_atomic(&args_file, serde_json::to_string_pretty(&args_json)?.as_bytes())?;
    for (name, text) in CONFIGS {
        let path = dir.join("configs").join(format!("{name}.toml"));
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        phi4r_model::write_atomic(&path, seeded_config(text, a.seed).as_bytes())?;
    }
    // Which stages run again: from --from-stage on; with --resume, those not finished.
    let redo = |stage: StageName, done_marker: &Path| -> bool {
        match a.from_stage {
            Some(f) if stage >= f => true,
            _ => !(done_marker.exists() && (a.resume || a.from_stage.is_some())),
        }
    };
    let eval_on = |name: &str, model: &Path, data: &Path, per_tier: usize| -> anyhow::Result<Value> {
        let out = r.p(&format!("eval/{name}.json"));
        std::fs::create_dir_all(r.p("eval"))?;
        let text = r.run(
            &format!("eval {name}"),
            &[
                "eval".into(),
                "--model".into(),
                s(model),
                "--data".into(),
                s(data),
                "--per-tier".into(),
                per_tier.to_string(),
                "--max-new-tokens".into(),
                plan.eval_max_new_tokens.to_string(),
                "--json".into(),
                "--per-problem".into(),
            ],
            Some(&out),
        )?;
        Ok(serde_json::from_str(&text)?)
    };
    let eval = |name: &str, model: &Path| eval_on(name, model, &r.p("data/eval.jsonl"), plan.eval_per_tier);
    let mut rows: Vec<Row> = vec![];

    // Data and the base model.
    let t = Instant::now();
    let ran = redo(StageName::Data, &r.p("eval/base.json"));
    if ran {
        let synth = dir.join("synth.toml");
        phi4r_model::write_atomic(
            &synth,
            format!(
                // SFT's set from tier 2 up (the library default is 3): measured on seed 2, SFT on tiers
                // >= 3 cost 2.8 points [1.1, 4.6] (the model forgot tiers 1-2), on tiers >= 2 nothing.
                "seed = {}\nproblems = {}\nrollouts = {}\neval_per_tier = {}\neval_extra_per_tier = {}\n\n[stages]\nstage2_min_tier = 2\n",
                a.seed,
                plan.problems,
                plan.rollouts,
                plan.eval_per_tier.max(200),
                plan.eval_extra_per_tier
            )
            .as_bytes(),
        )?;
        r.run(
            "data synth",
            &["data".into(), "synth".into(), "--out".into(), s(&r.p("data")), "--config".into(), s(&synth)],
            Some(&r.p("data/synth.json")),
        )?;
        let _ = std::fs::remove_dir_all(r.p("init"));
        r.run(
            "model init",
            &[
                "model".into(),
                "init".into(),
                "--preset".into(),
                plan.preset.into(),
                "--tokenizer".into(),
                s(&r.p("data/tokenizer.json")),
                "--seed".into(),
                a.seed.to_string(),
                "--out".into(),
                s(&r.p("init")),
            ],
            None,
        )?;
        eval("base", &r.p("init"))?;
    }
    let base: Value = serde_json::from_str(&std::fs::read_to_string(r.p("eval/base.json"))?)?;
    rows.push(Row {
        stage: StageName::Data,
        label: StageName::Data.row(),
        eval: base,
        wall_s: ran.then(|| t.elapsed().as_secs_f64()),
    });
    progress_line(&rows, started);

    // Stages 1-4, each from the previous one's checkpoint.
    let mut prev = r.p("init");
    for stage in [StageName::Mid, StageName::Sft, StageName::Dpo, StageName::Rl] {
        let t = Instant::now();
        let name = stage.as_str();
        let out = r.p(name);
        let eval_file = r.p(&format!("eval/{name}.json"));
        let ran = redo(stage, &eval_file);
        if ran {
            let resume = a.resume && out.join("latest").exists() && a.from_stage.is_none_or(|f| stage < f);
            if !resume {
                let _ = std::fs::remove_dir_all(&out);
            }
            let mut args: Vec<String> = vec![
                "stage".into(),
                name.into(),
                "--config".into(),
                s(&r.p(&format!("configs/{name}.toml"))),
                "--profile".into(),
                "cpu".into(),
                "--init".into(),
                s(&prev),
                "--out".into(),
                s(&out),
            ];
            let steps = match stage {
                StageName::Mid => plan.mid_steps,
                StageName::Sft => plan.sft_steps,
                StageName::Dpo => plan.dpo_steps,
                _ => plan.rl_steps,
            };
            args.extend(["--max-steps".into(), steps.to_string()]);
            if stage != StageName::Rl {
                // The schedule spans exactly `steps` optimizer steps, however many epochs that is.
                args.extend(["--epochs".into(), "1000".into()]);
            }
            match stage {
                StageName::Mid => args.extend([
                    "--data".into(),
                    s(&r.p("data/stage1.jsonl")),
                    "--lr".into(),
                    plan.mid_lr.to_string(),
                    "--seq-len".into(),
                    plan.mid_seq_len.to_string(),
                    "--batch-size".into(),
                    plan.mid_batch.to_string(),
                    "--micro-batch".into(),
                    micro_batch(plan.mid_batch, 16).to_string(),
                ]),
                StageName::Sft => args.extend(["--data".into(), s(&r.p("data/stage2.jsonl"))]),
                StageName::Dpo => {
                    let pairs = match a.dpo_pairs {
                        DpoPairs::Teacher => r.p("data/stage3.jsonl"),
                        DpoPairs::Policy => {
                            let out = r.p("data/stage3_policy.jsonl");
                            r.run(
                                "data pairs",
                                &[
                                    "data".into(),
                                    "pairs".into(),
                                    "--model".into(),
                                    s(&prev),
                                    "--problems".into(),
                                    s(&r.p("data/stage4.jsonl")),
                                    "--out".into(),
                                    s(&out),
                                    "--samples".into(),
                                    "4".into(),
                                    "--max-problems".into(),
                                    plan.policy_pair_problems.to_string(),
                                    "--seed".into(),
                                    a.seed.to_string(),
                                ],
                                Some(&r.p("data/pairs.json")),
                            )?;
                            args.extend(["--lr".into(), plan.policy_dpo_lr.to_string()]);
                            out
                        }
                    };
                    args.extend(["--data".into(), s(&pairs), "--ref".into(), s(&prev)])
                }
                _ => args.extend([
                    "--prompts".into(),
                    s(&rl_prompts(&r, rows.last().map(|r| &r.eval), plan.rl_prompts_per_tier)?),
                    "--ref".into(),
                    s(&prev),
                    "--topology".into(),
                    a.topology.to_string(),
                    "--lr".into(),
                    plan.rl_lr.to_string(),
                    "--algo".into(),
                    format!("{:?}", a.algo).to_lowercase(),
                ]),
            }
            if stage == StageName::Rl {
                args.extend(a.cluster.to_args());
            }
            if resume {
                args.push("--resume".into());
            }
            let _ = std::fs::remove_file(&eval_file);
            r.run(&format!("stage {name}"), &args, Some(&out.join("run.json")))?;
            eval(name, &latest(&out)?)?;
            // Stage 4's tiers on the extra held-out problems, before (the stage-3 model) and after. Without
            // the file the table goes without its last column (the note is printed with the table).
            if stage == StageName::Rl && plan.eval_extra_per_tier > 0 && r.p("data/eval_extra.jsonl").exists() {
                let tiers: Vec<u64> = serde_json::from_str(&std::fs::read_to_string(r.p("rl_tiers.json"))?)?;
                let src_path = r.p("data/eval_extra.jsonl");
                let src = std::fs::read_to_string(&src_path).with_context(|| format!("{}", src_path.display()))?;
                let (extra, _) =
                    rl_pool(&src, &tiers, usize::MAX).with_context(|| format!("{}", src_path.display()))?;
                let data = r.p("data/eval_extra_rl.jsonl");
                phi4r_model::write_atomic(&data, extra.as_bytes())?;
                eval_on("dpo_extra", &prev, &data, plan.eval_extra_per_tier)?;
                eval_on("rl_extra", &latest(&out)?, &data, plan.eval_extra_per_tier)?;
            }
        }
        let ev: Value = serde_json::from_str(&std::fs::read_to_string(&eval_file)?)?;
        rows.push(Row { stage, label: stage.row(), eval: ev, wall_s: ran.then(|| t.elapsed().as_secs_f64()) });
        progress_line(&rows, started);
        prev = latest(&out)?;
    }

    let wall_s = started.elapsed().as_secs_f64();
    // Wall times mean little without the machine: the same job takes ~3.5× as long on a 2-core AVX2
    // machine as on a 2-core AVX-512 one (README "The main job").
    let cpu = phi4r_model::bench::CpuPeak::detect(a.threads);
    let machine = cpu.describe();
    let deltas = row_deltas(&rows);
    let rl_tiers = if plan.eval_extra_per_tier > 0 && rows.len() == 5 {
        let read = |f: &str| -> anyhow::Result<Value> {
            Ok(serde_json::from_str(&std::fs::read_to_string(r.p(f)).with_context(|| f.to_string())?)?)
        };
        let found = (|| -> anyhow::Result<_> {
            let tiers: Vec<u64> = serde_json::from_value(read("rl_tiers.json")?)?;
            Ok((tiers, read("eval/dpo_extra.json")?, read("eval/rl_extra.json")?))
        })();
        match found {
            Ok((tiers, before, after)) => rl_tier_delta(&tiers, [&rows[3].eval, &before], [&rows[4].eval, &after]),
            Err(e) => {
                // E.g. no data/eval_extra.jsonl: the table without its last column.
                eprintln!(
                    "[phi4r] no comparison on the extra held-out problems ({e:#}); `--from-stage data` draws data/eval_extra.jsonl"
                );
                None
            }
        }
    } else {
        None
    };
    let table = markdown_table(&rows, &deltas, rl_tiers.as_ref());
    let mut slim = serde_json::to_value(&rows)?;
    for row in slim.as_array_mut().into_iter().flatten() {
        if let Some(ev) = row["eval"].as_object_mut() {
            ev.remove("per_problem");
        }
    }
    let report = serde_json::json!({
        "stages": stage_accuracies(&rows),
        "run_dir": dir, "topology": a.topology.to_string(), "profile": a.profile, "seed": a.seed, "plan": plan,
        "wall_s": wall_s, "machine": cpu,
        "rows": slim, "deltas_vs_row_above": deltas, "rl_tiers": rl_tiers,
    });
    phi4r_model::write_atomic(&dir.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    let plots = match write_plots(&dir, &rows) {
        Ok(()) => "\n## Plots\n\n![accuracy by stage](plots/accuracy.png)\n\n![loss per stage](plots/loss.png)\n\n![stage 4](plots/rl.png)\n".to_string(),
        // A plot never fails a finished run: the table and report.json are written already.
        Err(e) => format!("\n(plots not drawn: {e:#})\n"),
    };
    let md = format!(
        "# phi4r main job — profile {:?}, seed {}, topology {}\n\nGreedy accuracy on the held-out synthetic eval set ({} problems per tier), 95% Wilson interval on the overall score; Δ is the change from the row above on the same problems, with its 95% paired interval{}. Wall time {:.0} s on {machine}.\n\n{table}{plots}",
        a.profile,
        a.seed,
        a.topology,
        plan.eval_per_tier,
        rl_tiers.as_ref().map_or(String::new(), |t| format!(
            "; the last column is stage 4's change on its tiers ({}) over {} held-out problems per tier, the table's and {} more",
            t.label(),
            plan.eval_per_tier + plan.eval_extra_per_tier,
            plan.eval_extra_per_tier
        )),
        wall_s
    );
    phi4r_model::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{table}");
        println!("wall time {wall_s:.0} s on {machine}; report: {}", dir.join("report.md").display());
    }
    Ok(report)
}

/// `report.json`'s `stages`: `[{"stage": "base", "accuracy": {"overall": x, "1": y, ...}}, ...]`, stages
/// named base, mid, sft, dpo, rl (the shape other tools read; `rows` beside it has every detail).
fn stage_accuracies(rows: &[Row]) -> Value {
    let stages: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut acc = serde_json::Map::new();
            acc.insert("overall".into(), r.eval["accuracy"].clone());
            for (tier, t) in r.eval["tiers"].as_object().into_iter().flatten() {
                acc.insert(tier.clone(), t["accuracy"].clone());
            }
            serde_json::json!({"stage": r.stage.report_name(), "accuracy": acc, "interval": r.eval["interval"], "wall_s": r.wall_s})
        })
        .collect();
    Value::Array(stages)
}

/// The main job's overall progress, one line on stderr per finished row: `[phi4r] 3/5 + SFT: overall
/// 0.233 (69 s); 8.6 min so far`. (Each stage draws its own bar, when stderr is a terminal.)
fn progress_line(rows: &[Row], started: Instant) {
    if let Some(r) = rows.last() {
        let wall = r.wall_s.map_or("kept".to_string(), |w| format!("{w:.0} s"));
        eprintln!(
            "[phi4r] {}/5 {}: overall {:.3} ({wall}); {:.1} min so far",
            rows.len(),
            r.label,
            r.eval["accuracy"].as_f64().unwrap_or(f64::NAN),
            started.elapsed().as_secs_f64() / 60.0
        );
    }
}

/// The eval's tiers (the first row's, in order): the table's and the plot's columns.
fn tiers(rows: &[Row]) -> Vec<String> {
    rows.first().and_then(|r| r.eval["tiers"].as_object()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
}

/// `DIR/plots/`: accuracy per tier by stage, the loss of every stage, and stage 4's reward, batch
/// accuracy, temperature, policy lag, KL and entropy (moving means over 10 steps).
fn write_plots(dir: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use crate::plots::{figure, metric, read_metrics, smooth, Panel, Series};
    std::fs::create_dir_all(dir.join("plots"))?;
    let tiers = tiers(rows);
    let by_stage = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter().enumerate().filter_map(|(i, r)| Some((i as f64, f(&r.eval)?))).collect()
    };
    let mut acc: Vec<Series> = tiers
        .iter()
        .map(|t| Series { name: format!("tier {t}"), points: by_stage(&|e| e["tiers"][t]["accuracy"].as_f64()) })
        .collect();
    acc.push(Series { name: "overall".into(), points: by_stage(&|e| e["accuracy"].as_f64()) });
    let stages = rows.iter().map(|r| r.stage.report_name()).collect::<Vec<_>>().join(", ");
    let acc_panel = Panel {
        title: "greedy accuracy by stage".into(),
        x_label: format!("stage ({stages})"),
        y_label: "accuracy".into(),
        series: acc,
    };
    figure(&dir.join("plots/accuracy.png"), &[acc_panel], 1)?;
    let one = |title: String, y: &str, name: &str, points: Vec<(f64, f64)>| Panel {
        title,
        x_label: "step".into(),
        y_label: y.into(),
        series: vec![Series { name: name.into(), points }],
    };
    let loss: Vec<Panel> = ["mid", "sft", "dpo", "rl"]
        .iter()
        .map(|s| {
            one(
                format!("stage {s}: loss"),
                "loss",
                s,
                smooth(&metric(&read_metrics(&dir.join(s).join("metrics.jsonl")), "/loss"), 10),
            )
        })
        .collect();
    figure(&dir.join("plots/loss.png"), &loss, 2)?;
    let rl = read_metrics(&dir.join("rl/metrics.jsonl"));
    let m = |p: &str| smooth(&metric(&rl, p), 10);
    let panels = vec![
        Panel {
            title: "stage rl: reward and batch accuracy".into(),
            x_label: "step".into(),
            y_label: "mean over 10 steps".into(),
            series: vec![
                Series { name: "reward (±1)".into(), points: m("/reward_mean") },
                Series { name: "share correct".into(), points: m("/positive_share") },
            ],
        },
        one("stage rl: sampling temperature".into(), "temperature", "temperature", metric(&rl, "/temperature")),
        one("stage rl: policy lag".into(), "versions", "policy lag", m("/policy_lag_mean")),
        Panel {
            title: "stage rl: k3 KL to the reference, entropy".into(),
            x_label: "step".into(),
            y_label: "nats per token".into(),
            series: vec![
                Series { name: "KL".into(), points: m("/rl/kl") },
                Series { name: "entropy".into(), points: m("/rl/entropy") },
            ],
        },
    ];
    figure(&dir.join("plots/rl.png"), &panels, 2)?;
    Ok(())
}

/// The seed's Performance table at laptop scale: one row per stage, one column per tier, then overall.
/// Each row's paired difference from the row above (`None` for the first row, or when either lacks
/// per-problem scores).
fn row_deltas(rows: &[Row]) -> Vec<Option<PairedDifference>> {
    rows.windows(2).map(|w| paired(&w[0].eval, &w[1].eval)).collect()
}

/// `deltas` are [`row_deltas`] of `rows`; `rl_tiers`, when there, fills a last column on the RLVR row.
fn markdown_table(rows: &[Row], deltas: &[Option<PairedDifference>], rl_tiers: Option<&RlTierDelta>) -> String {
    let tiers = tiers(rows);
    let mut out = String::from("| stage |");
    for t in &tiers {
        out.push_str(&format!(" tier {t} |"));
    }
    out.push_str(" overall | 95% interval | Δ vs row above [95% paired] | stage time |");
    if let Some(t) = rl_tiers {
        out.push_str(&format!(" Δ tiers {}, {} problems [95% paired] |", t.label(), t.delta.n));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(tiers.len() + 4 + usize::from(rl_tiers.is_some())));
    out.push('\n');
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!("| {} |", r.label));
        for t in &tiers {
            out.push_str(&format!(" {:.3} |", r.eval["tiers"][t]["accuracy"].as_f64().unwrap_or(f64::NAN)));
        }
        let lo = r.eval["interval"][0].as_f64().unwrap_or(f64::NAN);
        let hi = r.eval["interval"][1].as_f64().unwrap_or(f64::NAN);
        let time = r.wall_s.map_or("kept".to_string(), |w| format!("{w:.0} s"));
        let delta = match i.checked_sub(1).and_then(|p| deltas.get(p).copied().flatten()) {
            Some(d) => format!("{:+.3} [{:+.3}, {:+.3}]", d.mean, d.interval[0], d.interval[1]),
            None => "".to_string(),
        };
        out.push_str(&format!(
            " {:.3} | [{lo:.3}, {hi:.3}] | {delta} | {time} |",
            r.eval["accuracy"].as_f64().unwrap_or(f64::NAN),
        ));
        if let Some(t) = rl_tiers {
            if r.stage == StageName::Rl {
                let d = &t.delta;
                out.push_str(&format!(" {:+.3} [{:+.3}, {:+.3}] |", d.mean, d.interval[0], d.interval[1]));
            } else {
                out.push_str("  |");
            }
        }
        out.push('\n');
    }
    out
}

/// Stage 4's change on the tiers it trained on, over the table's problems of those tiers and the extra
/// ones (`eval_extra.jsonl`): what `report.json` calls `rl_tiers`.
#[derive(Debug, Clone, Serialize)]
struct RlTierDelta {
    /// The tiers.
    tiers: Vec<u64>,
    /// Accuracy on their problems before stage 4 (the stage-3 model) and after.
    before: f64,
    after: f64,
    /// The paired difference `after − before` over those problems.
    delta: PairedDifference,
}

impl RlTierDelta {
    /// `4–6`, or `3, 5`, or `2`.
    fn label(&self) -> String {
        let t = &self.tiers;
        match (t.first(), t.last()) {
            (Some(a), Some(b)) if t.len() > 2 && t.windows(2).all(|w| w[1] == w[0] + 1) => format!("{a}–{b}"),
            _ => t.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        }
    }
}

/// [`RlTierDelta`] from the stage-3 and stage-4 evaluations, each `[the table's, the extra problems']`:
/// the per-problem scores of `tiers`, the table's first, then the extra ones. None when a tier's scores
/// are missing from either evaluation or do not line up.
fn rl_tier_delta(tiers: &[u64], before: [&Value; 2], after: [&Value; 2]) -> Option<RlTierDelta> {
    let names: Vec<String> = tiers.iter().map(u64::to_string).collect();
    let ((b, kb), (a, ka)) = (per_problem_scores(&before, &names)?, per_problem_scores(&after, &names)?);
    let acc = |x: &[usize], k: usize| x.iter().sum::<usize>() as f64 / (x.len() * k.max(1)).max(1) as f64;
    Some(RlTierDelta {
        tiers: tiers.to_vec(),
        before: acc(&b, kb),
        after: acc(&a, ka),
        delta: paired_difference(&b, kb, &a, ka)?,
    })
}

/// The paired difference `after − before` over every problem of two evaluations of the same set (their
/// `per_problem` lists, tiers in order); None when either lacks them or they do not line up.
fn paired(before: &Value, after: &Value) -> Option<PairedDifference> {
    let tiers: Vec<String> = before["per_problem"].as_object()?.keys().cloned().collect();
    (after["per_problem"].as_object()?.len() == tiers.len()).then_some(())?;
    let ((b, kb), (a, ka)) = (per_problem_scores(&[before], &tiers)?, per_problem_scores(&[after], &tiers)?);
    paired_difference(&b, kb, &a, ka)
}

/// One model's per-problem correct counts over evaluations of its problems (`eval --per-problem`),
/// flattened tier by tier in `tiers`' order, each evaluation's list in turn, with the samples per problem;
/// None when a list is missing or the evaluations drew different numbers of samples.
fn per_problem_scores(evs: &[&Value], tiers: &[String]) -> Option<(Vec<usize>, usize)> {
    let samples = |ev: &Value| ev["samples"].as_u64().unwrap_or(1) as usize;
    let k = samples(evs.first()?);
    if evs.iter().any(|ev| samples(ev) != k) {
        return None;
    }
    let mut flat = vec![];
    for t in tiers {
        for ev in evs {
            for x in ev["per_problem"][t.as_str()].as_array()? {
                flat.push(x.as_u64()? as usize);
            }
        }
    }
    Some((flat, k))
}

/// `YYYYMMDD-HHMMSS` in UTC, from the system clock.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_replaces_the_configs_seed_only() {
        let text = "stage = \"mid\"\nseed = 42\n[profiles.cpu]\nlr = 1e-3\n";
        assert_eq!(seeded_config(text, 7), "stage = \"mid\"\nseed = 7\n[profiles.cpu]\nlr = 1e-3\n");
        for (name, text) in CONFIGS {
            assert_eq!(
                text.lines().filter(|l| l.starts_with("seed = ")).count(),
                1,
                "{name}.toml has one top-level seed"
            );
        }
    }

    #[test]
    fn stage_one_steps_split_into_whole_forwards() {
        assert_eq!(micro_batch(9, 16), 9);
        assert_eq!(micro_batch(18, 16), 9);
        assert_eq!(micro_batch(32, 16), 16);
        assert_eq!(micro_batch(7, 4), 1);
        for p in [Profile::Quick, Profile::Default, Profile::Full] {
            let plan = p.plan();
            assert!(plan.mid_batch.is_multiple_of(micro_batch(plan.mid_batch, 16)), "{p:?}");
            assert!(plan.mid_seq_len >= 448, "{p:?}: the longest synthetic document fits a row");
        }
    }

    #[test]
    fn rl_trains_on_the_tiers_with_mixed_success() {
        assert_eq!(choose_rl_tiers(&[(1, 0.95), (2, 0.6), (3, 0.2), (4, 0.05)]), [2, 3]);
        assert_eq!(choose_rl_tiers(&[(1, 0.95), (2, 0.9), (3, 0.4), (4, 0.1)]), [2, 3, 4], "the band is 10-90%");
        assert_eq!(
            choose_rl_tiers(&[(1, 0.8), (2, 0.8), (3, 0.6), (4, 0.4), (5, 0.2), (6, 0.0)]),
            [3, 4, 5],
            "the hardest three in the band"
        );
        assert_eq!(choose_rl_tiers(&[(1, 0.05), (2, 0.0)]), [1], "none in band: the best below 0.9");
        assert_eq!(choose_rl_tiers(&[(1, 0.99), (2, 0.95)]), [1], "all solved: tier 1");
        assert_eq!(choose_rl_tiers(&[]), [1]);
    }

    #[test]
    fn the_rl_pool_takes_the_first_prompts_of_each_chosen_tier() {
        let src: String = [1, 4, 5, 4, 6, 4, 5, 5]
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{{\"id\":{i},\"tier\":{t}}}\n"))
            .collect();
        let (out, taken) = rl_pool(&src, &[4, 5], 2).expect("valid");
        let ids: Vec<u64> =
            out.lines().map(|l| serde_json::from_str::<Value>(l).expect("json")["id"].as_u64().expect("id")).collect();
        assert_eq!(ids, vec![1, 2, 3, 6], "two of tier 4, two of tier 5, in order; tiers 1 and 6 left out");
        assert_eq!(taken, BTreeMap::from([(4, 2), (5, 2)]));
        let err = rl_pool("{\"tier\":4}\nnot json\n", &[4], 9).expect_err("malformed");
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }

    #[test]
    fn timestamps_are_civil_utc() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn the_table_has_a_column_per_tier_and_the_interval() {
        let ev = serde_json::json!({"accuracy": 0.5, "interval": [0.4, 0.6], "samples": 1,
            "tiers": {"1": {"accuracy": 0.75}, "2": {"accuracy": 0.25}},
            "per_problem": {"1": [1, 1, 0, 1], "2": [0, 1, 0, 0]}});
        let mut better = ev.clone();
        better["per_problem"]["2"] = serde_json::json!([1, 1, 0, 0]);
        let rows = [
            Row { stage: StageName::Mid, label: "+ mid-training", eval: ev, wall_s: Some(12.0) },
            Row { stage: StageName::Sft, label: "+ SFT", eval: better, wall_s: None },
        ];
        let t = markdown_table(&rows, &row_deltas(&rows), None);
        let fewer_tiers = serde_json::json!({"samples": 1, "per_problem": {"1": [1, 1, 0, 1]}});
        assert!(paired(&rows[0].eval, &fewer_tiers).is_none(), "a tier missing: no paired difference");
        assert!(
            t.starts_with(
                "| stage | tier 1 | tier 2 | overall | 95% interval | Δ vs row above [95% paired] | stage time |\n|---|---|---|---|---|---|---|\n"
            ),
            "{t}"
        );
        assert!(t.contains("| + mid-training | 0.750 | 0.250 | 0.500 | [0.400, 0.600] |  | 12 s |"), "{t}");
        // One of 8 problems flips to correct: mean 0.125, sd sqrt(1/8) -> ±0.245.
        assert!(
            t.contains("| + SFT | 0.750 | 0.250 | 0.500 | [0.400, 0.600] | +0.125 [-0.120, +0.370] | kept |"),
            "{t}"
        );
    }

    #[test]
    fn stage_fours_tiers_are_compared_on_the_tables_and_the_extra_problems() {
        let ev = |main: [&[u64]; 3], extra: [&[u64]; 2]| {
            [
                serde_json::json!({"samples": 1, "per_problem": {"3": main[0], "4": main[1], "5": main[2]}}),
                serde_json::json!({"samples": 1, "per_problem": {"4": extra[0], "5": extra[1]}}),
            ]
        };
        // Tier 3 is not stage 4's: its change (0 -> 1 on both problems) must not count.
        let before = ev([&[0, 0], &[1, 0], &[0]], [&[0, 1, 0], &[0, 0]]);
        let after = ev([&[1, 1], &[1, 1], &[0]], [&[1, 1, 0], &[1, 0]]);
        let d = rl_tier_delta(&[4, 5], [&before[0], &before[1]], [&after[0], &after[1]]).expect("lines up");
        assert_eq!(d.delta.n, 8, "tiers 4 and 5: 2 + 1 of the table's, 3 + 2 extra");
        assert!((d.before - 2.0 / 8.0).abs() < 1e-12 && (d.after - 5.0 / 8.0).abs() < 1e-12, "{d:?}");
        assert!((d.delta.mean - 3.0 / 8.0).abs() < 1e-12, "{d:?}");
        assert_eq!(d.label(), "4, 5");
        assert_eq!(RlTierDelta { tiers: vec![4, 5, 6], ..d.clone() }.label(), "4–6");
        // A tier missing from an evaluation, or problems that do not line up: no column.
        assert!(rl_tier_delta(&[6], [&before[0], &before[1]], [&after[0], &after[1]]).is_none());
        let short = ev([&[1, 1], &[1], &[0]], [&[1, 1, 0], &[1, 0]]);
        assert!(rl_tier_delta(&[4, 5], [&before[0], &before[1]], [&short[0], &short[1]]).is_none());
        let mut k2 = before.clone();
        k2[1]["samples"] = serde_json::json!(2);
        assert!(rl_tier_delta(&[4, 5], [&k2[0], &k2[1]], [&after[0], &after[1]]).is_none(), "samples differ");

        // The table: a last column, filled on the RLVR row only.
        let row = |stage, label, eval: Value| Row { stage, label, eval, wall_s: Some(1.0) };
        let e = serde_json::json!({"accuracy": 0.5, "interval": [0.4, 0.6], "samples": 1,
            "tiers": {"4": {"accuracy": 0.5}}, "per_problem": {"4": [1, 0]}});
        let rows = [row(StageName::Dpo, "+ rollout DPO", e.clone()), row(StageName::Rl, "+ RLVR", e)];
        let t = markdown_table(&rows, &row_deltas(&rows), Some(&d));
        assert!(
            t.contains("| stage time | Δ tiers 4, 5, 8 problems [95% paired] |\n|---|---|---|---|---|---|---|\n"),
            "{t}"
        );
        assert!(t.contains("| + rollout DPO | 0.500 | 0.500 | [0.400, 0.600] |  | 1 s |  |\n"), "{t}");
        assert!(t.contains("| 1 s | +0.375 ["), "{t}");
    }
}
