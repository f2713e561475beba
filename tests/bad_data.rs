//! Objects that bypass the schema (here: the CRD installed without validation) must not stop the
//! controller: each gets `Stalled` naming the bad field, no AWS call, and every other decision
//! is still served.

mod common;

use common::*;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_operator::playground::{Playground, PlaygroundArgs};
use selfupgrade_operator::sim::quicksight::{FaultSettings, SimHandle, World};
use serde_json::{Value, json};
use std::time::Duration;

/// A copy of the CRD whose spec accepts anything.
fn crd_without_validation(dir: &std::path::Path) {
    let text = include_str!("../crds/selfupgradedecision.yaml");
    let mut crd: Value = serde_yaml::from_str(text).expect("crd");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    std::fs::write(
        dir.join("crd.yaml"),
        serde_yaml::to_string(&crd).expect("yaml"),
    )
    .expect("write");
    // The account bindings' CRD as shipped: the operator reads bindings before deciding.
    std::fs::write(
        dir.join("quicksightaccount.yaml"),
        include_str!("../crds/quicksightaccount.yaml"),
    )
    .expect("write");
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
    crd_without_validation(dir.path());
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = vec![request("req-1")];
    let handle = SimHandle::new(world, FaultSettings::default(), 1);
    let args = PlaygroundArgs {
        kubeconfig: dir.path().join("kubeconfig"),
        crd_dir: dir.path().to_path_buf(),
        apiserver_port: 0,
        quicksight_port: 0,
    };
    let playground = Playground::start(&args, handle.clone())
        .await
        .expect("starts");
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
    assert!(message.contains("MAYBE"), "{message}");
    let message = stalled_message(&raw, "long-account").await;
    assert!(message.contains("spec.awsAccountId"), "{message}");
    assert_eq!(
        handle.counters().total("UpdateSelfUpgrade"),
        1,
        "only the good decision called"
    );
    playground.stop().await;
}
