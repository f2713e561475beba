//! The real `aws-sdk-quicksight` client against the simulator over HTTP: the wire format, the
//! operations, and how every error class reaches the operator.

mod common;

use common::*;
use selfupgrade_operator::api::Action;
use selfupgrade_operator::quicksight::{
    ErrorClass, Paced, PacingSettings, RequestDirectory, RequestStatus, Scope, SdkQuickSight,
    SdkSettings, SelfUpgradeApi,
};
use selfupgrade_testbed::quicksight::{EpochUnit, FaultSettings, RunningSim, World};
use std::sync::Arc;
use std::time::Duration;

fn scope(account: &str) -> Scope {
    Scope {
        account_id: account.into(),
        region: REGION.into(),
        namespace: "default".into(),
        credentials: Default::default(),
    }
}

#[tokio::test]
async fn listing_pages_through_250_requests_with_next_token() {
    let requests = (0..250).map(|i| request(&format!("req-{i:03}"))).collect();
    let sim = start_sim(requests).await;
    let directory = RequestDirectory::new(Arc::new(quicksight(&sim)), Duration::from_secs(60));

    let last = directory
        .find(&scope(ACCOUNT), "req-249")
        .await
        .expect("listed");
    assert_eq!(last.map(|d| d.request_status), Some(RequestStatus::Pending));
    let first = directory
        .find(&scope(ACCOUNT), "req-000")
        .await
        .expect("cached");
    assert!(first.is_some());
    let missing = directory
        .find(&scope(ACCOUNT), "req-999")
        .await
        .expect("listed");
    assert_eq!(missing, None);

    // 250 requests = 3 pages for the first listing; req-000 came from the cache; the miss
    // listed once more, since the cache was older than the question.
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 6);
    assert_eq!(sim.handle.counters().access_keys.get(ACCESS_KEY), Some(&6));
}

/// The SDK retries no page itself (its retries would bypass the pacer, and a throttled page
/// would not pause the account); the directory asks for the failed page again, through the
/// pacer, without starting the listing over.
#[tokio::test]
async fn a_throttled_page_is_one_sdk_call_and_is_asked_for_again_through_the_pacer() {
    let requests = (0..250).map(|i| request(&format!("req-{i:03}"))).collect();
    let sim = start_sim(requests).await;
    let qs = Arc::new(quicksight(&sim));
    sim.handle
        .force_error("ListSelfUpgrades", "ThrottlingException");
    let error = qs
        .list_page(&scope(ACCOUNT), None)
        .await
        .expect_err("throttled");
    assert_eq!(error.class, ErrorClass::Throttled);
    assert_eq!(sim.handle.counters().total("ListSelfUpgrades"), 1);

    let paced = Paced::new(
        qs,
        PacingSettings {
            rate_per_second: 100.0,
            burst: 10,
            concurrency: 4,
            throttle_pause: Duration::from_millis(100),
            throttle_pause_cap: Duration::from_secs(1),
        },
    )
    .expect("settings");
    let directory = RequestDirectory::new(Arc::new(paced), Duration::from_secs(60));
    sim.handle
        .force_error("ListSelfUpgrades", "ThrottlingException");
    let listed = directory.list(&scope(ACCOUNT)).await.expect("listed");
    assert_eq!(listed.len(), 250);
    let counters = sim.handle.counters();
    assert_eq!(counters.count("ListSelfUpgrades", "ThrottlingException"), 2);
    // Three pages, none fetched twice.
    assert_eq!(counters.count("ListSelfUpgrades", "ok"), 3);
}

#[tokio::test]
async fn the_request_detail_crosses_the_wire_intact_in_either_epoch_unit() {
    for unit in [EpochUnit::Milliseconds, EpochUnit::Seconds] {
        let mut world = World {
            epoch_unit: unit,
            ..World::default()
        };
        world.ensure_namespace(ACCOUNT, "default").requests = vec![request("r-1")];
        let sim = RunningSim::start(0, sim_handle(world, FaultSettings::default(), 1))
            .await
            .expect("starts");
        let page = quicksight(&sim)
            .list_page(&scope(ACCOUNT), None)
            .await
            .expect("listed");
        let detail = &page.requests[0];
        assert_eq!(detail.upgrade_request_id, "r-1");
        assert_eq!(detail.user_name.as_deref(), Some("r-1@example.com"));
        assert_eq!(detail.original_role.as_deref(), Some("READER"));
        assert_eq!(detail.requested_role.as_deref(), Some("AUTHOR"));
        assert_eq!(detail.request_note.as_deref(), Some("needs dashboards"));
        assert_eq!(
            detail.creation_time.map(|t| t.to_string()).as_deref(),
            Some("2025-11-26T00:00:00Z"),
            "{unit:?}"
        );
        assert_eq!(page.next_token, None);
    }
}

#[tokio::test]
async fn each_action_moves_the_request_as_quicksight_does() {
    let mut needs_group = request("verify-me");
    needs_group.in_required_group = false;
    let mut in_group = request("verify-ok");
    in_group.in_required_group = true;
    let sim = start_sim(vec![
        request("approve-me"),
        request("deny-me"),
        needs_group,
        in_group,
    ])
    .await;
    let qs = quicksight(&sim);
    let account = scope(ACCOUNT);

    let approved = qs
        .update(&account, "approve-me", Action::Approve, soon())
        .await
        .expect("approve");
    assert_eq!(approved.detail.request_status, RequestStatus::Approved);
    assert!(approved.aws_request_id.is_some());
    assert!(approved.detail.last_update_attempt_time.is_some());

    let denied = qs
        .update(&account, "deny-me", Action::Deny, soon())
        .await
        .expect("deny");
    assert_eq!(denied.detail.request_status, RequestStatus::Denied);

    let failed = qs
        .update(&account, "verify-me", Action::Verify, soon())
        .await
        .expect("verify");
    assert_eq!(failed.detail.request_status, RequestStatus::VerifyFailed);
    assert!(failed.detail.last_update_failure_reason.is_some());
    sim.handle
        .set_group_membership(ACCOUNT, "default", "verify-me", true)
        .expect("exists");
    let verified = qs
        .update(&account, "verify-me", Action::Verify, soon())
        .await
        .expect("verify again");
    assert_eq!(verified.detail.request_status, RequestStatus::Approved);

    let ok = qs
        .update(&account, "verify-ok", Action::Verify, soon())
        .await
        .expect("verify");
    assert_eq!(ok.detail.request_status, RequestStatus::Approved);

    assert_eq!(sim.handle.counters().count("UpdateSelfUpgrade", "ok"), 5);
}

#[tokio::test]
async fn every_error_class_reaches_the_operator_with_its_category() {
    let sim = start_sim(vec![request("r-1")]).await;
    let qs = quicksight(&sim);
    let account = scope(ACCOUNT);
    let cases = [
        ("ThrottlingException", ErrorClass::Throttled),
        ("InternalFailureException", ErrorClass::Retryable),
        ("ResourceUnavailableException", ErrorClass::Retryable),
        ("AccessDeniedException", ErrorClass::Terminal),
        ("InvalidParameterValueException", ErrorClass::Terminal),
        ("PreconditionNotMetException", ErrorClass::Terminal),
        ("ResourceNotFoundException", ErrorClass::Terminal),
        ("LimitExceededException", ErrorClass::Terminal),
    ];
    for (code, class) in cases {
        sim.handle.force_error("UpdateSelfUpgrade", code);
        let error = qs
            .update(&account, "r-1", Action::Approve, soon())
            .await
            .expect_err(code);
        assert_eq!(error.code, code);
        assert_eq!(error.class, class, "{code}");
        assert!(
            error.aws_request_id.is_some(),
            "{code} carries the request id"
        );
    }
    // Updates are never retried inside the SDK: one call per attempt, even for retryable errors.
    assert_eq!(
        sim.handle.counters().total("UpdateSelfUpgrade"),
        cases.len() as u64
    );
    assert_eq!(
        sim.handle
            .request(ACCOUNT, "default", "r-1")
            .expect("exists")
            .updates_applied,
        0
    );
}

#[tokio::test]
async fn real_validation_errors_come_from_the_simulator_not_from_forcing() {
    let sim = start_sim(vec![request("r-1")]).await;
    let qs = quicksight(&sim);

    let unknown_id = qs
        .update(&scope(ACCOUNT), "nope", Action::Approve, soon())
        .await
        .expect_err("unknown id");
    assert_eq!(unknown_id.code, "ResourceNotFoundException");

    let bad_account = qs
        .list_page(&scope("12345"), None)
        .await
        .expect_err("bad account");
    assert_eq!(bad_account.code, "InvalidParameterValueException");
    assert_eq!(bad_account.class, ErrorClass::Terminal);

    let bad_token = qs
        .list_page(&scope(ACCOUNT), Some("forged"))
        .await
        .expect_err("bad token");
    assert_eq!(bad_token.code, "InvalidNextTokenException");

    qs.update(&scope(ACCOUNT), "r-1", Action::Deny, soon())
        .await
        .expect("deny");
    let twice = qs
        .update(&scope(ACCOUNT), "r-1", Action::Approve, soon())
        .await
        .expect_err("decided");
    assert_eq!(twice.code, "PreconditionNotMetException");
}

#[tokio::test]
async fn unsigned_calls_are_refused_as_aws_refuses_them() {
    let sim = start_sim(vec![request("r-1")]).await;
    let (status, raw) = unsigned_get(&sim).await;
    assert_eq!(status, 403);
    assert!(
        raw.to_ascii_lowercase()
            .contains("x-amzn-errortype: missingauthenticationtokenexception"),
        "{raw}"
    );
    assert_eq!(
        sim.handle
            .counters()
            .count("ListSelfUpgrades", "MissingAuthenticationTokenException"),
        1
    );
    // The same call, signed by the SDK, succeeds.
    let signed = sdk_client(&sim)
        .list_self_upgrades()
        .aws_account_id(ACCOUNT)
        .namespace("default")
        .send()
        .await
        .expect("signed call succeeds");
    assert_eq!(signed.self_upgrade_request_details().len(), 1);
}

/// The SDK signing with one thing wrong: each is refused as AWS refuses it, and the adapter
/// classifies it as refused credentials (no effect, retried), not as a verdict.
#[tokio::test]
async fn signatures_with_a_wrong_secret_region_or_clock_are_refused() {
    use aws_sdk_quicksight::config::{Credentials, Region, retry::RetryConfig};
    use aws_smithy_async::time::{SharedTimeSource, StaticTimeSource};
    let sim = start_sim(vec![request("r-1")]).await;
    let ten_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    let base = || {
        aws_sdk_quicksight::config::Builder::from(&sdk_config())
            .endpoint_url(sim.endpoint())
            .retry_config(RetryConfig::disabled())
    };
    let cases = [
        (
            "wrong secret",
            base().credentials_provider(Credentials::new(ACCESS_KEY, "wrong", None, None, "t")),
            "InvalidSignatureException",
        ),
        (
            "unknown key",
            base().credentials_provider(Credentials::new("AKIDNOBODY", SECRET, None, None, "t")),
            "UnrecognizedClientException",
        ),
        (
            "region not served",
            base().region(Region::new("eu-west-1")),
            "InvalidSignatureException",
        ),
        (
            "clock ten minutes behind",
            base().time_source(SharedTimeSource::new(StaticTimeSource::new(
                ten_minutes_ago,
            ))),
            "InvalidSignatureException",
        ),
    ];
    for (case, config, expected) in cases {
        let error = aws_sdk_quicksight::Client::from_conf(config.build())
            .list_self_upgrades()
            .aws_account_id(ACCOUNT)
            .namespace("default")
            .send()
            .await
            .expect_err(case);
        use aws_sdk_quicksight::error::ProvideErrorMetadata;
        assert_eq!(error.code(), Some(expected), "{case}");
    }
    let refused = quicksight_with_secret(&sim, "wrong")
        .list_page(&scope(ACCOUNT), None)
        .await
        .expect_err("refused");
    assert_eq!(refused.class, ErrorClass::Unauthenticated);
    assert!(refused.took_no_effect() && refused.is_retryable());
}

/// The production adapter signing with the fixture key but `secret`.
fn quicksight_with_secret(sim: &RunningSim, secret: &str) -> SdkQuickSight {
    use aws_sdk_quicksight::config::{Credentials, SharedCredentialsProvider};
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, secret, None, None, "tests",
        )))
        .build();
    SdkQuickSight::new(
        config,
        SdkSettings {
            endpoint_url: Some(sim.endpoint()),
            sts_endpoint_url: None,
            call_timeout: Duration::from_secs(5),
        },
    )
}

/// A plain HTTP GET without an Authorization header.
async fn unsigned_get(sim: &RunningSim) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /accounts/{ACCOUNT}/namespaces/default/self-upgrade-requests HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        sim.addr
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[tokio::test]
async fn self_upgrade_configuration_reads_and_writes() {
    let sim = start_sim(vec![]).await;
    let client = sdk_client(&sim);
    let read = client
        .describe_self_upgrade_configuration()
        .aws_account_id(ACCOUNT)
        .namespace("default")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        read.self_upgrade_configuration()
            .and_then(|c| c.self_upgrade_status())
            .map(|s| s.as_str()),
        Some("ADMIN_APPROVAL")
    );
    client
        .update_self_upgrade_configuration()
        .aws_account_id(ACCOUNT)
        .namespace("default")
        .self_upgrade_status(aws_sdk_quicksight::types::SelfUpgradeStatus::AutoApproval)
        .send()
        .await
        .expect("update");
    let read = client
        .describe_self_upgrade_configuration()
        .aws_account_id(ACCOUNT)
        .namespace("default")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        read.self_upgrade_configuration()
            .and_then(|c| c.self_upgrade_status())
            .map(|s| s.as_str()),
        Some("AUTO_APPROVAL")
    );
}

#[tokio::test]
async fn an_update_refreshes_the_cached_entry_without_listing_again() {
    let sim = start_sim(vec![request("a"), request("b")]).await;
    let directory = RequestDirectory::new(Arc::new(quicksight(&sim)), Duration::from_secs(60));
    let account = scope(ACCOUNT);
    directory.find(&account, "a").await.expect("listed");
    directory
        .update(&account, "a", Action::Approve, soon())
        .await
        .expect("approved");
    let a = directory
        .find(&account, "a")
        .await
        .expect("cached")
        .expect("present");
    assert_eq!(a.request_status, RequestStatus::Approved);
    directory.find(&account, "b").await.expect("cached");
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 1);

    // A failed update leaves the request's state unknown: the next read lists again.
    sim.handle
        .force_error("UpdateSelfUpgrade", "InternalFailureException");
    directory
        .update(&account, "b", Action::Deny, soon())
        .await
        .expect_err("forced failure");
    directory.find(&account, "b").await.expect("listed again");
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 2);

    // A throttled update was refused before it could take effect: the cache stays valid.
    sim.handle
        .force_error("UpdateSelfUpgrade", "ThrottlingException");
    directory
        .update(&account, "b", Action::Deny, soon())
        .await
        .expect_err("forced throttling");
    directory.find(&account, "b").await.expect("cached");
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 2);

    // A fresh read never comes from a listing fetched before it was asked.
    directory.find_fresh(&account, "b").await.expect("listed");
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 3);
    directory.find(&account, "b").await.expect("cached");
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 3);
}

#[tokio::test]
async fn concurrent_lookups_in_one_account_share_one_listing() {
    let requests: Vec<_> = (0..150).map(|i| request(&format!("r{i}"))).collect();
    let sim = start_sim(requests).await;
    let directory = Arc::new(RequestDirectory::new(
        Arc::new(quicksight(&sim)),
        Duration::from_secs(60),
    ));
    let lookups = (0..50).map(|i| {
        let directory = directory.clone();
        tokio::spawn(async move { directory.find(&scope(ACCOUNT), &format!("r{i}")).await })
    });
    for lookup in futures::future::join_all(lookups).await {
        assert!(lookup.expect("joined").expect("found").is_some());
    }
    // One listing of two pages, however many lookups asked at once.
    assert_eq!(sim.handle.counters().count("ListSelfUpgrades", "ok"), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_dispatch_failure() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let qs = selfupgrade_operator::quicksight::SdkQuickSight::new(
        sdk_config(),
        selfupgrade_operator::quicksight::SdkSettings {
            endpoint_url: Some(endpoint),
            sts_endpoint_url: None,
            call_timeout: Duration::from_secs(10),
        },
    );
    let error = qs
        .update(&scope(ACCOUNT), "r-1", Action::Approve, soon())
        .await
        .expect_err("refused");
    assert_eq!(error.code, "DispatchFailure");
    assert_eq!(error.class, ErrorClass::Retryable);
}

#[tokio::test]
async fn a_call_slower_than_the_timeout_is_a_retryable_timeout() {
    let sim = start_sim(vec![request("r-1")]).await;
    sim.handle.set_faults(FaultSettings {
        latency_ms: 2_000,
        ..FaultSettings::default()
    });
    let qs = selfupgrade_operator::quicksight::SdkQuickSight::new(
        sdk_config(),
        selfupgrade_operator::quicksight::SdkSettings {
            endpoint_url: Some(sim.endpoint()),
            sts_endpoint_url: None,
            call_timeout: Duration::from_millis(200),
        },
    );
    let error = qs
        .update(&scope(ACCOUNT), "r-1", Action::Approve, soon())
        .await
        .expect_err("too slow");
    assert_eq!(error.code, "TimeoutError");
    assert_eq!(error.class, ErrorClass::Retryable);
}

#[tokio::test]
async fn assumed_role_credentials_are_refreshed_before_they_expire() {
    // Sessions live 12 s; the SDK's identity cache renews credentials ahead of expiry, so a
    // client used for longer than one session never signs with an expired one.
    const ROLE: &str = "arn:aws:iam::111122223333:role/quicksight-approver";
    let sim = start_sim(vec![request("r-1")]).await;
    let operator = "arn:aws:iam::999999999999:role/selfupgrade-operator".to_string();
    sim.handle
        .set_iam(selfupgrade_testbed::quicksight::IamSettings {
            enforce: true,
            access_keys: [(ACCESS_KEY.to_string(), operator.clone())].into(),
            roles: [(
                ROLE.to_string(),
                selfupgrade_testbed::quicksight::RoleTrust {
                    trusted: vec![operator],
                    external_id: None,
                },
            )]
            .into(),
            session_seconds: Some(12),
        });
    let qs = quicksight(&sim);
    let mut assumed = scope(ACCOUNT);
    assumed.credentials = selfupgrade_operator::quicksight::Credentials::AssumeRole(
        selfupgrade_operator::quicksight::AssumeRole {
            role_arn: ROLE.into(),
            external_id: None,
            session_name: "refresh-test".into(),
        },
    );
    let started = std::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(16) {
        qs.list_page(&assumed, None)
            .await
            .unwrap_or_else(|e| panic!("call {calls} after {:?}: {e}", started.elapsed()));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counters = sim.handle.counters();
    assert_eq!(
        counters.count("ListSelfUpgrades", "ExpiredTokenException"),
        0
    );
    assert!(
        counters.count("AssumeRole", "ok") >= 2,
        "one session cannot cover 16 s: {:?}",
        counters.calls
    );
    // The operator's own key only ever called STS, never QuickSight.
    assert_eq!(
        counters.principals.keys().collect::<Vec<_>>(),
        ["arn:aws:sts::111122223333:assumed-role/quicksight-approver/refresh-test"]
    );
    println!(
        "{calls} calls over {:?}, {} AssumeRole",
        started.elapsed(),
        counters.count("AssumeRole", "ok")
    );
}
