//! End to end, in one process: the embedded API server, the QuickSight simulator and the real
//! kube-runtime controller. Decisions are created through the Kubernetes API and converge as a
//! user would see them.

mod common;

use common::*;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_testbed::playground::OPERATOR_KEY;
use selfupgrade_testbed::quicksight::{
    FaultSettings, SimHandle, SimStatus, World, generate_requests,
};

fn world(requests: Vec<selfupgrade_testbed::quicksight::SimRequest>) -> SimHandle {
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = requests;
    world.ensure_namespace(OTHER_ACCOUNT, "default");
    sim_handle(world, FaultSettings::default(), 3)
}

/// A revoked or rotated key (or a clock too far off) is refused before QuickSight acts: the
/// decision says so and retries, and converges once the key works again, without an edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_retried_and_not_held_against_the_decision() {
    let handle = world(vec![request("approve-me")]);
    let playground = start_playground(handle.clone()).await;
    handle.revoke_access_key(OPERATOR_KEY.0);
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    api.create(
        &PostParams::default(),
        &new_decision("approve", ACCOUNT, "approve-me", Action::Approve),
    )
    .await
    .expect("created");
    let refused = wait_for(&api, "approve", 30, |d| {
        is(d, "Ready", "False", "UnrecognizedClientException")
    })
    .await;
    // Not a verdict on the decision, and nothing a human must fix in it.
    assert!(is(
        &refused,
        "Stalled",
        "False",
        "UnrecognizedClientException"
    ));
    assert!(is(
        &refused,
        "Reconciling",
        "True",
        "UnrecognizedClientException"
    ));
    assert!(refused.status.and_then(|s| s.rejection).is_none());
    handle.add_access_key(OPERATOR_KEY.0, OPERATOR_KEY.1);
    wait_for(&api, "approve", 60, |d| is(d, "Ready", "True", "Applied")).await;
    let counters = handle.counters();
    assert_eq!(counters.count("UpdateSelfUpgrade", "ok"), 1);
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_converge_to_what_quicksight_shows() {
    let mut in_group = request("verify-ok");
    in_group.in_required_group = true;
    let handle = world(vec![
        request("approve-me"),
        request("deny-me"),
        request("verify-me"),
        in_group,
    ]);
    let playground = start_playground(handle.clone()).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    let post = PostParams::default();
    for (name, id, action) in [
        ("approve", "approve-me", Action::Approve),
        ("deny", "deny-me", Action::Deny),
        ("verify-missing-group", "verify-me", Action::Verify),
        ("verify-in-group", "verify-ok", Action::Verify),
        ("unknown", "no-such-request", Action::Approve),
    ] {
        api.create(&post, &new_decision(name, ACCOUNT, id, action))
            .await
            .expect("created");
    }

    let approved = wait_for(&api, "approve", 30, |d| is(d, "Ready", "True", "Applied")).await;
    assert_eq!(
        approved
            .status
            .as_ref()
            .and_then(|s| s.request.request_status.as_deref()),
        Some("APPROVED")
    );
    let denied = wait_for(&api, "deny", 30, |d| is(d, "Ready", "True", "Applied")).await;
    assert_eq!(
        denied
            .status
            .as_ref()
            .and_then(|s| s.request.request_status.as_deref()),
        Some("DENIED")
    );
    let failed = wait_for(&api, "verify-missing-group", 30, |d| {
        is(d, "Ready", "False", "VerifyFailed")
    })
    .await;
    assert_eq!(
        condition(&failed, "Reconciling").map(|c| c.0).as_deref(),
        Some("True")
    );
    let status = failed.status.expect("status");
    assert_eq!(
        status.request.request_status.as_deref(),
        Some("VERIFY_FAILED")
    );
    assert!(status.request.last_update_failure_reason.is_some());
    wait_for(&api, "verify-in-group", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    wait_for(&api, "unknown", 30, |d| {
        is(d, "Stalled", "True", "RequestNotFound")
    })
    .await;

    // One update each; the failed VERIFY may have been retried meanwhile, each retry counted.
    for id in ["approve-me", "deny-me", "verify-ok"] {
        assert_eq!(
            handle
                .request(ACCOUNT, "default", id)
                .expect("exists")
                .updates_applied,
            1,
            "{id}"
        );
    }
    let verify = api.get("verify-missing-group").await.expect("exists");
    let attempts = verify.status.and_then(|s| s.attempts).expect("attempts");
    let sent = handle
        .request(ACCOUNT, "default", "verify-me")
        .expect("exists")
        .updates_applied;
    assert!(
        sent as i64 >= 1 && sent as i64 <= attempts,
        "{sent} sent, {attempts} attempts recorded"
    );
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_action_bumps_the_generation_and_is_acted_on() {
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    api.create(
        &PostParams::default(),
        &new_decision("carol", ACCOUNT, "req-1", Action::Verify),
    )
    .await
    .expect("created");
    wait_for(&api, "carol", 30, |d| {
        is(d, "Ready", "False", "VerifyFailed")
    })
    .await;

    let patch = serde_json::json!({"spec": {"action": "DENY"}});
    let patched = api
        .patch("carol", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched");
    assert_eq!(patched.metadata.generation, Some(2));
    let denied = wait_for(&api, "carol", 30, |d| is(d, "Ready", "True", "Applied")).await;
    let status = denied.status.expect("status");
    assert_eq!(status.request.request_status.as_deref(), Some("DENIED"));
    assert_eq!(status.applied_action, Some(Action::Deny));
    assert_eq!(status.applied_generation, Some(2));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        handle
            .request(ACCOUNT, "default", "req-1")
            .expect("exists")
            .status,
        SimStatus::Denied
    );
    assert_eq!(handle.counters().count("UpdateSelfUpgrade", "ok"), 2);
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_decisions_in_two_accounts_make_exactly_two_hundred_updates() {
    let now = 1_764_115_200_000;
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = generate_requests(100, 1, now);
    world.ensure_namespace(OTHER_ACCOUNT, "default").requests = generate_requests(100, 2, now);
    let ids: Vec<(String, String)> = world
        .namespaces
        .iter()
        .flat_map(|((account, _), ns)| {
            ns.requests
                .iter()
                .map(move |r| (account.clone(), r.id.clone()))
        })
        .collect();
    let handle = sim_handle(world, FaultSettings::default(), 5);
    let playground = start_playground(handle.clone()).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    for (index, (account, id)) in ids.iter().enumerate() {
        let decision = new_decision(&format!("d{index:03}"), account, id, Action::Approve);
        api.create(&PostParams::default(), &decision)
            .await
            .expect("created");
    }
    for index in 0..ids.len() {
        wait_for(&api, &format!("d{index:03}"), 120, |d| {
            is(d, "Ready", "True", "Applied")
        })
        .await;
    }
    let counters = handle.counters();
    assert_eq!(
        counters.count("UpdateSelfUpgrade", "ok"),
        200,
        "{counters:?}"
    );
    assert_eq!(
        counters.total("UpdateSelfUpgrade"),
        200,
        "no failed or duplicate updates: {counters:?}"
    );
    let pages = counters.count("ListSelfUpgrades", "ok");
    println!("200 decisions: 200 updates, {pages} listing pages");

    // The operator's metrics tell the same story as the simulator's counters.
    let sample = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let text = loop {
        // The decision gauges are recounted every few seconds.
        let text = playground.metrics.encode();
        let ready = "selfupgrade_decisions_by_condition{condition=\"Ready\",status=\"True\",reason=\"Applied\"}";
        if sample(&text, ready) == Some(200.0) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let expectations = [
        (
            "selfupgrade_quicksight_calls_total{operation=\"UpdateSelfUpgrade\",outcome=\"ok\"}",
            200.0,
        ),
        (
            "selfupgrade_quicksight_calls_total{operation=\"ListSelfUpgrades\",outcome=\"ok\"}",
            pages as f64,
        ),
        (
            "selfupgrade_quicksight_call_duration_seconds_count{operation=\"UpdateSelfUpgrade\"}",
            200.0,
        ),
        (
            "selfupgrade_decisions_by_request_status{request_status=\"APPROVED\"}",
            200.0,
        ),
        (
            "selfupgrade_decisions_by_condition{condition=\"Ready\",status=\"True\",reason=\"Applied\"}",
            200.0,
        ),
        ("selfupgrade_retry_queue_depth", 0.0),
        ("selfupgrade_leader", 1.0),
    ];
    for (series, expected) in expectations {
        assert_eq!(
            sample(&text, series),
            Some(expected),
            "{series} in:\n{text}"
        );
    }
    let satisfied =
        sample(&text, "selfupgrade_reconciles_total{result=\"satisfied\"}").unwrap_or(0.0);
    assert!(satisfied >= 200.0, "{text}");
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_decision_for_the_same_request_stalls_as_a_conflict_without_a_call() {
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let team_a: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    team_a
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");
    wait_for(&team_a, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    // Created a second later: strictly younger, whatever the clock's resolution.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    team_a
        .create(
            &PostParams::default(),
            &new_decision("deny", ACCOUNT, "req-1", Action::Deny),
        )
        .await
        .expect("created");
    let loser = wait_for(&team_a, "deny", 30, |d| {
        is(d, "Stalled", "True", "Conflict")
    })
    .await;
    let message = loser.status.expect("status").conditions[2].message.clone();
    // The winner is in the loser's own namespace: named.
    assert!(
        message.starts_with("SelfUpgradeDecision approve is older"),
        "{message}"
    );
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 1);
    assert_eq!(
        handle
            .request(ACCOUNT, "default", "req-1")
            .expect("exists")
            .status,
        SimStatus::Approved
    );
    playground.stop().await;
}

/// The decision that lost a request to an older one is reconciled as soon as the older one is
/// deleted, not at its next re-check (set to ten minutes here): it then reports the request as
/// the older one left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_a_conflict_decides_as_soon_as_the_winner_is_deleted() {
    let handle = world(vec![request("req-1")]);
    let tuning = selfupgrade_testbed::playground::Tuning {
        timing: selfupgrade_operator::context::Timing {
            not_found_recheck: std::time::Duration::from_secs(600),
            ..selfupgrade_testbed::playground::playground_timing()
        },
        ..Default::default()
    };
    let playground = start_tuned_playground(handle.clone(), tuning).await;
    let client = playground.apiserver.client().await.expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let create = |name: &'static str, action| {
        let decisions = decisions.clone();
        async move {
            let decision = new_decision(name, ACCOUNT, "req-1", action);
            decisions
                .create(&PostParams::default(), &decision)
                .await
                .expect("created");
        }
    };
    create("approve", Action::Approve).await;
    wait_for(&decisions, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    // Created a second later: strictly younger, whatever the clock's resolution.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    create("deny", Action::Deny).await;
    wait_for(&decisions, "deny", 30, |d| {
        is(d, "Stalled", "True", "Conflict")
    })
    .await;
    decisions
        .delete("approve", &Default::default())
        .await
        .expect("deleted");
    wait_for(&decisions, "deny", 30, |d| {
        is(d, "Stalled", "True", "AlreadyDecided")
    })
    .await;
    assert_eq!(
        handle.counters().total("UpdateSelfUpgrade"),
        1,
        "the DENY was never sent"
    );
    playground.stop().await;
}

/// Creates a VERIFY decision for a user not in the group yet and waits until it failed.
async fn create_and_see_verify_fail(
    api: &Api<SelfUpgradeDecision>,
    decision: &SelfUpgradeDecision,
) {
    api.create(&PostParams::default(), decision)
        .await
        .expect("created");
    wait_for(api, &decision.name_any(), 30, |d| {
        is(d, "Ready", "False", "VerifyFailed")
    })
    .await;
}

fn with_retry(mut decision: SelfUpgradeDecision, max_attempts: u32) -> SelfUpgradeDecision {
    decision.spec.retry = Some(selfupgrade_operator::api::RetryPolicy {
        max_attempts: Some(max_attempts),
        backoff: Some("1s".into()),
        backoff_cap: Some("2s".into()),
    });
    decision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verify_is_retried_and_succeeds_once_the_user_joins_the_group() {
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    let decision = with_retry(new_decision("carol", ACCOUNT, "req-1", Action::Verify), 20);
    create_and_see_verify_fail(&api, &decision).await;

    // Another pipeline adds carol to the group; a retry completes the upgrade.
    handle
        .set_group_membership(ACCOUNT, "default", "req-1", true)
        .expect("exists");
    let done = wait_for(&api, "carol", 60, |d| is(d, "Ready", "True", "Applied")).await;
    let attempts = done
        .status
        .as_ref()
        .and_then(|s| s.attempts)
        .expect("attempts");
    assert!(attempts >= 2, "{attempts}");
    let request = handle.request(ACCOUNT, "default", "req-1").expect("exists");
    assert_eq!(request.status, SimStatus::Approved);
    assert_eq!(
        i64::from(request.updates_applied),
        attempts,
        "every attempt is one call"
    );
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_as_stalled_retries_exhausted() {
    let mut failing = request("req-1");
    failing.fail_next_updates = 100;
    let handle = world(vec![failing]);
    let playground = start_playground(handle.clone()).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    let decision = with_retry(new_decision("alice", ACCOUNT, "req-1", Action::Approve), 3);
    api.create(&PostParams::default(), &decision)
        .await
        .expect("created");
    let stalled = wait_for(&api, "alice", 60, |d| {
        is(d, "Stalled", "True", "RetriesExhausted")
    })
    .await;
    let status = stalled.status.expect("status");
    assert_eq!(status.attempts, Some(3));
    assert!(
        status.conditions[2].message.contains("3 attempts"),
        "{}",
        status.conditions[2].message
    );
    assert_eq!(
        handle
            .request(ACCOUNT, "default", "req-1")
            .expect("exists")
            .updates_applied,
        3
    );
    playground.stop().await;
}

/// The Events published about one decision, as (type, reason).
async fn events_about(client: kube::Client, name: &str) -> Vec<(String, String)> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
    let mut about: Vec<_> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    about.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    about
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_outside_the_cluster_is_followed_not_overwritten() {
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    // VERIFY fails (carol is not in the group yet); the retry is an hour away.
    let mut decision = new_decision("carol", ACCOUNT, "req-1", Action::Verify);
    decision.spec.retry = Some(selfupgrade_operator::api::RetryPolicy {
        max_attempts: Some(5),
        backoff: Some("1h".into()),
        backoff_cap: None,
    });
    create_and_see_verify_fail(&api, &decision).await;

    // Meanwhile an admin denies the request in the QuickSight console.
    handle
        .set_status(ACCOUNT, "default", "req-1", SimStatus::Denied)
        .expect("exists");
    let followed = wait_for(&api, "carol", 60, |d| {
        is(d, "Stalled", "True", "AlreadyDecided")
    })
    .await;
    let status = followed.status.expect("status");
    assert_eq!(status.request.request_status.as_deref(), Some("DENIED"));
    let request = handle.request(ACCOUNT, "default", "req-1").expect("exists");
    assert_eq!(request.status, SimStatus::Denied, "never overwritten");
    assert_eq!(request.updates_applied, 1, "only the first VERIFY was sent");
    // The Event follows the status write that made the transition: wait for it, then make sure
    // no other came with it.
    let expected = [
        ("Warning".to_string(), "VerifyFailed".to_string()),
        ("Warning".to_string(), "AlreadyDecided".to_string()),
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = events_about(client.clone(), "carol").await;
    while seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = events_about(client.clone(), "carol").await;
    }
    assert_eq!(seen, expected, "one Event per transition");
    playground.stop().await;
}

/// A reconcile's last status write never overwrites a status another writer stored while its
/// call was out (a second replica's fresh intent, say): it is conditional on the intent this
/// reconcile wrote, and the 409 leaves the other writer's status in place for the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_never_overwrites_a_status_written_while_the_call_was_out() {
    use selfupgrade_operator::reconcile;
    use selfupgrade_testbed::apiserver::{ApiServerConfig, RunningApiServer};
    use selfupgrade_testbed::quicksight::RunningSim;
    use std::sync::Arc;
    use std::time::Duration;

    let handle = world(vec![request("approve-me")]);
    let sim = RunningSim::start(0, handle.clone()).await.expect("sim");
    let apiserver = RunningApiServer::start(ApiServerConfig {
        ..ApiServerConfig::default()
    })
    .await
    .expect("API server");
    let client = apiserver.client().await.expect("client");
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "approve-me", Action::Approve),
        )
        .await
        .expect("created");
    let ctx = operator_context(client.clone(), &sim);
    handle.hold_updates(ACCOUNT, "default", "approve-me");
    let reconciling = tokio::spawn(reconcile::reconcile(Arc::new(created), ctx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handle.held_calls(ACCOUNT, "default", "approve-me") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The intent is written and the call is out: another writer stores a status now.
    let meanwhile = serde_json::json!({"status": {"lastAwsRequestId": "written-meanwhile"}});
    api.patch_status(
        "approve",
        &PatchParams::default(),
        &Patch::Merge(&meanwhile),
    )
    .await
    .expect("written");
    handle.release_updates(ACCOUNT, "default", "approve-me");

    let outcome = reconciling.await.expect("joined");
    assert!(
        outcome.as_ref().is_err_and(reconcile::Error::is_conflict),
        "{outcome:?}"
    );
    let stored = api.get_status("approve").await.expect("read");
    assert_eq!(
        stored.status.and_then(|s| s.last_aws_request_id).as_deref(),
        Some("written-meanwhile")
    );
    assert_eq!(handle.counters().count("UpdateSelfUpgrade", "ok"), 1);
}

/// A tenant does not choose where the operator's credentials go: decisions naming regions the
/// operator does not admit (other regions, other partitions) are refused before any call, so
/// none of them adds a client, a pacing bucket or a listing; the admitted region still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_naming_regions_that_are_not_admitted_make_no_call() {
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let regions = [
        "eu-west-1",
        "ap-south-1",
        "sa-east-1",
        "me-central-1",
        "cn-north-1",
        "us-gov-west-1",
        "us-iso-east-1",
        "eusc-de-east-1",
    ];
    for (index, region) in regions.iter().enumerate() {
        let mut decision = new_decision(
            &format!("elsewhere-{index}"),
            ACCOUNT,
            "req-1",
            Action::Deny,
        );
        decision.spec.region = Some(region.to_string());
        decisions
            .create(&PostParams::default(), &decision)
            .await
            .expect("created");
    }
    for (index, region) in regions.iter().enumerate() {
        let refused = wait_for(&decisions, &format!("elsewhere-{index}"), 30, |d| {
            is(d, "Stalled", "True", "NotAuthorized")
        })
        .await;
        let status = refused.status.expect("status");
        let message = &status.conditions[0].message;
        assert!(
            message.contains(&format!("region \"{region}\"")),
            "{message}"
        );
    }
    let counters = handle.counters();
    assert_eq!(counters.total("UpdateSelfUpgrade"), 0);
    // The operator's own region is admitted: the same request is decided there, by a decision
    // strictly younger than the refused ones (creation times have whole seconds), which may
    // not block it: they cannot act.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");
    wait_for(&decisions, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 1);
    // The cache kept listings of the admitted region only (the gauge is recounted every 5 s).
    let kept = "selfupgrade_listing_scopes{region=\"us-east-1\"}";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !playground.metrics.encode().contains(kept) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kept} never exported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let exported = playground.metrics.encode();
    let regions: Vec<&str> = exported
        .lines()
        .filter(|line| line.starts_with("selfupgrade_listing_scopes{"))
        .collect();
    assert_eq!(regions.len(), 1, "{regions:?}");
    playground.stop().await;
}

/// The pause switch: a decision annotated `quicksight.selfupgrade.io/paused: "true"`, or one
/// whose account's binding is, makes no call and says so (none of the three conditions True);
/// removing the annotation resumes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_decision_or_binding_makes_no_call_until_resumed() {
    use selfupgrade_operator::api::{QuickSightAccount, QuickSightAccountSpec};
    use selfupgrade_operator::pause::PAUSED_ANNOTATION;
    let handle = world(vec![request("req-1"), request("req-2")]);
    let playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let paused = |d: &SelfUpgradeDecision| {
        ["Ready", "Reconciling", "Stalled"]
            .iter()
            .all(|type_| is(d, type_, "False", "Paused"))
    };
    let annotate = |value: Option<&str>| serde_json::json!({"metadata": {"annotations": {PAUSED_ANNOTATION: value}}});
    let mut first = new_decision("approve-1", ACCOUNT, "req-1", Action::Approve);
    first.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    decisions
        .create(&PostParams::default(), &first)
        .await
        .expect("created");
    wait_for(&decisions, "approve-1", 30, paused).await;
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 0);
    // Resumed: the next reconcile comes from the annotation's change, not a re-check.
    decisions
        .patch(
            "approve-1",
            &PatchParams::default(),
            &Patch::Merge(&annotate(None)),
        )
        .await
        .expect("resumed");
    wait_for(&decisions, "approve-1", 10, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;

    // A binding annotated paused pauses every decision it admits.
    let mut binding = QuickSightAccount::new(
        "paused-account",
        QuickSightAccountSpec {
            account_id: ACCOUNT.into(),
            namespaces: vec!["default".into()],
            ..Default::default()
        },
    );
    binding.metadata.annotations =
        Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
    let bindings: Api<QuickSightAccount> = Api::all(client.clone());
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve-2", ACCOUNT, "req-2", Action::Approve),
        )
        .await
        .expect("created");
    let held = wait_for(&decisions, "approve-2", 30, paused).await;
    let message = &held.status.expect("status").conditions[0].message;
    assert!(message.contains("QuickSightAccount is paused"), "{message}");
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 1);
    bindings
        .patch(
            "paused-account",
            &PatchParams::default(),
            &Patch::Merge(&annotate(None)),
        )
        .await
        .expect("resumed");
    wait_for(&decisions, "approve-2", 10, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 2);
    playground.stop().await;
}

/// What `/metrics` serves in the text format passes Prometheus' own linter (`promtool check
/// metrics`) after decisions converged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_pass_promtool() {
    use std::io::Write;
    let handle = world(vec![request("req-1")]);
    let playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");
    wait_for(&decisions, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    let exposition = playground.metrics.encode_text();
    playground.stop().await;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "promtool is required (REQUIRE_PROMTOOL=1) but does not run: {error}"
            );
            eprintln!("skipped: promtool is not available ({error})");
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(exposition.as_bytes()).expect("written");
    drop(stdin);
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
