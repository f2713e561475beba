use clap::Parser;
use selfupgrade_testbed::cli::{self, Cli};

/// The production binary's allocator, so that the operator this binary runs (`run`, as the
/// benchmark and the process tests start it) behaves as the production one does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    args.logging.init()?;
    cli::execute(args.command).await
}
