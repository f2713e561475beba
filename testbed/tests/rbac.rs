//! Least privilege, proven: the embedded API server enforces the RBAC objects of `deploy/` for
//! the operator's ServiceAccount, the operator binary runs as that ServiceAccount (with leader
//! election, account bindings and Events), and the scenario passes (the grants suffice). Then
//! the permissions it used must equal the permissions granted (the grants are minimal): a grant
//! never used fails the test.

mod common;

use common::processes::{BIN, Process};
use common::{ACCESS_KEY, ACCOUNT, REGION, SECRET, is, new_decision, request, start_sim, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use selfupgrade_operator::api::{
    Action, PolicyMatch, QuickSightAccount, QuickSightAccountSpec, SelfUpgradeDecision,
    SelfUpgradePolicy,
};
use selfupgrade_operator::policy_plan::{decision_for_match, decision_name};
use selfupgrade_operator::quicksight::{RequestDetail, RequestStatus};
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
    // The base, and the notifications overlay's Role (the operator runs with notifications).
    let manifests = [
        include_str!("../../deploy/base/rbac.yaml"),
        include_str!("../../deploy/overlays/notifications/notify-role.yaml"),
    ]
    .join("\n---\n");
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
    let routine = selfupgrade_testbed::quicksight::SimRequest {
        requested_role: "READER_PRO".into(),
        ..request("routine")
    };
    let sim = start_sim(vec![request("approve-me"), request("deny-me"), routine]).await;

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
    let (received, url_file) = common::webhook::start_receiver(0).await;
    let _operator = Process::new(
        Command::new(BIN)
            .args(["run", "--quicksight-endpoint", &sim.endpoint()])
            .args(["--notify-interval", "500ms", "--notify-url-file"])
            .arg(url_file.path())
            .args(["--leader-elect", "--lease-namespace", OPERATOR_NAMESPACE])
            .args(["--lease-duration", "3s", "--lease-grace", "1s"])
            .args([
                "--account-status-interval",
                "500ms",
                "--awaiting-recheck",
                "1s",
                "--policy-interval",
                "500ms",
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

    // The three requests are notified while they wait (deciding them first would leave nothing
    // to notify); their record, created now, is replaced once they are decided.
    received
        .until("NewRequest", 3, Duration::from_secs(20))
        .await;
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
    // Sufficient: the scenario converges under the granted permissions.
    for name in ["approve", "deny"] {
        wait_for(&decisions, name, 60, |d| is(d, "Ready", "True", "Applied")).await;
    }
    enforce_a_policy(&admin, &decisions).await;
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
    // The binding's status, written by the operator, counts the decisions.
    let bindings = Api::<QuickSightAccount>::all(admin.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let binding = bindings.get("tenant-a").await.expect("binding");
        let bound = binding.status.and_then(|s| s.bound_decisions);
        // The persons' two and the policy's one.
        if bound == Some(3) {
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

/// A policy in the tenant's namespace, whose status the operator writes: in Enforce it creates
/// the decision for `routine` (holding its finalizer), a decision it created that a person's
/// supersedes stands down, and deleted, it releases the decision that acted.
async fn enforce_a_policy(admin: &kube::Client, decisions: &Api<SelfUpgradeDecision>) {
    let mut policy: SelfUpgradePolicy = serde_yaml::from_str(include_str!(
        "../../examples/policies/routine-upgrades.yaml"
    ))
    .expect("example policy");
    policy.spec.mode = selfupgrade_operator::api::PolicyMode::Enforce;
    // Only the READER_PRO rule: the other requests are the persons'.
    policy.spec.rules.truncate(1);
    policy.spec.rules[0].original_roles.clear();
    let policies = Api::<SelfUpgradePolicy>::namespaced(admin.clone(), "team-a");
    let policy = policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    let created = decision_name(ACCOUNT, "default", "routine");
    wait_for(decisions, &created, 60, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;
    // As if the policy had created one for a request a person decided meanwhile.
    let superseded = decision_for_match(
        &policy,
        &PolicyMatch {
            upgrade_request_id: "approve-me".into(),
            rule: "reader-pro-for-everyone".into(),
            action: Action::Approve,
            user_name: None,
            original_role: None,
            requested_role: None,
        },
        &RequestDetail::new("approve-me", RequestStatus::Pending),
    );
    decisions
        .create(&PostParams::default(), &superseded)
        .await
        .expect("created");
    common::wait_until_gone(decisions, &superseded.name_any()).await;
    policies
        .delete(&policy.name_any(), &DeleteParams::default())
        .await
        .expect("deleted");
    common::wait_until_gone(&policies, &policy.name_any()).await;
    let kept = decisions.get(&created).await.expect("kept");
    assert!(kept.owner_references().is_empty(), "released");
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
        namespaces: vec!["default".into(), OPERATOR_NAMESPACE.into()],
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
    // The operator never writes a binding (that would let it widen its tenants' reach).
    let bindings: Api<QuickSightAccount> = Api::all(client.clone());
    let binding = QuickSightAccount::new("x", QuickSightAccountSpec::default());
    match bindings.create(&PostParams::default(), &binding).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert_eq!(
                status.message,
                "quicksightaccounts.quicksight.selfupgrade.io is forbidden: User \
                 \"system:serviceaccount:selfupgrade-operator:selfupgrade-operator\" cannot create \
                 resource \"quicksightaccounts\" in API group \"quicksight.selfupgrade.io\" at the \
                 cluster scope"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(
        decisions.list(&Default::default()).await.is_ok(),
        "list is granted"
    );
    assert!(decisions.get_opt("x").await.is_err(), "get is not granted");
    // Leases: the operator's own only, listed by name, and created.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let own = kube::api::ListParams::default().fields("metadata.name=selfupgrade-operator");
    assert!(leases.list(&own).await.is_ok(), "its own Lease, by name");
    let forbidden = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    assert!(
        forbidden(leases.list(&Default::default()).await.map(drop)),
        "every Lease"
    );
    assert!(
        forbidden(leases.get("another-lock").await.map(drop)),
        "another Lease"
    );
    let mut lease = k8s_openapi::api::coordination::v1::Lease::default();
    lease.metadata.name = Some("selfupgrade-operator".into());
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create is granted");
    apiserver.stop().await;
}
