//! The inbox CLI (`requests list|decide`) against the simulator: pagination over 250 requests,
//! every output format parses, and the generated YAML is accepted by the API server.

mod common;

use common::processes::BIN;
use common::{ACCESS_KEY, ACCOUNT, REGION, SECRET, request, start_sim};
use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::SelfUpgradeDecision;
use selfupgrade_testbed::apiserver::{ApiServerConfig, RunningApiServer};
use selfupgrade_testbed::quicksight::{RunningSim, SimRequest, SimStatus};
use serde::Deserialize;
use std::process::{Command, Output};

fn requests(sim: &RunningSim, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("requests")
        .args(args)
        .args(["--account", ACCOUNT, "--region", REGION])
        .args(["--quicksight-endpoint", &sim.endpoint()])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// `requests list -o json|yaml`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    approval_mode: Option<String>,
    approval_mode_error: Option<String>,
    requests: Vec<serde_json::Value>,
}

/// The mode above the table and in `-o json`, and `requests mode`, follow the console's switch;
/// without the permission to read it, `list` still lists and says why the mode is unknown,
/// while `mode` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_shows_the_approval_mode_the_console_set() {
    let sim = start_sim(vec![request("r-1")]).await;
    let mode = stdout(&requests(&sim, &["mode"]));
    assert!(mode.starts_with("approval mode: ADMIN_APPROVAL"), "{mode}");
    sim.handle
        .set_approval_mode(ACCOUNT, "default", "AUTO_APPROVAL")
        .expect("switched");
    let mode = stdout(&requests(&sim, &["mode"]));
    assert!(mode.starts_with("approval mode: AUTO_APPROVAL"), "{mode}");
    let table = stdout(&requests(&sim, &["list"]));
    assert!(table.starts_with("approval mode: AUTO_APPROVAL"), "{table}");

    sim.handle
        .force_error("DescribeSelfUpgradeConfiguration", "AccessDeniedException");
    let listing: Listing =
        serde_json::from_str(&stdout(&requests(&sim, &["list", "-o", "json"]))).expect("json");
    assert_eq!(listing.approval_mode, None);
    let error = listing.approval_mode_error.expect("why");
    assert!(error.contains("AccessDeniedException"), "{error}");
    assert_eq!(
        listing.requests.len(),
        1,
        "the requests are listed all the same"
    );
    sim.handle
        .force_error("DescribeSelfUpgradeConfiguration", "AccessDeniedException");
    let refused = requests(&sim, &["mode"]);
    assert!(!refused.status.success(), "mode fails when it cannot read");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("AccessDeniedException"), "{stderr}");
    sim.stop().await;
}

/// `requests evaluate` runs a policy file against the live requests, without a cluster, and
/// refuses a file whose rules do not compile, naming the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_prints_what_a_policy_file_would_decide() {
    let reader_pro = SimRequest {
        requested_role: "READER_PRO".into(),
        ..request("r-pro")
    };
    let sim = start_sim(vec![reader_pro, request("r-author")]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    let example = include_str!("../../examples/policies/routine-upgrades.yaml");
    std::fs::write(&path, example).expect("written");
    let policy = path.to_str().expect("utf-8");
    let evaluate = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "requests", "evaluate", "--policy", policy, "--region", REGION,
            ])
            .args(["--quicksight-endpoint", &sim.endpoint()])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("runs")
    };
    // The fixture's requests are a year old: the stale rule closes the one no earlier rule takes.
    let table = stdout(&evaluate(&[]));
    assert!(
        table.starts_with("2 of 2 requests would be decided"),
        "{table}"
    );
    let row = |id: &str| {
        let row = table.lines().find(|l| l.starts_with(id)).expect("a row");
        row.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("r-pro")[5..], ["reader-pro-for-everyone", "APPROVE"]);
    assert_eq!(row("r-author")[5..], ["close-stale-requests", "DENY"]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&evaluate(&["-o", "json"]))).expect("json");
    assert_eq!(json["matched"], 2);
    assert_eq!(json["rules"][1]["matched"], 0, "{json}");

    let broken = example.replace("olderThan: 30d", "olderThan: 30d\n      noteMatches: \"(\"");
    std::fs::write(&path, broken).expect("written");
    let refused = evaluate(&[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("rule \"close-stale-requests\": noteMatches"),
        "{stderr}"
    );
    sim.stop().await;
}

async fn sim_with_250_requests() -> RunningSim {
    let sim = start_sim((0..250).map(|i| request(&format!("req-{i:03}"))).collect()).await;
    for i in 0..50 {
        sim.handle
            .set_status(
                ACCOUNT,
                "default",
                &format!("req-{i:03}"),
                SimStatus::Denied,
            )
            .expect("decided");
    }
    sim
}

/// The listing changed under the inbox (QuickSight refuses its next-token): it starts again
/// from the first page, as the operator's listing does, instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_starts_again_when_the_next_token_is_refused() {
    let sim = sim_with_250_requests().await;
    sim.handle
        .force_error("ListSelfUpgrades", "InvalidNextTokenException");
    let json: Listing =
        serde_json::from_str(&stdout(&requests(&sim, &["list", "-o", "json"]))).expect("json");
    assert_eq!(json.requests.len(), 250, "every request, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_every_request_in_every_format() {
    let sim = sim_with_250_requests().await;

    let listing: Listing =
        serde_json::from_str(&stdout(&requests(&sim, &["list", "-o", "json"]))).expect("json");
    assert_eq!(listing.approval_mode.as_deref(), Some("ADMIN_APPROVAL"));
    let json = listing.requests;
    assert_eq!(json.len(), 250, "all three pages");
    let mut ids: Vec<&str> = json
        .iter()
        .filter_map(|r| r["upgradeRequestId"].as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    assert_eq!(json[0]["userName"], "req-000@example.com");

    let yaml: Listing = serde_yaml::from_str(&stdout(&requests(
        &sim,
        &["list", "-o", "yaml", "--status", "DENIED"],
    )))
    .expect("yaml");
    assert_eq!(yaml.requests.len(), 50);
    assert!(yaml.requests.iter().all(|r| r["requestStatus"] == "DENIED"));

    let table = stdout(&requests(&sim, &["list", "--status", "pending"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        202,
        "the approval mode, a header and 200 pending requests"
    );
    assert!(
        lines[0].starts_with("approval mode: ADMIN_APPROVAL"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("ID"), "{}", lines[1]);
    assert!(
        lines[2].contains("READER → AUTHOR") && lines[2].ends_with("PENDING"),
        "{}",
        lines[2]
    );
    // Three listings of three pages each, and the mode read once per listing.
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 9);
    assert_eq!(
        sim.handle
            .counters()
            .count("DescribeSelfUpgradeConfiguration", "ok"),
        3
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_prints_yaml_the_api_server_accepts() {
    let sim = sim_with_250_requests().await;
    let apiserver = RunningApiServer::start(ApiServerConfig::default())
        .await
        .expect("API server starts");
    let api: Api<SelfUpgradeDecision> =
        Api::namespaced(apiserver.client().await.expect("client"), "default");

    let text = stdout(&requests(
        &sim,
        &[
            "decide",
            "--all-pending",
            "--action",
            "APPROVE",
            "--namespace",
            "default",
        ],
    ));
    let mut created = 0;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let decision = SelfUpgradeDecision::deserialize(document).expect("a decision");
        assert!(
            decision
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("quicksight.selfupgrade.io/user"))
        );
        api.create(&PostParams::default(), &decision)
            .await
            .unwrap_or_else(|e| panic!("{:?} refused: {e}", decision.metadata.name));
        created += 1;
    }
    assert_eq!(
        created, 200,
        "one decision per pending request, names unique"
    );

    // Named ids, written one file each.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8");
    stdout(&requests(
        &sim,
        &[
            "decide",
            "req-007",
            "req-249",
            "--action",
            "deny",
            "--out-dir",
            out,
        ],
    ));
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["deny-req-007-req007.yaml", "deny-req-249-req249.yaml"]
    );

    // Names never collide and no file of another decision is overwritten: two requests of one
    // user whose ids share their first 8 characters, and a file already holding another
    // request's decision under the name req-008's would get, are told apart by a hash of the id.
    for id in ["5c1e7a52-aaaa", "5c1e7a52-bbbb"] {
        sim.handle
            .add_request(
                ACCOUNT,
                "default",
                SimRequest::pending(id, "dana@example.com", 1_764_115_200_000),
            )
            .expect("added");
    }
    let foreign = dir.path().join("deny-req-008-req008.yaml");
    std::fs::write(&foreign, "kept: true\n").expect("written");
    stdout(&requests(
        &sim,
        &[
            "decide",
            "5c1e7a52-aaaa",
            "5c1e7a52-bbbb",
            "req-008",
            "req-007",
            "--action",
            "deny",
            "--out-dir",
            out,
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(&foreign).expect("kept"),
        "kept: true\n"
    );
    let mut decided: Vec<(String, String)> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let decision: SelfUpgradeDecision =
                serde_yaml::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some((
                decision.spec.upgrade_request_id,
                path.file_name()?.to_str()?.to_string(),
            ))
        })
        .collect();
    decided.sort();
    assert_eq!(decided.len(), 5, "{decided:?}");
    let file_of = |id: &str| {
        decided
            .iter()
            .find(|(decided_id, _)| decided_id == id)
            .map(|(_, file)| file.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        file_of("req-007"),
        "deny-req-007-req007.yaml",
        "same request, same file"
    );
    for id in ["5c1e7a52-aaaa", "5c1e7a52-bbbb", "req-008"] {
        assert!(
            file_of(id).len() > "deny-req-008-req008.yaml".len(),
            "{id} gets a longer name: {decided:?}"
        );
    }
    assert_ne!(file_of("5c1e7a52-aaaa"), file_of("5c1e7a52-bbbb"));

    // An unknown id is an error naming it, and nothing is printed.
    let unknown = requests(&sim, &["decide", "req-007", "nope", "--action", "APPROVE"]);
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no such request") && stderr.contains("nope"),
        "{stderr}"
    );

    sim.stop().await;
    apiserver.stop().await;
}
