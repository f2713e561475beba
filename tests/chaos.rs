//! Exactly-once under crashes: the operator runs as its own process against the embedded API
//! server and the QuickSight simulator (each their own process, so they survive), and is
//! SIGKILLed at random moments and restarted. Every decision must still converge, with exactly
//! one successful update per request. `CHAOS_KILLS` and `CHAOS_REQUESTS_PER_ACCOUNT` make the
//! run bigger.

mod common;

use common::is;
use kube::Api;
use kube::api::PostParams;
use rand::{Rng, SeedableRng};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_selfupgrade-operator");
const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a subcommand whose first stdout line is its address.
fn serve(args: &[&str]) -> (Process, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    (Process(child), line.trim().to_string())
}

/// A plain HTTP GET of the simulator's admin interface.
fn admin_get(endpoint: &str, path: &str) -> Value {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).expect("json body")
}

fn operator(kubeconfig: &std::path::Path, endpoint: &str) -> Process {
    Process(
        Command::new(BIN)
            .args([
                "run",
                "--quicksight-endpoint",
                endpoint,
                "--backoff-base",
                "200ms",
                "--awaiting-recheck",
                "1s",
                // Few reconciles at once, so that the work spans several of the operator's lives.
                "--concurrency",
                "2",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDCHAOS")
            .env("AWS_SECRET_ACCESS_KEY", "chaos-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("operator starts"),
    )
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_duplicates_an_update() {
    let kills = knob("CHAOS_KILLS", 12);
    let per_account = knob("CHAOS_REQUESTS_PER_ACCOUNT", 25);
    let seed: u64 = knob("CHAOS_SEED", 20261126) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let kubeconfig_arg = kubeconfig.to_str().expect("utf-8").to_string();
    let (_apiserver, _) = serve(&["apiserver", "--port", "0", "--kubeconfig", &kubeconfig_arg]);
    let generate = per_account.to_string();
    let (_sim, endpoint) = serve(&[
        "sim",
        "--port",
        "0",
        // Slow calls, so that kills land while updates are in flight.
        "--latency-ms",
        "150",
        "--generate",
        &generate,
        "--account",
        ACCOUNTS[0],
        "--account",
        ACCOUNTS[1],
    ]);

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let api: Api<SelfUpgradeDecision> =
        Api::namespaced(kube::Client::try_from(config).expect("client"), "default");

    // One decision per request: VERIFY where the user is in the group, else APPROVE or DENY,
    // so that every decision can end Ready.
    let requests = admin_get(&endpoint, "/_sim/requests");
    let mut names = Vec::new();
    for namespace in requests.as_array().expect("namespaces") {
        let account = namespace["accountId"].as_str().expect("account");
        for (index, request) in namespace["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .enumerate()
        {
            let action = match (request["inRequiredGroup"].as_bool(), index % 2) {
                (Some(true), _) => Action::Verify,
                (_, 0) => Action::Approve,
                _ => Action::Deny,
            };
            let name = format!("d-{account}-{index:03}");
            let id = request["id"].as_str().expect("id");
            api.create(
                &PostParams::default(),
                &common::new_decision(&name, account, id, action),
            )
            .await
            .expect("created");
            names.push(name);
        }
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    // Updates each killed operator got done: kills that land mid-work show as partial runs.
    let mut per_run = Vec::new();
    let updates_so_far = || {
        admin_get(&endpoint, "/_sim/counters")["calls"]["UpdateSelfUpgrade"]["ok"]
            .as_u64()
            .unwrap_or(0)
    };
    for _ in 0..kills {
        let before = updates_so_far();
        let running = operator(&kubeconfig, &endpoint);
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        drop(running); // SIGKILL
        per_run.push(updates_so_far() - before);
    }
    let before_final_run =
        admin_get(&endpoint, "/_sim/counters")["calls"]["UpdateSelfUpgrade"]["ok"]
            .as_u64()
            .unwrap_or(0);
    let _final_run = operator(&kubeconfig, &endpoint);
    for name in &names {
        common::wait_for(&api, name, 120, |d| {
            is(d, "Ready", "True", "Applied") || is(d, "Ready", "True", "AlreadyApplied")
        })
        .await;
    }
    let converged = started.elapsed();

    let requests = admin_get(&endpoint, "/_sim/requests");
    let counters = admin_get(&endpoint, "/_sim/counters");
    let applied: Vec<u64> = requests
        .as_array()
        .expect("namespaces")
        .iter()
        .flat_map(|ns| ns["requests"].as_array().cloned().unwrap_or_default())
        .map(|r| r["updatesApplied"].as_u64().unwrap_or(0))
        .collect();
    let updates = &counters["calls"]["UpdateSelfUpgrade"];
    println!(
        "chaos: {} decisions, {kills} SIGKILLs (seed {seed}), updates per killed run {per_run:?} ({before_final_run} in all), converged in {:.1}s; UpdateSelfUpgrade outcomes {updates}; ListSelfUpgrades outcomes {}",
        names.len(),
        converged.as_secs_f64(),
        counters["calls"]["ListSelfUpgrades"]
    );
    assert_eq!(applied.len(), names.len());
    assert!(
        applied.iter().all(|n| *n == 1),
        "every request updated exactly once: {applied:?}"
    );
    assert_eq!(updates["ok"].as_u64(), Some(names.len() as u64));
    assert!(
        updates.get("PreconditionNotMetException").is_none(),
        "no duplicate reached QuickSight: {updates}"
    );
}
