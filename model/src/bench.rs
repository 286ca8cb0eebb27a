//! What `phi4r-actors bench model` needs besides the timed calls: the machine's nominal fp32 peak
//! ([`CpuPeak`], from `/proc/cpuinfo`), the PyTorch peer's results file ([`PeerResults`], written by
//! `../shared/peers/trl_bench.py`), repetition counts ([`Reps`]) and the ratio helpers. The FLOP model is
//! [`crate::Phi3Config::forward_flops`].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The nominal fp32 peak of `threads` cores: clock × FMA width × 2 FLOPs per FMA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuPeak {
    /// Peak GFLOP/s of the threads together.
    pub gflops: f64,
    /// The clock `/proc/cpuinfo` reports (MHz).
    pub cpu_mhz: f64,
    /// FLOPs per cycle per core at the widest FMA the flags show.
    pub flops_per_cycle_per_core: f64,
    /// The CPU's model name.
    pub model: Option<String>,
    /// The widest SIMD the flags show and the kernels use: `avx512`, `avx2` (with FMA) or `sse`.
    pub simd: &'static str,
    /// The cores the peak counts.
    pub threads: usize,
}

impl CpuPeak {
    /// From the text of `/proc/cpuinfo` (its first processor's fields).
    ///
    /// Two FMA pipes: 8 f32 lanes each with AVX2 (and on AMD's AVX-512, executed as 2 × 256 bit), 16 on
    /// Intel's AVX-512; an FMA is 2 FLOPs. Without AVX2 + FMA: 8 FLOPs per cycle (SSE).
    pub fn from_cpuinfo(info: &str, threads: usize) -> Self {
        let field = |k: &str| info.lines().find(|l| l.starts_with(k)).and_then(|l| l.split(':').nth(1)).map(str::trim);
        let mhz: f64 = field("cpu MHz").and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let flags = field("flags").unwrap_or("");
        let intel = field("vendor_id") == Some("GenuineIntel");
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        let simd = if has("avx512f") {
            "avx512"
        } else if has("avx2") && has("fma") {
            "avx2"
        } else {
            "sse"
        };
        let per_cycle = match simd {
            "avx512" if intel => 64.0,
            "avx512" | "avx2" => 32.0,
            _ => 8.0,
        };
        CpuPeak {
            gflops: threads as f64 * mhz * 1e-3 * per_cycle,
            cpu_mhz: mhz,
            flops_per_cycle_per_core: per_cycle,
            model: field("model name").map(str::to_string),
            simd,
            threads,
        }
    }

    /// One line for a report: `AMD EPYC, 2 threads, avx2, nominal fp32 peak 157 GFLOP/s`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} threads, {}, nominal fp32 peak {:.0} GFLOP/s",
            self.model.as_deref().unwrap_or("unknown CPU"),
            self.threads,
            self.simd,
            self.gflops
        )
    }

    /// This machine's, for `threads` cores (zero GFLOP/s where `/proc/cpuinfo` is missing).
    pub fn detect(threads: usize) -> Self {
        Self::from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(), threads)
    }
}

/// Unmeasured (warm-up) and measured repetitions of one benchmark part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reps {
    /// Repetitions run first and not timed.
    pub warmup: usize,
    /// Repetitions timed (at least 1).
    pub measured: usize,
}

impl Reps {
    /// Explicit counts win; then the peer's own counts for this part (so both sides time the same number
    /// of repetitions); then `default`. At least one measured repetition.
    pub fn resolve(warmup: Option<usize>, measured: Option<usize>, peer: Option<Reps>, default: Reps) -> Reps {
        Reps {
            warmup: warmup.or(peer.map(|p| p.warmup)).unwrap_or(default.warmup),
            measured: measured.or(peer.map(|p| p.measured)).unwrap_or(default.measured).max(1),
        }
    }
}

/// The peer's training-step figures of one size (part `a`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerTrain {
    /// Tokens per second at the median step.
    pub tokens_per_s: f64,
    /// Every measured step's seconds.
    pub sec_per_step_all: Vec<f64>,
}

/// The peer's sampling figures of one size and batch (part `b`, `batch{N}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerSample {
    /// Generated tokens per second at the median run.
    pub gen_tokens_per_s: f64,
    /// Every measured run's seconds.
    pub sec_all: Vec<f64>,
}

/// The peer's GRPO figures of one size (part `e`: TRL's `GRPOTrainer`, 2 prompts × 8 generations).
/// `sec_per_step_all` and `generate_s_all` hold every trainer step, the first
/// `warmup_steps_excluded` of them warm-up (the medians leave them out).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PeerGrpo {
    /// Median seconds per trainer step (warm-up excluded).
    pub sec_per_step_median: f64,
    /// Seconds of every trainer step, warm-up included.
    pub sec_per_step_all: Vec<f64>,
    /// Leading steps left out of the medians.
    pub warmup_steps_excluded: usize,
    /// Median seconds in `model.generate`.
    pub generate_s_median: Option<f64>,
    /// Median seconds of generation, rewards and log-prob bookkeeping (`_generate_and_score_completions`).
    pub generate_and_score_s_median: Option<f64>,
    /// `sec_per_step_median − generate_and_score_s_median`: loss forward, backward, optimizer.
    pub train_part_s_median: Option<f64>,
    /// Mean completion length of each step, tokens.
    #[serde(default)]
    pub mean_completion_len_per_step: Vec<f64>,
    /// TRL's own profiling spans (`GRPOTrainer.compute_loss`, ...), median seconds.
    #[serde(default)]
    pub profiling_medians: BTreeMap<String, Option<f64>>,
}

impl PeerGrpo {
    /// The measured steps' seconds (warm-up left out).
    pub fn measured_steps(&self) -> &[f64] {
        self.sec_per_step_all.get(self.warmup_steps_excluded..).unwrap_or(&[])
    }

    /// The measured repetitions as [`Reps`]: the trainer ran `sec_per_step_all.len()` steps in all.
    pub fn reps(&self) -> Reps {
        Reps { warmup: self.warmup_steps_excluded, measured: self.measured_steps().len() }
    }
}

/// A results file of `../shared/peers/trl_bench.py`: the parts it ran (`"a:tiny"`, `"b:small"`, …; each
/// part has its own shape, read on demand) and the repetitions it used per size and part.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeerResults {
    /// Size → part → (warm-up, measured).
    #[serde(default)]
    pub steps_config: BTreeMap<String, BTreeMap<String, (usize, usize)>>,
    /// `"part:size"` → that part's result.
    #[serde(default)]
    pub results: BTreeMap<String, serde_json::Value>,
}

impl PeerResults {
    /// Reads a results file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })
    }

    /// The peer's repetitions of `part` for `size`.
    pub fn reps(&self, size: &str, part: &str) -> Option<Reps> {
        let &(warmup, measured) = self.steps_config.get(size)?.get(part)?;
        Some(Reps { warmup, measured })
    }

    /// Part `a` (training step) of `size`, if it ran and has the expected fields.
    pub fn train(&self, size: &str) -> Option<PeerTrain> {
        serde_json::from_value(self.results.get(&format!("a:{size}"))?.clone()).ok()
    }

    /// Part `b` (sampling) of `size` at `batch`, if it ran and has the expected fields.
    pub fn sample(&self, size: &str, batch: usize) -> Option<PeerSample> {
        serde_json::from_value(self.results.get(&format!("b:{size}"))?.get(format!("batch{batch}"))?.clone()).ok()
    }

    /// Part `e` (GRPO step) of `size`, if it ran and has the expected fields.
    pub fn grpo(&self, size: &str) -> Option<PeerGrpo> {
        serde_json::from_value(self.results.get(&format!("e:{size}"))?.clone()).ok()
    }

    /// The whole file as JSON (to print beside our figures).
    pub fn raw(&self) -> serde_json::Value {
        serde_json::json!({"steps_config": self.steps_config, "results": self.results})
    }
}

/// The median (NaN for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// `ours / theirs` for throughputs; `None` unless both are positive.
pub fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (ours > 0.0 && theirs > 0.0).then(|| ours / theirs)
}

/// The peer's fastest repetition over ours (the same work on both sides, so the inverse ratio of times is
/// the throughput ratio): less sensitive to a burst of load during one side's turn. `None` if either
/// side has no positive time.
pub fn best_ratio(ours_secs: &[f64], peer_secs: &[f64]) -> Option<f64> {
    let fastest = |s: &[f64]| s.iter().copied().filter(|s| *s > 0.0).min_by(f64::total_cmp);
    Some(fastest(peer_secs)? / fastest(ours_secs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon X\ncpu MHz\t\t: 2000.000\n\
                         flags\t\t: fpu sse avx2 fma avx512f\n";
    const AMD: &str = "vendor_id\t: AuthenticAMD\ncpu MHz\t\t: 3000.0\nflags\t\t: fpu avx2 fma avx512f\n";

    #[test]
    fn peak_follows_vendor_and_flags() {
        let p = CpuPeak::from_cpuinfo(INTEL, 2);
        assert_eq!((p.gflops, p.flops_per_cycle_per_core), (2.0 * 2000.0 * 1e-3 * 64.0, 64.0));
        assert_eq!(p.model.as_deref(), Some("Xeon X"));
        assert_eq!(p.simd, "avx512");
        assert_eq!(p.describe(), "Xeon X, 2 threads, avx512, nominal fp32 peak 256 GFLOP/s");
        // AMD executes AVX-512 as two 256-bit halves.
        let amd = CpuPeak::from_cpuinfo(AMD, 1);
        assert_eq!((amd.gflops, amd.simd), (3000.0 * 1e-3 * 32.0, "avx512"));
        let zen3 = CpuPeak::from_cpuinfo("vendor_id : AuthenticAMD\ncpu MHz : 2445.4\nflags : fpu avx fma avx2\n", 2);
        assert_eq!((zen3.flops_per_cycle_per_core, zen3.simd), (32.0, "avx2"));
        let old = CpuPeak::from_cpuinfo("cpu MHz : 1000\nflags : sse2\n", 1);
        assert_eq!((old.gflops, old.simd), (8.0, "sse"));
        assert_eq!(CpuPeak::from_cpuinfo("", 4).gflops, 0.0);
        assert_eq!(CpuPeak::from_cpuinfo("", 4).describe(), "unknown CPU, 4 threads, sse, nominal fp32 peak 0 GFLOP/s");
    }

    #[test]
    fn repetitions_follow_flags_then_the_peer_then_the_default() {
        let default = Reps { warmup: 1, measured: 3 };
        let peer = Some(Reps { warmup: 2, measured: 5 });
        assert_eq!(Reps::resolve(None, None, peer, default), Reps { warmup: 2, measured: 5 });
        assert_eq!(Reps::resolve(Some(0), None, peer, default), Reps { warmup: 0, measured: 5 });
        assert_eq!(Reps::resolve(None, Some(7), peer, default), Reps { warmup: 2, measured: 7 });
        assert_eq!(Reps::resolve(None, None, None, default), default);
        assert_eq!(Reps::resolve(None, Some(0), None, default).measured, 1, "at least one measured");
    }

    #[test]
    fn reads_the_peer_file_by_part_size_and_batch() -> Result<()> {
        let text = r#"{"steps_config": {"tiny": {"a": [2, 5], "b": [1, 3]}},
            "results": {"a:tiny": {"tokens_per_s": 4000.0, "sec_per_step_all": [1.1, 1.0], "other": 1},
                        "b:tiny": {"batch16": {"gen_tokens_per_s": 1800.0, "sec_all": [1.2]}},
                        "e:tiny": {"sec_per_step_median": 1.25, "sec_per_step_all": [2.0, 1.5, 1.2, 1.3],
                                   "warmup_steps_excluded": 2, "generate_s_median": 0.77,
                                   "generate_and_score_s_median": 0.78, "train_part_s_median": 0.47,
                                   "profiling_medians": {"GRPOTrainer.compute_loss": 0.2}}},
            "errors": {}, "versions": {}}"#;
        let p: PeerResults = serde_json::from_str(text).map_err(|e| Error::input("test", e.to_string()))?;
        assert_eq!(p.reps("tiny", "a"), Some(Reps { warmup: 2, measured: 5 }));
        assert_eq!(p.reps("small", "a"), None);
        assert_eq!(p.train("tiny"), Some(PeerTrain { tokens_per_s: 4000.0, sec_per_step_all: vec![1.1, 1.0] }));
        assert_eq!(p.sample("tiny", 16).map(|s| s.gen_tokens_per_s), Some(1800.0));
        assert_eq!(p.sample("tiny", 1), None);
        assert_eq!(p.train("small"), None);
        let e = p.grpo("tiny").ok_or_else(|| Error::input("test", "no e:tiny"))?;
        assert_eq!((e.measured_steps(), e.reps()), (&[1.2, 1.3][..], Reps { warmup: 2, measured: 2 }));
        assert_eq!((e.generate_s_median, e.train_part_s_median), (Some(0.77), Some(0.47)));
        assert_eq!(e.profiling_medians.get("GRPOTrainer.compute_loss"), Some(&Some(0.2)));
        assert_eq!(p.grpo("small"), None);
        Ok(())
    }

    #[test]
    fn ratios_compare_medians_and_fastest_repetitions() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(ratio(2.0, 1.0), Some(2.0));
        assert_eq!(ratio(2.0, 0.0), None);
        assert_eq!(best_ratio(&[2.0, 1.0, 3.0], &[4.0, 1.5]), Some(1.5));
        assert_eq!(best_ratio(&[], &[1.0]), None);
    }
}
