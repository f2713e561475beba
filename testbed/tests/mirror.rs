//! The request mirror (`--mirror-requests`): one read-only `SelfUpgradeRequest` per remote
//! request, created, updated and removed as the requests change, linked to the decision that
//! decides it (and back), written only when something changed — by the operator's
//! ServiceAccount under the RBAC `deploy/overlays/mirror` grants.

mod common;

use common::{ACCOUNT, is, new_decision, request, start_tuned_playground, wait_for};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision, SelfUpgradeRequest};
use selfupgrade_testbed::apiserver::rbac::service_account_user;
use selfupgrade_testbed::playground::{OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, Tuning};
use selfupgrade_testbed::quicksight::{FaultSettings, SimHandle, World};
use std::time::Duration;

/// Polls the mirror until `done` holds for its objects.
async fn mirror_until(
    api: &Api<SelfUpgradeRequest>,
    what: &str,
    done: impl Fn(&[SelfUpgradeRequest]) -> bool,
) -> Vec<SelfUpgradeRequest> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let objects = api.list(&Default::default()).await.expect("list").items;
        if done(&objects) {
            return objects;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {objects:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_of<'a>(objects: &'a [SelfUpgradeRequest], id: &str) -> Option<&'a str> {
    objects
        .iter()
        .find(|o| o.spec.upgrade_request_id == id)
        .and_then(|o| o.status.as_ref()?.request.request_status.as_deref())
}

/// The playground over `world`, mirroring every 300 ms, and a client of its API server.
async fn mirroring_playground(
    world: World,
) -> (
    selfupgrade_testbed::playground::Playground,
    SimHandle,
    kube::Client,
) {
    playground_with(world, mirroring_tuning()).await
}

/// The playground's tuning, mirroring every 300 ms.
fn mirroring_tuning() -> Tuning {
    Tuning {
        mirror_interval: Some(Duration::from_millis(300)),
        ..Tuning::default()
    }
}

/// The playground over `world`, tuned by `tuning`, and a client of its API server.
async fn playground_with(
    world: World,
    tuning: Tuning,
) -> (
    selfupgrade_testbed::playground::Playground,
    SimHandle,
    kube::Client,
) {
    let handle = SimHandle::new(world, FaultSettings::default(), 9);
    let playground = start_tuned_playground(handle.clone(), tuning).await;
    let client = playground.apiserver.client().await.expect("client");
    (playground, handle, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_follows_the_remote_requests_and_links_decisions() {
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = vec![request("r-1"), request("r-2")];
    // Mirrored for `default` only: a decision here links to nothing.
    world.ensure_namespace(ACCOUNT, "analytics").requests = vec![request("r-9")];
    let (playground, handle, client) = mirroring_playground(world).await;
    let mirror: Api<SelfUpgradeRequest> = Api::namespaced(client.clone(), "default");

    let objects = mirror_until(&mirror, "both requests mirrored", |o| o.len() == 2).await;
    assert_eq!(status_of(&objects, "r-1"), Some("PENDING"));
    // How long the oldest has waited (made 2025-11-26, so more than 300 days): the waiting
    // alert's series.
    let exported = playground.metrics.encode();
    let waited: i64 = exported
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "selfupgrade_oldest_pending_request_age_seconds{account=\"111122223333\",quicksight_namespace=\"default\"} ",
            )
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no waiting series: {exported}"));
    assert!(waited > 300 * 86_400, "{waited}");
    let r1 = objects
        .iter()
        .find(|o| o.spec.upgrade_request_id == "r-1")
        .expect("r-1");
    assert_eq!(
        r1.status
            .as_ref()
            .and_then(|s| s.request.user_name.as_deref()),
        Some("r-1@example.com")
    );

    // A decision: the object follows the request and links to the decision, and back.
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve-r1", ACCOUNT, "r-1", Action::Approve),
        )
        .await
        .expect("decision");
    let decided = wait_for(&decisions, "approve-r1", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    let objects = mirror_until(&mirror, "r-1 approved and linked", |o| {
        status_of(o, "r-1") == Some("APPROVED")
            && o.iter().any(|r| {
                r.labels()
                    .get("quicksight.selfupgrade.io/decision")
                    .map(String::as_str)
                    == Some("approve-r1")
            })
    })
    .await;
    let r1 = objects
        .iter()
        .find(|o| o.spec.upgrade_request_id == "r-1")
        .expect("r-1");
    assert_eq!(
        r1.status.as_ref().and_then(|s| s.decision.as_deref()),
        Some("default/approve-r1")
    );
    assert_eq!(
        decided.status.and_then(|s| s.mirrored_as),
        Some(format!("default/{}", kube::ResourceExt::name_any(r1)))
    );

    // A decision in a QuickSight namespace the mirror does not hold names no mirror object.
    let mut elsewhere = new_decision("approve-r9", ACCOUNT, "r-9", Action::Approve);
    elsewhere.spec.quicksight_namespace = "analytics".into();
    decisions
        .create(&PostParams::default(), &elsewhere)
        .await
        .expect("decision");
    let decided = wait_for(&decisions, "approve-r9", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(decided.status.and_then(|s| s.mirrored_as), None);
    assert_eq!(
        mirror
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2,
        "analytics is not mirrored"
    );

    // Unchanged requests are not written again.
    let version = r1.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = mirror
        .get(&kube::ResourceExt::name_any(r1))
        .await
        .expect("r-1");
    assert_eq!(
        again.metadata.resource_version, version,
        "no write without a change"
    );

    // A request that disappears is removed; a new one appears.
    handle
        .remove_request(ACCOUNT, "default", "r-2")
        .expect("removed");
    handle
        .add_request(ACCOUNT, "default", request("r-3"))
        .expect("added");
    let objects = mirror_until(&mirror, "r-2 removed, r-3 added", |o| {
        status_of(o, "r-2").is_none() && status_of(o, "r-3") == Some("PENDING")
    })
    .await;
    assert_eq!(objects.len(), 2);

    // All of it was done as the operator's ServiceAccount, within the shipped grants (the API
    // server refuses anything else with 403).
    let operator = service_account_user(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT);
    let used: Vec<String> = playground
        .apiserver
        .state
        .used_permissions(&operator)
        .iter()
        .map(|p| format!("{} {}", p.verb, p.resource))
        .collect();
    for expected in [
        "patch selfupgradedecisions/status",
        "patch selfupgraderequests",
        "delete selfupgraderequests",
    ] {
        assert!(used.iter().any(|u| u == expected), "{expected}: {used:?}");
    }
    playground.stop().await;
}

/// The writes (create, update, patch) the operator's ServiceAccount has made.
fn operator_writes(playground: &selfupgrade_testbed::playground::Playground) -> u64 {
    let operator = service_account_user(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT);
    let counts = playground.apiserver.state.request_counts();
    ["create", "update", "patch"]
        .iter()
        .filter_map(|verb| counts.get(&operator)?.get(*verb).copied())
        .sum()
}

/// Reconciles of converged decisions, forced every 300 ms, and mirror passes with nothing new
/// make no write at all: every status and mirror object compares at the precision Kubernetes
/// stores, though QuickSight's times carry milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_reconciles_and_mirror_passes_with_nothing_new_make_no_write() {
    let mut world = World::default();
    let ids: Vec<String> = (0..6).map(|i| format!("r-{i}")).collect();
    world.ensure_namespace(ACCOUNT, "default").requests = ids
        .iter()
        .enumerate()
        .map(|(i, id)| selfupgrade_testbed::quicksight::SimRequest {
            created_at_ms: 1_764_115_200_123 + 1_001 * i as i64,
            ..request(id)
        })
        .collect();
    let mut tuning = mirroring_tuning();
    let every = Duration::from_millis(300);
    tuning.timing.final_resync = every;
    tuning.timing.failed_recheck = every;
    tuning.timing.resync = every;
    let (playground, _sim, client) = playground_with(world, tuning).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let actions = [
        Action::Approve,
        Action::Approve,
        Action::Deny,
        Action::Deny,
        Action::Verify,
        Action::Verify,
    ];
    for (id, action) in ids.iter().zip(actions) {
        decisions
            .create(
                &PostParams::default(),
                &new_decision(id, ACCOUNT, id, action),
            )
            .await
            .expect("created");
    }
    for (id, action) in ids.iter().zip(actions) {
        let reason = if action == Action::Verify {
            "VerifyFailed"
        } else {
            "Applied"
        };
        let ready = if action == Action::Verify {
            "False"
        } else {
            "True"
        };
        wait_for(&decisions, id, 30, |d| is(d, "Ready", ready, reason)).await;
    }
    let mirror: Api<SelfUpgradeRequest> = Api::namespaced(client, "default");
    mirror_until(&mirror, "all six mirrored and linked", |o| {
        o.len() == 6
            && o.iter()
                .all(|r| r.status.as_ref().is_some_and(|s| s.decision.is_some()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (writes, reconciled) = (operator_writes(&playground), reconciles(&playground));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let forced = reconciles(&playground) - reconciled;
    assert!(forced >= 6 * 3, "only {forced} reconciles were forced");
    assert_eq!(
        operator_writes(&playground),
        writes,
        "{forced} reconciles and ~10 mirror passes with nothing new wrote"
    );
    playground.stop().await;
}

/// Reconciles the operator has finished, whatever their result.
fn reconciles(playground: &selfupgrade_testbed::playground::Playground) -> u64 {
    playground
        .metrics
        .encode()
        .lines()
        .filter(|line| line.starts_with("selfupgrade_reconciles_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Any decision name (253 characters) and any request id make valid mirror objects and labels
/// (the API server refuses what a real one refuses), and with QuickSight's millisecond times a
/// mirror pass with nothing new writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_names_are_mirrored_and_unchanged_requests_cost_no_write() {
    let mut world = World::default();
    let odd_id = "Odd_ID.with/Slash-And-A-Very-Long-Tail-".repeat(8);
    world.ensure_namespace(ACCOUNT, "default").requests = vec![
        selfupgrade_testbed::quicksight::SimRequest {
            created_at_ms: 1_764_115_200_456,
            ..request("r-1")
        },
        request(&odd_id),
    ];
    let (playground, _sim, client) = mirroring_playground(world).await;
    let mirror: Api<SelfUpgradeRequest> = Api::namespaced(client.clone(), "default");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let long_name = "d".repeat(253);
    decisions
        .create(
            &PostParams::default(),
            &new_decision(&long_name, ACCOUNT, "r-1", Action::Approve),
        )
        .await
        .expect("a 253-character name is valid");
    wait_for(&decisions, &long_name, 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    let linked = format!("default/{long_name}");
    let objects = mirror_until(&mirror, "both mirrored, r-1 linked", |o| {
        o.len() == 2
            && o.iter().any(|r| {
                r.status.as_ref().and_then(|s| s.decision.as_deref()) == Some(linked.as_str())
            })
    })
    .await;
    for object in &objects {
        let name = object.name_any();
        assert!(name.len() <= 253 && !name.ends_with('-'), "{name}");
        for value in object.labels().values() {
            assert!(value.len() <= 63, "{value}");
        }
    }

    // Several mirror passes with nothing new (after the pass that wrote the last of them has
    // finished): no write at all, though the request's times have milliseconds.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = operator_writes(&playground);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator_writes(&playground),
        before,
        "mirror passes with nothing new wrote"
    );
    playground.stop().await;
}
