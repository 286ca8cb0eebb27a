//! The prompt-source actor: hands out prompts (re-queued ones first, then a seeded permutation per pass
//! over the prompts, skipping the too-easy ones), keeps the books, and paces admission by
//! `max_staleness`.

use super::Shared;
use crate::messages::{Lease, SourceMsg};
use phi4r_replay::{admission, Books, Prompt, PromptSource};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) struct SourceArgs {
    pub source: PromptSource,
    pub shared: Arc<Shared>,
    pub seed: u64,
    pub max_staleness: u64,
    pub batch_groups: usize,
    pub max_oversample: f32,
}

pub(super) struct SourceState {
    a: SourceArgs,
    books: Books,
    queue: VecDeque<Prompt>,
    pass: u64,
    closed: bool,
}

impl SourceState {
    /// Up to `n` fresh prompts in this pass's order, skipping the too-easy ones and those set aside as
    /// too hard; a new pass starts when the order runs out. A pass that would be empty returns the set-aside
    /// prompts to the pool first.
    fn fresh(&mut self, n: usize) -> Vec<Prompt> {
        let mut out = Vec::with_capacity(n);
        let mut easy = self.a.shared.easy.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut passes_without_any = 0;
        while out.len() < n && passes_without_any < 2 {
            match self.queue.pop_front() {
                Some(p) if easy.skips(p.id) => {}
                Some(p) => {
                    out.push(p);
                    passes_without_any = 0;
                }
                None => {
                    self.pass += 1;
                    passes_without_any += 1;
                    let mut shared = self.a.shared.easy.lock().unwrap_or_else(|e| e.into_inner());
                    let all = self.a.source.len();
                    let (next, back) =
                        self.a.source.draw_step(self.a.seed, self.pass, all, &Default::default(), &mut shared);
                    if back > 0 {
                        tracing::info!(prompts = back, pass = self.pass, "set-aside prompts return to the pool");
                        metrics::counter!("phi4r_prompts_returned_total").increment(back as u64);
                    }
                    easy = shared.clone();
                    self.queue = next.into();
                }
            }
        }
        out
    }

    fn sync_gauges(&self) {
        let c = self.books.counts();
        self.a.shared.counters.in_flight.store(c.in_flight, Ordering::Relaxed);
        metrics::gauge!("phi4r_prompts_in_flight").set(c.in_flight as f64);
        metrics::gauge!("phi4r_prompts_requeue_waiting").set(c.waiting as f64);
        // The other queues' depths, sampled as often as the books change.
        let shared = &self.a.shared.counters;
        metrics::gauge!("phi4r_pending_groups").set(shared.pending_groups.load(Ordering::Relaxed) as f64);
        metrics::gauge!("phi4r_buffered_batches").set(shared.buffered_batches.load(Ordering::Relaxed) as f64);
    }
}

pub(super) struct SourceActor;

impl Actor for SourceActor {
    type Msg = SourceMsg;
    type State = SourceState;
    type Arguments = SourceArgs;

    async fn pre_start(&self, _me: ActorRef<SourceMsg>, a: SourceArgs) -> Result<SourceState, ActorProcessingErr> {
        tracing::info!(prompts = a.source.len(), "prompt source started");
        Ok(SourceState { a, books: Books::new(), queue: VecDeque::new(), pass: 0, closed: false })
    }

    async fn handle(
        &self,
        _me: ActorRef<SourceMsg>,
        msg: SourceMsg,
        st: &mut SourceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SourceMsg::Lease { holder, max, reply } => {
                let shared = st.a.shared.clone();
                let room = admission(
                    st.a.max_staleness,
                    st.a.batch_groups,
                    shared.counters.keep_rate(),
                    st.a.max_oversample,
                    shared.counters.unfiltered(),
                    shared.counters.kept_backlog(),
                );
                let n = max.min(room);
                let lease = if st.closed || shared.paused() || n == 0 {
                    None
                } else {
                    let mut prompts = st.books.take_requeued(n);
                    let more = n - prompts.len();
                    prompts.extend(st.fresh(more));
                    if prompts.is_empty() {
                        None
                    } else {
                        let id = st.books.issue(holder, prompts.clone(), phi4r_replay::PolicyVersion(shared.version()));
                        metrics::counter!("phi4r_prompts_issued_total").increment(prompts.len() as u64);
                        Some(Lease { id, prompts })
                    }
                };
                st.sync_gauges();
                let _ = reply.send(lease);
            }
            SourceMsg::HandOver { lease, from, to, reply } => {
                let _ = reply.send(st.books.hand_over(lease, from, to).is_ok());
            }
            SourceMsg::Delivered { lease, holder, reply } => {
                let ok = match st.books.close_scored(lease, holder) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "late delivery refused");
                        metrics::counter!("phi4r_late_deliveries_refused_total").increment(1);
                        false
                    }
                };
                st.sync_gauges();
                let _ = reply.send(ok);
            }
            SourceMsg::Requeue(holder) => {
                let n = st.books.requeue_holder(holder);
                if n > 0 {
                    tracing::warn!(holder = holder.0, prompts = n, "re-queued the prompts of a stopped actor");
                    metrics::counter!("phi4r_prompts_requeued_total").increment(n as u64);
                }
                st.sync_gauges();
            }
            SourceMsg::Books(reply) => {
                let _ = reply.send(st.books.counts().clone());
            }
            SourceMsg::Close(reply) => {
                st.closed = true;
                let n = st.books.close_all_dropped("shutdown");
                metrics::counter!("phi4r_prompts_dropped_total", "reason" => "shutdown").increment(n as u64);
                st.sync_gauges();
                let _ = reply.send(st.books.counts().clone());
            }
        }
        Ok(())
    }
}
