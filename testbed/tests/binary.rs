//! The binary's subcommands as a user runs them.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_selfupgrade-testbed");

struct Running(std::process::Child);

impl Running {
    /// The first line the process prints: the address it serves on.
    async fn first_line(&mut self) -> String {
        let stdout = self.0.stdout.take().expect("stdout is piped");
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .expect("first line");
            line.trim().to_string()
        })
        .await
        .expect("joined")
    }
}

/// The `apiserver` subcommand, writing its kubeconfig to `kubeconfig`.
fn start_apiserver(kubeconfig: &std::path::Path) -> Running {
    Running(
        Command::new(BIN)
            .args(["apiserver", "--port", "0", "--kubeconfig"])
            .arg(kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("apiserver starts"),
    )
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sim_prints_its_address_first_and_serves_the_seed_file() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/simulator/seed.yaml"
    );
    let mut child = Running(
        Command::new(BIN)
            .args([
                "sim",
                "--port",
                "0",
                "--seed-file",
                seed,
                "--account",
                "777788889999",
                "--generate",
                "130",
            ])
            .arg("--access-key")
            .arg(format!("{ACCESS_KEY}:{SECRET}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sim starts"),
    );
    let endpoint = child.first_line().await;
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let config = aws_sdk_quicksight::config::Builder::from(&sdk_config())
        .endpoint_url(&endpoint)
        .build();
    let client = aws_sdk_quicksight::Client::from_conf(config);
    let seeded = client
        .list_self_upgrades()
        .aws_account_id("444455556666")
        .namespace("analytics")
        .send()
        .await
        .expect("seeded namespace");
    assert_eq!(seeded.self_upgrade_request_details().len(), 1);
    let generated = client
        .list_self_upgrades()
        .aws_account_id("777788889999")
        .namespace("default")
        .max_results(100)
        .send()
        .await
        .expect("generated account");
    assert_eq!(generated.self_upgrade_request_details().len(), 100);
    assert!(generated.next_token().is_some());
}

#[test]
fn sim_refuses_a_bad_seed_file_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = dir.path().join("seed.yaml");
    std::fs::write(
        &seed,
        "accounts:\n  - accountId: '111122223333'\n    requests: [{id: x}]\n",
    )
    .expect("write");
    let output = Command::new(BIN)
        .args(["sim", "--seed-file"])
        .arg(&seed)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("parsing seed file") && stderr.contains("userName"),
        "{stderr}"
    );
}

#[test]
fn sim_refuses_a_malformed_account() {
    let output = Command::new(BIN)
        .args(["sim", "--account", "12345"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--account must be 12 digits"));
}

#[test]
fn run_without_a_cluster_fails_with_a_clear_message() {
    let output = Command::new(BIN)
        .args(["run", "--region", REGION])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting to Kubernetes"), "{stderr}");
}

#[test]
fn crd_prints_the_committed_crds() {
    let output = Command::new(BIN).arg("crd").output().expect("runs");
    assert!(output.status.success());
    let committed = [
        include_str!("../../crds/selfupgradedecision.yaml"),
        include_str!("../../crds/quicksightaccount.yaml"),
        include_str!("../../crds/selfupgraderequest.yaml"),
        include_str!("../../crds/selfupgradepolicy.yaml"),
    ];
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        committed.join("---\n")
    );
}

#[test]
fn crd_out_dir_is_created_when_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("new").join("crds");
    let output = Command::new(BIN)
        .args(["crd", "--out-dir"])
        .arg(&out)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(out.join("selfupgradedecision.yaml")).expect("written");
    assert_eq!(written, include_str!("../../crds/selfupgradedecision.yaml"));
}

#[tokio::test]
async fn apiserver_prints_its_url_and_writes_a_working_kubeconfig() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = start_apiserver(&kubeconfig);
    let url = child.first_line().await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text).expect("yaml"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let names: Vec<String> = namespaces
        .list(&Default::default())
        .await
        .expect("listed over TLS with the token")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, ["default"]);
}

#[tokio::test]
async fn run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut apiserver = start_apiserver(&kubeconfig);
    apiserver.first_line().await;
    let mut operator = Command::new(BIN)
        .args([
            "run",
            "--region",
            REGION,
            "--quicksight-endpoint",
            "http://127.0.0.1:9",
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("operator starts");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        operator.try_wait().expect("status").is_none(),
        "the operator keeps running"
    );
    let sent = Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = operator.try_wait().expect("status") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit within 15s of SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

/// The servers with one PENDING request `id`, and a client of their API server.
async fn servers_with_a_request(id: &str) -> (common::processes::Servers, kube::Client) {
    use common::processes::*;
    let servers = start_servers(&[]);
    admin_send(
        &servers.endpoint,
        "POST",
        "/_sim/requests",
        serde_json::json!({"accountId": common::ACCOUNT, "request": {
            "id": id, "userName": format!("{id}@example.com"),
            "originalRole": "READER", "requestedRole": "AUTHOR",
        }}),
    );
    let client = client(&servers.kubeconfig).await;
    (servers, client)
}

/// Creates `approve-<id>`, an APPROVE of the request `id` in `default`.
async fn approve(
    client: &kube::Client,
    id: &str,
) -> kube::Api<selfupgrade_operator::api::SelfUpgradeDecision> {
    let api = kube::Api::namespaced(client.clone(), "default");
    let decision = common::new_decision(
        &format!("approve-{id}"),
        common::ACCOUNT,
        id,
        selfupgrade_operator::api::Action::Approve,
    );
    api.create(&kube::api::PostParams::default(), &decision)
        .await
        .expect("created");
    api
}

/// Run as installed (no `--allow-unbound-accounts`), the operator refuses a decision for an
/// account no QuickSightAccount binds: every other process test passes the flag, so a flipped
/// default would go unnoticed but for this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_installed_the_operator_refuses_an_unbound_account() {
    use common::processes::*;
    let (servers, client) = servers_with_a_request("unbound").await;
    let _operator = operator_as_installed(&servers.kubeconfig, &servers.endpoint, "AKIDBOUND", &[]);
    let api = approve(&client, "unbound").await;
    let refused = common::wait_for(&api, "approve-unbound", 60, |d| {
        common::is(d, "Stalled", "True", "NotAuthorized")
    })
    .await;
    let status = refused.status.expect("status");
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled");
    let message = &stalled.expect("Stalled").message;
    assert!(
        message.contains("no QuickSightAccount binds AWS account"),
        "{message}"
    );
    assert_eq!(updates_applied(&servers.endpoint), 0, "no call was made");
}

/// `run --dry-run` makes no call that changes QuickSight: the decision says what is due, with
/// no intent written, and one Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_what_it_would_send_and_sends_nothing() {
    use common::processes::*;
    let (servers, kube_client) = servers_with_a_request("dry").await;
    let flags = ["--dry-run"];
    let _operator = operator(&servers.kubeconfig, &servers.endpoint, "AKIDDRYRUN", &flags);
    let api = approve(&kube_client, "dry").await;
    let dry = common::wait_for(&api, "approve-dry", 60, |d| {
        common::is(d, "Ready", "False", "DryRun")
    })
    .await;
    let status = dry.status.expect("status");
    assert!(status.intent.is_none(), "no intent is written");
    let message = &status.conditions[0].message;
    assert!(
        message.contains("APPROVE is due (QuickSight shows the request PENDING)"),
        "{message}"
    );
    assert_eq!(updates_applied(&servers.endpoint), 0, "nothing was sent");
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(kube_client, "default");
    let reasons: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["DryRun"]);
}
