use clap::Parser;
use selfupgrade_testbed::allocator::{HEAP_FILE_VARIABLE, TestbedAllocator};
use selfupgrade_testbed::cli::{self, Cli, Command};
use std::time::Duration;

/// The production binary's allocator (mimalloc) unless told otherwise, so that the operator this
/// binary runs (`run`, as the benchmark and the process tests start it) behaves as the
/// production one does; it also counts the bytes live for the benchmark.
#[global_allocator]
static ALLOCATOR: TestbedAllocator = TestbedAllocator::new();

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    args.logging.init()?;
    if let Some(path) = std::env::var_os(HEAP_FILE_VARIABLE) {
        std::thread::spawn(move || report_live_heap(path.into()));
    }
    // The operator's commands on the operator's own runtime; the stand-ins serve many clients
    // at once and keep a thread per core.
    let runtime = match &args.command {
        Command::Operator(_) => selfupgrade_operator::cli::runtime()?,
        _ => tokio::runtime::Runtime::new()?,
    };
    runtime.block_on(cli::execute(args.command))
}

/// Writes the live heap bytes to `path` twice a second (through a rename, so a reader never
/// sees half a number), for the benchmark to read; stops if the file cannot be written.
fn report_live_heap(path: std::path::PathBuf) {
    let partial = path.with_extension("partial");
    loop {
        let written = std::fs::write(&partial, ALLOCATOR.live_bytes().to_string())
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(error) = written {
            eprintln!("cannot write the live heap to {}: {error}", path.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
