//! Compute thread budgets. candle's CPU backend runs matmuls on the *current* rayon pool, so each
//! compute role (learner, each generator) runs its tensor work inside its own pool and roles sharing a
//! process never oversubscribe the cores.

use crate::error::{Error, Result};

/// A named rayon pool for one compute role.
pub struct ComputePool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl ComputePool {
    /// A pool of `threads` workers named `{role}-{i}`.
    pub fn new(role: &str, threads: usize) -> Result<Self> {
        let threads = threads.max(1);
        let role = role.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{role}-{i}"))
            .build()
            .map_err(|e| Error::input("ComputePool::new", e.to_string()))?;
        Ok(ComputePool { pool, threads })
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` with this pool as the current rayon pool (candle's matmuls then use it).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Threads the process may use for compute: `RAYON_NUM_THREADS` if set, else the available cores.
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
