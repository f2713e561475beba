use clap::Parser;
use selfupgrade_testbed::cli::{self, Cli};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    args.logging.init()?;
    cli::execute(args.command).await
}
