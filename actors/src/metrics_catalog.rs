//! Every Prometheus metric the binary emits, with its help text. [`describe`] registers the help texts
//! with the installed recorder, so a scrape of `/metrics` has `# HELP` for each family and passes
//! `promtool check metrics` (tested in `tests/runtime.rs` when `PHI4R_PROMTOOL` names a promtool).

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotone count (names end in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution (rendered as a summary with quantiles).
    Histogram,
}

/// `(name, kind, help)` of every metric.
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("phi4r_actor_restarts_total", Kind::Counter, "Actor restarts by the supervisor, by role."),
    ("phi4r_generator_completions_total", Kind::Counter, "Completions sampled, by generator."),
    ("phi4r_generator_tokens_total", Kind::Counter, "Completion tokens sampled, by generator."),
    ("phi4r_generator_batch_seconds", Kind::Histogram, "Wall seconds of one generator sampling batch."),
    ("phi4r_generators", Kind::Gauge, "Generators running now."),
    ("phi4r_cluster_nodes", Kind::Gauge, "Generator nodes joined to this learner (cluster)."),
    ("phi4r_cluster_refused_total", Kind::Counter, "Node sessions refused because they did not authenticate."),
    ("phi4r_cluster_weight_bytes_sent_total", Kind::Counter, "Bytes of weights sent to generator nodes."),
    ("phi4r_remote_completions_total", Kind::Counter, "Completions delivered by generator nodes, by node."),
    ("phi4r_node_weight_versions_total", Kind::Counter, "On a generator node: weight versions fetched and applied."),
    ("phi4r_pending_groups", Kind::Gauge, "Kept groups waiting in the reward balancers' pools."),
    ("phi4r_buffered_batches", Kind::Gauge, "Batches waiting in the replay buffer."),
    (
        "phi4r_late_deliveries_refused_total",
        Kind::Counter,
        "Deliveries refused because their lease was already re-queued.",
    ),
    ("phi4r_learner_bad_steps_total", Kind::Counter, "Optimizer steps skipped for a non-finite loss or gradient."),
    ("phi4r_learner_dpo_margin", Kind::Gauge, "Stage 3: mean DPO reward margin of the last step."),
    (
        "phi4r_learner_dpo_reward_accuracy",
        Kind::Gauge,
        "Stage 3: share of pairs whose chosen reward beats the rejected, last step.",
    ),
    ("phi4r_learner_grad_norm", Kind::Gauge, "Gradient L2 norm before clipping, last step."),
    ("phi4r_learner_idle_fraction", Kind::Gauge, "Share of the learner's wall time spent waiting for a batch."),
    ("phi4r_learner_loss", Kind::Gauge, "Training loss of the last step."),
    ("phi4r_learner_lr", Kind::Gauge, "Learning rate of the last step."),
    ("phi4r_learner_steps_total", Kind::Counter, "Optimizer steps taken."),
    ("phi4r_learner_tokens_per_second", Kind::Gauge, "Training tokens per second over the last step."),
    ("phi4r_learner_tokens_total", Kind::Counter, "Tokens trained on."),
    ("phi4r_policy_version", Kind::Gauge, "Policy version last published by the learner."),
    ("phi4r_prompts_dropped_total", Kind::Counter, "Prompts dropped, by reason."),
    ("phi4r_prompts_in_flight", Kind::Gauge, "Prompts leased to generators and not yet scored."),
    ("phi4r_prompts_issued_total", Kind::Counter, "Prompts issued to generators."),
    ("phi4r_prompts_requeue_waiting", Kind::Gauge, "Re-queued prompts waiting to be issued again."),
    ("phi4r_prompts_requeued_total", Kind::Counter, "Prompts re-queued after their holder died or stopped."),
    (
        "phi4r_prompts_returned_total",
        Kind::Counter,
        "Prompts set aside as too hard (all-wrong group) returned to the pool once the rest was used up.",
    ),
    ("phi4r_reward_policy_id", Kind::Gauge, "Id of the reward policy in force (increments on each swap)."),
    ("phi4r_rl_accuracy", Kind::Gauge, "Stage 4: share of correct completions in the last step's batch."),
    ("phi4r_rl_clip_fraction", Kind::Gauge, "Stage 4: share of tokens whose ratio was clipped, last step."),
    ("phi4r_rl_completions_total", Kind::Counter, "Stage 4: completions trained on."),
    ("phi4r_rl_entropy", Kind::Gauge, "Stage 4: mean token entropy of the policy, last step."),
    ("phi4r_rl_explained_variance", Kind::Gauge, "Stage 4, PPO: explained variance of the value head, last step."),
    ("phi4r_rl_kl", Kind::Gauge, "Stage 4: KL estimate to the reference, last step."),
    ("phi4r_rl_overlong_masked", Kind::Gauge, "Stage 4: truncated completions masked out of the loss, last step."),
    ("phi4r_rl_policy_lag", Kind::Histogram, "Stage 4: policy versions between sampling and training, per group."),
    ("phi4r_rl_response_len_tokens", Kind::Gauge, "Stage 4: mean completion length in tokens, last step."),
    ("phi4r_rl_reward_mean", Kind::Gauge, "Stage 4: mean reward of the last step's batch."),
    ("phi4r_rl_temperature", Kind::Gauge, "Stage 4: sampling temperature in force."),
    ("phi4r_rl_value_loss", Kind::Gauge, "Stage 4, PPO: clipped value loss, last step."),
    ("phi4r_verifier_seconds", Kind::Histogram, "Wall seconds to verify one completion group."),
];

/// Registers the help text of every metric with the installed recorder (a no-op without one).
pub fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names.len(), sorted.len(), "duplicate metric names");
        for &(name, kind, help) in METRICS {
            assert!(name.starts_with("phi4r_"), "{name}");
            assert_eq!(
                kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}: counters, and only counters, end in _total"
            );
            assert!(!help.is_empty() && help.ends_with('.'), "{name}: help text");
        }
    }

    #[test]
    fn every_metric_the_source_emits_is_described() {
        let src = concat!(
            include_str!("rl_learner.rs"),
            include_str!("learner.rs"),
            include_str!("runtime/supervisor.rs"),
            include_str!("runtime/workers.rs"),
            include_str!("runtime/source.rs"),
            include_str!("runtime/learner.rs"),
            include_str!("runtime/mod.rs"),
            include_str!("cluster/gateway.rs"),
            include_str!("cluster/node.rs"),
        );
        let mut emitted = std::collections::BTreeSet::new();
        for (macro_name, kind) in
            [("counter!(", Kind::Counter), ("gauge!(", Kind::Gauge), ("histogram!(", Kind::Histogram)]
        {
            for (i, _) in src.match_indices(macro_name) {
                let rest = src[i + macro_name.len()..].trim_start();
                let Some(rest) = rest.strip_prefix('"') else { continue };
                let name = &rest[..rest.find('"').expect("closing quote")];
                emitted.insert(name);
                assert!(
                    METRICS.iter().any(|&(n, k, _)| n == name && k == kind),
                    "{name} ({kind:?}) is emitted but not in METRICS"
                );
            }
        }
        let described: std::collections::BTreeSet<&str> = METRICS.iter().map(|m| m.0).collect();
        assert_eq!(emitted, described, "METRICS lists exactly what the source emits");
    }
}
