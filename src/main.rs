use clap::Parser;
use selfupgrade_operator::cli::{self, Cli};

/// mimalloc rather than glibc malloc: at 10,000 decisions glibc's malloc and free were a fifth of
/// the operator's CPU, and its per-thread arenas held freed memory (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    args.logging.init()?;
    cli::runtime()?.block_on(cli::execute(args.command))
}
