//! The reward-balancer actors and the replay buffer. A balancer filters scored groups, drops the ones that
//! arrive more than `max_staleness` versions late, assembles batches inside the positive-share band
//! ([`phi4r_replay::Balancer`]) and pushes them to the replay buffer; the replay buffer
//! ([`phi4r_replay::Buffer`]) holds at most `max_staleness + 1` batches and answers the learner's `Take`
//! with the oldest fresh one as soon as there is one.

use super::Shared;
use crate::messages::{BalancerMsg, ReplayMsg};
use phi4r_replay::{Admission, Balancer, Batch, BatchOrShortfall, Buffer, DropReason, PolicyVersion, Versioned};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a balancer re-checks its pool (stale groups, a stalled shortfall).
const TICK: Duration = Duration::from_millis(25);
/// Ticks a shortfall may last, with nothing in flight and nothing queued for the learner, before the
/// closest batch is released anyway.
const STALL_TICKS: u32 = 4;

/// The stall rule of a balancer whose pool cannot form a batch, one tick at a time: `(stalled, release)`.
/// The count grows while its pool holds groups, no prompt is in flight (nothing more is coming until the
/// learner moves on) and no batch waits for the learner (`queued` false: the learner is about to starve);
/// after `STALL_TICKS` such ticks the closest batch is released. While a batch is queued the learner has
/// work, its next step opens room for more prompts, and the pool fills to a whole batch: releasing a
/// partial one then would only train fewer groups a step (a third of stage 4's steps did, when the rule
/// looked at the in-flight count alone).
fn stall_rule(stalled: u32, in_flight: u64, queued: u64, pending: usize) -> (u32, bool) {
    if in_flight > 0 || queued > 0 || pending == 0 {
        return (0, false);
    }
    if stalled + 1 >= STALL_TICKS {
        (0, true)
    } else {
        (stalled + 1, false)
    }
}

pub(super) struct BalancerArgs {
    pub index: usize,
    pub balancer: Balancer,
    pub replay: ActorRef<ReplayMsg>,
    pub shared: Arc<Shared>,
    pub max_staleness: u64,
}

pub(super) struct BalancerState {
    a: BalancerArgs,
    outbox: Option<Batch>,
    stalled: u32,
    pending: u64,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl BalancerState {
    /// Keeps the shared pending gauge equal to the sum of the pools.
    fn sync_pending(&mut self) {
        let now = self.a.balancer.pending() as u64;
        let c = &self.a.shared.counters.pending_groups;
        if now >= self.pending {
            c.fetch_add(now - self.pending, Ordering::Relaxed);
        } else {
            c.fetch_sub(self.pending - now, Ordering::Relaxed);
        }
        self.pending = now;
    }

    fn admit(&mut self, groups: Vec<phi4r_replay::Group>) {
        let shared = self.a.shared.clone();
        let c = &shared.counters;
        let current = PolicyVersion(shared.version());
        c.in_transit.fetch_sub(groups.len() as u64, Ordering::Relaxed);
        for g in groups {
            add(&c.groups_seen, 1);
            if g.policy_version().staleness(current) > self.a.max_staleness {
                add(&c.dropped_stale, 1);
                continue;
            }
            let id = g.prompt.id;
            match self.a.balancer.push(g) {
                Admission::Kept => add(&c.groups_kept, 1),
                Admission::Dropped(DropReason::NoSignal { all_correct: true }) => {
                    add(&c.dropped_all_correct, 1);
                    if self.a.balancer.config().remember_easy {
                        shared.easy.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
                    }
                }
                Admission::Dropped(DropReason::NoSignal { all_correct: false }) => {
                    add(&c.dropped_all_wrong, 1);
                    if self.a.balancer.config().set_aside_hard {
                        shared.easy.lock().unwrap_or_else(|e| e.into_inner()).set_aside(id);
                    }
                }
                Admission::Dropped(DropReason::NonUniformLength { .. }) => add(&c.dropped_length, 1),
                Admission::Refused(_) => add(&c.dropped_pool_full, 1),
            }
        }
    }

    /// Drops stale pending groups, then releases batches while the replay buffer takes them.
    async fn release(&mut self) -> Result<(), ActorProcessingErr> {
        let current = PolicyVersion(self.a.shared.version());
        let stale = self.a.balancer.drop_stale(current, self.a.max_staleness);
        add(&self.a.shared.counters.dropped_stale, stale as u64);
        loop {
            let batch = match self.outbox.take() {
                // Already counted as buffered when it left the pool.
                Some(b) => b,
                None => {
                    let b = match self.a.balancer.next_batch() {
                        BatchOrShortfall::Batch(b) => b,
                        BatchOrShortfall::Shortfall(_) => {
                            // Nothing more is coming (in flight 0, pacing full) and the learner has nothing
                            // queued: release the closest batch rather than wait forever, as the synchronous
                            // step does when its rounds run out.
                            let c = &self.a.shared.counters;
                            let (stalled, now) = stall_rule(
                                self.stalled,
                                c.in_flight.load(Ordering::Relaxed),
                                c.buffered_groups.load(Ordering::Relaxed),
                                self.a.balancer.pending(),
                            );
                            self.stalled = stalled;
                            if !now {
                                break;
                            }
                            self.a.balancer.final_batch()
                        }
                    };
                    // From here until the learner takes it, the batch counts as buffered (the pacing
                    // must see it while it waits in the outbox for room in the replay buffer, too).
                    add(&self.a.shared.counters.buffered_groups, b.groups.len() as u64);
                    self.sync_pending();
                    b
                }
            };
            match self.a.replay.call(|r| ReplayMsg::Push(batch, r), None).await? {
                CallResult::Success(Ok(())) => {}
                CallResult::Success(Err(back)) => {
                    self.outbox = Some(back);
                    break;
                }
                _ => return Err(anyhow::anyhow!("the replay buffer is gone").into()),
            }
        }
        self.sync_pending();
        Ok(())
    }
}

pub(super) struct BalancerActor;

impl Actor for BalancerActor {
    type Msg = BalancerMsg;
    type State = BalancerState;
    type Arguments = BalancerArgs;

    async fn pre_start(&self, me: ActorRef<BalancerMsg>, a: BalancerArgs) -> Result<BalancerState, ActorProcessingErr> {
        tracing::info!(index = a.index, "balancer started");
        let ticker = me.send_interval(TICK, || BalancerMsg::Tick);
        Ok(BalancerState { a, outbox: None, stalled: 0, pending: 0, ticker: Some(ticker) })
    }

    async fn post_stop(&self, _me: ActorRef<BalancerMsg>, st: &mut BalancerState) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _me: ActorRef<BalancerMsg>,
        msg: BalancerMsg,
        st: &mut BalancerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BalancerMsg::Groups(groups) => {
                st.admit(groups);
                st.stalled = 0;
            }
            BalancerMsg::Tick => {}
        }
        st.release().await
    }
}

pub(super) struct ReplayArgs {
    pub shared: Arc<Shared>,
    pub max_staleness: u64,
}

pub(super) struct ReplayState {
    buffer: Buffer<Batch>,
    waiting: Option<RpcReplyPort<Batch>>,
    shared: Arc<Shared>,
    max_staleness: u64,
}

impl ReplayState {
    /// Serves the waiting learner with the oldest batch, its stale groups removed and counted (a batch
    /// left empty is dropped and the next one tried).
    fn serve(&mut self) {
        let c = &self.shared.counters;
        let current = PolicyVersion(self.shared.version());
        if let Some(reply) = self.waiting.take().filter(|r| !r.is_closed()) {
            let mut served = None;
            while let Some(mut b) = self.buffer.take_oldest(1).pop() {
                let n = b.groups.len() as u64;
                let stale = b.drop_stale(current, self.max_staleness) as u64;
                add(&c.dropped_stale, stale);
                c.buffered_groups.fetch_sub(n, Ordering::Relaxed);
                if !b.groups.is_empty() {
                    served = Some(b);
                    break;
                }
            }
            match served {
                Some(b) => {
                    // The groups move from the buffer to the learner in one step of the pacing's count.
                    let n = b.groups.len() as u64;
                    c.training.store(n, Ordering::Relaxed);
                    if let Err(ractor::MessagingErr::SendErr(b)) = reply.send(b) {
                        // The learner gave up waiting just now: keep the batch for its next ask.
                        c.buffered_groups.fetch_add(n, Ordering::Relaxed);
                        c.training.store(0, Ordering::Relaxed);
                        let _ = self.buffer.push(b);
                    }
                }
                None => self.waiting = Some(reply),
            }
        }
        c.buffered_batches.store(self.buffer.len() as u64, Ordering::Relaxed);
    }
}

pub(super) struct ReplayActor;

impl Actor for ReplayActor {
    type Msg = ReplayMsg;
    type State = ReplayState;
    type Arguments = ReplayArgs;

    async fn pre_start(&self, _me: ActorRef<ReplayMsg>, a: ReplayArgs) -> Result<ReplayState, ActorProcessingErr> {
        let capacity = (a.max_staleness + 1) as usize;
        Ok(ReplayState {
            buffer: Buffer::new(capacity, a.max_staleness),
            waiting: None,
            shared: a.shared,
            max_staleness: a.max_staleness,
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<ReplayMsg>,
        msg: ReplayMsg,
        st: &mut ReplayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReplayMsg::Push(batch, reply) => {
                let _ = reply.send(st.buffer.push(batch));
            }
            ReplayMsg::Take(reply) => st.waiting = Some(reply),
        }
        st.serve();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{stall_rule, STALL_TICKS};

    /// Ticks until the rule releases, or `None` within 100 ticks.
    fn ticks_to_release(in_flight: u64, queued: u64, pending: usize) -> Option<u32> {
        let mut stalled = 0;
        for t in 1..=100 {
            let (s, release) = stall_rule(stalled, in_flight, queued, pending);
            if release {
                return Some(t);
            }
            stalled = s;
        }
        None
    }

    #[test]
    fn a_partial_batch_goes_out_only_when_the_learner_would_starve() {
        assert_eq!(ticks_to_release(0, 0, 3), Some(STALL_TICKS), "idle, nothing queued: released after the stall");
        assert_eq!(ticks_to_release(0, 4, 3), None, "a batch waits for the learner: the pool keeps filling");
        assert_eq!(ticks_to_release(2, 0, 3), None, "prompts in flight: more groups are coming");
        assert_eq!(ticks_to_release(0, 0, 0), None, "an empty pool has nothing to release");
    }

    #[test]
    fn any_sign_of_progress_restarts_the_count() {
        let (s, release) = stall_rule(STALL_TICKS - 2, 0, 0, 3);
        assert_eq!((s, release), (STALL_TICKS - 1, false));
        assert_eq!(stall_rule(s, 0, 4, 3), (0, false), "a queued batch resets it");
        assert_eq!(stall_rule(s, 1, 0, 3), (0, false), "a prompt in flight resets it");
        assert_eq!(stall_rule(s, 0, 0, 3), (0, true), "the last idle tick releases and resets");
    }
}
