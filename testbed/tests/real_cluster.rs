//! The end-to-end scenarios against a real cluster (kind, k3d, …): `#[ignore]`d, run by
//! `tests/e2e/run.sh` when KUBECONFIG points at one. The CRD must be installed
//! (`kubectl apply -k deploy/`); the controller runs in this process against the cluster, with
//! the QuickSight simulator on loopback.

mod common;

use common::*;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_operator::controller::{self, WatchScope};
use selfupgrade_testbed::quicksight::SimStatus;

async fn cluster_namespace(client: &kube::Client) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("sud-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("test namespace created");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: KUBECONFIG and the CRD installed (tests/e2e/run.sh)"]
async fn scenarios_converge_on_a_real_cluster() {
    let client = kube::Client::try_default()
        .await
        .expect("KUBECONFIG points at a cluster");
    let namespace = cluster_namespace(&client).await;
    let mut in_group = request("verify-ok");
    in_group.in_required_group = true;
    let sim = start_sim(vec![
        request("approve-me"),
        request("deny-me"),
        request("verify-me"),
        in_group,
    ])
    .await;

    let ctx = operator_context(client.clone(), &sim);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(
        ctx,
        WatchScope::Namespace(namespace.clone()),
        4,
        async move {
            let _ = stopped.await;
        },
    ));

    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), &namespace);
    for (name, id, action) in [
        ("approve", "approve-me", Action::Approve),
        ("deny", "deny-me", Action::Deny),
        ("verify", "verify-me", Action::Verify),
        ("unknown", "no-such-request", Action::Approve),
    ] {
        api.create(
            &PostParams::default(),
            &new_decision(name, ACCOUNT, id, action),
        )
        .await
        .expect("created");
    }
    wait_for(&api, "approve", 60, |d| is(d, "Ready", "True", "Applied")).await;
    wait_for(&api, "deny", 60, |d| is(d, "Ready", "True", "Applied")).await;
    wait_for(&api, "verify", 60, |d| {
        is(d, "Ready", "False", "VerifyFailed")
    })
    .await;
    wait_for(&api, "unknown", 60, |d| {
        is(d, "Stalled", "True", "RequestNotFound")
    })
    .await;

    let patch = serde_json::json!({"spec": {"action": "DENY"}});
    api.patch("verify", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched");
    wait_for(&api, "verify", 60, |d| is(d, "Ready", "True", "Applied")).await;
    assert_eq!(
        sim.handle
            .request(ACCOUNT, "default", "verify-me")
            .expect("exists")
            .status,
        SimStatus::Denied
    );
    assert_eq!(sim.handle.counters().count("UpdateSelfUpgrade", "ok"), 4);

    let _ = stop.send(());
    let _ = controller.await;
    use k8s_openapi::api::core::v1::Namespace;
    let _ = Api::<Namespace>::all(client)
        .delete(&namespace, &DeleteParams::default())
        .await;
}
