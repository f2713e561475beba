//! The operator, the embedded API server and the simulator as separate processes of the real
//! binary, for tests that kill or restart one of them.

use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_selfupgrade-testbed");

/// A child process, SIGKILLed when dropped; with a log, printed (its end) when a failing test
/// drops it, so that a process test that fails shows what the process said.
pub struct Process(pub Child, pub Option<tempfile::NamedTempFile>);

impl Process {
    /// A process whose stderr is not kept.
    pub fn new(child: Child) -> Self {
        Self(child, None)
    }
}

/// Lines of a failed test's process log that are printed.
const LOG_TAIL: usize = 80;

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let Some(log) = self.1.as_ref().filter(|_| std::thread::panicking()) else {
            return;
        };
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        eprintln!(
            "--- the last {} lines of process {}'s log ---\n{}",
            tail.len(),
            self.0.id(),
            tail.join("\n")
        );
    }
}

/// Starts a subcommand whose first stdout line is its address.
pub fn serve(args: &[&str]) -> (Process, String) {
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
    (Process::new(child), line.trim().to_string())
}

/// The embedded API server and the simulator, each its own process, so that they outlive any
/// operator process a test kills.
pub struct Servers {
    _apiserver: Process,
    _sim: Process,
    _dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
    /// The simulator's address.
    pub endpoint: String,
}

/// Starts both servers; `sim_args` follow `sim --port 0`.
pub fn start_servers(sim_args: &[&str]) -> Servers {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let kubeconfig_arg = kubeconfig.to_str().expect("utf-8").to_string();
    let (apiserver, _) = serve(&["apiserver", "--port", "0", "--kubeconfig", &kubeconfig_arg]);
    let mut args = vec!["sim", "--port", "0"];
    args.extend_from_slice(sim_args);
    let (sim, endpoint) = serve(&args);
    Servers {
        _apiserver: apiserver,
        _sim: sim,
        _dir: dir,
        kubeconfig,
        endpoint,
    }
}

/// A plain HTTP GET of the simulator's admin interface.
pub fn admin_get(endpoint: &str, path: &str) -> Value {
    let body = admin_call(endpoint, "GET", path, None);
    serde_json::from_str(&body).expect("json body")
}

/// A `method` (POST, PUT, DELETE) of the simulator's admin interface with a JSON body; panics
/// unless it succeeds.
pub fn admin_send(endpoint: &str, method: &str, path: &str, body: Value) {
    admin_call(endpoint, method, path, Some(body));
}

fn admin_call(endpoint: &str, method: &str, path: &str, body: Option<Value>) -> String {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, answer) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    assert!(
        head.starts_with("HTTP/1.1 2"),
        "{method} {path}: {head}\n{answer}"
    );
    answer.to_string()
}

/// A PENDING request of a READER who asks to be an AUTHOR; `in_group`: whether VERIFY can
/// complete it.
pub fn pending_request(id: &str, in_group: bool) -> Value {
    serde_json::json!({
        "id": id,
        "userName": format!("{id}@example.com"),
        "originalRole": "READER",
        "requestedRole": "AUTHOR",
        "inRequiredGroup": in_group,
    })
}

/// Adds `request` to the simulator's account `account` (default QuickSight namespace).
pub fn add_pending_request(endpoint: &str, account: &str, request: Value) {
    admin_send(
        endpoint,
        "POST",
        "/_sim/requests",
        serde_json::json!({"accountId": account, "request": request}),
    );
}

/// Successful `UpdateSelfUpgrade` calls the simulator has answered.
pub fn updates_applied(endpoint: &str) -> u64 {
    admin_get(endpoint, "/_sim/counters")["calls"]["UpdateSelfUpgrade"]["ok"]
        .as_u64()
        .unwrap_or(0)
}

/// `selfupgrade-operator run` against the API server of `kubeconfig` and the simulator at
/// `endpoint`, signing with `access_key`, with `extra` flags; single-tenant
/// (`--allow-unbound-accounts`: tests/tenancy.rs covers the bindings).
pub fn operator(kubeconfig: &Path, endpoint: &str, access_key: &str, extra: &[&str]) -> Process {
    let mut flags = vec!["--allow-unbound-accounts"];
    flags.extend_from_slice(extra);
    operator_as_installed(kubeconfig, endpoint, access_key, &flags)
}

/// [`operator`] with its defaults as installed: only the accounts bindings bind.
pub fn operator_as_installed(
    kubeconfig: &Path,
    endpoint: &str,
    access_key: &str,
    extra: &[&str],
) -> Process {
    // The simulator verifies signatures: it issues the key first, as IAM would.
    admin_send(
        endpoint,
        "PUT",
        &format!("/_sim/access-keys/{access_key}"),
        serde_json::json!({ "secretAccessKey": OPERATOR_SECRET }),
    );
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let stderr = log.reopen().expect("the log file, for writing");
    let child = Command::new(BIN)
        .args([
            "run",
            "--quicksight-endpoint",
            endpoint,
            "--sts-endpoint",
            endpoint,
        ])
        .args([
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--backoff-base", "200ms", "--awaiting-recheck", "1s"])
        // An unsettled intent waits out the call timeout before its action is sent again.
        .args(["--call-timeout", "3s"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", OPERATOR_SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("operator starts");
    Process(child, Some(log))
}

/// The secret of every key [`operator`] runs with.
const OPERATOR_SECRET: &str = "operator-secret";

pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A client of the API server `kubeconfig` points at.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// One decision in `default` per request the simulator holds: VERIFY where the user is in the
/// group, else APPROVE or DENY in turn, so that every decision can end Ready. Returns the names.
pub async fn decide_every_request(api: &Api<SelfUpgradeDecision>, endpoint: &str) -> Vec<String> {
    let requests = admin_get(endpoint, "/_sim/requests");
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
                &super::new_decision(&name, account, id, action),
            )
            .await
            .expect("created");
            names.push(name);
        }
    }
    names
}

/// How many times QuickSight applied an update to each request (one entry per request).
pub fn updates_per_request(endpoint: &str) -> Vec<u64> {
    admin_get(endpoint, "/_sim/requests")
        .as_array()
        .expect("namespaces")
        .iter()
        .flat_map(|ns| ns["requests"].as_array().cloned().unwrap_or_default())
        .map(|r| r["updatesApplied"].as_u64().unwrap_or(0))
        .collect()
}

/// Waits until every decision in `names` is Ready because its action took effect (sent by the
/// operator, or found already done), for up to two minutes each.
pub async fn wait_until_all_applied(api: &Api<SelfUpgradeDecision>, names: &[String]) {
    for name in names {
        super::wait_for(api, name, 120, |d| {
            super::is(d, "Ready", "True", "Applied")
                || super::is(d, "Ready", "True", "AlreadyApplied")
        })
        .await;
    }
}
