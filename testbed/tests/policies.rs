//! `SelfUpgradePolicy` end to end in the playground. In dry run the status shows what the
//! rules would decide for the PENDING requests nobody decided yet, follows new requests, and
//! decides nothing. In Enforce it creates one decision per match, within its brake, which the
//! usual path sends once each; a person's decision wins over one it created that has not
//! acted; deleting it removes what has not acted and keeps what has. A rule that cannot be
//! compiled, or a namespace the account is not bound to, makes the policy Stalled with the
//! reason, and it creates nothing.

mod common;

use common::{ACCOUNT, OTHER_ACCOUNT, is, new_decision, sim_handle, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use selfupgrade_operator::api::{
    Action, POLICY_FINALIZER, POLICY_LABEL, PolicyMatch, PolicyMode, QuickSightAccount,
    QuickSightAccountSpec, SelfUpgradeDecision, SelfUpgradePolicy,
};
use selfupgrade_operator::policy_plan::{decision_for_match, decision_name};
use selfupgrade_operator::quicksight::{RequestDetail, RequestStatus};
use selfupgrade_testbed::playground::{Playground, Tuning, playground_timing};
use selfupgrade_testbed::quicksight::{FaultSettings, ForcedError, SimRequest, World};
use std::time::Duration;

const ROUTINE: &str = include_str!("../../examples/policies/routine-upgrades.yaml");

/// A request made a day ago.
fn recent(id: &str, user: &str, from: &str, to: &str) -> SimRequest {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    SimRequest {
        original_role: from.into(),
        requested_role: to.into(),
        ..SimRequest::pending(id, user, now_ms - 86_400_000)
    }
}

/// A playground whose operator evaluates policies every `interval` (and when they change).
async fn playground(requests: Vec<SimRequest>, interval: Duration) -> (Playground, Client) {
    playground_with_faults(requests, interval, FaultSettings::default()).await
}

async fn playground_with_faults(
    requests: Vec<SimRequest>,
    interval: Duration,
    faults: FaultSettings,
) -> (Playground, Client) {
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = requests;
    world.ensure_namespace(OTHER_ACCOUNT, "default").requests =
        vec![recent("o-1", "olga@example.com", "READER", "READER_PRO")];
    let tuning = Tuning {
        timing: selfupgrade_operator::context::Timing {
            policy_interval: interval,
            ..playground_timing()
        },
        ..Tuning::default()
    };
    let handle = sim_handle(world, faults, 5);
    let playground = common::start_tuned_playground(handle, tuning).await;
    let client = playground.apiserver.client().await.expect("client");
    (playground, client)
}

/// A person denies `r-decided` (dan's) before any policy looks, and it is applied.
async fn deny_dan(decisions: &Api<SelfUpgradeDecision>) {
    let person = new_decision("deny-dan", ACCOUNT, "r-decided", Action::Deny);
    decisions
        .create(&PostParams::default(), &person)
        .await
        .expect("created");
    wait_for(decisions, "deny-dan", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
}

async fn create_policy(client: &Client, policy: &SelfUpgradePolicy) {
    Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), policy)
        .await
        .expect("policy created");
}

/// Polls the policy `name` until `done` holds.
async fn wait_for_policy(
    client: &Client,
    name: &str,
    done: impl Fn(&SelfUpgradePolicy) -> bool,
) -> SelfUpgradePolicy {
    let api = Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default");
    common::wait_for_object(&api, name, done).await
}

fn condition(policy: &SelfUpgradePolicy, type_: &str) -> Option<(String, String, String)> {
    let c = policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_policy_shows_what_it_would_decide_and_decides_nothing() {
    let (playground, client) = playground(
        vec![
            recent("r-reader", "bob@example.com", "READER", "READER_PRO"),
            recent("r-admin", "eve@example.com", "READER", "ADMIN"),
            recent(
                "r-author",
                "alice@analytics.example.com",
                "READER",
                "AUTHOR",
            ),
            recent("r-decided", "dan@example.com", "READER", "READER_PRO"),
        ],
        Duration::from_secs(1),
    )
    .await;
    // A person decided one request already: the policy leaves it alone.
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    deny_dan(&decisions).await;

    let policy: SelfUpgradePolicy = serde_yaml::from_str(ROUTINE).expect("example parses");
    create_policy(&client, &policy).await;
    let evaluated = wait_for_policy(&client, "routine-upgrades", |p| {
        p.status.as_ref().and_then(|s| s.matched) == Some(2)
    })
    .await;
    let status = evaluated.status.clone().expect("status");
    let would: Vec<(&str, &str, Action)> = status
        .would_decide
        .iter()
        .map(|m| (m.upgrade_request_id.as_str(), m.rule.as_str(), m.action))
        .collect();
    assert!(
        would.contains(&("r-reader", "reader-pro-for-everyone", Action::Approve)),
        "{would:?}"
    );
    assert!(
        would.contains(&("r-author", "authors-for-analytics", Action::Approve)),
        "{would:?}"
    );
    let counts: Vec<(&str, i64)> = status
        .rules
        .iter()
        .map(|c| (c.rule.as_str(), c.matched))
        .collect();
    assert_eq!(
        counts,
        [
            ("reader-pro-for-everyone", 1),
            ("authors-for-analytics", 1),
            ("close-stale-requests", 0)
        ]
    );
    let (ready, reason, message) = condition(&evaluated, "Ready").expect("Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("True", "Evaluated"));
    assert!(message.starts_with("dry run"), "{message}");
    assert!(status.last_evaluated.is_some());

    // A new request is seen at the next evaluation.
    playground
        .quicksight
        .handle
        .add_request(
            ACCOUNT,
            "default",
            recent("r-new", "nia@example.com", "READER", "READER_PRO"),
        )
        .expect("added");
    wait_for_policy(&client, "routine-upgrades", |p| {
        p.status.as_ref().and_then(|s| s.matched) == Some(3)
    })
    .await;
    // Nothing was decided: the person's decision is the only one, its call the only update.
    let all = decisions.list(&ListParams::default()).await.expect("list");
    assert_eq!(all.items.len(), 1);
    let updates = playground
        .quicksight
        .handle
        .counters()
        .total("UpdateSelfUpgrade");
    assert_eq!(updates, 1);
    let series = "selfupgrade_policy_matches{namespace=\"default\",policy=\"routine-upgrades\",rule=\"reader-pro-for-everyone\"} 2";
    assert!(playground.metrics.encode().contains(series), "{series}");
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_cannot_be_evaluated_is_stalled_with_the_reason_and_lists_nothing() {
    // Evaluated only when something changes: the re-binding below must trigger it.
    let requests = vec![recent("r-1", "bob@example.com", "READER", "AUTHOR")];
    let (playground, client) = playground(requests, Duration::from_secs(600)).await;
    let mut broken: SelfUpgradePolicy = serde_yaml::from_str(ROUTINE).expect("example parses");
    broken.metadata.name = Some("broken".into());
    broken.spec.rules[1].note_matches = Some("(unclosed".into());
    create_policy(&client, &broken).await;
    let stalled = wait_for_policy(&client, "broken", |p| condition(p, "Stalled").is_some()).await;
    let (value, reason, message) = condition(&stalled, "Stalled").expect("Stalled");
    assert_eq!((value.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(
        message.contains("rule \"authors-for-analytics\": noteMatches"),
        "{message}"
    );
    assert!(stalled.status.expect("status").would_decide.is_empty());

    // OTHER_ACCOUNT is bound, to another namespace: a policy here may not read its requests.
    let binding = QuickSightAccount::new(
        "other",
        QuickSightAccountSpec {
            account_id: OTHER_ACCOUNT.into(),
            namespaces: vec!["team-b".into()],
            ..Default::default()
        },
    );
    Api::<QuickSightAccount>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");
    let mut foreign: SelfUpgradePolicy = serde_yaml::from_str(ROUTINE).expect("example parses");
    foreign.metadata.name = Some("foreign".into());
    foreign.spec.aws_account_id = OTHER_ACCOUNT.into();
    foreign.spec.mode = PolicyMode::Enforce;
    create_policy(&client, &foreign).await;
    let refused = wait_for_policy(&client, "foreign", |p| condition(p, "Stalled").is_some()).await;
    let (value, reason, _) = condition(&refused, "Stalled").expect("Stalled");
    assert_eq!((value.as_str(), reason.as_str()), ("True", "NotAuthorized"));
    let listed_other = playground
        .quicksight
        .handle
        .call_log()
        .iter()
        .filter(|call| call.account == OTHER_ACCOUNT)
        .count();
    assert_eq!(
        listed_other, 0,
        "no call into an account the namespace is not bound to"
    );
    assert!(created_by(&client, "foreign").await.is_empty());

    // The cluster admin admits the namespace: the policy is evaluated at once.
    let admitted = serde_json::json!({"spec": {"namespaces": ["team-b", "default"]}});
    Api::<QuickSightAccount>::all(client.clone())
        .patch(
            "other",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&admitted),
        )
        .await
        .expect("re-bound");
    let evaluated = wait_for_policy(&client, "foreign", |p| {
        condition(p, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        evaluated.status.and_then(|s| s.created_last_hour),
        Some(1),
        "olga's READER_PRO"
    );
    let created = created_by(&client, "foreign").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].spec.upgrade_request_id, "o-1");
    playground.stop().await;
}

/// The example policy in `Enforce`, with the brake at `limit`.
fn enforced(limit: u32) -> SelfUpgradePolicy {
    let mut policy: SelfUpgradePolicy = serde_yaml::from_str(ROUTINE).expect("example parses");
    policy.spec.mode = PolicyMode::Enforce;
    policy.spec.max_decisions_per_hour = limit;
    policy.spec.decision_labels = [("team".to_string(), "bi".to_string())].into();
    policy
}

/// The decisions in `default` the policy `name` created.
async fn created_by(client: &Client, name: &str) -> Vec<SelfUpgradeDecision> {
    Api::<SelfUpgradeDecision>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("{POLICY_LABEL}={name}")))
        .await
        .expect("list")
        .items
}

/// The reasons and notes of the Events about the policy `name`.
async fn policy_events(client: &Client, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("SelfUpgradePolicy")
        })
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

fn updates_of(playground: &Playground, id: &str) -> u32 {
    playground
        .quicksight
        .handle
        .request(ACCOUNT, "default", id)
        .expect("known request")
        .updates_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_policy_creates_one_decision_per_match_within_its_brake() {
    let readers = ["r-1", "r-2", "r-3"];
    let mut requests: Vec<SimRequest> = readers
        .iter()
        .map(|id| recent(id, &format!("{id}@example.com"), "READER", "READER_PRO"))
        .collect();
    requests.push(recent("r-admin", "eve@example.com", "READER", "ADMIN"));
    requests.push(recent(
        "r-decided",
        "dan@example.com",
        "READER",
        "READER_PRO",
    ));
    let (playground, client) = playground(requests, Duration::from_secs(1)).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    deny_dan(&decisions).await;

    create_policy(&client, &enforced(2)).await;
    let held = wait_for_policy(&client, "routine-upgrades", |p| {
        p.status.as_ref().and_then(|s| s.held_back) == Some(1)
    })
    .await;
    assert_eq!(
        held.status.as_ref().and_then(|s| s.created_last_hour),
        Some(2)
    );
    let (ready, reason, message) = condition(&held, "Ready").expect("Ready");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "BrakeHolding"),
        "{message}"
    );
    assert!(held.finalizers().contains(&POLICY_FINALIZER.to_string()));
    let created = created_by(&client, "routine-upgrades").await;
    assert_eq!(created.len(), 2, "the brake lets two through");
    for decision in &created {
        let id = decision.spec.upgrade_request_id.as_str();
        assert!(readers.contains(&id), "{id}");
        assert_eq!(decision.name_any(), decision_name(ACCOUNT, "default", id));
        assert_eq!(decision.spec.action, Action::Approve);
        assert_eq!(decision.labels()["team"], "bi");
        let owner = &decision.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("SelfUpgradePolicy", Some(true))
        );
        assert_eq!(Some(owner.uid.clone()), held.uid());
        wait_for(&decisions, &decision.name_any(), 30, |d| {
            is(d, "Ready", "True", "Applied")
        })
        .await;
    }
    let reasons: Vec<String> = policy_events(&client, "routine-upgrades")
        .await
        .into_iter()
        .map(|(reason, _)| reason)
        .collect();
    assert!(
        reasons.contains(&"DecisionsCreated".to_string()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"BrakeHolding".to_string()), "{reasons:?}");

    // Room for more: the third is created, and nothing is created twice.
    let room = serde_json::json!({"spec": {"maxDecisionsPerHour": 5}});
    Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default")
        .patch(
            "routine-upgrades",
            &PatchParams::default(),
            &Patch::Merge(&room),
        )
        .await
        .expect("patched");
    let enforced = wait_for_policy(&client, "routine-upgrades", |p| {
        condition(p, "Ready")
            .is_some_and(|(ready, reason, _)| ready == "True" && reason == "Enforced")
            && p.status.as_ref().and_then(|s| s.created_last_hour) == Some(3)
    })
    .await;
    assert_eq!(enforced.status.and_then(|s| s.held_back), Some(0));
    let created = created_by(&client, "routine-upgrades").await;
    assert_eq!(created.len(), 3);
    for decision in &created {
        wait_for(&decisions, &decision.name_any(), 30, |d| {
            is(d, "Ready", "True", "Applied")
        })
        .await;
    }
    for id in readers {
        assert_eq!(updates_of(&playground, id), 1, "{id}");
    }
    assert_eq!(updates_of(&playground, "r-admin"), 0, "no rule names ADMIN");
    assert_eq!(
        updates_of(&playground, "r-decided"),
        1,
        "the person's DENY only"
    );
    let denied = playground
        .quicksight
        .handle
        .request(ACCOUNT, "default", "r-decided");
    assert_eq!(format!("{:?}", denied.expect("known").status), "Denied");
    let series = "selfupgrade_policy_decisions_created_total{namespace=\"default\",policy=\"routine-upgrades\",rule=\"reader-pro-for-everyone\"} 3";
    assert!(playground.metrics.encode().contains(series), "{series}");

    // Deleted, the policy keeps the decisions that acted: released, they are the record.
    Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default")
        .delete("routine-upgrades", &DeleteParams::default())
        .await
        .expect("deleted");
    let policies = Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default");
    common::wait_until_gone(&policies, "routine-upgrades").await;
    let kept = created_by(&client, "routine-upgrades").await;
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter().all(|d| d.owner_references().is_empty()),
        "released"
    );
    playground.stop().await;
}

/// The decision the example policy creates for `id` (a READER asking for READER_PRO).
fn created_for(policy: &SelfUpgradePolicy, id: &str) -> SelfUpgradeDecision {
    let matched = PolicyMatch {
        upgrade_request_id: id.into(),
        rule: "reader-pro-for-everyone".into(),
        action: Action::Approve,
        user_name: None,
        original_role: None,
        requested_role: None,
    };
    let request = RequestDetail::new(id, RequestStatus::Pending);
    decision_for_match(policy, &matched, &request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_decision_wins_over_a_created_one_that_has_not_acted() {
    // QuickSight does not list (503) until the test says: the policy's decisions exist, as
    // created just before, and cannot act, since nobody acts on a request it cannot see.
    let unavailable = ForcedError {
        operation: "ListSelfUpgrades".into(),
        code: "ResourceUnavailableException".into(),
        message: None,
    };
    let faults = FaultSettings {
        forced: std::iter::repeat_n(unavailable, 100_000).collect(),
        ..FaultSettings::default()
    };
    let requests = vec![
        recent("r-1", "bob@example.com", "READER", "READER_PRO"),
        recent("r-2", "cy@example.com", "READER", "READER_PRO"),
    ];
    let (playground, client) =
        playground_with_faults(requests, Duration::from_secs(1), faults).await;
    let mut policy = enforced(10);
    policy.metadata.finalizers = Some(vec![POLICY_FINALIZER.into()]);
    let policies = Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default");
    let policy = policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    for id in ["r-1", "r-2"] {
        decisions
            .create(&PostParams::default(), &created_for(&policy, id))
            .await
            .expect("created decision");
    }
    let person = new_decision("deny-bob", ACCOUNT, "r-1", Action::Deny);
    decisions
        .create(&PostParams::default(), &person)
        .await
        .expect("person's decision");

    // The created decision for r-1 stands down, and says so on the policy.
    common::wait_until_gone(&decisions, &decision_name(ACCOUNT, "default", "r-1")).await;
    let events = policy_events(&client, "routine-upgrades").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "DecisionSuperseded"
                && note.contains("removed decision policy-111122223333-r-1 before it acted: SelfUpgradeDecision deny-bob decides its request")),
        "{events:?}"
    );
    // Deleted, the policy removes the decision that has not acted (r-2) before it goes.
    policies
        .delete("routine-upgrades", &DeleteParams::default())
        .await
        .expect("deleted");
    common::wait_until_gone(&policies, "routine-upgrades").await;
    assert!(created_by(&client, "routine-upgrades").await.is_empty());

    // QuickSight lists again: the person's decision is the one that acts, once.
    playground
        .quicksight
        .handle
        .set_faults(FaultSettings::default());
    wait_for(&decisions, "deny-bob", 60, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(updates_of(&playground, "r-1"), 1);
    assert_eq!(updates_of(&playground, "r-2"), 0, "nobody decided r-2");
    playground.stop().await;
}
