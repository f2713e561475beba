use clap::Parser;
use selfupgrade_operator::cli::{self, Cli, Command, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc malloc: at 10,000 decisions glibc's malloc and free were a fifth of
/// the operator's CPU, and its per-thread arenas held freed memory (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    init_logging(args.log_format, &args.log_level)?;
    match args.command {
        Command::Run(run) => cli::run_controller(*run).await,
        Command::Crd(crd) => cli::print_crds(&crd),
        Command::Sim(sim) => cli::run_simulator(sim).await,
        Command::Playground(args) => selfupgrade_operator::playground::run(args).await,
        Command::Apiserver(args) => cli::run_apiserver(args).await,
        Command::Requests(args) => selfupgrade_operator::inbox_command::run(args).await,
        Command::Bench(args) => selfupgrade_operator::bench::run(args).await,
    }
}

/// Logs go to stderr, so that stdout stays clean for `crd` and the simulator's address line.
fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) => EnvFilter::try_new(from_env)?,
        Err(_) => EnvFilter::try_new(level)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
