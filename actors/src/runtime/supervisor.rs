//! The root supervisor of a streamed stage 4: spawns every actor linked to itself, restarts a generator or
//! verifier that fails (after re-queueing its leases), scales the generator pool, answers `status`, and
//! ends the run when the learner stops (closing the books) or when an actor it cannot restart fails.

use super::balance::{BalancerActor, BalancerArgs, ReplayActor, ReplayArgs};
use super::learner::{LearnerArgs, StreamLearnerActor, StreamLearnerArgs};
use super::source::{SourceActor, SourceArgs};
use super::workers::{GeneratorActor, GeneratorArgs, SamplerState, VerifierActor, VerifierArgs};
use super::{ActorStatus, SampleParams, Shared, Status, StreamSummary};
use crate::compute::Compute;
use crate::messages::{BalancerMsg, SourceMsg, StreamLearnerMsg, SupervisorMsg, VerifierMsg};
use crate::topology::{ThreadBudget, Topology};
use phi4r_learner::StageConfig;
use phi4r_replay::{Balancer, Holder, PromptSource};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) struct SupervisorArgs {
    pub topology: Topology,
    pub budget: ThreadBudget,
    pub shared: Arc<Shared>,
    pub source: PromptSource,
    pub sampling: super::Sampling,
    pub verifier: phi4r_verifier::Verifier,
    pub params: SampleParams,
    pub config: StageConfig,
    pub learner: StreamLearnerArgs,
    pub done: tokio::sync::oneshot::Sender<Result<StreamSummary, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Source,
    Generator,
    Verifier,
    Balancer,
    Replay,
    Learner,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Generator => "generator",
            Role::Verifier => "verifier",
            Role::Balancer => "balancer",
            Role::Replay => "replay",
            Role::Learner => "learner",
        }
    }
}

pub(super) struct SupervisorState {
    topology: Topology,
    budget: ThreadBudget,
    shared: Arc<Shared>,
    sampling: super::Sampling,
    verifier: phi4r_verifier::Verifier,
    params: SampleParams,
    source: ActorRef<SourceMsg>,
    learner: ActorRef<StreamLearnerMsg>,
    others: Vec<ActorCell>,
    generators: super::GeneratorSlots,
    gen_computes: Vec<Compute<SamplerState>>,
    verifiers: Vec<ActorRef<VerifierMsg>>,
    roles: BTreeMap<ActorId, (Role, usize)>,
    restarts: BTreeMap<(Role, usize), u64>,
    ending: bool,
    done: Option<tokio::sync::oneshot::Sender<Result<StreamSummary, String>>>,
}

impl SupervisorState {
    async fn spawn_generator(&mut self, me: &ActorRef<SupervisorMsg>, index: usize) -> Result<(), ActorProcessingErr> {
        while self.gen_computes.len() <= index {
            let state = SamplerState { sampling: self.sampling.clone() };
            self.gen_computes.push(Compute::spawn_role("generator", state, self.budget.generator)?);
        }
        let args = GeneratorArgs {
            index,
            compute: self.gen_computes[index].clone(),
            source: self.source.clone(),
            shared: self.shared.clone(),
            params: self.params.clone(),
        };
        let (g, _) = Actor::spawn_linked(None, GeneratorActor, args, me.get_cell()).await?;
        self.roles.insert(g.get_id(), (Role::Generator, index));
        self.generators.put(index, g);
        Ok(())
    }

    async fn spawn_verifier(&mut self, me: &ActorRef<SupervisorMsg>, index: usize) -> Result<(), ActorProcessingErr> {
        let args = VerifierArgs {
            index,
            verifier: self.verifier.clone(),
            source: self.source.clone(),
            shared: self.shared.clone(),
        };
        let (v, _) = Actor::spawn_linked(None, VerifierActor, args, me.get_cell()).await?;
        self.roles.insert(v.get_id(), (Role::Verifier, index));
        if index < self.verifiers.len() {
            self.verifiers[index] = v;
        } else {
            self.verifiers.push(v);
        }
        *self.shared.verifiers.write().unwrap_or_else(|e| e.into_inner()) = self.verifiers.clone();
        Ok(())
    }

    async fn scale(&mut self, me: &ActorRef<SupervisorMsg>, n: usize) -> Result<usize, String> {
        if n == 0 {
            return Err("scale generators: at least 1 (use `pause` to stop sampling)".into());
        }
        if self.ending {
            return Err("the run is ending".into());
        }
        for i in self.generators.resize(n) {
            self.spawn_generator(me, i).await.map_err(|e| format!("starting generator {i}: {e}"))?;
        }
        self.topology.generators = n;
        tracing::info!(generators = n, "scaled generators");
        metrics::gauge!("phi4r_generators").set(n as f64);
        Ok(n)
    }

    async fn status(&self) -> Status {
        let books = match self.source.call(SourceMsg::Books, None).await {
            Ok(CallResult::Success(b)) => b,
            _ => phi4r_replay::BookCounts::default(),
        };
        let mut actors: Vec<ActorStatus> = self
            .roles
            .iter()
            .map(|(id, &(role, index))| ActorStatus {
                role: role.name().into(),
                index,
                alive: true,
                state: self.shared.state(id.pid()).into(),
                restarts: self.restarts.get(&(role, index)).copied().unwrap_or(0),
            })
            .collect();
        actors.sort_by(|a, b| (&a.role, a.index).cmp(&(&b.role, b.index)));
        let c = &self.shared.counters;
        let uptime_s = self.shared.started.elapsed().as_secs_f64();
        let completions = c.completions.load(Ordering::Relaxed);
        let (id, policy) = self.shared.reward_policy();
        Status {
            state: if self.ending {
                "stopping"
            } else if self.shared.paused() {
                "paused"
            } else {
                "running"
            }
            .into(),
            topology: self.topology.to_string(),
            policy_version: self.shared.version(),
            reward_policy: policy,
            reward_policy_id: id.0,
            actors,
            in_flight_prompts: books.in_flight,
            pending_groups: c.pending_groups.load(Ordering::Relaxed),
            buffered_batches: c.buffered_batches.load(Ordering::Relaxed),
            rollouts_per_s: completions as f64 / uptime_s.max(1e-9),
            completions,
            switched_completions: c.switched.load(Ordering::Relaxed),
            books,
            groups: c.fates(),
            nodes: self.shared.nodes.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect(),
            uptime_s,
        }
    }

    /// Ends the run: generators stop, open leases are dropped as `shutdown`, every actor stops.
    async fn end(&mut self, me: &ActorRef<SupervisorMsg>, result: Result<StreamSummary, String>) {
        self.ending = true;
        self.generators.stop_all("run ended");
        let books = match self.source.call(SourceMsg::Close, None).await {
            Ok(CallResult::Success(b)) => Some(b),
            _ => None,
        };
        let restarts = self.restarts.values().sum();
        let result = result.map(|mut s| {
            if let Some(b) = books {
                s.books = b;
            }
            s.groups = self.shared.counters.fates();
            s.restarts = restarts;
            s.nodes = self.shared.nodes.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
            s
        });
        match &result {
            Ok(s) => tracing::info!(steps = s.steps, "stage rl finished"),
            Err(e) => tracing::error!(error = %e, "stage rl failed"),
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
        for v in &self.verifiers {
            v.stop(None);
        }
        for c in &self.others {
            c.stop(None);
        }
        self.learner.stop(None);
        me.stop(Some("run ended".into()));
    }
}

pub(super) struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        a: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let cfg = &a.config;
        let (shared, s) = (a.shared.clone(), cfg.rl.max_staleness);
        // The pacing aims at `s`; the replay buffer and balancers drop only beyond `s + stale_grace`.
        let drop_after = cfg.rl.drop_staleness();
        tracing::info!(topology = %a.topology, threads_learner = a.budget.learner, threads_generator = a.budget.generator, max_staleness = s, "stage rl streaming");
        let source_args = SourceArgs {
            source: a.source,
            shared: shared.clone(),
            seed: cfg.seed,
            max_staleness: s,
            batch_groups: cfg.rl.balance.batch_groups,
            max_oversample: cfg.rl.balance.max_oversample,
        };
        let cell = me.get_cell();
        let (source, _) = Actor::spawn_linked(None, SourceActor, source_args, cell.clone()).await?;
        let (replay, _) = Actor::spawn_linked(
            None,
            ReplayActor,
            ReplayArgs { shared: shared.clone(), max_staleness: drop_after },
            cell.clone(),
        )
        .await?;
        let mut roles = BTreeMap::from([(source.get_id(), (Role::Source, 0)), (replay.get_id(), (Role::Replay, 0))]);
        let mut others = vec![source.get_cell(), replay.get_cell()];
        let mut balancers: Vec<ActorRef<BalancerMsg>> = vec![];
        for index in 0..a.topology.balancers {
            let balancer = Balancer::new(cfg.rl.balance, phi4r_replay::EasyMemory::new())?;
            let args = BalancerArgs {
                index,
                balancer,
                replay: replay.clone(),
                shared: shared.clone(),
                max_staleness: drop_after,
            };
            let (b, _) = Actor::spawn_linked(None, BalancerActor, args, cell.clone()).await?;
            roles.insert(b.get_id(), (Role::Balancer, index));
            others.push(b.get_cell());
            balancers.push(b);
        }
        *shared.balancers.write().unwrap_or_else(|e| e.into_inner()) = balancers;
        let largs =
            LearnerArgs { a: a.learner, replay: replay.clone(), shared: shared.clone(), supervisor: me.clone() };
        let (learner, _) = Actor::spawn_linked(None, StreamLearnerActor, largs, cell.clone()).await?;
        roles.insert(learner.get_id(), (Role::Learner, 0));
        let mut st = SupervisorState {
            topology: a.topology,
            budget: a.budget,
            shared,
            sampling: a.sampling,
            verifier: a.verifier,
            params: a.params,
            source,
            learner,
            others,
            generators: super::GeneratorSlots::default(),
            gen_computes: vec![],
            verifiers: vec![],
            roles,
            restarts: BTreeMap::new(),
            ending: false,
            done: Some(a.done),
        };
        for i in 0..st.topology.verifiers {
            st.spawn_verifier(&me, i).await?;
        }
        for i in 0..st.topology.generators {
            st.spawn_generator(&me, i).await?;
        }
        metrics::gauge!("phi4r_generators").set(st.topology.generators as f64);
        Ok(st)
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Scale(n, reply) => {
                let r = st.scale(&me, n).await;
                let _ = reply.send(r);
            }
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(st.status().await);
            }
            SupervisorMsg::Learner(reply) => {
                let _ = reply.send(st.learner.clone());
            }
            SupervisorMsg::Source(reply) => {
                let _ = reply.send(st.source.clone());
            }
            SupervisorMsg::LearnerDone(result) => {
                if !st.ending {
                    st.end(&me, result.map(|s| *s)).await;
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let Some((role, index)) = st.roles.remove(&id) else { return Ok(()) };
        st.shared.forget_state(id.pid());
        // Only generators are ever asked to stop alone (scaled down).
        let stopping = role == Role::Generator && st.generators.ended(index, id);
        match role {
            Role::Generator | Role::Verifier => {
                // Whatever it held goes back to the queue, whether it failed or was stopped.
                let _ = st.source.send_message(SourceMsg::Requeue(Holder(id.pid())));
                if st.ending || (stopping && failure.is_none()) {
                    tracing::info!(role = role.name(), index, "stopped");
                    return Ok(());
                }
                let why = failure.unwrap_or_else(|| "stopped unexpectedly".into());
                tracing::warn!(role = role.name(), index, error = %why, "actor failed; restarting it");
                *st.restarts.entry((role, index)).or_default() += 1;
                metrics::counter!("phi4r_actor_restarts_total", "role" => role.name()).increment(1);
                let respawn = if role == Role::Generator {
                    st.spawn_generator(&me, index).await
                } else {
                    st.spawn_verifier(&me, index).await
                };
                if let Err(e) = respawn {
                    st.end(&me, Err(format!("restarting {} {index}: {e}", role.name()))).await;
                }
            }
            Role::Learner if failure.is_some() && !st.ending => {
                let why = failure.unwrap_or_default();
                st.end(&me, Err(format!("the learner failed: {why}"))).await;
            }
            // A learner that stops by itself has sent its result (`LearnerDone`) just before; supervision
            // events overtake messages, so wait for it.
            Role::Learner if failure.is_none() => {}
            _ if st.ending => {}
            other => {
                let why = failure.unwrap_or_else(|| "stopped".into());
                st.end(&me, Err(format!("the {} actor stopped: {why}", other.name()))).await;
            }
        }
        Ok(())
    }
}
