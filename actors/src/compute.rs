//! A dedicated OS thread that owns a role's tensor state (the [`Learner`], or a generator's sampler) and
//! runs its work inside its own rayon pool, so no tensor work ever runs on a tokio worker (DESIGN.md §3).
//! Jobs arrive over a bounded flume channel; a panicking job is caught and reported as an error instead
//! of taking the process down.

use phi4r_learner::Learner;
use phi4r_model::ComputePool;
use std::panic::{catch_unwind, AssertUnwindSafe};

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Handle to a compute thread owning an `S` (the learner's by default).
pub struct Compute<S: 'static = Learner> {
    jobs: flume::Sender<Job<S>>,
    role: &'static str,
}

impl<S> Clone for Compute<S> {
    fn clone(&self) -> Self {
        Compute { jobs: self.jobs.clone(), role: self.role }
    }
}

impl<S: Send + 'static> Compute<S> {
    /// Moves the learner onto a new thread with a pool of `threads` compute threads.
    pub fn spawn(state: S, threads: usize) -> anyhow::Result<Self> {
        Self::spawn_role("learner", state, threads)
    }

    /// Moves `state` onto a new thread named after `role`, with a pool of `threads` compute threads.
    pub fn spawn_role(role: &'static str, mut state: S, threads: usize) -> anyhow::Result<Self> {
        let (jobs, rx) = flume::bounded::<Job<S>>(1);
        let pool = ComputePool::new(role, threads)?;
        std::thread::Builder::new().name(format!("{role}-compute")).spawn(move || {
            for job in rx.iter() {
                pool.install(|| job(&mut state));
            }
        })?;
        Ok(Compute { jobs, role })
    }

    /// Runs `f` on the compute thread and waits for its result without blocking the async runtime.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut S) -> R + Send + 'static) -> anyhow::Result<R> {
        let (tx, rx) = flume::bounded(1);
        let job: Job<S> = Box::new(move |s: &mut S| {
            let out = catch_unwind(AssertUnwindSafe(|| f(s))).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            let _ = tx.send(out);
        });
        let role = self.role;
        self.jobs.send_async(job).await.map_err(|_| anyhow::anyhow!("the {role}'s compute thread is gone"))?;
        match rx.recv_async().await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(panic)) => anyhow::bail!("the {role}'s compute thread panicked: {panic}"),
            Err(_) => anyhow::bail!("the {role}'s compute thread is gone"),
        }
    }
}
