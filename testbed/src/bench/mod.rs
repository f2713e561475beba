//! `selfupgrade-testbed bench`: the end-to-end benchmark. The embedded API server (enforcing
//! `deploy/base/rbac.yaml` for the operator's ServiceAccount), the QuickSight simulator and the
//! operator each run as their own process of this binary; N decisions across M accounts are
//! created and awaited; the operator's CPU, peak RSS and live heap, the QuickSight calls
//! against their floor and the API-server requests are measured, then an idle phase. Beside the
//! operator as shipped: the same with glibc's malloc, a run at the default QuickSight rate, a
//! naive configuration (no listing cache), and a scale curve over growing numbers of decisions,
//! drawn as a PNG. Prints the tables and, with `--write`, regenerates `BENCHMARKS.md`.
//! Benchmarks print figures; nothing here asserts a time.

mod configuration;
mod plot;
mod processes;
mod report;

use anyhow::Context as _;
use configuration::{Allocator, Configuration};
use report::Figures;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Decisions in the main run.
    #[arg(long, default_value_t = 10_000)]
    pub decisions: usize,
    /// Accounts they are spread over.
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Decisions in the naive run (no listing cache), all in one account.
    #[arg(long, default_value_t = 500)]
    pub naive_decisions: usize,
    /// Decisions of the run at the operator's default --quicksight-rate (5 per second), spread
    /// over --accounts; 0 leaves it out.
    #[arg(long, default_value_t = 1_000)]
    pub default_rate_decisions: usize,
    /// How long nothing changes after convergence, to count what the operator does meanwhile.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// The operator's --quicksight-rate (calls per second per account).
    #[arg(long, default_value_t = 50.0)]
    pub quicksight_rate: f64,
    /// The operator's --concurrency.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Sizes of the scale curve (decisions, comma-separated; empty leaves it out). A size equal
    /// to the main run's reuses it.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000,100000")]
    pub curve: Vec<usize>,
    /// Decisions per account along the curve (accounts scale with the decisions).
    #[arg(long, default_value_t = 1_000)]
    pub curve_decisions_per_account: usize,
    /// The idle phase of the curve's points (their heap is read after it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub curve_idle: Duration,
    /// Write the results to this Markdown file (e.g. BENCHMARKS.md).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Draw the scale curve into this PNG (e.g. BENCHMARKS-curve.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The TrueType font of the plot's labels.
    #[arg(long, default_value = plot::DEFAULT_FONT)]
    pub font: PathBuf,
    /// Run the operator under this command to profile it, e.g.
    /// `--profile-with "valgrind --tool=massif --massif-out-file=massif.out"` (a tool that runs
    /// the program in its own process, so that CPU and RSS are still read from the right pid;
    /// they then include the tool's overhead).
    #[arg(long)]
    pub profile_with: Option<String>,
}

/// The operator's default --quicksight-rate.
const DEFAULT_RATE: f64 = 5.0;

impl BenchArgs {
    fn check(&self) -> anyhow::Result<()> {
        // Each run starts the operator after its first decision exists, to time the startup.
        for (flag, value) in [
            ("--decisions", self.decisions),
            ("--naive-decisions", self.naive_decisions),
            ("--accounts", self.accounts),
            (
                "--curve-decisions-per-account",
                self.curve_decisions_per_account,
            ),
        ] {
            anyhow::ensure!(value >= 1, "{flag} must be at least 1, got {value}");
        }
        if let Some(size) = self.curve.iter().find(|size| **size == 0) {
            anyhow::bail!("--curve sizes must be at least 1, got {size}");
        }
        Ok(())
    }

    /// The configurations of the main table, the operator as shipped first.
    fn configurations(&self) -> Vec<Configuration> {
        let shipped = Configuration::new(
            "operator as shipped",
            self.decisions,
            self.accounts,
            self.quicksight_rate,
        );
        let glibc = Configuration {
            label: "glibc malloc (MALLOC_ARENA_MAX=2)".into(),
            allocator: Allocator::Glibc,
            ..shipped.clone()
        };
        let mut naive = Configuration::new(
            "naive: no listing cache (--listing-ttl 0s)",
            self.naive_decisions,
            1,
            self.quicksight_rate,
        );
        naive.operator_flags = vec!["--listing-ttl".into(), "0s".into()];
        let mut all = vec![shipped, glibc];
        if self.default_rate_decisions > 0 {
            all.push(Configuration::new(
                "at the default rate (--quicksight-rate 5)",
                self.default_rate_decisions,
                self.accounts.min(self.default_rate_decisions),
                DEFAULT_RATE,
            ));
        }
        all.push(naive);
        all
    }

    fn curve_point(&self, decisions: usize) -> Configuration {
        let accounts = decisions.div_ceil(self.curve_decisions_per_account);
        Configuration::new(
            format!("curve: {decisions}"),
            decisions,
            accounts,
            self.quicksight_rate,
        )
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    args.check()?;
    let mut runs = Vec::new();
    for configuration in args.configurations() {
        runs.push(configuration::run(&configuration, &args).await?);
    }
    let curve = run_curve(&args, &runs[0]).await?;
    let results = table_text(&args, &runs, &curve);
    println!("{results}");
    if let Some(path) = &args.plot {
        plot::draw(&curve, path, &args.font)?;
    }
    if let Some(path) = &args.write {
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, report::with_kept_sections(&results, &existing))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The curve's points, smallest first; the main run serves as the point of its own size.
async fn run_curve(args: &BenchArgs, shipped: &Figures) -> anyhow::Result<Vec<Figures>> {
    let short_idle = BenchArgs {
        idle: args.curve_idle,
        ..args.clone()
    };
    let mut sizes = args.curve.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut points = Vec::new();
    for decisions in sizes {
        let point = args.curve_point(decisions);
        if (point.decisions, point.accounts) == (shipped.decisions, shipped.accounts) {
            points.push(shipped.clone());
        } else {
            points.push(configuration::run(&point, &short_idle).await?);
        }
    }
    Ok(points)
}

fn table_text(args: &BenchArgs, runs: &[Figures], curve: &[Figures]) -> String {
    let mut text = format!(
        "# Benchmarks\n\nRegenerated by `cargo run --release -p selfupgrade-testbed -- bench --write BENCHMARKS.md --plot BENCHMARKS-curve.png` \
         (flags: `--decisions`, `--accounts`, `--naive-decisions`, `--default-rate-decisions`, \
         `--idle`, `--quicksight-rate`, `--concurrency`, `--curve`, `--curve-decisions-per-account`, \
         `--profile-with`). The API server, the simulator and the operator run as separate \
         release processes; the operator runs as its ServiceAccount under \
         `deploy/base/rbac.yaml`, with --quicksight-rate {} (burst the same) and --concurrency \
         {} unless the row says otherwise. Each decision carries the \
         `last-applied-configuration` annotation, as `kubectl apply` and Argo CD write them. CPU \
         and peak RSS are the operator process's own (/proc: utime+stime, VmHWM); heap / \
         decision is the live heap once converged (after the idle phase) less the live heap at \
         the first reconcile, per decision, counted by the test bed's allocator. The calls' \
         floor is one UpdateSelfUpgrade per decision plus one listing of ⌈requests/100⌉ pages \
         per account; the pacing floor is decisions ÷ (rate × accounts).\n\nMachine: {}.\n\n{}",
        args.quicksight_rate,
        args.concurrency,
        report::machine(),
        report::table(runs),
    );
    if !curve.is_empty() {
        text.push_str(&format!(
            "\n## Scale curve\n\n{} decisions per account, the accounts growing with the \
             decisions; idle phase {:?} (the main run's, at its own size). \"Creates answered \
             after\" is how long the API server took to accept every decision, from the first \
             create; its CPU is counted over the same span as the wall.\n\n\
             ![peak RSS, heap and CPU per decision against decisions](BENCHMARKS-curve.png)\n\n{}",
            args.curve_decisions_per_account,
            args.curve_idle,
            report::curve_table(curve),
        ));
    }
    text
}
