//! Role-based access control as Kubernetes evaluates it (the RBAC authorizer), for service
//! account identities: ClusterRoleBindings grant a ClusterRole everywhere, RoleBindings grant a
//! Role or ClusterRole in their namespace, and a request is allowed when any granted rule
//! matches its verb, API group, resource (with subresource) and name. Plus an audit of every
//! (verb, group, resource) a subject used, so tests can compare what is used with what is
//! granted. No kept crate evaluates RBAC rules outside a cluster, hence this module.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use std::collections::BTreeSet;

/// What a request asks to do, as the authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// `plural` or `plural/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// One permission: (verb, group, resource), granted at cluster scope (`namespace: None`) or in
/// one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

/// The Roles, ClusterRoles and bindings of a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// The kinds of `rbac.authorization.k8s.io/v1` that grant permissions.
pub const RBAC_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// The API group of [`RBAC_KINDS`].
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The user name Kubernetes gives a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

impl Rbac {
    /// The RBAC objects among the YAML documents of `manifests`; other kinds are skipped.
    pub fn objects_in(manifests: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut objects = Vec::new();
        for document in serde_yaml::Deserializer::from_str(manifests) {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            let object = serde_json::to_value(&value).map_err(|e| e.to_string())?;
            if RBAC_KINDS.contains(&object["kind"].as_str().unwrap_or_default()) {
                // A manifest that does not parse fails the start, where its author sees it;
                // one written later through the API only grants nothing.
                Self::default().add(&object)?;
                objects.push(object);
            }
        }
        Ok(objects)
    }

    /// The RBAC in force for `objects` (Roles, ClusterRoles and their bindings, as stored). An
    /// object that does not parse grants nothing.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a serde_json::Value>) -> Self {
        let mut rbac = Self::default();
        for object in objects {
            if let Err(error) = rbac.add(object) {
                tracing::warn!(%error, "an RBAC object that grants nothing");
            }
        }
        rbac
    }

    fn add(&mut self, object: &serde_json::Value) -> Result<(), String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let parse_error = |e: serde_json::Error| format!("{kind} does not parse: {e}");
        let owned = object.clone();
        match kind {
            "Role" => self
                .roles
                .push(serde_json::from_value(owned).map_err(parse_error)?),
            "ClusterRole" => self
                .cluster_roles
                .push(serde_json::from_value(owned).map_err(parse_error)?),
            "RoleBinding" => self
                .role_bindings
                .push(serde_json::from_value(owned).map_err(parse_error)?),
            "ClusterRoleBinding" => self
                .cluster_role_bindings
                .push(serde_json::from_value(owned).map_err(parse_error)?),
            _ => {}
        }
        Ok(())
    }

    /// The rules `user` holds, each with the namespace it holds them in (`None`: everywhere).
    fn rules_of(&self, user: &str) -> Vec<(Option<String>, &PolicyRule)> {
        let mut held = Vec::new();
        for binding in &self.cluster_role_bindings {
            if binds(binding.subjects.as_deref(), user) {
                for rule in self.cluster_role_rules(&binding.role_ref.name) {
                    held.push((None, rule));
                }
            }
        }
        for binding in &self.role_bindings {
            let namespace = binding.metadata.namespace.clone().unwrap_or_default();
            if !binds(binding.subjects.as_deref(), user) {
                continue;
            }
            let rules: Vec<&PolicyRule> = match binding.role_ref.kind.as_str() {
                "ClusterRole" => self.cluster_role_rules(&binding.role_ref.name),
                _ => self
                    .roles
                    .iter()
                    .filter(|r| {
                        r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref() == Some(namespace.as_str())
                    })
                    .flat_map(|r| r.rules.iter().flatten())
                    .collect(),
            };
            held.extend(
                rules
                    .into_iter()
                    .map(|rule| (Some(namespace.clone()), rule)),
            );
        }
        held
    }

    fn cluster_role_rules(&self, name: &str) -> Vec<&PolicyRule> {
        self.cluster_roles
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(name))
            .flat_map(|r| r.rules.iter().flatten())
            .collect()
    }

    /// Whether `user` may do what `request` asks.
    pub fn allows(&self, user: &str, request: &Attributes) -> bool {
        self.rules_of(user).into_iter().any(|(scope, rule)| {
            let in_scope = match (&scope, &request.namespace) {
                (None, _) => true,
                (Some(granted), Some(asked)) => granted == asked,
                // A namespaced grant never covers a cluster-wide request.
                (Some(_), None) => false,
            };
            in_scope && rule_matches(rule, request)
        })
    }

    /// Every (verb, group, resource, scope) granted to `user`, wildcards left as `*`.
    pub fn permissions_of(&self, user: &str) -> BTreeSet<Permission> {
        let mut granted = BTreeSet::new();
        for (namespace, rule) in self.rules_of(user) {
            for verb in &rule.verbs {
                for group in rule.api_groups.iter().flatten() {
                    for resource in rule.resources.iter().flatten() {
                        granted.insert(Permission {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: resource.clone(),
                            namespace: namespace.clone(),
                        });
                    }
                }
            }
        }
        granted
    }
}

fn binds(subjects: Option<&[k8s_openapi::api::rbac::v1::Subject]>, user: &str) -> bool {
    subjects
        .into_iter()
        .flatten()
        .any(|subject| match subject.kind.as_str() {
            "ServiceAccount" => {
                service_account_user(
                    subject.namespace.as_deref().unwrap_or_default(),
                    &subject.name,
                ) == user
            }
            "User" => subject.name == user,
            _ => false,
        })
}

fn rule_matches(rule: &PolicyRule, request: &Attributes) -> bool {
    let any = |values: Option<&Vec<String>>, wanted: &str| {
        values
            .into_iter()
            .flatten()
            .any(|v| v == "*" || v == wanted)
    };
    any(Some(&rule.verbs), &request.verb)
        && any(rule.api_groups.as_ref(), &request.group)
        && any(rule.resources.as_ref(), &request.resource)
        && match (&rule.resource_names, &request.name) {
            (None, _) => true,
            (Some(names), _) if names.is_empty() => true,
            (Some(names), Some(name)) => names.contains(name),
            (Some(_), None) => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
  - apiGroups: ["example.io"]
    resources: ["widgets"]
    verbs: ["list", "watch"]
  - apiGroups: ["example.io"]
    resources: ["widgets/status"]
    verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leases, namespace: ops}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get"]
    resourceNames: ["op-lock"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leases, namespace: ops}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}
subjects: [{kind: ServiceAccount, name: op, namespace: ops}]
"#;

    fn ask(
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn cluster_grants_apply_everywhere_and_role_grants_in_their_namespace_only() {
        let rbac = Rbac::from_objects(&Rbac::objects_in(MANIFESTS).expect("parses"));
        let op = service_account_user("ops", "op");
        assert!(rbac.allows(&op, &ask("list", "example.io", "widgets", None, None)));
        assert!(rbac.allows(
            &op,
            &ask("watch", "example.io", "widgets", Some("team"), None)
        ));
        assert!(rbac.allows(
            &op,
            &ask(
                "patch",
                "example.io",
                "widgets/status",
                Some("team"),
                Some("w")
            )
        ));
        assert!(!rbac.allows(
            &op,
            &ask("patch", "example.io", "widgets", Some("team"), Some("w"))
        ));
        assert!(!rbac.allows(
            &op,
            &ask("get", "example.io", "widgets", Some("team"), Some("w"))
        ));
        assert!(rbac.allows(
            &op,
            &ask(
                "get",
                "coordination.k8s.io",
                "leases",
                Some("ops"),
                Some("op-lock")
            )
        ));
        assert!(!rbac.allows(
            &op,
            &ask(
                "get",
                "coordination.k8s.io",
                "leases",
                Some("ops"),
                Some("other")
            )
        ));
        assert!(!rbac.allows(
            &op,
            &ask(
                "get",
                "coordination.k8s.io",
                "leases",
                Some("team"),
                Some("op-lock")
            )
        ));
        let stranger = service_account_user("ops", "someone-else");
        assert!(!rbac.allows(&stranger, &ask("list", "example.io", "widgets", None, None)));
    }

    #[test]
    fn permissions_enumerate_every_grant_with_its_scope() {
        let rbac = Rbac::from_objects(&Rbac::objects_in(MANIFESTS).expect("parses"));
        let granted = rbac.permissions_of(&service_account_user("ops", "op"));
        let listed: Vec<String> = granted
            .iter()
            .map(|p| format!("{} {}/{} {:?}", p.verb, p.group, p.resource, p.namespace))
            .collect();
        assert_eq!(
            listed,
            [
                "get coordination.k8s.io/leases Some(\"ops\")",
                "list example.io/widgets None",
                "patch example.io/widgets/status None",
                "watch example.io/widgets None",
            ]
        );
    }
}
