//! `phi4r-actors`: the phi4r command line.
//!
//! Every subcommand parses its flags, then calls the library crates; the tensor work runs inside a
//! budgeted rayon pool (`--threads`, default `RAYON_NUM_THREADS` or the machine's cores).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
