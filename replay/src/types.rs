//! The stage-4 payloads that travel from the prompt source through the generators and verifiers to the
//! balancer: a [`Prompt`], each of its [`ScoredCompletion`]s, and the [`Group`] of all of them.
//!
//! Each pipeline stage has its own type (STYLE §2): a completion is only a `ScoredCompletion` once the
//! verifier has given it a reward, so no field waits to be "filled in later".

use phi4r_rollout::{FinishReason, PolicyVersion};
use serde::{Deserialize, Serialize};

/// Identifies a prompt across draws (the prompt source's index), so a too-easy prompt can be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PromptId(pub u64);

/// Identifies the reward policy that scored a completion (every completion is scored under exactly one,
/// DESIGN §3; the control plane may swap policies mid-run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RewardPolicyId(pub u32);

/// A prompt drawn for stage 4: its chat-templated token ids and the gold answer the verifier checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Which prompt this is.
    pub id: PromptId,
    /// The chat-templated prompt token ids (generation starts after them).
    pub ids: Vec<u32>,
    /// The gold answer, as the verifier reads it.
    pub gold: String,
    /// Difficulty tier of the synthetic task (0 when unknown).
    pub tier: u8,
}

/// One sampled completion of a prompt before the verifier has seen it (a generator's output in the
/// streaming runtime).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledCompletion {
    /// The decoded completion (what the verifier reads).
    pub text: String,
    /// Generated token ids (the prompt excluded).
    pub tokens: Vec<u32>,
    /// Per-token log-probability under the sampling distribution ([`ScoredCompletion::sampler_logps`]).
    pub sampler_logps: Vec<f32>,
    /// The policy version that sampled its first token.
    pub policy_version: PolicyVersion,
    /// Newer versions that took over mid-sequence (`weight_sync = "in_flight"`), in order; empty when
    /// one version sampled every token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_switches: Vec<VersionSwitch>,
    /// The sampling temperature.
    pub temperature: f32,
    /// Why generation stopped.
    pub finish: FinishReason,
}

/// Where newer weights took over a completion mid-sequence (in-flight weight updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSwitch {
    /// Index of the first generated token that `version` sampled.
    pub at: usize,
    /// The version that sampled from `at` on.
    pub version: PolicyVersion,
}

/// The version that sampled each of `len` tokens, given the first token's version and the switches.
pub fn token_versions(first: PolicyVersion, switches: &[VersionSwitch], len: usize) -> Vec<PolicyVersion> {
    let mut out = Vec::with_capacity(len);
    let mut v = first;
    let mut next = switches.iter().peekable();
    for i in 0..len {
        while let Some(s) = next.next_if(|s| s.at <= i) {
            v = s.version;
        }
        out.push(v);
    }
    out
}

/// All completions sampled for one prompt, not yet scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledGroup {
    /// The prompt.
    pub prompt: Prompt,
    /// Its completions.
    pub completions: Vec<SampledCompletion>,
    /// The cluster node whose generator sampled it; `None` on the learner's own machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One sampled completion of a prompt, verified and rewarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredCompletion {
    /// Generated token ids (the prompt excluded).
    pub tokens: Vec<u32>,
    /// Per-token log-probability under the sampling distribution, i.e. the policy's logits divided by
    /// `temperature` (`Generation::logprobs`; top-k and top-p are off in stage 4): π_old of the clipped
    /// ratio, and the denominator of the truncated importance-sampling weight. One per token.
    pub sampler_logps: Vec<f32>,
    /// The policy version that sampled the first token (the oldest one if weights changed mid-sequence;
    /// staleness is judged on it).
    pub policy_version: PolicyVersion,
    /// Newer versions that took over mid-sequence ([`SampledCompletion::version_switches`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_switches: Vec<VersionSwitch>,
    /// The sampling temperature (stage 4 anneals it, `TemperatureSchedule`).
    pub temperature: f32,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// The verifiable reward: +1 correct, −1 otherwise (before any length penalty).
    pub reward: f32,
    /// Whether generation hit the length limit before an end of sequence (DAPO's overlong case).
    pub truncated: bool,
    /// The reward policy that scored it.
    pub reward_policy: RewardPolicyId,
}

impl ScoredCompletion {
    /// Whether the completion counts as positive (correct) for balancing: reward above 0.
    pub fn is_positive(&self) -> bool {
        self.reward > 0.0
    }

    /// Number of generated tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token was generated.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The version that sampled each token.
    pub fn token_versions(&self) -> Vec<PolicyVersion> {
        token_versions(self.policy_version, &self.version_switches, self.tokens.len())
    }
}

/// All completions sampled for one prompt (GRPO's group of `g`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The prompt.
    pub prompt: Prompt,
    /// Its completions, each verified.
    pub completions: Vec<ScoredCompletion>,
    /// The cluster node whose generator sampled it ([`SampledGroup::node`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Group {
    /// The rewards, in completion order.
    pub fn rewards(&self) -> Vec<f32> {
        self.completions.iter().map(|c| c.reward).collect()
    }

    /// The completion lengths in tokens, in completion order.
    pub fn lengths(&self) -> Vec<usize> {
        self.completions.iter().map(ScoredCompletion::len).collect()
    }

    /// How many completions are positive.
    pub fn positives(&self) -> usize {
        self.completions.iter().filter(|c| c.is_positive()).count()
    }

    /// The oldest policy version among the completions (`None` for an empty group).
    pub fn oldest_version(&self) -> Option<PolicyVersion> {
        self.completions.iter().map(|c| c.policy_version).min()
    }
}

impl crate::Versioned for Group {
    /// The oldest completion's version, so a group is as stale as its stalest member.
    fn policy_version(&self) -> PolicyVersion {
        self.oldest_version().unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Groups built from (reward, length) pairs for the filter and balancer tests.
    use super::*;

    /// A completion of `len` tokens with `reward`, sampled by version 0.
    pub fn completion(reward: f32, len: usize) -> ScoredCompletion {
        ScoredCompletion {
            tokens: vec![7; len],
            sampler_logps: vec![-0.5; len],
            policy_version: PolicyVersion(0),
            version_switches: vec![],
            temperature: 1.0,
            finish: FinishReason::Eos,
            reward,
            truncated: false,
            reward_policy: RewardPolicyId(0),
        }
    }

    /// A group for prompt `id` with one completion per `(reward, len)`.
    pub fn group(id: u64, completions: &[(f32, usize)]) -> Group {
        Group {
            prompt: Prompt { id: PromptId(id), ids: vec![1, 2, 3], gold: "42".into(), tier: 1 },
            completions: completions.iter().map(|&(r, l)| completion(r, l)).collect(),
            node: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::group;
    use super::*;

    #[test]
    fn group_round_trips_through_json_and_reports_its_counts() {
        let g = group(3, &[(1.0, 4), (-1.0, 6)]);
        let back: Group = serde_json::from_str(&serde_json::to_string(&g).expect("serialize")).expect("parse");
        assert_eq!(back, g);
        assert_eq!(g.rewards(), vec![1.0, -1.0]);
        assert_eq!(g.lengths(), vec![4, 6]);
        assert_eq!(g.positives(), 1);
        assert_eq!(g.oldest_version(), Some(PolicyVersion(0)));
    }

    // A group is as stale as its stalest completion: with bound 1 at version 3, a group holding a
    // version-1 completion is dropped by the buffer even though its other completion is fresh.
    #[test]
    fn a_group_is_as_stale_as_its_oldest_completion() {
        let mut old = group(1, &[(1.0, 4), (-1.0, 4)]);
        old.completions[0].policy_version = PolicyVersion(3);
        old.completions[1].policy_version = PolicyVersion(1);
        let mut fresh = group(2, &[(1.0, 4), (-1.0, 4)]);
        fresh.completions.iter_mut().for_each(|c| c.policy_version = PolicyVersion(2));
        let mut buf = crate::Buffer::new(4, 1);
        buf.push(old).expect("room");
        buf.push(fresh).expect("room");
        let served = buf.take_fresh(PolicyVersion(3), 4);
        assert_eq!(served.iter().map(|g| g.prompt.id).collect::<Vec<_>>(), vec![PromptId(2)]);
        assert_eq!(buf.stats().dropped_stale, 1);
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn token_versions_follow_the_switches() {
        let v = PolicyVersion;
        assert_eq!(token_versions(v(3), &[], 3), vec![v(3); 3]);
        let switches = [VersionSwitch { at: 2, version: v(4) }, VersionSwitch { at: 4, version: v(6) }];
        assert_eq!(token_versions(v(3), &switches, 6), vec![v(3), v(3), v(4), v(4), v(6), v(6)]);
        // A switch at or past the end changes no token; two at once keep the newer.
        let late = [VersionSwitch { at: 1, version: v(4) }, VersionSwitch { at: 1, version: v(5) }];
        assert_eq!(token_versions(v(3), &late, 2), vec![v(3), v(5)]);
        assert_eq!(token_versions(v(3), &switches, 2), vec![v(3), v(3)]);
    }
}
