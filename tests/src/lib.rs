//! Helpers for phi4r's end-to-end tests, which run the `phi4r-actors` binary as a user would. The tests
//! themselves live in `actors/tests/`: cargo builds a package's binary before its integration tests and
//! names it in `CARGO_BIN_EXE_phi4r-actors`, so a test always runs the binary of the code under test
//! (never a stale one left in `target/`). Each test file calls [`use_binary!`] once.
#![warn(missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

/// Defines `bin()`, `run(args)`, `run_ok(args)` and `run_err(args)` in the calling test file, bound to
/// the `phi4r-actors` binary cargo built for it (`env!` expands in the caller, an integration test of
/// `phi4r-actors`).
#[macro_export]
macro_rules! use_binary {
    () => {
        /// The `phi4r-actors` binary cargo built for this test.
        #[allow(dead_code)]
        fn bin() -> &'static std::path::Path {
            std::path::Path::new(env!("CARGO_BIN_EXE_phi4r-actors"))
        }
        /// Runs the binary with `args`.
        #[allow(dead_code)]
        fn run(args: &[&str]) -> std::process::Output {
            $crate::run_with(bin(), args)
        }
        /// Runs the binary, asserts success, returns stdout.
        #[allow(dead_code)]
        fn run_ok(args: &[&str]) -> String {
            $crate::ok_with(bin(), args)
        }
        /// Runs the binary, asserts failure, returns stderr.
        #[allow(dead_code)]
        fn run_err(args: &[&str]) -> String {
            $crate::err_with(bin(), args)
        }
    };
}

/// The command for `bin` with `args`, on 2 compute threads (what CI has).
pub fn command(bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).env("RAYON_NUM_THREADS", "2");
    c
}

/// Runs `bin` with `args` and returns its output.
pub fn run_with(bin: &Path, args: &[&str]) -> Output {
    command(bin, args).output().expect("the binary starts")
}

/// Runs `bin`, asserts success, and returns stdout.
pub fn ok_with(bin: &Path, args: &[&str]) -> String {
    let out = run_with(bin, args);
    assert!(out.status.success(), "phi4r-actors {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs `bin`, asserts failure, and returns stderr.
pub fn err_with(bin: &Path, args: &[&str]) -> String {
    let out = run_with(bin, args);
    assert!(!out.status.success(), "phi4r-actors {args:?} should have failed");
    String::from_utf8(out.stderr).expect("stderr is UTF-8")
}

/// Stage 4 on a random-init model, as the RL tests run it: `data synth` (40 problems, its tokenizer),
/// `model init` with that tokenizer into `dir/init`, and `dir/digits.jsonl`, 40 prompts with single-digit
/// answers. A random model almost never answers the synthetic task, so every group would be dropped for no
/// signal; single digits are hit by chance often enough (the verifier reads the last number) for some
/// groups to be mixed and updates to run. Returns (init folder, prompts file) as strings.
pub fn rl_fixture(bin: &Path, dir: &Path) -> (String, String) {
    let utf8 = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let data = dir.join("data");
    ok_with(bin, &["data", "synth", "--out", &utf8(&data), "--problems", "40", "--rollouts", "2"]);
    let init = dir.join("init");
    ok_with(bin, &["model", "init", "--tokenizer", &utf8(&data.join("tokenizer.json")), "--out", &utf8(&init)]);
    let prompts = dir.join("digits.jsonl");
    let lines: String = (0..40)
        .map(|i| format!("{{\"problem\":\"What is {} + 0?\",\"answer\":\"{}\",\"tier\":1}}\n", i % 10, i % 10))
        .collect();
    std::fs::write(&prompts, lines).expect("write prompts");
    (utf8(&init), utf8(&prompts))
}
