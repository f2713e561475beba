//! The benchmark's processes and what it reads from them: the stand-ins' admin interfaces, and
//! a process's CPU, peak RSS and (for this binary) live heap.

use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The operator's ServiceAccount (and namespace): `selfupgrade-operator/selfupgrade-operator`.
pub const NAMESPACE: &str = "selfupgrade-operator";

/// A child process of this binary, killed when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Asks the process to stop (SIGTERM, through `kill(1)`) and waits up to `grace` for it, so
    /// that a profiler it runs under can write its output; then it is killed when dropped.
    pub async fn stop(mut self, grace: Duration) {
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

pub fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding this executable")
}

/// Starts a subcommand whose first stdout line is its address.
pub fn serve(args: &[&str]) -> anyhow::Result<(Process, String)> {
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
pub fn sim_get(endpoint: &str, path: &str) -> anyhow::Result<serde_json::Value> {
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

/// The simulator's calls so far, by operation.
pub fn quicksight_calls(endpoint: &str) -> anyhow::Result<BTreeMap<String, u64>> {
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

/// The operator's API-server requests so far, by verb (the embedded API server counts them).
pub async fn operator_requests(client: &kube::Client) -> anyhow::Result<BTreeMap<String, u64>> {
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

/// A process's CPU time so far (user and system) and its peak RSS in KiB.
pub fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(Duration, u64)> {
    let process = procfs::process::Process::new(pid as i32)?;
    let stat = process.stat()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks);
    let peak = process.status()?.vmhwm.unwrap_or(0);
    Ok((cpu, peak))
}

/// The live heap bytes a process of this binary last wrote to `path`
/// (see [`crate::allocator::HEAP_FILE_VARIABLE`]).
pub async fn live_heap(path: &Path) -> anyhow::Result<u64> {
    // The first report comes within half a second of the start.
    for _ in 0..20 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text
                .trim()
                .parse()
                .with_context(|| format!("reading the live heap from {}", path.display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no live heap reported in {}", path.display())
}

pub fn difference(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a non-UTF-8 path")
}
