//! Objects that bypass the schema (here: the CRD installed without validation) must not stop the
//! controller: each gets `Stalled` naming the bad field, no AWS call, and every other decision
//! is still served. An unreadable account binding is reported on itself, and is never bypassed.

mod common;

use common::*;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use selfupgrade_operator::api::{Action, QuickSightAccount, SelfUpgradeDecision};
use selfupgrade_testbed::playground::{Playground, PlaygroundArgs};
use selfupgrade_testbed::quicksight::{FaultSettings, SimHandle, World};
use serde_json::{Value, json};
use std::time::Duration;

/// Both CRDs (the operator reads bindings before deciding), the one named `loose` with a spec
/// that accepts anything.
fn crds_with_one_without_validation(dir: &std::path::Path, loose: &str) {
    for (file, text) in [
        (
            "selfupgradedecision.yaml",
            include_str!("../../crds/selfupgradedecision.yaml"),
        ),
        (
            "quicksightaccount.yaml",
            include_str!("../../crds/quicksightaccount.yaml"),
        ),
    ] {
        let mut crd: Value = serde_yaml::from_str(text).expect("crd");
        if file == loose {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        }
        std::fs::write(dir.join(file), serde_yaml::to_string(&crd).expect("yaml")).expect("write");
    }
}

async fn start_with_crds(dir: &std::path::Path, handle: SimHandle) -> Playground {
    let args = PlaygroundArgs {
        kubeconfig: dir.join("kubeconfig"),
        crd_dir: Some(dir.to_path_buf()),
        empty: false,
        apiserver_port: 0,
        quicksight_port: 0,
    };
    Playground::start(&args, handle).await.expect("starts")
}

async fn stalled_message(api: &Api<DynamicObject>, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let object = api.get(name).await.expect("exists");
        let conditions = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(stalled) = conditions
            .iter()
            .find(|c| c["type"] == "Stalled" && c["status"] == "True")
        {
            assert_eq!(stalled["reason"], "InvalidSpec");
            return stalled["message"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never stalled: {:?}",
            object.data["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_and_invalid_objects_stall_and_the_rest_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    crds_with_one_without_validation(dir.path(), "selfupgradedecision.yaml");
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = vec![request("req-1")];
    let handle = sim_handle(world, FaultSettings::default(), 1);
    let playground = start_with_crds(dir.path(), handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<SelfUpgradeDecision>(&()),
    );
    let object = |name: &str, spec: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("object")
    };
    let maybe = object(
        "maybe",
        json!({"awsAccountId": ACCOUNT, "upgradeRequestId": "req-1", "action": "MAYBE"}),
    );
    let long_account = object(
        "long-account",
        json!({"awsAccountId": "1111222233334", "quicksightNamespace": "default", "upgradeRequestId": "req-1", "action": "DENY"}),
    );
    raw.create(&PostParams::default(), &maybe)
        .await
        .expect("accepted without validation");
    raw.create(&PostParams::default(), &long_account)
        .await
        .expect("accepted without validation");
    let typed: Api<SelfUpgradeDecision> = Api::namespaced(client, "default");
    typed
        .create(
            &PostParams::default(),
            &new_decision("good", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");

    wait_for(&typed, "good", 30, |d| is(d, "Ready", "True", "Applied")).await;
    let message = stalled_message(&raw, "maybe").await;
    assert!(
        message.contains("spec.action") && message.contains("MAYBE"),
        "{message}"
    );
    let message = stalled_message(&raw, "long-account").await;
    assert!(message.contains("spec.awsAccountId"), "{message}");
    assert_eq!(
        handle.counters().total("UpdateSelfUpgrade"),
        1,
        "only the good decision called"
    );
    playground.stop().await;
}

/// A binding that does not deserialize (its `namespaces` a string, not a list) gets
/// `Ready=False` InvalidSpec on itself. It may be the binding meant for an account, so the
/// playground's `--allow-unbound-accounts` no longer lets a decision act on an account no
/// readable binding binds: the decision stalls NotAuthorized naming it, with no call, until the
/// binding is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_binding_is_reported_on_itself_and_never_bypassed() {
    let dir = tempfile::tempdir().expect("tempdir");
    crds_with_one_without_validation(dir.path(), "quicksightaccount.yaml");
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = vec![request("req-1")];
    let handle = sim_handle(world, FaultSettings::default(), 1);
    let playground = start_with_crds(dir.path(), handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let bindings: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<QuickSightAccount>(&()),
    );
    let broken: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "QuickSightAccount",
        "metadata": {"name": "broken"},
        "spec": {"accountId": ACCOUNT, "namespaces": "default"},
    }))
    .expect("object");
    bindings
        .create(&PostParams::default(), &broken)
        .await
        .expect("accepted without validation");

    // Reported on the binding (which also shows the operator has read it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let object = bindings.get("broken").await.expect("exists");
        if let Some(ready) = object.data["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        {
            break ready.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status on the binding"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.namespaces: invalid type"),
        "{ready}"
    );

    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client, "default");
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");
    let stalled = wait_for(&decisions, "approve", 30, |d| {
        is(d, "Stalled", "True", "NotAuthorized")
    })
    .await;
    let message = stalled
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.message)
        .unwrap_or_default();
    // The tenant learns that a binding cannot be read, not which one or why: that is on the
    // binding's own status, and in the operator's log.
    assert!(
        message.contains("a QuickSightAccount cannot be read"),
        "{message}"
    );
    assert!(!message.contains("broken"), "{message}");
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 0);

    // Fixed, the binding binds the account to this namespace and the decision goes ahead.
    bindings
        .patch(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"namespaces": ["default"]}})),
        )
        .await
        .expect("fixed");
    wait_for(&decisions, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    assert_eq!(handle.counters().total("UpdateSelfUpgrade"), 1);
    playground.stop().await;
}
