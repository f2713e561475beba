//! `deploy/` and its overlays build with kustomize, every manifest parses into its typed
//! Kubernetes struct, the Deployment is hardened, RBAC has no wildcards or Secrets, and the IAM
//! policy grants exactly the operator's AWS actions. (That the RBAC is also sufficient and
//! minimal is tests/rbac.rs.)

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::process::Command;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const VARIANTS: [&str; 5] = [
    "",
    "/overlays/ha",
    "/overlays/single-namespace",
    "/overlays/mirror",
    "/overlays/notifications",
];

/// `kubectl kustomize deploy<variant>`, or `None` where kubectl is missing (a failure under
/// `REQUIRE_KUBECTL=1`, as in CI).
fn kustomize(variant: &str) -> Option<Vec<serde_yaml::Value>> {
    let path = format!("{DEPLOY}{variant}");
    match Command::new("kubectl").args(["kustomize", &path]).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let text = String::from_utf8(output.stdout).expect("utf-8");
            Some(
                serde_yaml::Deserializer::from_str(&text)
                    .map(|d| serde_yaml::Value::deserialize(d).expect("yaml"))
                    .collect(),
            )
        }
        Err(error) => {
            assert!(
                std::env::var("REQUIRE_KUBECTL").as_deref() != Ok("1"),
                "kubectl is required (REQUIRE_KUBECTL=1) but does not run: {error}"
            );
            eprintln!("skipped: kubectl is not available ({error})");
            None
        }
    }
}

fn typed<T: DeserializeOwned>(value: &serde_yaml::Value) -> T {
    serde_yaml::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{:?} does not parse: {e}", value["kind"]))
}

fn of_kind<T: DeserializeOwned>(documents: &[serde_yaml::Value], kind: &str) -> Vec<T> {
    documents
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(typed)
        .collect()
}

#[test]
fn every_variant_builds_and_every_manifest_is_typed() {
    for variant in VARIANTS {
        let Some(documents) = kustomize(variant) else {
            return;
        };
        let mut kinds = Vec::new();
        for document in &documents {
            let kind = document["kind"].as_str().expect("kind").to_string();
            match kind.as_str() {
                "Namespace" => drop(typed::<Namespace>(document)),
                "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(document)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(document)),
                "ClusterRole" => drop(typed::<ClusterRole>(document)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(document)),
                "Role" => drop(typed::<Role>(document)),
                "RoleBinding" => drop(typed::<RoleBinding>(document)),
                "Deployment" => drop(typed::<Deployment>(document)),
                "Service" => drop(typed::<Service>(document)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(document)),
                "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(document)),
                other => panic!("unexpected kind {other} in deploy{variant}"),
            }
            kinds.push(kind);
        }
        for required in [
            "CustomResourceDefinition",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ] {
            assert!(
                kinds.iter().any(|k| k == required),
                "deploy{variant} lacks a {required}"
            );
        }
        assert_eq!(
            kinds
                .iter()
                .filter(|k| *k == "CustomResourceDefinition")
                .count(),
            selfupgrade_operator::cli::crds().len()
        );
    }
}

#[test]
fn the_deployment_is_hardened_and_its_grace_period_covers_the_drain() {
    for variant in VARIANTS {
        let Some(documents) = kustomize(variant) else {
            return;
        };
        let deployment = of_kind::<Deployment>(&documents, "Deployment").remove(0);
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        let pod_security = pod.security_context.expect("pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let container = &pod.containers[0];
        let security = container
            .security_context
            .clone()
            .expect("container securityContext");
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let dropped = security
            .capabilities
            .and_then(|c| c.drop)
            .unwrap_or_default();
        assert_eq!(dropped, ["ALL"]);
        let resources = container.resources.clone().expect("resources");
        assert!(
            resources
                .requests
                .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory"))
        );
        assert!(resources.limits.is_some_and(|l| l.contains_key("memory")));
        assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some());
        let args = container.args.clone().unwrap_or_default();
        assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
        let drain: u64 = args
            .iter()
            .find_map(|a| a.strip_prefix("--drain-timeout="))
            .and_then(|d| humantime::parse_duration(d).ok())
            .expect("--drain-timeout")
            .as_secs();
        let grace = pod.termination_grace_period_seconds.expect("grace period");
        assert!(
            grace as u64 > drain,
            "grace {grace}s must exceed the drain {drain}s"
        );
    }
}

#[test]
fn the_namespace_enforces_restricted_pods_and_only_monitoring_scrapes_metrics() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let Some(documents) = kustomize("") else {
        return;
    };
    let namespace = of_kind::<Namespace>(&documents, "Namespace").remove(0);
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let policy = of_kind::<NetworkPolicy>(&documents, "NetworkPolicy").remove(0);
    let ingress = policy.spec.and_then(|s| s.ingress).unwrap_or_default();
    let port_of = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        let ports = rule.ports.clone().unwrap_or_default();
        ports
            .iter()
            .filter_map(|p| p.port.clone())
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
    };
    for rule in &ingress {
        let ports = port_of(rule);
        if ports.iter().any(|p| p.contains("metrics")) {
            let from = rule.from.clone().unwrap_or_default();
            let selector = from
                .first()
                .and_then(|peer| peer.namespace_selector.clone())
                .and_then(|s| s.match_labels)
                .unwrap_or_default();
            assert_eq!(
                selector
                    .get("kubernetes.io/metadata.name")
                    .map(String::as_str),
                Some("monitoring"),
                "metrics only from the monitoring namespace"
            );
        }
    }
    assert!(
        ingress
            .iter()
            .any(|r| port_of(r).iter().any(|p| p.contains("health")))
    );
}

#[test]
fn rbac_has_no_wildcards_and_no_secrets() {
    for variant in VARIANTS {
        let Some(documents) = kustomize(variant) else {
            return;
        };
        let rules: Vec<PolicyRule> = of_kind::<ClusterRole>(&documents, "ClusterRole")
            .into_iter()
            .flat_map(|r| r.rules.unwrap_or_default())
            .chain(
                of_kind::<Role>(&documents, "Role")
                    .into_iter()
                    .flat_map(|r| r.rules.unwrap_or_default()),
            )
            .collect();
        for rule in rules {
            let resources = rule.resources.unwrap_or_default();
            assert!(!rule.verbs.iter().any(|v| v == "*"), "wildcard verb");
            assert!(
                !resources.iter().any(|r| r == "*" || r == "secrets"),
                "{resources:?}"
            );
            assert!(
                !rule.api_groups.unwrap_or_default().iter().any(|g| g == "*"),
                "wildcard group"
            );
        }
    }
}

#[test]
fn single_namespace_mode_grants_decisions_and_events_in_that_namespace_only() {
    let Some(documents) = kustomize("/overlays/single-namespace") else {
        return;
    };
    let cluster_resources: Vec<String> = of_kind::<ClusterRole>(&documents, "ClusterRole")
        .into_iter()
        .flat_map(|r| r.rules.unwrap_or_default())
        .flat_map(|r| r.resources.unwrap_or_default())
        .collect();
    assert!(
        !cluster_resources
            .iter()
            .any(|r| r.starts_with("selfupgradedecisions") || r == "events"),
        "{cluster_resources:?}"
    );
    let roles = of_kind::<Role>(&documents, "Role");
    let decisions_role = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("selfupgrade-operator-decisions"))
        .expect("namespaced role");
    let watched = of_kind::<Deployment>(&documents, "Deployment")[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].args.clone())
        .unwrap_or_default()
        .into_iter()
        .find_map(|a| a.strip_prefix("--namespace=").map(str::to_string))
        .expect("--namespace");
    assert_eq!(
        decisions_role.metadata.namespace.as_deref(),
        Some(watched.as_str())
    );
    // Events about bindings (cluster-scoped) go to `default`: only creating Events is granted.
    let binding_events = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("selfupgrade-operator-binding-events"))
        .expect("binding events role");
    assert_eq!(
        binding_events.metadata.namespace.as_deref(),
        Some("default")
    );
    let rules = binding_events.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["events".to_string()][..])
    );
    assert_eq!(rules[0].verbs, ["create"]);
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{DEPLOY}/{name}")).expect(name);
    serde_json::from_str(&text).expect("json")
}

/// Every action a policy allows, sorted (every statement must allow).
fn allowed_actions(policy: &Value) -> Vec<String> {
    let mut actions: Vec<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .inspect(|s| assert_eq!(s["Effect"], "Allow"))
        .flat_map(|s| match &s["Action"] {
            Value::String(one) => vec![one.clone()],
            many => many
                .as_array()
                .expect("actions")
                .iter()
                .map(|a| a.as_str().expect("action").to_string())
                .collect(),
        })
        .collect();
    actions.sort();
    actions
}

/// The base policy needs nothing for the approval mode; the additions grant reading it
/// (`Observe`) and writing it (`Enforce`), each in a statement of its own so that an
/// `Observe`-only install attaches the first alone.
#[test]
fn the_approval_mode_permissions_are_a_separate_policy_one_statement_each() {
    let additions = json("iam-policy-approval-mode.json");
    assert_eq!(
        allowed_actions(&additions),
        [
            "quicksight:DescribeSelfUpgradeConfiguration",
            "quicksight:UpdateSelfUpgradeConfiguration"
        ]
    );
    let sids: Vec<&str> = additions["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["Sid"].as_str().expect("sid"))
        .collect();
    assert_eq!(sids, ["ObserveTheApprovalMode", "EnforceTheApprovalMode"]);
    assert!(
        !allowed_actions(&json("iam-policy.json"))
            .iter()
            .any(|a| a.contains("SelfUpgradeConfiguration")),
        "the base policy does without them"
    );
}

/// The operator role's trust policies let only the operator's ServiceAccount assume it: by
/// the IRSA token's subject, or by the session tags EKS Pod Identity sets.
#[test]
fn the_operator_role_trusts_only_the_operators_service_account() {
    let service_account = "system:serviceaccount:selfupgrade-operator:selfupgrade-operator";
    let irsa = json("iam-operator-trust-irsa.json");
    let statement = &irsa["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let equals = statement["Condition"]["StringEquals"]
        .as_object()
        .expect("conditions");
    let subject = equals.iter().find(|(key, _)| key.ends_with(":sub"));
    assert_eq!(
        subject.map(|(_, v)| v.as_str()),
        Some(Some(service_account))
    );
    assert!(
        equals
            .iter()
            .any(|(key, value)| key.ends_with(":aud") && value == "sts.amazonaws.com")
    );

    let pod_identity = json("iam-operator-trust-pod-identity.json");
    let statement = &pod_identity["Statement"][0];
    assert_eq!(statement["Principal"]["Service"], "pods.eks.amazonaws.com");
    let tags = &statement["Condition"]["StringEquals"];
    assert_eq!(
        tags["aws:RequestTag/kubernetes-namespace"],
        "selfupgrade-operator"
    );
    assert_eq!(
        tags["aws:RequestTag/kubernetes-service-account"],
        "selfupgrade-operator"
    );
}

#[test]
fn the_iam_policy_grants_exactly_the_operators_actions() {
    let policy = json("iam-policy.json");
    let actions = allowed_actions(&policy);
    assert_eq!(
        actions,
        [
            "quicksight:ListSelfUpgrades",
            "quicksight:UpdateSelfUpgrade",
            "sts:AssumeRole"
        ]
    );
    let assume = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"] == "sts:AssumeRole")
        .expect("sts statement");
    assert_ne!(
        assume["Resource"], "*",
        "AssumeRole is limited to the bound roles"
    );
    // The service authorization reference gives both QuickSight actions the required resource
    // type `user` (arn:${Partition}:quicksight:${Region}:${Account}:user/${ResourceId}).
    let decide = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == "DecideSelfUpgrades")
        .expect("QuickSight statement");
    assert_eq!(decide["Resource"], "arn:aws:quicksight:*:*:user/*");

    let trust = json("iam-trust-policy.json");
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert!(
        statement["Principal"]["AWS"]
            .as_str()
            .is_some_and(|p| p.contains(":role/"))
    );
    assert!(statement["Condition"]["StringEquals"]["sts:ExternalId"].is_string());
}

/// The monitoring overlay: a ServiceMonitor on the metrics Service's port, and a PrometheusRule
/// whose groups are deploy/prometheus/rules.yaml's, so that the two ways to install the alerts
/// cannot drift apart.
#[test]
fn the_monitoring_overlay_scrapes_the_metrics_port_and_carries_the_rules_file() {
    let Some(documents) = kustomize("/overlays/monitoring") else {
        return;
    };
    let of = |kind: &str| {
        documents
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .cloned()
            .collect::<Vec<_>>()
    };
    let monitor = of("ServiceMonitor").remove(0);
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
    let service = of("Service").remove(0);
    assert_eq!(
        service["spec"]["ports"][0]["name"].as_str(),
        Some("metrics")
    );
    let rule = of("PrometheusRule").remove(0);
    let file: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/prometheus/rules.yaml")).expect("rules file"),
    )
    .expect("yaml");
    assert_eq!(rule["spec"]["groups"], file["groups"]);
}

/// The notifications overlay hands the operator the webhook URL as a file from a Secret (never
/// as a flag's value, which shows in the pod spec) and lets it keep its record: the ConfigMap
/// `run` names by default, by name.
#[test]
fn the_notifications_overlay_mounts_the_url_from_a_secret_and_grants_the_record_by_name() {
    use clap::Parser;
    let Some(documents) = kustomize("/overlays/notifications") else {
        return;
    };
    let deployment: Deployment = of_kind(&documents, "Deployment").remove(0);
    let pod = deployment.spec.and_then(|s| s.template.spec).expect("pod");
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    let file = args
        .iter()
        .find_map(|a| a.strip_prefix("--notify-url-file="))
        .expect("--notify-url-file");
    assert!(!args.iter().any(|a| a.starts_with("--notify-url=")));
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    let mount = mounts
        .iter()
        .find(|m| file.starts_with(&format!("{}/", m.mount_path)))
        .expect("a mount holds the URL file");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    assert!(volume.secret.is_some(), "the URL comes from a Secret");

    let argv = ["selfupgrade-operator", "run"];
    let selfupgrade_operator::cli::Command::Run(run) =
        selfupgrade_operator::cli::Cli::try_parse_from(argv)
            .expect("parses")
            .command
    else {
        panic!("not run");
    };
    let rules: Vec<PolicyRule> = of_kind::<Role>(&documents, "Role")
        .into_iter()
        .flat_map(|r| r.rules.unwrap_or_default())
        .filter(|r| r.resources.iter().flatten().any(|r| r == "configmaps"))
        .collect();
    let by_name = rules
        .iter()
        .find(|r| r.resource_names.is_some())
        .expect("a rule for the record by name");
    assert_eq!(
        by_name.resource_names,
        Some(vec![run.notify_record.clone()])
    );
    assert_eq!(by_name.verbs, ["get", "update"]);
}
