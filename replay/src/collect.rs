//! One step's collection for stage 4: draw prompts, sample `group_size` completions of each from a frozen
//! copy of the policy ([`GroupSampler`], one generator's work), verify them (+1 / −1), filter and balance
//! the groups, and oversample while the balancer reports a shortfall ([`collect_groups`], at most
//! `max_draw_rounds` rounds). The learner consumes the result ([`Collected`]); a streaming runtime (N
//! generator actors, a replay buffer) can replace the loop and keep the sampler.

use crate::balance::{Admission, BalanceConfig, Balancer, BatchOrShortfall};
use crate::easy::EasyMemory;
use crate::error::{Error, Result};
use crate::filter::FilterCounts;
use crate::source::PromptSource;
use crate::splitmix64;
use crate::types::{
    Group, Prompt, PromptId, RewardPolicyId, SampledCompletion, SampledGroup, ScoredCompletion, VersionSwitch,
};
use phi4r_model::{Phi3, Tokenizer};
use phi4r_rollout::{generate, generate_in_flight, FinishReason, Generation, PolicyVersion, SamplingConfig, StopRule};
use phi4r_verifier::{RewardPolicy, Verifier};
use serde::Serialize;
use std::collections::BTreeSet;
use std::ops::Deref;
use std::time::Instant;

/// The sampling seed of generation round `round` of step `step`.
fn round_seed(seed: u64, step: u64, round: usize) -> u64 {
    splitmix64(splitmix64(seed ^ splitmix64(step)) ^ (round as u64 + 1))
}

/// What one step's collection needs to know (from the stage's `[rl]` config, the seed and the step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectParams {
    /// Completions per prompt (G).
    pub group_size: usize,
    /// Prompts drawn in the first round.
    pub prompts_per_step: usize,
    /// Generation rounds at most.
    pub max_draw_rounds: usize,
    /// Longest completion, tokens.
    pub max_new_tokens: usize,
    /// Sampling temperature of this step (the annealing schedule's value).
    pub temperature: f32,
    /// Filters and re-balancing.
    pub balance: BalanceConfig,
    /// The stage's seed (prompt draws and sampling streams derive from it and the step).
    pub seed: u64,
    /// The step, which is also the policy version that samples (synchronous on-policy).
    pub step: u64,
}

/// Samples groups of completions and scores them with the verifier (one generator's work).
#[derive(Debug, Clone)]
pub struct GroupSampler {
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
    pad_id: u32,
    verifier: Verifier,
    rows_per_batch: usize,
}

impl GroupSampler {
    /// A sampler that stops at `stop_ids` (the chat template's end marker and EOS), decodes with
    /// `tokenizer`, grades with `verifier`, and runs at most `rows_per_batch` sequences per generation
    /// batch (whole groups at a time).
    pub fn new(tokenizer: Tokenizer, stop_ids: Vec<u32>, verifier: Verifier, rows_per_batch: usize) -> Result<Self> {
        let pad_id =
            tokenizer.pad_id().ok_or_else(|| Error::Input("GroupSampler::new: tokenizer has no pad token".into()))?;
        Ok(GroupSampler { tokenizer, stop_ids, pad_id, verifier, rows_per_batch: rows_per_batch.max(1) })
    }

    /// The padding id of training batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// `g` completions of every prompt sampled from `model` (a frozen copy: never `Var`-backed weights) at
    /// `temperature`, each verified against the prompt's gold answer: reward +1 correct, −1 otherwise
    /// (a truncated answer is graded as the verifier says). Deterministic in `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        model: &Phi3,
        prompts: &[Prompt],
        g: usize,
        temperature: f32,
        max_new_tokens: usize,
        seed: u64,
        version: PolicyVersion,
    ) -> Result<Vec<Group>> {
        let sampled = self.sample_unscored(model, prompts, g, temperature, max_new_tokens, seed, version)?;
        Ok(sampled
            .into_iter()
            .map(|s| score_group(&self.verifier, &RewardPolicy::Binary, RewardPolicyId(0), s))
            .collect())
    }

    /// [`GroupSampler::sample`] without the verifier: the generator's half of the streaming runtime, whose
    /// verifier actors score the groups ([`score_group`]) under the reward policy of the moment.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_unscored(
        &self,
        model: &Phi3,
        prompts: &[Prompt],
        g: usize,
        temperature: f32,
        max_new_tokens: usize,
        seed: u64,
        version: PolicyVersion,
    ) -> Result<Vec<SampledGroup>> {
        // The batches are independent (each its own seed), so on the CPU they run side by side, one per
        // compute thread, as `eval`'s do: decoding a small model keeps one thread busy with per-row work
        // that a second thread hardly speeds up (tiny, 16 rows: 6,385 tok/s on two threads against 6,113
        // on one), while two batches of 8 at once take ~10,500. The groups are the same either way.
        let stop = self.stop_rule();
        let chunks: Vec<(usize, &[Prompt])> = prompts.chunks(self.prompts_per_batch(g)).enumerate().collect();
        let run = |&(index, chunk): &(usize, &[Prompt])| -> Result<Vec<SampledGroup>> {
            let cfg = batch_config(seed, index, temperature, max_new_tokens);
            let generations = generate(model, &group_rows(chunk, g), &cfg, &stop)
                .map_err(|e| Error::Input(format!("GroupSampler::sample: {e}")))?;
            self.groups(chunk, generations, g, version, &[], temperature)
        };
        let batches: Vec<Vec<SampledGroup>> = if model.device().is_cpu() && chunks.len() > 1 {
            use rayon::prelude::*;
            chunks.par_iter().with_max_len(1).map(run).collect::<Result<_>>()?
        } else {
            chunks.iter().map(run).collect::<Result<_>>()?
        };
        Ok(batches.into_iter().flatten().collect())
    }

    fn stop_rule(&self) -> StopRule<'_> {
        StopRule { eos_ids: self.stop_ids.clone(), tokenizer: Some(&self.tokenizer) }
    }

    /// Whole groups per generation batch: at most `rows_per_batch` rows, at least one prompt.
    fn prompts_per_batch(&self, g: usize) -> usize {
        (self.rows_per_batch / g.max(1)).max(1)
    }

    /// One batch's generations (`g` per prompt, in order) as groups: text, tokens, the sampler's
    /// log-probs, and the versions that sampled them (`switches`: where newer ones took over).
    fn groups(
        &self,
        chunk: &[Prompt],
        generations: Vec<Generation>,
        g: usize,
        first_version: PolicyVersion,
        switches: &[VersionSwitch],
        temperature: f32,
    ) -> Result<Vec<SampledGroup>> {
        let mut it = generations.into_iter();
        let mut groups = Vec::with_capacity(chunk.len());
        for prompt in chunk {
            let mut completions = Vec::with_capacity(g);
            for gen in it.by_ref().take(g) {
                let text = self.tokenizer.decode(&gen.tokens).map_err(|e| Error::Input(format!("decode: {e}")))?;
                let n = gen.tokens.len();
                completions.push(SampledCompletion {
                    text,
                    tokens: gen.tokens,
                    // Under the sampling distribution (temperature T): the learner tempers its
                    // logits by the same T, so the ratio compares like with like.
                    sampler_logps: gen.logprobs,
                    policy_version: first_version,
                    // Only the switches this row lived to see.
                    version_switches: switches.iter().filter(|s| s.at < n).copied().collect(),
                    temperature,
                    finish: gen.finish,
                });
            }
            groups.push(SampledGroup { prompt: prompt.clone(), completions, node: None });
        }
        Ok(groups)
    }

    /// [`GroupSampler::sample_unscored`] with in-flight weight updates (`weight_sync = "in_flight"`):
    /// before each decoding step, `refresh` may hand over a newer version, which samples every later
    /// token of the batch and every later batch (the KV cache is kept, [`generate_in_flight`]). Each
    /// completion records the version of its first token and where newer ones took over
    /// ([`SampledCompletion::version_switches`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sample_in_flight<W: Deref<Target = Phi3>>(
        &self,
        first: (PolicyVersion, W),
        refresh: &mut dyn FnMut() -> Option<(PolicyVersion, W)>,
        prompts: &[Prompt],
        g: usize,
        temperature: f32,
        max_new_tokens: usize,
        seed: u64,
    ) -> Result<Vec<SampledGroup>> {
        let stop = self.stop_rule();
        let mut groups = Vec::with_capacity(prompts.len());
        let (mut version, mut model) = first;
        for (chunk_index, chunk) in prompts.chunks(self.prompts_per_batch(g)).enumerate() {
            let rows = group_rows(chunk, g);
            let cfg = batch_config(seed, chunk_index, temperature, max_new_tokens);
            let mut handed = vec![];
            let mut take = || {
                refresh().map(|(v, w)| {
                    handed.push(v);
                    w
                })
            };
            let run = generate_in_flight(model, &rows, &cfg, &stop, &mut take)
                .map_err(|e| Error::Input(format!("GroupSampler::sample: {e}")))?;
            let switches: Vec<VersionSwitch> =
                run.switches.iter().zip(&handed).map(|(&at, &version)| VersionSwitch { at, version }).collect();
            let first_version = version;
            model = run.last;
            version = handed.last().copied().unwrap_or(version);
            groups.extend(self.groups(chunk, run.generations, g, first_version, &switches, temperature)?);
        }
        Ok(groups)
    }

    /// The verifier this sampler grades with.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// Each prompt of a batch repeated `g` times, one row per completion.
fn group_rows(chunk: &[Prompt], g: usize) -> Vec<Vec<u32>> {
    chunk.iter().flat_map(|p| std::iter::repeat_n(p.ids.clone(), g)).collect()
}

/// Batch `index`'s sampling: its own seed, derived from the call's.
fn batch_config(seed: u64, index: usize, temperature: f32, max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature,
        max_new_tokens,
        seed: seed ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ..SamplingConfig::default()
    }
}

/// Scores every completion of `group` with `verifier` against the prompt's gold answer, rewarded by
/// `policy` (recorded as `policy_id` on each completion; a completion cut by the length limit is graded as
/// truncated).
pub fn score_group(
    verifier: &Verifier,
    policy: &RewardPolicy,
    policy_id: RewardPolicyId,
    group: SampledGroup,
) -> Group {
    let SampledGroup { prompt, completions, node } = group;
    let completions = completions
        .into_iter()
        .map(|c| {
            let truncated = c.finish == FinishReason::Length;
            let verdict = verifier.verify_with(&prompt.gold, &c.text, truncated);
            ScoredCompletion {
                tokens: c.tokens,
                sampler_logps: c.sampler_logps,
                policy_version: c.policy_version,
                version_switches: c.version_switches,
                temperature: c.temperature,
                finish: c.finish,
                reward: policy.reward(verdict.outcome),
                truncated,
                reward_policy: policy_id,
            }
        })
        .collect();
    Group { prompt, completions, node }
}

/// What a step's collection saw (one metrics line's worth).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectReport {
    /// The policy version that sampled (= the learner's step before the update).
    pub policy_version: u64,
    /// The sampling temperature.
    pub temperature: f32,
    /// Generation rounds run.
    pub rounds: usize,
    /// Prompts drawn.
    pub prompts: usize,
    /// Completions sampled.
    pub completions: usize,
    /// Of those, correct (reward > 0).
    pub correct: usize,
    /// Mean reward over the sampled completions.
    pub reward_mean: f64,
    /// Share of sampled completions that are correct.
    pub accuracy: f64,
    /// Mean sampled completion length, tokens.
    pub response_len_mean: f64,
    /// Share of sampled completions cut by `max_new_tokens`.
    pub truncated_share: f64,
    /// Filter decisions on this step's groups (kept, and dropped by reason).
    pub filter: FilterCounts,
    /// Kept groups handed back because the balancer's pool was full (not trained).
    pub refused_groups: u64,
    /// Groups trained on.
    pub trained_groups: usize,
    /// Share of positive completions among the trained ones (None when nothing is trained).
    pub positive_share: Option<f32>,
    /// Whether the balancer found a batch inside its band (false: a full pool's closest batch, or the
    /// rounds ran out and whatever was kept is trained).
    pub in_band: bool,
    /// Wall time of sampling and verification, seconds.
    pub sampling_s: f64,
}

/// Draws, samples and balances the groups of step `params.step` from `policy` (frozen), starting from the
/// too-easy memory `easy`; returns the groups to train on (empty when every group was filtered out), the
/// updated memory, and the report.
pub fn collect_groups(
    policy: &Phi3,
    sampler: &GroupSampler,
    source: &PromptSource,
    easy: EasyMemory,
    rl: &CollectParams,
) -> Result<Collected> {
    let (seed, step) = (rl.seed, rl.step);
    let started = Instant::now();
    let temperature = rl.temperature;
    // On-policy: a fresh pool each step, so no group sampled by an older version is trained.
    let mut balancer = Balancer::new(rl.balance, easy).map_err(|e| match e {
        Error::Config { key, reason } => Error::config(format!("balance.{key}"), reason),
        other => other,
    })?;
    let mut drawn: BTreeSet<PromptId> = BTreeSet::new();
    let mut sampled: Vec<(usize, bool, bool)> = Vec::new(); // (len, correct, truncated)
    let (mut rounds, mut want) = (0, rl.prompts_per_step);
    let (groups, in_band) = loop {
        let (prompts, _returned) = source.draw_step(seed, step, want, &drawn, balancer.easy_mut());
        if prompts.is_empty() {
            let last = balancer.final_batch();
            break (last.groups, last.in_band);
        }
        drawn.extend(prompts.iter().map(|p| p.id));
        // Hashed, not xor-ed: the sampler mixes row indices in with the same golden-ratio constant, so a
        // linear mix of the step would make (step s, row r) and (step r + 1, row s − 1) draw one stream.
        let round_seed = round_seed(seed, step, rounds);
        let groups = sampler.sample(
            policy,
            &prompts,
            rl.group_size,
            temperature,
            rl.max_new_tokens,
            round_seed,
            PolicyVersion(step),
        )?;
        rounds += 1;
        for g in groups {
            sampled.extend(g.completions.iter().map(|c| (c.len(), c.is_positive(), c.truncated)));
            // A full pool refuses a kept group (counted in the balancer's stats); next_batch below then
            // releases a batch.
            let _admission: Admission = balancer.push(g);
        }
        match balancer.next_batch() {
            BatchOrShortfall::Batch(b) => break (b.groups, b.in_band),
            BatchOrShortfall::Shortfall(_) if rounds >= rl.max_draw_rounds => {
                // Out of rounds: the closest batch of `batch_groups` (never the whole pool), or what was kept.
                let last = balancer.final_batch();
                break (last.groups, last.in_band);
            }
            BatchOrShortfall::Shortfall(_) => want = balancer.prompts_to_request().max(1),
        }
    };
    let n = sampled.len().max(1) as f64;
    let correct = sampled.iter().filter(|s| s.1).count();
    let positives: usize = groups.iter().map(Group::positives).sum();
    let trained: usize = groups.iter().map(|g| g.completions.len()).sum();
    let report = CollectReport {
        policy_version: step,
        temperature,
        rounds,
        prompts: drawn.len(),
        completions: sampled.len(),
        correct,
        reward_mean: (2.0 * correct as f64 - sampled.len() as f64) / n,
        accuracy: correct as f64 / n,
        response_len_mean: sampled.iter().map(|s| s.0 as f64).sum::<f64>() / n,
        truncated_share: sampled.iter().filter(|s| s.2).count() as f64 / n,
        filter: balancer.stats().filter,
        refused_groups: balancer.stats().refused,
        trained_groups: groups.len(),
        positive_share: (trained > 0).then(|| positives as f32 / trained as f32),
        in_band,
        sampling_s: started.elapsed().as_secs_f64(),
    };
    Ok(Collected { groups, easy: balancer.easy().clone(), report })
}

/// What [`collect_groups`] returns, as one value (what a generator hands the learner).
#[derive(Debug, Clone)]
pub struct Collected {
    /// The groups to train on (empty: every group was filtered out).
    pub groups: Vec<Group>,
    /// The too-easy memory after this step's groups.
    pub easy: EasyMemory,
    /// What sampling and balancing saw.
    pub report: CollectReport,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_steps_and_rows_share_a_sampling_stream() {
        // What the sampler derives per row (`seed ^ (row + 1) * K`, rollout's row_rng) must differ for
        // every (step, row) pair; the old linear mix repeated (s, r) at (r + 1, s - 1).
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut seen = HashSet::new();
        for step in 0..128u64 {
            for row in 0..128u64 {
                assert!(seen.insert(round_seed(42, step, 0) ^ (row + 1).wrapping_mul(K)), "step {step} row {row}");
            }
        }
        assert_ne!(round_seed(42, 3, 0), round_seed(42, 3, 1));
    }

    #[test]
    fn in_flight_versions_are_recorded_per_chunk_and_carry_over() -> anyhow::Result<()> {
        use candle_core::{DType, Device};
        let tok = Tokenizer::train_bpe(["Problem: 1 + 2. Answer 3."; 4].iter(), 300)?;
        let mut cfg = phi4r_model::Phi3Config::tiny();
        (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (tok.vocab_size(), 32, 32, 1);
        let model = |seed| phi4r_model::TrainableModel::init(&cfg, seed, DType::F32, &Device::Cpu)?.model.frozen();
        let (a, b) = (model(1)?, model(2)?);
        // Two completions a prompt, two prompts a chunk: three prompts make two chunks.
        let sampler = GroupSampler::new(tok.clone(), vec![], Verifier::default(), 4)?;
        let prompts: Vec<Prompt> = (0..3)
            .map(|i| Prompt {
                id: PromptId(i),
                ids: tok.encode("Problem: 1 + 2.").expect("ids"),
                gold: "3".into(),
                tier: 0,
            })
            .collect();
        let mut calls = 0;
        let mut refresh = || {
            calls += 1;
            (calls == 2).then_some((PolicyVersion(5), &b))
        };
        let groups = sampler.sample_in_flight((PolicyVersion(4), &a), &mut refresh, &prompts, 2, 1.0, 6, 9)?;
        let first: Vec<_> = groups[..2].iter().flat_map(|g| &g.completions).collect();
        for c in &first {
            assert_eq!(c.policy_version, PolicyVersion(4));
            assert_eq!(c.version_switches, vec![VersionSwitch { at: 2, version: PolicyVersion(5) }]);
        }
        // The second chunk starts from the newest weights, with nothing to record.
        for c in &groups[2].completions {
            assert_eq!((c.policy_version, c.version_switches.len()), (PolicyVersion(5), 0));
        }
        // Without a refresh, the first chunk's first two tokens are the same (same streams, same weights).
        let plain = sampler.sample_unscored(&a, &prompts, 2, 1.0, 6, 9, PolicyVersion(4))?;
        for (c, p) in first.iter().zip(plain.iter().flat_map(|g| &g.completions)) {
            assert_eq!(c.tokens[..2], p.tokens[..2]);
            assert_eq!(p.version_switches, vec![]);
        }
        Ok(())
    }

    /// On the CPU the batches of a plain sample run side by side on the compute threads: the groups are
    /// the ones the one-after-another path (`sample_in_flight` with nothing to hand over) gives, on one
    /// thread or two.
    #[test]
    fn batches_side_by_side_sample_what_one_after_another_does() -> anyhow::Result<()> {
        use candle_core::{DType, Device};
        let tok = Tokenizer::train_bpe(["Problem: 1 + 2. Answer 3."; 4].iter(), 300)?;
        let mut cfg = phi4r_model::Phi3Config::tiny();
        (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (tok.vocab_size(), 32, 32, 1);
        let model = phi4r_model::TrainableModel::init(&cfg, 1, DType::F32, &Device::Cpu)?.model.frozen()?;
        // One prompt (three completions) a batch: five prompts make five batches.
        let sampler = GroupSampler::new(tok.clone(), vec![], Verifier::default(), 3)?;
        let prompts: Vec<Prompt> = (0..5)
            .map(|i| Prompt {
                id: PromptId(i),
                ids: tok.encode(&format!("Problem: {i} + 2.")).expect("ids"),
                gold: "3".into(),
                tier: 0,
            })
            .collect();
        type Drawn = (PromptId, Vec<Vec<u32>>, Vec<Vec<f32>>);
        let tokens = |groups: &[SampledGroup]| -> Vec<Drawn> {
            groups
                .iter()
                .map(|g| {
                    let c = &g.completions;
                    (
                        g.prompt.id,
                        c.iter().map(|c| c.tokens.clone()).collect(),
                        c.iter().map(|c| c.sampler_logps.clone()).collect(),
                    )
                })
                .collect()
        };
        let sequential = sampler.sample_in_flight((PolicyVersion(1), &model), &mut || None, &prompts, 3, 1.0, 8, 7)?;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
            let side_by_side =
                pool.install(|| sampler.sample_unscored(&model, &prompts, 3, 1.0, 8, 7, PolicyVersion(1)))?;
            assert_eq!(tokens(&side_by_side), tokens(&sequential), "{threads} threads");
        }
        Ok(())
    }
}
