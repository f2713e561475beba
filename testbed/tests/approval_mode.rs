//! The account's approval mode as code, end to end in the playground: a binding that observes
//! its mode reports the console's switch to AUTO_APPROVAL on itself, on its decisions, in an
//! Event and in the drift gauge; one that enforces it sets the mode back exactly once, and
//! retries a refused restore instead of looping; one that declares nothing makes no
//! configuration call at all. A drift is notified to the webhook (`run --notify-url`) once.

mod common;

use common::{ACCOUNT, OTHER_ACCOUNT, is, new_decision, sim_handle, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use selfupgrade_operator::api::{
    Action, ApprovalMode, Enforcement, QuickSightAccount, QuickSightAccountSpec,
    SelfUpgradeDecision, SelfUpgradeSettings,
};
use selfupgrade_operator::notify::{NotifySettings, WebhookUrl};
use selfupgrade_testbed::playground::{OPERATOR_NAMESPACE, Playground, Tuning, playground_timing};
use selfupgrade_testbed::quicksight::{FaultSettings, SimHandle, SimRequest, World};
use std::time::Duration;

/// How often the playground's operator reads the modes in these tests.
const CADENCE: Duration = Duration::from_secs(1);

async fn playground_with_two_requests() -> (Playground, Client) {
    playground_tuned(None).await
}

/// [`playground_with_two_requests`], notifying when `notify` says where.
async fn playground_tuned(notify: Option<NotifySettings>) -> (Playground, Client) {
    let mut world = World::default();
    for account in [ACCOUNT, OTHER_ACCOUNT] {
        world.ensure_namespace(account, "default").requests = ["r-1", "r-2"]
            .iter()
            .map(|id| SimRequest::pending(id, &format!("{id}@example.com"), 1_764_115_200_000))
            .collect();
    }
    let handle: SimHandle = sim_handle(world, FaultSettings::default(), 3);
    // Approvals QuickSight makes by itself come at once: the tests watch what follows them.
    handle.set_auto_approval_delay(Duration::ZERO);
    let tuning = Tuning {
        timing: selfupgrade_operator::context::Timing {
            approval_mode_interval: CADENCE,
            ..playground_timing()
        },
        notify,
        ..Tuning::default()
    };
    let playground = common::start_tuned_playground(handle, tuning).await;
    let client = playground.apiserver.client().await.expect("client");
    (playground, client)
}

async fn bind(client: &Client, account: &str, self_upgrade: Option<SelfUpgradeSettings>) {
    let binding = QuickSightAccount::new(
        &format!("account-{account}"),
        QuickSightAccountSpec {
            account_id: account.into(),
            namespaces: vec!["default".into()],
            self_upgrade,
            ..Default::default()
        },
    );
    Api::<QuickSightAccount>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
}

/// Polls `account`'s binding until `done` holds.
async fn wait_for_binding(
    client: &Client,
    account: &str,
    done: impl Fn(&QuickSightAccount) -> bool,
) -> QuickSightAccount {
    let api = Api::<QuickSightAccount>::all(client.clone());
    common::wait_for_object(&api, &format!("account-{account}"), done).await
}

fn ready(binding: &QuickSightAccount) -> Option<(String, String, String)> {
    let condition = binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

fn observed(binding: &QuickSightAccount) -> Option<ApprovalMode> {
    binding
        .status
        .as_ref()?
        .approval_modes
        .first()?
        .observed_mode
}

/// The Events about `account`'s binding with `reason`.
async fn events(client: &Client, account: &str, reason: &str) -> Vec<Event> {
    let name = format!("account-{account}");
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
        .collect()
}

fn calls(playground: &Playground, operation: &str, outcome: &str) -> u64 {
    playground
        .quicksight
        .handle
        .counters()
        .count(operation, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observed_switch_to_auto_approval_shows_on_the_binding_its_decisions_an_event_and_a_metric()
 {
    let (playground, client) = playground_with_two_requests().await;
    let observe = SelfUpgradeSettings {
        mode: ApprovalMode::AdminApproval,
        enforcement: Enforcement::Observe,
    };
    bind(&client, ACCOUNT, Some(observe)).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let approve = new_decision("approve-r1", ACCOUNT, "r-1", Action::Approve);
    decisions
        .create(&PostParams::default(), &approve)
        .await
        .expect("created");
    let in_sync = wait_for_binding(&client, ACCOUNT, |b| {
        observed(b) == Some(ApprovalMode::AdminApproval)
    })
    .await;
    assert_eq!(ready(&in_sync).map(|r| r.0).as_deref(), Some("True"));
    wait_for(&decisions, "approve-r1", 30, |d| {
        is(d, "Ready", "True", "Applied")
            && d.status.as_ref().and_then(|s| s.account_approval_mode)
                == Some(ApprovalMode::AdminApproval)
    })
    .await;

    // A console user turns the review off.
    playground
        .quicksight
        .handle
        .set_approval_mode(ACCOUNT, "default", "AUTO_APPROVAL")
        .expect("switched");
    let drifted = wait_for_binding(&client, ACCOUNT, |b| {
        ready(b).is_some_and(|r| r.1 == "ApprovalModeDrift")
    })
    .await;
    let (status, _, message) = ready(&drifted).expect("ready");
    assert_eq!(status, "False");
    assert!(
        message.contains("namespace default is AUTO_APPROVAL")
            && message.contains("declares ADMIN_APPROVAL"),
        "{message}"
    );
    assert_eq!(observed(&drifted), Some(ApprovalMode::AutoApproval));
    wait_for(&decisions, "approve-r1", 30, |d| {
        d.status.as_ref().and_then(|s| s.account_approval_mode) == Some(ApprovalMode::AutoApproval)
    })
    .await;
    // QuickSight approved r-2 by itself: a DENY for it comes too late, as for any approval
    // made outside the cluster.
    let deny = new_decision("deny-r2", ACCOUNT, "r-2", Action::Deny);
    decisions
        .create(&PostParams::default(), &deny)
        .await
        .expect("created");
    wait_for(&decisions, "deny-r2", 30, |d| {
        is(d, "Stalled", "True", "AlreadyDecided")
    })
    .await;

    assert_eq!(events(&client, ACCOUNT, "ApprovalModeDrift").await.len(), 1);
    let metric = format!(
        "selfupgrade_approval_mode_drift{{account=\"{ACCOUNT}\",quicksight_namespace=\"default\"}} 1"
    );
    assert!(playground.metrics.encode().contains(&metric), "{metric}");
    // Observing never writes; later readings of the same drift announce nothing new.
    tokio::time::sleep(CADENCE * 3).await;
    assert_eq!(
        calls(&playground, "UpdateSelfUpgradeConfiguration", "ok"),
        0
    );
    assert_eq!(events(&client, ACCOUNT, "ApprovalModeDrift").await.len(), 1);
    assert!(calls(&playground, "DescribeSelfUpgradeConfiguration", "ok") >= 3);

    // The binding goes: its alert stops and its decisions no longer claim to know the mode.
    Api::<QuickSightAccount>::all(client.clone())
        .delete(&format!("account-{ACCOUNT}"), &Default::default())
        .await
        .expect("deleted");
    wait_for(&decisions, "approve-r1", 30, |d| {
        d.status
            .as_ref()
            .is_some_and(|s| s.account_approval_mode.is_none())
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while playground.metrics.encode().contains(&metric) {
        assert!(tokio::time::Instant::now() < deadline, "{metric} stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    playground.stop().await;
}

/// A drift is notified once however often it is read, and again when it comes back after the
/// namespace was in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_is_notified_once_and_again_when_it_comes_back() {
    let (received, url_file) = common::webhook::start_receiver(0).await;
    let url = std::fs::read_to_string(url_file.path()).expect("the URL");
    let notify = NotifySettings {
        url: WebhookUrl::parse(&url).expect("a URL"),
        record: (
            OPERATOR_NAMESPACE.into(),
            "selfupgrade-operator-notified".into(),
        ),
        interval: CADENCE,
        accounts: Vec::new(),
    };
    let (playground, client) = playground_tuned(Some(notify)).await;
    let observe = SelfUpgradeSettings {
        mode: ApprovalMode::AdminApproval,
        enforcement: Enforcement::Observe,
    };
    bind(&client, ACCOUNT, Some(observe)).await;
    wait_for_binding(&client, ACCOUNT, |b| {
        observed(b) == Some(ApprovalMode::AdminApproval)
    })
    .await;
    let sim = &playground.quicksight.handle;
    let drifts = |count: usize| {
        let received = received.clone();
        async move {
            received
                .until("ApprovalModeDrift", count, Duration::from_secs(30))
                .await
        }
    };
    sim.set_approval_mode(ACCOUNT, "default", "AUTO_APPROVAL")
        .expect("switched");
    let first = drifts(1).await;
    assert_eq!(first[0]["observedMode"], "AUTO_APPROVAL");
    assert_eq!(first[0]["binding"], format!("account-{ACCOUNT}"));
    tokio::time::sleep(CADENCE * 3).await;
    assert_eq!(
        received.of_kind("ApprovalModeDrift").len(),
        1,
        "read again, not notified again"
    );

    sim.set_approval_mode(ACCOUNT, "default", "ADMIN_APPROVAL")
        .expect("switched back");
    wait_for_binding(&client, ACCOUNT, |b| {
        observed(b) == Some(ApprovalMode::AdminApproval)
    })
    .await;
    sim.set_approval_mode(ACCOUNT, "default", "AUTO_APPROVAL")
        .expect("switched again");
    assert_eq!(drifts(2).await.len(), 2, "a new drift");
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_mode_is_set_back_once_and_a_refused_restore_is_retried() {
    let (playground, client) = playground_with_two_requests().await;
    let enforce = SelfUpgradeSettings {
        mode: ApprovalMode::AdminApproval,
        enforcement: Enforcement::Enforce,
    };
    bind(&client, ACCOUNT, Some(enforce)).await;
    wait_for_binding(&client, ACCOUNT, |b| {
        observed(b) == Some(ApprovalMode::AdminApproval)
    })
    .await;
    let sim = &playground.quicksight.handle;
    // The first restore is refused; the next, after a backoff, goes through.
    sim.force_error("UpdateSelfUpgradeConfiguration", "InternalFailureException");
    sim.set_approval_mode(ACCOUNT, "default", "AUTO_APPROVAL")
        .expect("switched");
    wait_for_binding(&client, ACCOUNT, |b| {
        b.status
            .as_ref()
            .and_then(|s| s.approval_modes.first())
            .is_some_and(|m| m.restored_at.is_some())
            && ready(b).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        sim.approval_mode(ACCOUNT, "default").ok().as_deref(),
        Some("ADMIN_APPROVAL")
    );
    assert_eq!(
        calls(
            &playground,
            "UpdateSelfUpgradeConfiguration",
            "InternalFailureException"
        ),
        1
    );
    assert_eq!(
        calls(&playground, "UpdateSelfUpgradeConfiguration", "ok"),
        1
    );
    assert_eq!(
        events(&client, ACCOUNT, "ApprovalModeRestoreFailed")
            .await
            .len(),
        1
    );
    let restored = events(&client, ACCOUNT, "ApprovalModeRestored").await;
    assert_eq!(restored.len(), 1);
    let note = restored[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("from AUTO_APPROVAL to ADMIN_APPROVAL"),
        "{note}"
    );
    // Set back once: the readings that follow find the mode as declared.
    tokio::time::sleep(CADENCE * 3).await;
    assert_eq!(
        calls(&playground, "UpdateSelfUpgradeConfiguration", "ok"),
        1
    );
    let text = playground.metrics.encode();
    for series in [
        format!(
            "selfupgrade_approval_mode_restores_total{{account=\"{ACCOUNT}\",quicksight_namespace=\"default\",outcome=\"ok\"}} 1"
        ),
        format!(
            "selfupgrade_approval_mode_drift{{account=\"{ACCOUNT}\",quicksight_namespace=\"default\"}} 0"
        ),
    ] {
        assert!(text.contains(&series), "{series} missing");
    }
    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_that_declares_no_mode_makes_no_configuration_call() {
    let (playground, client) = playground_with_two_requests().await;
    bind(&client, OTHER_ACCOUNT, None).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let approve = new_decision("approve-r1", OTHER_ACCOUNT, "r-1", Action::Approve);
    decisions
        .create(&PostParams::default(), &approve)
        .await
        .expect("created");
    let done = wait_for(&decisions, "approve-r1", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(done.status.and_then(|s| s.account_approval_mode), None);
    tokio::time::sleep(CADENCE * 3).await;
    for operation in [
        "DescribeSelfUpgradeConfiguration",
        "UpdateSelfUpgradeConfiguration",
    ] {
        assert_eq!(
            playground.quicksight.handle.counters().total(operation),
            0,
            "{operation}"
        );
    }
    let binding = wait_for_binding(&client, OTHER_ACCOUNT, |b| {
        ready(b).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(binding.status.expect("status").approval_modes.is_empty());
    playground.stop().await;
}
