//! boto3 and the AWS CLI, unmodified, against the simulator: the simulator speaks the wire
//! protocol that AWS's own clients speak. Skipped with a printed reason where the clients are
//! not installed, unless REQUIRE_AWS_CLIENTS=1 (as in CI), where their absence fails the test.

mod common;

use common::*;
use selfupgrade_testbed::quicksight::SimStatus;
use serde_json::Value;
use std::process::Command;

fn available(program: &str, args: &[&str]) -> bool {
    let present = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var("REQUIRE_AWS_CLIENTS").as_deref() != Ok("1"),
            "{program} is required (REQUIRE_AWS_CLIENTS=1) but not installed"
        );
        eprintln!("skipped: `{program} {}` is not available", args.join(" "));
    }
    present
}

/// The key pair tests/clients/boto3_client.py signs with.
const BOTO3_KEY: (&str, &str) = ("AKIDBOTO3", "boto3-secret");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_lists_updates_and_sees_errors_like_from_aws() {
    if !available("python3", &["-c", "import boto3"]) {
        return;
    }
    let requests = (0..250).map(|i| request(&format!("req-{i:03}"))).collect();
    let sim = start_sim(requests).await;
    sim.handle.add_access_key(BOTO3_KEY.0, BOTO3_KEY.1);
    sim.handle
        .set_auto_approval_delay(std::time::Duration::from_millis(500));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/boto3_client.py");
    let endpoint = sim.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script, &endpoint, ACCOUNT])
            .output()
    })
    .await
    .expect("joined")
    .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");

    assert_eq!(seen["listed"], 250);
    assert_eq!(seen["distinct"], 250);
    assert_eq!(seen["pages"], 3);
    assert_eq!(seen["approvedStatus"], "APPROVED");
    assert_eq!(seen["approvedCreationTime"], 1_764_115_200_000i64);
    assert_eq!(
        seen["approveAgain"],
        serde_json::json!(["PreconditionNotMetException", 400])
    );
    assert_eq!(
        seen["unknownId"],
        serde_json::json!(["ResourceNotFoundException", 404])
    );
    assert_eq!(
        seen["badToken"],
        serde_json::json!(["InvalidNextTokenException", 400])
    );
    assert_eq!(seen["configuration"], "AUTO_APPROVAL");
    assert_eq!(
        seen["badMode"],
        serde_json::json!(["InvalidParameterValueException", 400])
    );
    assert_eq!(
        seen["noNamespace"],
        serde_json::json!(["ResourceNotFoundException", 404])
    );
    assert_eq!(
        seen["autoApproved"],
        serde_json::json!(["APPROVED", true]),
        "approved by QuickSight itself, with its attempt time"
    );
    // botocore's own signer, with one part of the signature wrong each time.
    let refused = serde_json::json!(["InvalidSignatureException", 403]);
    for wrong in ["wrongSecret", "wrongRegion", "wrongService", "staleDate"] {
        assert_eq!(seen["refused"][wrong], refused, "{wrong}");
    }
    assert_eq!(
        sim.handle
            .request(ACCOUNT, "default", "req-000")
            .expect("exists")
            .status,
        SimStatus::Approved
    );
    // 3 pages, 3 updates, the forged token, the configuration write and read, the refused
    // write and read, and the page after the auto-approval.
    assert_eq!(
        sim.handle.counters().access_keys.get("AKIDBOTO3"),
        Some(&12)
    );
}

/// `aws quicksight <args>` against `endpoint` with the test's key, off the async runtime; its
/// JSON output (the test fails with its stderr when it fails).
async fn aws_cli(endpoint: &str, args: &[&str]) -> Value {
    let mut command = Command::new("aws");
    command
        .args([
            "quicksight",
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
        ])
        .args(["--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDCLI")
        .env("AWS_SECRET_ACCESS_KEY", "cli-secret")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("aws runs");
    assert!(
        output.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Some commands (update-self-upgrade-configuration) print nothing but their request id.
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_lists_approves_and_switches_the_mode_through_an_endpoint_override() {
    if !available("aws", &["--version"]) {
        return;
    }
    let requests = (0..120).map(|i| request(&format!("req-{i:03}"))).collect();
    let sim = start_sim(requests).await;
    sim.handle.add_access_key("AKIDCLI", "cli-secret");
    let endpoint = sim.endpoint();
    let namespace = ["--aws-account-id", ACCOUNT, "--namespace", "default"];
    let with = |command: &str, extra: &[&str]| {
        let mut args = vec![command];
        args.extend(namespace);
        args.extend(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let endpoint = endpoint.clone();
        async move {
            aws_cli(
                &endpoint,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await
        }
    };

    let listed = run(with("list-self-upgrades", &[])).await;
    // botocore defines no paginator for this operation: the CLI shows one page and the token.
    assert_eq!(
        listed["SelfUpgradeRequestDetails"].as_array().map(Vec::len),
        Some(100)
    );
    let token = listed["NextToken"].as_str().expect("a next token");
    let next_page = ["--next-token", token, "--max-results", "100"];
    let rest = run(with("list-self-upgrades", &next_page)).await;
    assert_eq!(
        rest["SelfUpgradeRequestDetails"].as_array().map(Vec::len),
        Some(20)
    );
    assert!(rest.get("NextToken").is_none());

    let approve = ["--upgrade-request-id", "req-007", "--action", "APPROVE"];
    let approved = run(with("update-self-upgrade", &approve)).await;
    assert_eq!(
        approved["SelfUpgradeRequestDetail"]["RequestStatus"],
        "APPROVED"
    );

    let auto = ["--self-upgrade-status", "AUTO_APPROVAL"];
    run(with("update-self-upgrade-configuration", &auto)).await;
    let read = run(with("describe-self-upgrade-configuration", &[])).await;
    assert_eq!(
        read["SelfUpgradeConfiguration"]["SelfUpgradeStatus"],
        "AUTO_APPROVAL"
    );
    assert_eq!(
        sim.handle.approval_mode(ACCOUNT, "default").ok().as_deref(),
        Some("AUTO_APPROVAL")
    );

    assert_eq!(
        sim.handle
            .request(ACCOUNT, "default", "req-007")
            .expect("exists")
            .status,
        SimStatus::Approved
    );
}
