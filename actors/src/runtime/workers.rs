//! The streaming generator and verifier actors. A generator leases prompts, samples their groups from the
//! latest published weights on its compute thread, and hands them to a verifier; a verifier grades them
//! under the reward policy of the moment and delivers them to a balancer. Both record each hand-over in
//! the books first, so whoever dies holding a lease loses nothing.

use super::{ask, SampleParams, Shared};
use crate::compute::Compute;
use crate::messages::{BalancerMsg, SampleMsg, SourceMsg, VerifierMsg};
use phi4r_replay::{score_group, Holder, LeaseId, SampledGroup};
use phi4r_verifier::Verifier;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an idle generator waits before asking again (paused, or pacing holds admission back).
const IDLE_RETRY: Duration = Duration::from_millis(10);

/// What a generator's compute thread owns.
pub(super) struct SamplerState {
    pub sampling: super::Sampling,
}

pub(super) struct GeneratorArgs {
    pub index: usize,
    pub compute: Compute<SamplerState>,
    pub source: ActorRef<SourceMsg>,
    pub shared: Arc<Shared>,
    pub params: SampleParams,
}

/// The sampling seed of a lease: a hash of the run's seed and the lease id.
pub(crate) fn lease_seed(seed: u64, lease: u64) -> u64 {
    phi4r_replay::splitmix64(seed ^ lease.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

pub(super) struct GeneratorActor;

impl Actor for GeneratorActor {
    type Msg = SampleMsg;
    type State = GeneratorArgs;
    type Arguments = GeneratorArgs;

    async fn pre_start(&self, me: ActorRef<SampleMsg>, a: GeneratorArgs) -> Result<GeneratorArgs, ActorProcessingErr> {
        tracing::info!(index = a.index, pid = me.get_id().pid(), "generator started");
        ractor::pg::join(super::GENERATORS_GROUP.into(), vec![me.get_cell()]);
        me.send_message(SampleMsg::Next)?;
        Ok(a)
    }

    async fn post_stop(&self, me: ActorRef<SampleMsg>, a: &mut GeneratorArgs) -> Result<(), ActorProcessingErr> {
        tracing::info!(index = a.index, pid = me.get_id().pid(), "generator stopped");
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<SampleMsg>,
        _msg: SampleMsg,
        a: &mut GeneratorArgs,
    ) -> Result<(), ActorProcessingErr> {
        let holder = Holder(me.get_id().pid());
        let max = a.params.prompts_per_batch;
        a.shared.set_state(holder.0, "leasing");
        let lease = ask(&a.source, |reply| SourceMsg::Lease { holder, max, reply }, "lease", None).await?;
        let Some(lease) = lease else {
            a.shared.set_state(holder.0, "idle");
            me.send_after(IDLE_RETRY, || SampleMsg::Next);
            return Ok(());
        };
        a.shared.set_state(holder.0, "sampling");
        let policy = a.shared.policy();
        let p = a.params.clone();
        // In flight: newer weights take over between two decoding steps (a cheap version check first).
        let in_flight = p.weight_sync == phi4r_learner::rl::WeightSync::InFlight;
        let (shared, mut current) = (a.shared.clone(), policy.version);
        let mut refresh = move || {
            if !in_flight || shared.version() <= current {
                return None;
            }
            let newer = shared.policy();
            (newer.version > current).then(|| {
                current = newer.version;
                newer
            })
        };
        let seed = lease_seed(p.seed, lease.id.0);
        let prompts = lease.prompts;
        #[cfg(feature = "test-hooks")]
        let fault = a.shared.panic_next_batch.swap(false, Ordering::AcqRel);
        let started = Instant::now();
        let groups = a
            .compute
            .call(move |s| {
                let temperature = p.temperature.at(policy.version);
                let groups = s.sampling.sample(
                    &policy,
                    &mut refresh,
                    &prompts,
                    p.group_size,
                    temperature,
                    p.max_new_tokens,
                    seed,
                );
                #[cfg(feature = "test-hooks")]
                if fault {
                    panic!("injected generator fault (test hook)");
                }
                groups
            })
            .await??;
        let completions: usize = groups.iter().map(|g| g.completions.len()).sum();
        let tokens: usize = groups.iter().flat_map(|g| &g.completions).map(|c| c.tokens.len()).sum();
        let c = &a.shared.counters;
        c.completions.fetch_add(completions as u64, Ordering::Relaxed);
        c.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        let switched = groups.iter().flat_map(|g| &g.completions).filter(|c| !c.version_switches.is_empty()).count();
        c.switched.fetch_add(switched as u64, Ordering::Relaxed);
        let idx = a.index.to_string();
        metrics::counter!("phi4r_generator_completions_total", "generator" => idx.clone())
            .increment(completions as u64);
        metrics::counter!("phi4r_generator_tokens_total", "generator" => idx.clone()).increment(tokens as u64);
        metrics::histogram!("phi4r_generator_batch_seconds", "generator" => idx)
            .record(started.elapsed().as_secs_f64());
        a.shared.set_state(holder.0, "handing over");
        hand_to_verifier(&a.shared, &a.source, lease.id, holder, groups).await?;
        me.send_message(SampleMsg::Next)?;
        Ok(())
    }
}

/// Hands `holder`'s sampled lease to a verifier, recording the hand-over in the books first; a lease that
/// is no longer open (re-queued meanwhile) is discarded. Local generators and the cluster gateway (for
/// remote ones) both deliver through here.
pub(crate) async fn hand_to_verifier(
    shared: &Shared,
    source: &ActorRef<SourceMsg>,
    lease: LeaseId,
    holder: Holder,
    groups: Vec<SampledGroup>,
) -> anyhow::Result<()> {
    let verifier = {
        let v = shared.verifiers.read().unwrap_or_else(|e| e.into_inner());
        v.get(lease.0 as usize % v.len().max(1)).cloned()
    };
    let verifier = verifier.ok_or_else(|| anyhow::anyhow!("no verifier"))?;
    let to = Holder(verifier.get_id().pid());
    if ask(source, |reply| SourceMsg::HandOver { lease, from: holder, to, reply }, "hand-over", None).await? {
        // A verifier that died just now has its lease re-queued by the supervisor; this message is then
        // lost with its mailbox, which is what the books expect. If it was already gone when the hand-over
        // was recorded (after the supervisor's re-queue), re-queue its leases here, or this one would stay
        // with a dead holder until the run ends.
        if verifier.send_message(VerifierMsg::Score { lease, groups }).is_err() {
            let _ = source.send_message(SourceMsg::Requeue(to));
        }
    }
    Ok(())
}

pub(super) struct VerifierArgs {
    pub index: usize,
    pub verifier: Verifier,
    pub source: ActorRef<SourceMsg>,
    pub shared: Arc<Shared>,
}

pub(super) struct VerifierActor;

impl Actor for VerifierActor {
    type Msg = VerifierMsg;
    type State = VerifierArgs;
    type Arguments = VerifierArgs;

    async fn pre_start(&self, me: ActorRef<VerifierMsg>, a: VerifierArgs) -> Result<VerifierArgs, ActorProcessingErr> {
        tracing::info!(index = a.index, pid = me.get_id().pid(), "verifier started");
        Ok(a)
    }

    async fn handle(
        &self,
        me: ActorRef<VerifierMsg>,
        msg: VerifierMsg,
        a: &mut VerifierArgs,
    ) -> Result<(), ActorProcessingErr> {
        let VerifierMsg::Score { lease, groups } = msg;
        let pid = me.get_id().pid();
        a.shared.set_state(pid, "scoring");
        let (policy_id, policy) = a.shared.begin_scoring();
        let verifier = a.verifier.clone();
        let started = Instant::now();
        let scored = tokio::task::spawn_blocking(move || {
            groups.into_iter().map(|g| score_group(&verifier, &policy, policy_id, g)).collect::<Vec<_>>()
        })
        .await?;
        metrics::histogram!("phi4r_verifier_seconds").record(started.elapsed().as_secs_f64());
        let holder = Holder(me.get_id().pid());
        if ask(&a.source, |reply| SourceMsg::Delivered { lease, holder, reply }, "delivery", None).await? {
            let balancer = {
                let b = a.shared.balancers.read().unwrap_or_else(|e| e.into_inner());
                b.get(lease.0 as usize % b.len().max(1)).cloned()
            };
            if let Some(b) = balancer {
                a.shared.counters.in_transit.fetch_add(scored.len() as u64, Ordering::Relaxed);
                b.send_message(BalancerMsg::Groups(scored))?;
            }
        }
        a.shared.set_state(pid, "idle");
        Ok(())
    }
}
