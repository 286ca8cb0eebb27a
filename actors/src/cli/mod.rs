//! Subcommands. Each module holds one command's arguments and its `run`.

mod bench;
mod bench_gpu;
mod bench_stream;
pub mod ctl;
mod data;
mod eval;
mod generate;
mod model;
pub mod stage;
mod verify;

use clap::{Parser, Subcommand};

/// phi4r: train small reasoning models with the Phi-4-Mini-Reasoning recipe, as one Rust binary.
#[derive(Debug, Parser)]
#[command(name = "phi4r-actors", version, about, long_about = None)]
pub struct Cli {
    /// Compute threads for tensor work (default: RAYON_NUM_THREADS, else the available cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Device of the tensor work: cpu, cuda, cuda:N, or auto (GPU 0 when this build has CUDA and the
    /// machine a GPU, else the CPU). CUDA without the `cuda` build feature, or without that GPU, is an
    /// error that says which.
    #[arg(long, global = true, default_value = "auto")]
    device: phi4r_model::DeviceSpec,
    /// Compute dtype: auto (bf16 on a GPU, with f32 master weights and optimizer state; f32 on the CPU),
    /// f32, bf16 or f16. `model init` saves its weights in it.
    #[arg(long, global = true, default_value = "auto")]
    dtype: phi4r_model::DTypeSpec,
    /// The main job (no subcommand): run all four stages on the embedded default with stage 4 streamed
    /// through this topology (e.g. 4gen-1learn), evaluating after each stage, and print the table.
    #[arg(long)]
    topology: Option<crate::topology::Topology>,
    /// Main job: how much it does: quick, default or full (each value's size and time below).
    #[arg(long, value_enum, default_value = "default", requires = "topology")]
    profile: crate::pipeline::Profile,
    /// Main job: the run folder [default: runs/UTC-TIMESTAMP].
    #[arg(long, requires = "topology")]
    run_dir: Option<std::path::PathBuf>,
    /// Main job: the seed of the whole run, data included.
    #[arg(long, default_value_t = 0, requires = "topology")]
    seed: u64,
    /// Main job: run again from this stage (the earlier ones must be finished in --run-dir).
    #[arg(long, value_enum, requires = "run_dir")]
    from_stage: Option<crate::pipeline::StageName>,
    /// Main job: continue an interrupted run in --run-dir (finished stages are kept).
    #[arg(long, requires = "run_dir")]
    resume: bool,
    /// Main job: stage 3's pairs from the teacher's rollouts, or from the stage-2 model's own samples.
    #[arg(long, value_enum, default_value = "teacher", requires = "topology")]
    dpo_pairs: crate::pipeline::DpoPairs,
    /// Main job: print report.json on stdout instead of the table (stage progress stays on stderr).
    #[arg(long, requires = "topology")]
    json: bool,
    /// Main job: stage 4's algorithm.
    #[arg(long, value_enum, default_value = "grpo", requires = "topology")]
    algo: crate::cli::stage::AlgoName,
    /// Main job: stage 4 accepts generator nodes (`node --join`); see `stage rl --help`.
    #[command(flatten)]
    cluster: crate::cli::stage::ClusterFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and inspect Hugging Face-layout checkpoints.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Synthetic data and dataset checks.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Generate a continuation of a prompt with a checkpoint.
    Generate(generate::GenerateArgs),
    /// Run one training stage (mid, sft, dpo) as a learner actor fed by a dataset actor.
    Stage(Box<stage::StageArgs>),
    /// Greedy accuracy of a checkpoint on {"problem","answer"} JSONL, per tier.
    Eval(eval::EvalArgs),
    /// Verify math answers: one pair, or a JSONL batch.
    Verify(verify::VerifyArgs),
    /// Benchmarks that print JSON.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Control a running streamed stage 4 (status, scale, reward-policy, pause, resume, checkpoint, stop).
    Ctl(ctl::CtlArgs),
    /// Run generators on this machine for a stage 4 on another (`stage rl --cluster-listen`).
    #[cfg(feature = "cluster")]
    Node(crate::cluster::node::NodeArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = cli.threads.unwrap_or_else(phi4r_model::default_threads);
    // candle's CPU matmul asks on every call how many threads to split over: `RAYON_NUM_THREADS` when
    // set, else it counts the physical cores by reading /proc/cpuinfo, every call (profiled: ~3% of a
    // stage-4 generator's time in the kernel's cpuinfo printing). Set here, while the process has one
    // thread, it is a lookup, and gemm's split follows `--threads`; child processes inherit it.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let _ = DEVICE.set(cli.device);
    let _ = DTYPE.set(cli.dtype);
    let pool = phi4r_model::ComputePool::new("compute", threads)?;
    let Some(command) = cli.command else {
        let Some(topology) = cli.topology else {
            anyhow::bail!(
                "nothing to do: run the main job with `--topology 4gen-1learn`, or a subcommand (see --help)"
            );
        };
        crate::pipeline::run(crate::pipeline::PipelineArgs {
            topology,
            profile: cli.profile,
            run_dir: cli.run_dir,
            seed: cli.seed,
            from_stage: cli.from_stage,
            resume: cli.resume,
            threads,
            dpo_pairs: cli.dpo_pairs,
            algo: cli.algo,
            cluster: cli.cluster,
            device: cli.device,
            dtype: cli.dtype,
            json: cli.json,
        })?;
        return Ok(());
    };
    if cli.topology.is_some() {
        anyhow::bail!("--topology before a subcommand runs the main job; a subcommand takes its own flags (e.g. `stage rl --topology ...`)");
    }
    match command {
        Command::Model(cmd) => pool.install(|| model::run(cmd)),
        Command::Generate(args) => pool.install(|| generate::run(args)),
        Command::Verify(args) => verify::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Stage(args) => stage::run(*args, threads),
        Command::Eval(args) => pool.install(|| eval::run(args)),
        Command::Bench(cmd) => bench::run(cmd, &pool),
        Command::Ctl(args) => ctl::run(args),
        #[cfg(feature = "cluster")]
        Command::Node(args) => crate::cluster::node::run(args, threads),
    }
}

/// The `--dtype` of this run (set once in [`run`]).
static DTYPE: std::sync::OnceLock<phi4r_model::DTypeSpec> = std::sync::OnceLock::new();

/// The run's `--dtype` on `device` (`auto`: bf16 on a GPU, f32 on the CPU).
pub(crate) fn dtype(device: &candle_core::Device) -> candle_core::DType {
    DTYPE.get().copied().unwrap_or_default().resolve(device)
}

/// The `--device` of this run (set once in [`run`]).
static DEVICE: std::sync::OnceLock<phi4r_model::DeviceSpec> = std::sync::OnceLock::new();

/// Opens the run's `--device`.
pub(crate) fn device() -> anyhow::Result<candle_core::Device> {
    let spec = DEVICE.get().copied().unwrap_or_default();
    Ok(spec.open()?)
}
