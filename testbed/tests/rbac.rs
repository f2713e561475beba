//! Least privilege, proven: the embedded API server enforces the RBAC objects of `deploy/` for
//! the operator's ServiceAccount, the operator binary runs as that ServiceAccount (with leader
//! election, account bindings and Events), and the scenario passes (the grants suffice). Then
//! the permissions it used must equal the permissions granted (the grants are minimal): a grant
//! never used fails the test.

mod common;

use common::processes::{BIN, Process};
use common::{ACCESS_KEY, ACCOUNT, REGION, SECRET, is, new_decision, request, start_sim, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::{
    Action, QuickSightAccount, QuickSightAccountSpec, SelfUpgradeDecision, SelfUpgradePolicy,
};
use selfupgrade_testbed::apiserver::rbac::{Permission, service_account_user};
use selfupgrade_testbed::apiserver::{ApiServerConfig, RbacSettings, RunningApiServer};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

const OPERATOR_NAMESPACE: &str = "selfupgrade-operator";
const SERVICE_ACCOUNT: &str = "selfupgrade-operator";

fn permission_name(p: &Permission) -> (String, String, String) {
    (p.verb.clone(), p.group.clone(), p.resource.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_exactly_the_permissions_deploy_grants() {
    let manifests = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/rbac.yaml"
    ))
    .expect("deploy/base/rbac.yaml");
    let apiserver = RunningApiServer::start(ApiServerConfig {
        namespaces: vec!["default".into(), OPERATOR_NAMESPACE.into()],
        rbac: Some(RbacSettings {
            manifests,
            service_accounts: vec![(OPERATOR_NAMESPACE.into(), SERVICE_ACCOUNT.into())],
        }),
        ..ApiServerConfig::default()
    })
    .await
    .expect("API server starts");
    let admin = apiserver.client().await.expect("admin client");
    let sim = start_sim(vec![request("approve-me"), request("deny-me")]).await;

    // The cluster admin's part: a tenant namespace bound to the account.
    let mut team = Namespace::default();
    team.metadata.name = Some("team-a".into());
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &team)
        .await
        .expect("namespace");
    Api::<QuickSightAccount>::all(admin.clone())
        .create(
            &PostParams::default(),
            &QuickSightAccount::new(
                "tenant-a",
                QuickSightAccountSpec {
                    account_id: ACCOUNT.into(),
                    namespaces: vec!["team-a".into()],
                    ..Default::default()
                },
            ),
        )
        .await
        .expect("binding");

    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        apiserver
            .service_account_kubeconfig_yaml(OPERATOR_NAMESPACE, SERVICE_ACCOUNT)
            .expect("service account token"),
    )
    .expect("kubeconfig");
    let _operator = Process::new(
        Command::new(BIN)
            .args(["run", "--quicksight-endpoint", &sim.endpoint()])
            .args(["--leader-elect", "--lease-namespace", OPERATOR_NAMESPACE])
            .args(["--lease-duration", "3s", "--lease-grace", "1s"])
            .args([
                "--account-status-interval",
                "500ms",
                "--awaiting-recheck",
                "1s",
            ])
            .args([
                "--health-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("operator starts"),
    );

    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(admin.clone(), "team-a");
    for (name, id, action) in [
        ("approve", "approve-me", Action::Approve),
        ("deny", "deny-me", Action::Deny),
    ] {
        decisions
            .create(
                &PostParams::default(),
                &new_decision(name, ACCOUNT, id, action),
            )
            .await
            .expect("decision");
    }
    // A policy in the tenant's namespace, whose status the operator writes.
    let policy: SelfUpgradePolicy = serde_yaml::from_str(include_str!(
        "../../examples/policies/routine-upgrades.yaml"
    ))
    .expect("example policy");
    Api::<SelfUpgradePolicy>::namespaced(admin.clone(), "team-a")
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    // Sufficient: the scenario converges under the granted permissions.
    for name in ["approve", "deny"] {
        wait_for(&decisions, name, 60, |d| is(d, "Ready", "True", "Applied")).await;
    }
    let user = service_account_user(OPERATOR_NAMESPACE, SERVICE_ACCOUNT);
    let granted: BTreeSet<_> = apiserver
        .state
        .granted_permissions(&user)
        .iter()
        .map(permission_name)
        .collect();
    // Lease renewals and the binding status come on their own schedules: wait for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let used = loop {
        let used: BTreeSet<_> = apiserver
            .state
            .used_permissions(&user)
            .iter()
            .map(permission_name)
            .collect();
        if granted.is_subset(&used) || tokio::time::Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The binding's status, written by the operator, counts both decisions.
    let bindings = Api::<QuickSightAccount>::all(admin.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let binding = bindings.get("tenant-a").await.expect("binding");
        let bound = binding.status.and_then(|s| s.bound_decisions);
        if bound == Some(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bound decisions: {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    println!("granted: {granted:#?}\nused: {used:#?}");
    let never_used: Vec<_> = granted.difference(&used).collect();
    assert!(
        never_used.is_empty(),
        "granted but never used (remove them from deploy/): {never_used:?}"
    );
    // Every use was granted (the server would have answered 403 otherwise), so used ⊆ granted.
    assert!(used.is_subset(&granted), "{used:?}");
    // The Lease permissions hold in the operator's namespace only.
    for permission in apiserver.state.used_permissions(&user) {
        if permission.resource == "leases" {
            assert_eq!(permission.namespace.as_deref(), Some(OPERATOR_NAMESPACE));
        }
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_service_account_is_refused_what_it_was_not_granted() {
    let apiserver = RunningApiServer::start(ApiServerConfig {
        rbac: Some(RbacSettings {
            manifests: std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/base/rbac.yaml"
            ))
            .expect("deploy/base/rbac.yaml"),
            service_accounts: vec![(OPERATOR_NAMESPACE.into(), SERVICE_ACCOUNT.into())],
        }),
        ..ApiServerConfig::default()
    })
    .await
    .expect("API server starts");
    let yaml = apiserver
        .service_account_kubeconfig_yaml(OPERATOR_NAMESPACE, SERVICE_ACCOUNT)
        .expect("token");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    // The operator never writes a spec, nor reads Secrets.
    let create = decisions
        .create(
            &PostParams::default(),
            &new_decision("x", ACCOUNT, "r", Action::Approve),
        )
        .await;
    match create {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert_eq!(
                status.message,
                "selfupgradedecisions.quicksight.selfupgrade.io is forbidden: User \
                 \"system:serviceaccount:selfupgrade-operator:selfupgrade-operator\" cannot create \
                 resource \"selfupgradedecisions\" in API group \"quicksight.selfupgrade.io\" in the \
                 namespace \"default\""
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(
        decisions.list(&Default::default()).await.is_ok(),
        "list is granted"
    );
    assert!(decisions.get_opt("x").await.is_err(), "get is not granted");
    apiserver.stop().await;
}
