//! `selfupgrade-testbed bench`: the end-to-end benchmark. The embedded API server (enforcing
//! `deploy/base/rbac.yaml` for the operator's ServiceAccount), the QuickSight simulator and the
//! operator each run as their own process of this binary; N decisions across M accounts are
//! created and awaited; the operator's CPU and peak RSS, the QuickSight calls against their
//! floor and the API-server requests are measured, then an idle phase. A naive configuration
//! (no listing cache) runs for contrast. Prints one table and, with `--write`, regenerates
//! `BENCHMARKS.md`. Benchmarks print figures; nothing here asserts a time.

use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::Api;
use kube::api::{ListParams, PostParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision, SelfUpgradeDecisionSpec};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The annotation `kubectl apply` keeps the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Decisions in the main run.
    #[arg(long, default_value_t = 10_000)]
    pub decisions: usize,
    /// Accounts they are spread over.
    #[arg(long, default_value_t = 10)]
    pub accounts: usize,
    /// Decisions in the naive run (no listing cache), all in one account.
    #[arg(long, default_value_t = 1_000)]
    pub naive_decisions: usize,
    /// How long nothing changes after convergence, to count what the operator does meanwhile.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// The operator's --quicksight-rate (calls per second per account).
    #[arg(long, default_value_t = 50.0)]
    pub quicksight_rate: f64,
    /// The operator's --concurrency.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Write the results to this Markdown file (e.g. BENCHMARKS.md).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Run the operator under this command to profile it, e.g.
    /// `--profile-with "valgrind --tool=massif --massif-out-file=massif.out"` (a tool that runs
    /// the program in its own process, so that CPU and RSS are still read from the right pid;
    /// they then include the tool's overhead).
    #[arg(long)]
    pub profile_with: Option<String>,
}

/// One configuration's figures.
#[derive(Debug, Clone)]
struct Figures {
    label: String,
    decisions: usize,
    accounts: usize,
    startup: Duration,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    quicksight: BTreeMap<String, u64>,
    floor_updates: u64,
    floor_pages: u64,
    api_requests: BTreeMap<String, u64>,
    idle: Duration,
    idle_quicksight: u64,
    idle_api_requests: BTreeMap<String, u64>,
}

/// A child process of this binary, killed when dropped.
struct Process(Child);

impl Process {
    /// Asks the process to stop (SIGTERM, through `kill(1)`) and waits up to `grace` for it, so
    /// that a profiler it runs under can write its output; then it is killed when dropped.
    async fn stop(mut self, grace: Duration) {
        let asked = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + grace;
        while asked && Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding this executable")
}

/// Starts a subcommand whose first stdout line is its address.
fn serve(args: &[&str]) -> anyhow::Result<(Process, String)> {
    let mut child = Command::new(exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("{} printed no address", args[0]);
    }
    Ok((process, line.trim().to_string()))
}

/// A plain HTTP GET of the simulator's admin interface.
fn sim_get(endpoint: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(serde_json::from_str(body)?)
}

fn quicksight_calls(endpoint: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let counters = sim_get(endpoint, "/_sim/counters")?;
    let mut calls = BTreeMap::new();
    for (operation, outcomes) in counters["calls"].as_object().into_iter().flatten() {
        let total = outcomes
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        calls.insert(operation.clone(), total);
    }
    Ok(calls)
}

async fn operator_requests(client: &kube::Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let request = http::Request::get("/_apiserver/requests").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let all: BTreeMap<String, BTreeMap<String, u64>> = serde_json::from_str(&text)?;
    Ok(all
        .get(&crate::apiserver::rbac::service_account_user(
            NAMESPACE, NAMESPACE,
        ))
        .cloned()
        .unwrap_or_default())
}

/// The operator's ServiceAccount (and namespace): `selfupgrade-operator/selfupgrade-operator`.
const NAMESPACE: &str = "selfupgrade-operator";

fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(Duration, u64)> {
    let process = procfs::process::Process::new(pid as i32)?;
    let stat = process.stat()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks);
    let peak = process.status()?.vmhwm.unwrap_or(0);
    Ok((cpu, peak))
}

fn difference(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn account(index: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + index as u64)
}

async fn run_configuration(
    label: &str,
    decisions: usize,
    accounts: usize,
    operator_flags: &[String],
    args: &BenchArgs,
) -> anyhow::Result<Figures> {
    eprintln!("bench: {label}: {decisions} decisions in {accounts} accounts");
    let dir = tempfile::tempdir()?;
    let admin_kubeconfig = dir.path().join("admin.kubeconfig");
    let operator_kubeconfig = dir.path().join("operator.kubeconfig");
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(&rbac, crate::playground::BASE_RBAC)?;
    let service_account = format!("{NAMESPACE}/{NAMESPACE}={}", operator_kubeconfig.display());
    let (_apiserver, _) = serve(&[
        "apiserver",
        "--kubeconfig",
        path_str(&admin_kubeconfig)?,
        "--history-limit",
        "100000",
        "--rbac",
        path_str(&rbac)?,
        "--service-account",
        &service_account,
    ])?;
    let per_account = decisions.div_ceil(accounts).to_string();
    let mut sim_args = vec![
        "sim",
        "--generate",
        per_account.as_str(),
        "--access-key",
        "AKIDBENCH:bench",
    ];
    let account_ids: Vec<String> = (0..accounts).map(account).collect();
    for id in &account_ids {
        sim_args.extend(["--account", id.as_str()]);
    }
    let (_sim, endpoint) = serve(&sim_args)?;
    let client = client_from(&admin_kubeconfig).await?;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");

    // Every request the simulator generated, in creation order.
    let mut targets = Vec::new();
    for namespace in sim_get(&endpoint, "/_sim/requests")?
        .as_array()
        .into_iter()
        .flatten()
    {
        let account = namespace["accountId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for request in namespace["requests"].as_array().into_iter().flatten() {
            let id = request["id"].as_str().unwrap_or_default().to_string();
            targets.push((account.clone(), id));
        }
    }
    targets.truncate(decisions);
    anyhow::ensure!(
        targets.len() == decisions,
        "the simulator generated {} requests for {decisions} decisions",
        targets.len()
    );
    let decision = |index: usize| {
        let (account, id) = &targets[index];
        let mut decision = SelfUpgradeDecision::new(
            &format!("d{index:05}"),
            SelfUpgradeDecisionSpec {
                aws_account_id: account.clone(),
                quicksight_namespace: "default".into(),
                upgrade_request_id: id.clone(),
                action: Action::Approve,
                region: None,
                retry: None,
            },
        );
        // As `kubectl apply` and Argo CD (client-side apply) write them: the applied object
        // itself in an annotation.
        let applied = serde_json::to_string(&decision).unwrap_or_default();
        decision.metadata.annotations = Some([(LAST_APPLIED.to_string(), applied)].into());
        decision
    };

    // Startup: one decision exists before the operator starts; time until it is reconciled.
    api.create(&PostParams::default(), &decision(0)).await?;
    let started = Instant::now();
    let mut operator_command = match args.profile_with.as_deref().map(str::split_whitespace) {
        Some(mut words) => {
            let mut command = Command::new(words.next().context("--profile-with is empty")?);
            command.args(words).arg(exe()?);
            command
        }
        None => Command::new(exe()?),
    };
    operator_command
        .args(["run", "--region", "us-east-1", "--allow-unbound-accounts"])
        .args([
            "--quicksight-endpoint",
            &endpoint,
            "--sts-endpoint",
            &endpoint,
        ])
        .args([
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--quicksight-rate", &args.quicksight_rate.to_string()])
        .args([
            "--quicksight-burst",
            &(args.quicksight_rate.ceil() as u64).to_string(),
        ])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(operator_flags)
        .env("KUBECONFIG", &operator_kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let operator = Process(operator_command.spawn().context("starting the operator")?);
    let pid = operator.0.id();
    loop {
        let first = api.get("d00000").await?;
        if first
            .status
            .is_some_and(|s| s.observed_generation.is_some())
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the operator did not reconcile within a minute");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let startup = started.elapsed();

    let t0 = Instant::now();
    let creates = futures::stream::iter(1..targets.len())
        .map(|index| {
            let api = api.clone();
            let decision = decision(index);
            async move { api.create(&PostParams::default(), &decision).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(error)) = creates.into_iter().find(Result::is_err) {
        bail!("creating decisions: {error}");
    }
    loop {
        let listed = api.list(&ListParams::default()).await?;
        let ready = listed
            .items
            .iter()
            .filter(|d| {
                d.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == targets.len() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!(
                "only {ready} of {} decisions Ready after 30 minutes",
                targets.len()
            );
        }
        // Listing every decision is the heaviest request the API server serves: not too often.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let wall = t0.elapsed();
    let (cpu, _) = cpu_and_peak_rss(pid)?;
    let quicksight = quicksight_calls(&endpoint)?;
    let api_requests = operator_requests(&client).await?;

    eprintln!(
        "bench: {label}: converged in {wall:?}; idle for {:?}",
        args.idle
    );
    tokio::time::sleep(args.idle).await;
    let idle_quicksight = quicksight_calls(&endpoint)?;
    let idle_api = operator_requests(&client).await?;
    let (_, peak_rss_kib) = cpu_and_peak_rss(pid)?;
    // The operator drains and exits on SIGTERM; under a profiler, the profile is written then.
    operator.stop(Duration::from_secs(120)).await;

    let pages_per_account = (decisions.div_ceil(accounts) as u64).div_ceil(100).max(1);
    Ok(Figures {
        label: label.to_string(),
        decisions: targets.len(),
        accounts,
        startup,
        wall,
        cpu,
        peak_rss_kib,
        floor_updates: targets.len() as u64,
        floor_pages: pages_per_account * accounts as u64,
        idle_quicksight: difference(&idle_quicksight, &quicksight).values().sum(),
        idle_api_requests: difference(&idle_api, &api_requests),
        quicksight,
        api_requests,
        idle: args.idle,
    })
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a non-UTF-8 path")
}

fn table(runs: &[Figures]) -> String {
    let mut text = String::from(
        "| configuration | decisions / accounts | startup → first reconcile | wall to all Ready | decisions/s | operator CPU / decision | peak RSS | UpdateSelfUpgrade | ListSelfUpgrades pages | calls / floor | API requests / decision | idle: QuickSight calls | idle: API requests |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let updates = run
            .quicksight
            .get("UpdateSelfUpgrade")
            .copied()
            .unwrap_or(0);
        let pages = run.quicksight.get("ListSelfUpgrades").copied().unwrap_or(0);
        let floor = run.floor_updates + run.floor_pages;
        let per_decision: Vec<String> = run
            .api_requests
            .iter()
            .map(|(verb, n)| format!("{verb} {:.2}", *n as f64 / run.decisions as f64))
            .collect();
        let idle_api: Vec<String> = run
            .idle_api_requests
            .iter()
            .map(|(verb, n)| format!("{verb} {n}"))
            .collect();
        text.push_str(&format!(
            "| {} | {} / {} | {:.2} s | {:.1} s | {:.0} | {:.0} µs | {:.1} MiB | {} (floor {}) | {} (floor {}) | {:.3} | {} | {} in {:?} | {} |\n",
            run.label,
            run.decisions,
            run.accounts,
            run.startup.as_secs_f64(),
            run.wall.as_secs_f64(),
            run.decisions as f64 / run.wall.as_secs_f64(),
            run.cpu.as_secs_f64() * 1e6 / run.decisions as f64,
            run.peak_rss_kib as f64 / 1024.0,
            updates,
            run.floor_updates,
            pages,
            run.floor_pages,
            (updates + pages) as f64 / floor as f64,
            per_decision.join(", "),
            run.idle_quicksight,
            run.idle,
            if idle_api.is_empty() { "none".to_string() } else { idle_api.join(", ") },
        ));
    }
    text
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    use procfs::Current;
    let memory = procfs::Meminfo::current()
        .map(|m| format!("{:.0} GiB", m.mem_total as f64 / (1u64 << 30) as f64))
        .unwrap_or_else(|_| "unknown memory".into());
    format!("{cores} cores ({cpu}), {memory}")
}

/// The heading from which a `BENCHMARKS.md` is written by people (profiles, analysis): a
/// regenerated file keeps it and everything after it.
const KEPT_FROM: &str = "\n## Profile";

/// The regenerated results followed by the hand-written part of the existing file, if any.
fn with_kept_sections(results: &str, existing: &str) -> String {
    match existing.find(KEPT_FROM) {
        Some(start) => format!("{}\n{}", results.trim_end(), &existing[start..]),
        None => results.to_string(),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Each run starts the operator after its first decision exists, to time the startup.
    for (flag, value) in [
        ("--decisions", args.decisions),
        ("--naive-decisions", args.naive_decisions),
        ("--accounts", args.accounts),
    ] {
        anyhow::ensure!(value >= 1, "{flag} must be at least 1, got {value}");
    }
    let main = run_configuration(
        "operator as shipped",
        args.decisions,
        args.accounts,
        &[],
        &args,
    )
    .await?;
    let naive = run_configuration(
        "naive: no listing cache (--listing-ttl 0s)",
        args.naive_decisions,
        1,
        &["--listing-ttl".to_string(), "0s".to_string()],
        &args,
    )
    .await?;
    let runs = [main, naive];
    let results = table(&runs);
    println!("{results}");
    if let Some(path) = &args.write {
        let results = format!(
            "# Benchmarks\n\nRegenerated by `cargo run --release -p selfupgrade-testbed -- bench --write BENCHMARKS.md` \
             (flags: `--decisions`, `--accounts`, `--naive-decisions`, `--idle`, \
             `--quicksight-rate`, `--concurrency`, `--profile-with`). The API server, the \
             simulator and the operator run as separate release processes; the operator runs as \
             its ServiceAccount under `deploy/base/rbac.yaml`, with --quicksight-rate {} and \
             --concurrency {}. Each decision carries the `last-applied-configuration` \
             annotation, as `kubectl apply` and Argo CD write them. CPU and peak RSS are the \
             operator process's own \
             (/proc: utime+stime, VmHWM). The floor is one UpdateSelfUpgrade per decision plus \
             one listing of ⌈requests/100⌉ pages per account.\n\nMachine: {}.\n\n{results}",
            args.quicksight_rate,
            args.concurrency,
            machine()
        );
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, with_kept_sections(&results, &existing))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regenerating_keeps_the_profile_written_by_people() {
        let old = "# Benchmarks\n\n| old table |\n\n## Profile\n\nWhere the time goes.\n";
        let new = with_kept_sections("# Benchmarks\n\n| new table |\n", old);
        assert_eq!(
            new,
            "# Benchmarks\n\n| new table |\n\n## Profile\n\nWhere the time goes.\n"
        );
        assert_eq!(
            with_kept_sections("# Benchmarks\n", "# Benchmarks\n| only results |\n"),
            "# Benchmarks\n"
        );
    }
}
