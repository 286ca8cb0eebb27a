//! Helpers for phi4r's end-to-end tests (in `tests/tests/`), which run the `phi4r-actors` binary.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of the `phi4r-actors` binary built next to the running test (same profile).
///
/// `cargo test --workspace` builds it, since it is the binary of a workspace member under test.
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/phi4r-actors
    let dir = exe.parent().and_then(|d| d.parent()).expect("test binary lives in target/<profile>/deps");
    let p = dir.join(format!("phi4r-actors{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} is missing: run the tests with `cargo test --workspace`", p.display());
    p
}

/// Runs the binary with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("RAYON_NUM_THREADS", "2").output().expect("the binary starts")
}

/// Runs the binary, asserts success, and returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "phi4r-actors {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs the binary, asserts failure, and returns stderr.
pub fn run_err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "phi4r-actors {args:?} should have failed");
    String::from_utf8(out.stderr).expect("stderr is UTF-8")
}
