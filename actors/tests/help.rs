//! The binary's help lists every subcommand. (Its presence also makes `cargo test --workspace` build the
//! `phi4r-actors` binary that the end-to-end tests in `tests/` run.)

#[test]
fn help_lists_every_subcommand() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_phi4r-actors")).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["model", "data", "generate", "stage", "eval", "verify", "bench"] {
        assert!(text.contains(cmd), "--help does not list `{cmd}`:\n{text}");
    }
}
