//! A dedicated OS thread that owns a [`Learner`] and runs tensor work inside its own rayon pool, so no
//! training step ever runs on a tokio worker (DESIGN.md §3). Jobs arrive over a bounded flume channel;
//! a panicking job is caught and reported as an error instead of taking the process down.

use phi4r_learner::Learner;
use phi4r_model::ComputePool;
use std::panic::{catch_unwind, AssertUnwindSafe};

type Job = Box<dyn FnOnce(&mut Learner) + Send>;

/// Handle to the learner's compute thread.
#[derive(Clone)]
pub struct Compute {
    jobs: flume::Sender<Job>,
}

impl Compute {
    /// Moves `learner` onto a new thread with a pool of `threads` compute threads.
    pub fn spawn(mut learner: Learner, threads: usize) -> anyhow::Result<Self> {
        let (jobs, rx) = flume::bounded::<Job>(1);
        let pool = ComputePool::new("learner", threads)?;
        std::thread::Builder::new().name("learner-compute".into()).spawn(move || {
            for job in rx.iter() {
                pool.install(|| job(&mut learner));
            }
        })?;
        Ok(Compute { jobs })
    }

    /// Runs `f` on the compute thread and waits for its result without blocking the async runtime.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Learner) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = flume::bounded(1);
        let job: Job = Box::new(move |l: &mut Learner| {
            let out = catch_unwind(AssertUnwindSafe(|| f(l))).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            let _ = tx.send(out);
        });
        self.jobs.send_async(job).await.map_err(|_| anyhow::anyhow!("the learner's compute thread is gone"))?;
        match rx.recv_async().await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(panic)) => anyhow::bail!("the learner's compute thread panicked: {panic}"),
            Err(_) => anyhow::bail!("the learner's compute thread is gone"),
        }
    }
}
