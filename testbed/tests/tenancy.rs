//! The tenant guard and per-account credentials, end to end: the embedded API server, the
//! QuickSight + STS simulator enforcing IAM (each access key acts on its own account only), and
//! the controller with default-deny bindings.
//!
//! Proves: decisions in an unbound namespace, for an unbound account, or for a disallowed
//! QuickSight namespace end `NotAuthorized` with an Event and make no call; bound decisions
//! succeed, each account's calls signed by that account's role and never another's; changing a
//! binding re-reconciles; binding statuses report credentials; and no secret ever shows in
//! logs, status or Events (canary values).

mod common;

use common::{REGION, is, new_decision, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use selfupgrade_operator::api::{
    Action, QuickSightAccount, QuickSightAccountSpec, SelfUpgradeDecision,
};
use selfupgrade_operator::bindings::Bindings;
use selfupgrade_operator::context::Context;
use selfupgrade_operator::controller::{self, WatchScope};
use selfupgrade_operator::quicksight::{Paced, RequestDirectory, SdkQuickSight, SdkSettings};
use selfupgrade_testbed::apiserver::{ApiServerConfig, RunningApiServer};
use selfupgrade_testbed::playground::playground_timing;
use selfupgrade_testbed::quicksight::{
    FaultSettings, IamSettings, RoleTrust, RunningSim, SimHandle, SimRequest, World,
};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ACCOUNT_A: &str = "111111111111";
const ACCOUNT_B: &str = "222222222222";
const UNBOUND: &str = "333333333333";
const OPERATOR_ACCOUNT: &str = "999999999999";
const BASE_KEY: &str = "AKIAOPERATORBASE";
/// The operator's own secret: must never be printed anywhere.
const BASE_SECRET: &str = "CANARY-BASE-SECRET-7f3a9c";
const ROLE_A: &str = "arn:aws:iam::111111111111:role/quicksight-approver";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/quicksight-approver";
const UNTRUSTING_ROLE: &str = "arn:aws:iam::222222222222:role/does-not-trust-the-operator";

/// Everything the process logs, at debug level, for the canary check.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn operator_principal() -> String {
    format!("arn:aws:iam::{OPERATOR_ACCOUNT}:role/selfupgrade-operator")
}

fn seeded_simulator() -> SimHandle {
    let mut world = World::default();
    for account in [ACCOUNT_A, ACCOUNT_B, UNBOUND] {
        for (namespace, ids) in [("default", ["r-1", "r-2"]), ("finance", ["r-9", "r-8"])] {
            world.ensure_namespace(account, namespace).requests = ids
                .iter()
                .map(|id| SimRequest::pending(id, &format!("{id}@{account}"), 1_764_115_200_000))
                .collect();
        }
    }
    let sim = SimHandle::new(world, FaultSettings::default(), 3);
    sim.add_access_key(BASE_KEY, BASE_SECRET);
    let trusts_operator = |external_id: Option<&str>| RoleTrust {
        trusted: vec![operator_principal()],
        external_id: external_id.map(str::to_string),
    };
    sim.set_iam(IamSettings {
        enforce: true,
        access_keys: [(BASE_KEY.to_string(), operator_principal())].into(),
        roles: [
            (ROLE_A.to_string(), trusts_operator(Some("tenant-a"))),
            (ROLE_B.to_string(), trusts_operator(None)),
            (
                UNTRUSTING_ROLE.to_string(),
                RoleTrust {
                    trusted: vec!["arn:aws:iam::222222222222:user/someone-else".into()],
                    external_id: None,
                },
            ),
        ]
        .into(),
        session_seconds: None,
    });
    sim
}

fn binding(
    name: &str,
    account: &str,
    role: &str,
    edit: impl FnOnce(&mut QuickSightAccountSpec),
) -> QuickSightAccount {
    let mut spec = QuickSightAccountSpec {
        account_id: account.into(),
        role_arn: Some(role.into()),
        region: Some(REGION.into()),
        ..Default::default()
    };
    edit(&mut spec);
    QuickSightAccount::new(name, spec)
}

async fn create_namespace(client: &kube::Client, name: &str, labels: &[(&str, &str)]) {
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.into());
    namespace.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

async fn decide(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    account: &str,
    qs_namespace: &str,
    id: &str,
) {
    let mut decision = new_decision(name, account, id, Action::Approve);
    decision.spec.quicksight_namespace = qs_namespace.into();
    Api::<SelfUpgradeDecision>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &decision)
        .await
        .expect("decision created");
}

fn not_authorized(decision: &SelfUpgradeDecision) -> bool {
    is(decision, "Stalled", "True", "NotAuthorized")
}

fn stalled_message(decision: &SelfUpgradeDecision) -> String {
    decision
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_bound_namespaces_act_and_each_account_is_signed_with_its_own_role() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let apiserver = RunningApiServer::start(ApiServerConfig::default())
        .await
        .expect("API server starts");
    let client = apiserver.client().await.expect("client");
    let handle = seeded_simulator();
    let sim = RunningSim::start(0, handle.clone())
        .await
        .expect("simulator starts");

    create_namespace(&client, "team-a", &[]).await;
    create_namespace(
        &client,
        "team-b",
        &[("quicksight.selfupgrade.io/tenant", "b")],
    )
    .await;
    create_namespace(&client, "intruder", &[]).await;
    let accounts: Api<QuickSightAccount> = Api::all(client.clone());
    for account in [
        binding("tenant-a", ACCOUNT_A, ROLE_A, |s| {
            s.external_id = Some("tenant-a".into());
            s.namespaces = vec!["team-a".into()];
            s.quicksight_namespaces = Some(vec!["default".into()]);
        }),
        binding("tenant-b", ACCOUNT_B, ROLE_B, |s| {
            s.namespace_selector = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(
                        [(
                            "quicksight.selfupgrade.io/tenant".to_string(),
                            "b".to_string(),
                        )]
                        .into(),
                    ),
                    match_expressions: None,
                },
            );
        }),
        // A binding whose role does not trust the operator: its status must say so.
        binding("untrusting", ACCOUNT_B, UNTRUSTING_ROLE, |s| {
            s.namespaces = vec!["nobody".into()]
        }),
    ] {
        accounts
            .create(&PostParams::default(), &account)
            .await
            .expect("binding created");
    }

    let base = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_quicksight::config::SharedCredentialsProvider::new(
            aws_sdk_quicksight::config::Credentials::new(BASE_KEY, BASE_SECRET, None, None, "test"),
        ))
        .build();
    let quicksight = SdkQuickSight::new(
        base,
        SdkSettings {
            endpoint_url: Some(sim.endpoint()),
            sts_endpoint_url: Some(sim.endpoint()),
            call_timeout: Duration::from_secs(10),
        },
    );
    let pacing = selfupgrade_testbed::playground::Tuning::default().pacing;
    let paced = Paced::new(Arc::new(quicksight), pacing).expect("pacing");
    let mut timing = playground_timing();
    timing.account_status_interval = Duration::from_millis(500);
    let ctx = Arc::new(Context::new(
        client.clone(),
        RequestDirectory::new(Arc::new(paced), Duration::from_secs(5)),
        Bindings::watch(
            client.clone(),
            selfupgrade_operator::tenancy::OperatorRules {
                default_region: Some(REGION.into()),
                ..Default::default()
            },
        ),
        Some(REGION.into()),
        timing,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(
        ctx,
        WatchScope::AllNamespaces,
        4,
        async move {
            let _ = stopped.await;
        },
    ));

    decide(&client, "team-a", "approve-a", ACCOUNT_A, "default", "r-1").await;
    decide(&client, "team-b", "approve-b", ACCOUNT_B, "default", "r-1").await;
    decide(&client, "intruder", "steal-a", ACCOUNT_A, "default", "r-2").await;
    decide(
        &client,
        "team-a",
        "unbound-account",
        UNBOUND,
        "default",
        "r-1",
    )
    .await;
    decide(&client, "team-a", "finance-a", ACCOUNT_A, "finance", "r-9").await;

    let in_ns = |ns: &str| Api::<SelfUpgradeDecision>::namespaced(client.clone(), ns);
    let ready = |d: &SelfUpgradeDecision| is(d, "Ready", "True", "Applied");
    wait_for(&in_ns("team-a"), "approve-a", 30, ready).await;
    wait_for(&in_ns("team-b"), "approve-b", 30, ready).await;
    let steal = wait_for(&in_ns("intruder"), "steal-a", 30, not_authorized).await;
    assert!(
        stalled_message(&steal)
            .contains("namespace \"intruder\" is not bound to AWS account 111111111111"),
        "{}",
        stalled_message(&steal)
    );
    // Which bindings admit which other namespaces is the cluster admins' business.
    assert!(
        !stalled_message(&steal).contains("tenant-a"),
        "{}",
        stalled_message(&steal)
    );
    let unbound = wait_for(&in_ns("team-a"), "unbound-account", 30, not_authorized).await;
    assert!(
        stalled_message(&unbound).contains("no QuickSightAccount binds AWS account 333333333333")
    );
    let finance = wait_for(&in_ns("team-a"), "finance-a", 30, not_authorized).await;
    assert!(stalled_message(&finance).contains("QuickSight namespace \"finance\""));

    // No call reached the unbound account; each bound account saw only its own role.
    let counters = handle.counters();
    let acted_on = |principal: &str| -> Vec<String> {
        counters
            .principals
            .get(principal)
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    };
    // The session names say which namespace acted: what CloudTrail shows an auditor.
    assert_eq!(
        acted_on("arn:aws:sts::111111111111:assumed-role/quicksight-approver/sud-team-a"),
        [ACCOUNT_A]
    );
    assert_eq!(
        acted_on("arn:aws:sts::222222222222:assumed-role/quicksight-approver/sud-team-b"),
        [ACCOUNT_B]
    );
    assert!(
        acted_on(&operator_principal()).is_empty(),
        "the base credentials never call QuickSight"
    );
    assert!(
        counters
            .principals
            .values()
            .all(|accounts| !accounts.contains_key(UNBOUND)),
        "{:?}",
        counters.principals
    );
    assert_eq!(counters.count("UpdateSelfUpgrade", "ok"), 2);
    assert_eq!(
        counters.count("UpdateSelfUpgrade", "AccessDeniedException"),
        0
    );
    for (account, namespace, id) in [
        (ACCOUNT_A, "default", "r-2"),
        (ACCOUNT_A, "finance", "r-9"),
        (UNBOUND, "default", "r-1"),
    ] {
        let request = handle.request(account, namespace, id).expect("request");
        assert_eq!(request.updates_applied, 0, "{account}/{namespace}/{id}");
    }

    // Each refusal is an Event on the decision.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "intruder");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["NotAuthorized"]);

    // A cluster admin binds the intruder namespace: the refused decision is reconciled again.
    accounts
        .patch(
            "tenant-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"namespaces": ["team-a", "intruder"]}})),
        )
        .await
        .expect("binding patched");
    wait_for(&in_ns("intruder"), "steal-a", 30, ready).await;
    // team-a decides the same request later: it loses, and learns only that the winner is
    // elsewhere, not which namespace holds it.
    decide(&client, "team-a", "second-a", ACCOUNT_A, "default", "r-2").await;
    let conflict = |d: &SelfUpgradeDecision| is(d, "Stalled", "True", "Conflict");
    let lost = wait_for(&in_ns("team-a"), "second-a", 30, conflict).await;
    let message = stalled_message(&lost);
    assert!(
        message.starts_with("a SelfUpgradeDecision in another namespace is older"),
        "{message}"
    );
    assert!(
        !message.contains("intruder") && !message.contains("steal-a"),
        "{message}"
    );
    // The winner's owners hear of it, as far as their namespace may know.
    let events_in =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "intruder");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let told = loop {
        let events = events_in
            .list(&ListParams::default())
            .await
            .expect("events");
        let told: Vec<String> = events
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ConflictingDecision"))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("steal-a"))
            .filter_map(|e| e.note)
            .collect();
        if !told.is_empty() || tokio::time::Instant::now() > deadline {
            break told;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        told,
        [
            "a SelfUpgradeDecision in another namespace also decides this request; it makes no call while this one exists"
        ]
    );

    // Binding statuses: decisions counted, credentials checked.
    let bound = |name: &'static str, expect: (&'static str, &'static str, i64)| {
        let accounts = accounts.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let binding = accounts.get(name).await.expect("binding");
                let found = binding.status.as_ref().and_then(|s| {
                    let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                    Some((
                        ready.status.clone(),
                        ready.reason.clone(),
                        s.bound_decisions?,
                        ready.message.clone(),
                    ))
                });
                if let Some((status, reason, count, message)) = &found
                    && (status.as_str(), reason.as_str(), *count) == expect
                {
                    return message.clone();
                }
                assert!(tokio::time::Instant::now() < deadline, "{name}: {found:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    bound("tenant-a", ("True", "CredentialsResolved", 3)).await;
    bound("tenant-b", ("True", "CredentialsResolved", 1)).await;
    let refused = bound("untrusting", ("False", "CredentialsUnresolvable", 0)).await;
    assert!(refused.contains("does-not-trust-the-operator"), "{refused}");

    // Canaries: no secret in logs, statuses or Events.
    let all_decisions = Api::<SelfUpgradeDecision>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("decisions");
    let all_events = Api::<k8s_openapi::api::events::v1::Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("events");
    let all_bindings = accounts
        .list(&ListParams::default())
        .await
        .expect("bindings");
    let published = format!(
        "{}{}{}",
        serde_json::to_string(&all_decisions.items).expect("json"),
        serde_json::to_string(&all_events.items).expect("json"),
        serde_json::to_string(&all_bindings.items).expect("json"),
    );
    let logged = logs.text();
    assert!(logged.contains("reconcile"), "the log capture works");
    for (what, text) in [("logs", &logged), ("statuses and Events", &published)] {
        for canary in [BASE_SECRET, "SIMSECRET", "SIMTOKEN"] {
            assert!(!text.contains(canary), "{canary} appears in {what}");
        }
    }
    assert!(handle.counters().count("AssumeRole", "ok") >= 2);
    println!(
        "tenancy: {} decisions, calls by principal: {:?}",
        all_decisions.items.len(),
        handle.counters().principals
    );
    for decision in &all_decisions.items {
        println!(
            "  {}/{}: {:?}",
            decision.namespace().unwrap_or_default(),
            decision.name_any(),
            common::condition(decision, "Ready")
        );
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    sim.stop().await;
    apiserver.stop().await;
}
