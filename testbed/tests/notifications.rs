//! Notifications (`run --notify-url-file`), tried from outside against a webhook receiver in
//! this test: the operator and both servers are processes of the real binary, so that a
//! restart is a real one and the record of what was notified has to survive it in the API
//! server.

mod common;

use common::processes::*;
use common::webhook::{TOKEN, start_receiver};
use common::{is, new_decision, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::{Action, RetryPolicy, SelfUpgradeDecision};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ACCOUNT: &str = "111122223333";
const RECORD: &str = "selfupgrade-operator-notified";

/// Adds a PENDING request with a note to the simulator; `in_group`: whether VERIFY can
/// complete it.
fn add_request(endpoint: &str, id: &str, in_group: bool) {
    let mut request = pending_request(id, in_group);
    request["note"] = json!("quarterly dashboards");
    add_pending_request(endpoint, ACCOUNT, request);
}

/// The operator, notifying `url_file`'s webhook, listing every second.
fn notifying_operator(servers: &Servers, key: &str, url_file: &tempfile::NamedTempFile) -> Process {
    let url_file = url_file.path().to_str().expect("utf-8");
    operator(
        &servers.kubeconfig,
        &servers.endpoint,
        key,
        &[
            "--notify-url-file",
            url_file,
            "--notify-interval",
            "1s",
            "--notify-account",
            ACCOUNT,
            "--listing-ttl",
            "1s",
        ],
    )
}

fn request_ids(bodies: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for body in bodies {
        *ids.entry(body["requestId"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    ids
}

/// The operator's log so far.
fn log_of(process: &Process) -> String {
    let log = process.1.as_ref().expect("a logged process");
    std::fs::read_to_string(log.path()).expect("the log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_request_is_notified_once_across_a_restart_and_failures_are_retried() {
    let servers = start_servers(&[]);
    add_request(&servers.endpoint, "r-1", true);
    add_request(&servers.endpoint, "r-2", true);
    let (received, url_file) = start_receiver(2).await;
    let first = notifying_operator(&servers, "AKIDNOTIFY1", &url_file);
    let bodies = received
        .until("NewRequest", 2, Duration::from_secs(60))
        .await;
    assert_eq!(
        received.refused.load(Ordering::SeqCst),
        2,
        "the 500s were retried"
    );
    assert_eq!(
        request_ids(&bodies),
        BTreeMap::from([("r-1".into(), 1), ("r-2".into(), 1)])
    );

    // The record is written once the queue is empty: then a restart notifies nothing again.
    let client = client(&servers.kubeconfig).await;
    until_recorded(&client, "\"r-1\"").await;
    until_recorded(&client, "\"r-2\"").await;
    // Listings that show nothing new notify nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(received.accepted().len(), 2, "{:#?}", received.accepted());
    let first_log = log_of(&first);
    drop(first); // SIGKILL

    add_request(&servers.endpoint, "r-3", true);
    let second = notifying_operator(&servers, "AKIDNOTIFY2", &url_file);
    received
        .until("NewRequest", 3, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bodies = received.accepted();
    assert_eq!(
        request_ids(&bodies),
        BTreeMap::from([("r-1".into(), 1), ("r-2".into(), 1), ("r-3".into(), 1)]),
        "one notification per request across the restart"
    );
    assert!(
        first_log.contains("notification not delivered"),
        "the failures are logged"
    );
    for log in [first_log, log_of(&second)] {
        assert!(!log.contains(TOKEN), "the URL is never logged:\n{log}");
    }
    assert_new_request_body(&bodies[0]);
}

/// What a notification of a new request says, as an admin's chat and a receiving script read it.
fn assert_new_request_body(body: &Value) {
    let id = body["requestId"].as_str().expect("requestId");
    assert_eq!(body["account"], ACCOUNT);
    assert_eq!(body["quicksightNamespace"], "default");
    assert_eq!(body["user"], format!("{id}@example.com"));
    assert_eq!(body["roles"], json!({"from": "READER", "to": "AUTHOR"}));
    assert_eq!(body["note"], "quarterly dashboards");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains(id) && text.contains("READER → AUTHOR"),
        "{text}"
    );
    let manifest: SelfUpgradeDecision =
        serde_yaml::from_str(body["manifest"].as_str().expect("manifest")).expect("a decision");
    assert_eq!(manifest.spec.upgrade_request_id, id);
    assert_eq!(manifest.spec.action, Action::Approve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_whose_retries_run_out_is_notified_once() {
    let servers = start_servers(&[]);
    add_request(&servers.endpoint, "not-in-group", false);
    let (received, url_file) = start_receiver(0).await;
    let first = notifying_operator(&servers, "AKIDNOTIFY3", &url_file);
    let client = client(&servers.kubeconfig).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let mut decision = new_decision("verify-it", ACCOUNT, "not-in-group", Action::Verify);
    decision.spec.retry = Some(RetryPolicy {
        max_attempts: Some(1),
        ..RetryPolicy::default()
    });
    decisions
        .create(&PostParams::default(), &decision)
        .await
        .expect("create");
    wait_for(&decisions, "verify-it", 30, |d| {
        is(d, "Stalled", "True", "RetriesExhausted")
    })
    .await;
    let bodies = received
        .until("RetriesExhausted", 1, Duration::from_secs(60))
        .await;
    assert_eq!(bodies[0]["namespace"], "default");
    assert_eq!(bodies[0]["name"], "verify-it");
    assert_eq!(bodies[0]["requestStatus"], "VERIFY_FAILED");
    assert_eq!(bodies[0]["attempts"], 1);
    until_recorded(&client, "RetriesExhausted").await;
    // A new operator reconciles every decision at start, this one included: not again.
    drop(first);
    let second = notifying_operator(&servers, "AKIDNOTIFY4", &url_file);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_of(&second).contains("notifications: record read") {
        assert!(Instant::now() < deadline, "{}", log_of(&second));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(received.of_kind("RetriesExhausted").len(), 1);
}

/// Waits until the record in the API server holds `what`.
async fn until_recorded(client: &kube::Client, what: &str) {
    let records: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = records.get_opt(RECORD).await.expect("get");
        let data = record.and_then(|r| r.data).unwrap_or_default();
        let text = data.get("notified.json").cloned().unwrap_or_default();
        if text.contains(what) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not in the record: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
