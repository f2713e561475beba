//! `SelfUpgradePolicy` in dry run, end to end in the playground: the status shows what the
//! rules would decide for the PENDING requests nobody decided yet, follows new requests, and
//! decides nothing; a rule that cannot be compiled, or a namespace the account is not bound
//! to, makes the policy Stalled with the reason and lists nothing.

mod common;

use common::{ACCOUNT, OTHER_ACCOUNT, is, new_decision, sim_handle, wait_for};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use selfupgrade_operator::api::{
    Action, QuickSightAccount, QuickSightAccountSpec, SelfUpgradeDecision, SelfUpgradePolicy,
};
use selfupgrade_testbed::playground::{Playground, Tuning, playground_timing};
use selfupgrade_testbed::quicksight::{FaultSettings, SimRequest, World};
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
    let handle = sim_handle(world, FaultSettings::default(), 5);
    let playground = common::start_tuned_playground(handle, tuning).await;
    let client = playground.apiserver.client().await.expect("client");
    (playground, client)
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
    let person = new_decision("deny-dan", ACCOUNT, "r-decided", Action::Deny);
    decisions
        .create(&PostParams::default(), &person)
        .await
        .expect("created");
    wait_for(&decisions, "deny-dan", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;

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
        evaluated.status.and_then(|s| s.matched),
        Some(1),
        "olga's READER_PRO"
    );
    playground.stop().await;
}
