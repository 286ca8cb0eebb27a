//! Release-mode throughput check (ignored in debug builds, where timings mean nothing):
//! `cargo test --release -p phi4r-verifier --test throughput -- --nocapture`.
//!
//! Math-Verify 0.9 does 200–300 verifications per second on the reference machine; the
//! target is 100×, so this asserts at least 30,000 per second on one thread.

use std::path::PathBuf;

#[test]
#[cfg_attr(debug_assertions, ignore = "timing is only meaningful in release builds")]
fn verifies_at_least_30k_per_second_on_one_thread() {
    let dir = std::env::var("PHI4R_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/eval")));
    let report =
        phi4r_verifier::bench::run(&dir).unwrap_or_else(|e| panic!("benchmark data at {}: {e}", dir.display()));
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("unserializable report: {e}")));
    for set in &report.sets {
        assert!(set.verifications_per_sec >= 30_000.0, "{}: {:.0}/s", set.name, set.verifications_per_sec);
        assert!(set.full_parse_per_sec >= 30_000.0, "{}: {:.0}/s (full parse)", set.name, set.full_parse_per_sec);
        assert!(set.agreement >= 0.99, "{}: agreement {}", set.name, set.agreement);
    }
    for p in &report.pathological {
        assert!(p.micros < 10_000.0, "{}: {:.0} µs", p.case, p.micros);
    }
}
