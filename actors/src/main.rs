//! `phi4r-actors`: the phi4r command line.
//!
//! Every subcommand parses its flags, then calls the library crates; the tensor work runs inside a
//! budgeted rayon pool (`--threads`, default `RAYON_NUM_THREADS` or the machine's cores).

use clap::Parser;
use phi4r_actors::cli;

// Training allocates and frees large activation buffers every step; the system allocator returns them
// to the kernel and pays page faults to get them back. mimalloc with purging off keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages stay with the process instead of going back to the kernel after 10 ms, as PyTorch's
/// caching allocator keeps its blocks: a training step's activations are freed and allocated again at
/// the same sizes every step, and each fresh 2 MiB page costs a fault plus zeroing (profiled: a quarter
/// of a `tiny` training step; 35k page faults per 3 steps, 1.2k with purging off). `MIMALLOC_PURGE_DELAY`
/// in the environment still wins.
#[allow(unsafe_code)]
fn keep_freed_pages() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores an integer in mimalloc's option table; any value is valid
        // for this option (-1 = never purge) and it may be changed at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_pages();
    // Logs (every actor's start, restart and stop) go to stderr, filtered by RUST_LOG (default: warn).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
