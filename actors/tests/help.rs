//! The binary's help lists exactly the subcommands the README documents, and each has its own help.

phi4r_e2e::use_binary!();

/// The command names in the "Commands:" section of a clap help text (first word of each entry line).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn help_lists_exactly_the_subcommands() {
    let text = run_ok(&["--help"]);
    let mut expected = vec!["model", "data", "generate", "stage", "eval", "verify", "bench", "ctl"];
    if cfg!(feature = "cluster") {
        expected.push("node");
    }
    expected.push("help");
    assert_eq!(commands(&text), expected, "{text}");
    for cmd in &expected[..expected.len() - 1] {
        let sub = run_ok(&[cmd, "--help"]);
        assert!(sub.lines().any(|l| l.starts_with("Usage: phi4r-actors ") && l.contains(cmd)), "{cmd} --help:\n{sub}");
    }
}

#[test]
fn the_commands_parser_reads_only_the_commands_section() {
    let help = "Tool\n\nUsage: x\n\nCommands:\n  model  Make models\n  dataset-ish  Other\n\nOptions:\n  --data  x\n";
    assert_eq!(commands(help), ["model", "dataset-ish"]);
}
