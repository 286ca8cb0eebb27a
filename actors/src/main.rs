//! `phi4r-actors`: the phi4r command line.
//!
//! Every subcommand parses its flags, then calls the library crates; the tensor work runs inside a
//! budgeted rayon pool (`--threads`, default `RAYON_NUM_THREADS` or the machine's cores).

mod cli;
mod compute;
mod dataset;
mod learner;
mod messages;

use clap::Parser;

// Training allocates and frees large activation buffers every step; the system allocator returns them
// to the kernel and pays page faults to get them back (a fifth of a training step when profiled).
// mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
