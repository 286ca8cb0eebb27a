//! Data-parallel learner replicas (`<N>gen-<M>learn` with M > 1): M copies of the learner, each with the
//! whole model and optimizer state. A step splits its micro-batches into M contiguous shards; each
//! replica computes its shard's gradients (scaled by the shard's share of the whole step) on the
//! caller's rayon pool, the gradients are summed — the all-reduce, here in memory — and every replica
//! applies the same sum with its own AdamW, so the replicas stay identical and the update is the
//! single learner's on the whole batch (a test holds it to 1e-5).
//!
//! In one process this buys nothing on a CPU (the replicas share the cores); it is the shape a
//! multi-GPU learner takes (one replica per device, the sum an NCCL all-reduce). Scope: GRPO with one
//! update per step (`rl.epochs = rl.mini_batches = 1`) and π_old = the sampler's log-probs; PPO's critic,
//! several updates per step and the decoupled objective need the step-wide quantities (whitening, the
//! mini-batch order, π_prox) sharded too, and are refused with the key to change.

use crate::error::{Error, Result};
use crate::learner::{rl_weight, split_even, Learner, RlShard, RlStepEvent};
use crate::rl::{OffPolicy, RlAlgo, RlBatch, RlTrainReport};
use phi4r_replay::{EasyMemory, Group};
use rayon::prelude::*;

/// M data-parallel replicas of one learner.
pub struct DataParallel {
    replicas: Vec<Learner>,
}

impl DataParallel {
    /// `learner` and `m − 1` replicas of it ([`Learner::replicate`]). Errors name the config key that
    /// rules data parallelism out.
    pub fn new(learner: Learner, m: usize) -> Result<Self> {
        let rl = &learner.config().rl;
        let refuse = |key: &str, why: &str| Err(Error::config(key, format!("data-parallel learners (M > 1): {why}")));
        if m < 1 {
            return refuse("topology", "need at least one learner");
        }
        if !matches!(rl.algo, RlAlgo::Grpo { .. }) {
            return refuse("rl.algo", "GRPO only (PPO's critic and whitening are not sharded)");
        }
        if rl.epochs != 1 || rl.mini_batches != 1 {
            return refuse("rl.epochs", "one update per step (rl.epochs = rl.mini_batches = 1)");
        }
        if rl.off_policy != OffPolicy::Sampler {
            return refuse("rl.off_policy", "π_old = the sampler's log-probs (kind = \"sampler\")");
        }
        let mut replicas = Vec::with_capacity(m);
        for _ in 1..m {
            replicas.push(learner.replicate()?);
        }
        replicas.insert(0, learner);
        Ok(DataParallel { replicas })
    }

    /// Replicas (M).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether there are none (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica 0, whose weights are every replica's (checkpoints, snapshots).
    pub fn leader(&self) -> &Learner {
        &self.replicas[0]
    }

    /// Runs `f` on every replica (bookkeeping that must stay the same on all).
    pub fn for_each(&mut self, f: impl FnMut(&mut Learner)) {
        self.replicas.iter_mut().for_each(f);
    }

    /// The streaming learner's step ([`crate::rl::train_groups`] for M replicas): records the too-easy
    /// memory on every replica, then [`DataParallel::rl_step`] on `groups`, or an idle step on every
    /// replica when nothing is left to train.
    pub fn train_groups(&mut self, groups: &[Group], easy: EasyMemory, pad_id: u32) -> Result<RlTrainReport> {
        self.for_each(|l| l.record_easy(easy.clone()));
        let cfg = self.leader().config();
        let (batches, overlong) = RlBatch::from_groups(groups, &cfg.rl, cfg.micro_batch, pad_id)?;
        if batches.is_empty() {
            let mut events = self.replicas.iter_mut().map(Learner::idle_step).collect::<Result<Vec<_>>>()?;
            return Ok(RlTrainReport { step: events.swap_remove(0), rl: None });
        }
        let mut ev = self.rl_step(&batches)?;
        ev.rl.overlong = overlong;
        Ok(RlTrainReport { step: ev.step, rl: Some(ev.rl) })
    }

    /// One step: shards of the micro-batches, gradients in parallel, summed, the same update on every
    /// replica. Returns replica 0's event.
    pub fn rl_step(&mut self, micro_batches: &[RlBatch]) -> Result<RlStepEvent> {
        let batches: Vec<&RlBatch> = micro_batches.iter().filter(|b| !b.is_empty()).collect();
        if batches.is_empty() {
            return Err(Error::input("DataParallel::rl_step", "no completions"));
        }
        let agg = self.leader().config().rl.loss_agg;
        let step_weight: usize = batches.iter().map(|b| rl_weight(agg, b)).sum();
        let step_tokens: usize = batches.iter().map(|b| b.completion_tokens()).sum();
        // Contiguous shards of the micro-batch indices, one per replica (fewer when there are fewer
        // micro-batches than replicas: a replica without a shard adds nothing to the sum).
        let order: Vec<usize> = (0..batches.len()).collect();
        let shards: Vec<Vec<&RlBatch>> =
            split_even(&order, self.replicas.len()).iter().map(|s| s.iter().map(|&i| batches[i]).collect()).collect();
        let parts: Vec<RlShard> = self
            .replicas
            .par_iter()
            .zip(shards.par_iter())
            .map(|(replica, shard)| replica.rl_shard(shard, step_weight, step_tokens))
            .collect::<Result<_>>()?;
        let mut sum = RlShard::default();
        for part in parts {
            sum.merge(part)?;
        }
        let mut events = self.replicas.iter_mut().map(|r| r.rl_apply(sum.clone())).collect::<Result<Vec<_>>>()?;
        Ok(events.swap_remove(0))
    }
}
