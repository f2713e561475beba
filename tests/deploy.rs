//! `deploy/` builds with kustomize and every manifest parses into its typed Kubernetes struct.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use std::process::Command;

fn kustomize() -> Option<String> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    match Command::new("kubectl").args(["kustomize", deploy]).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some(String::from_utf8(output.stdout).expect("utf-8"))
        }
        Err(error) => {
            eprintln!("skipped: kubectl is not available ({error})");
            None
        }
    }
}

#[test]
fn deploy_builds_and_every_manifest_is_typed() {
    let Some(rendered) = kustomize() else { return };
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let value = serde_yaml::Value::deserialize(document).expect("yaml");
        let kind = value["kind"].as_str().expect("kind").to_string();
        let typed = match kind.as_str() {
            "Namespace" => serde_yaml::from_value::<Namespace>(value).map(|_| ()),
            "CustomResourceDefinition" => {
                serde_yaml::from_value::<CustomResourceDefinition>(value).map(|_| ())
            }
            "ServiceAccount" => serde_yaml::from_value::<ServiceAccount>(value).map(|_| ()),
            "ClusterRole" => serde_yaml::from_value::<ClusterRole>(value).map(|_| ()),
            "ClusterRoleBinding" => serde_yaml::from_value::<ClusterRoleBinding>(value).map(|_| ()),
            "Role" => serde_yaml::from_value::<Role>(value).map(|_| ()),
            "RoleBinding" => serde_yaml::from_value::<RoleBinding>(value).map(|_| ()),
            other => panic!("unexpected kind {other} in deploy/"),
        };
        typed.unwrap_or_else(|e| panic!("{kind} does not parse: {e}"));
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Namespace",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
}

#[test]
fn the_operator_is_granted_no_wildcards_and_no_secrets() {
    let Some(rendered) = kustomize() else { return };
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let value = serde_yaml::Value::deserialize(document).expect("yaml");
        let rules = match value["kind"].as_str() {
            Some("ClusterRole") => {
                serde_yaml::from_value::<ClusterRole>(value)
                    .expect("typed")
                    .rules
            }
            Some("Role") => serde_yaml::from_value::<Role>(value).expect("typed").rules,
            _ => continue,
        };
        for rule in rules.unwrap_or_default() {
            let resources = rule.resources.unwrap_or_default();
            assert!(!rule.verbs.iter().any(|v| v == "*"), "wildcard verb");
            assert!(
                !resources.iter().any(|r| r == "*" || r == "secrets"),
                "{resources:?}"
            );
        }
    }
}
