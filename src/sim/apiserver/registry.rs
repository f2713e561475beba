//! The resource types the API server serves: every CRD in a directory (read from its YAML, not
//! hard-coded) plus the few built-in kinds the operator and kubectl use.

use super::rbac::RBAC_GROUP;
use serde_json::{Value, json};
use std::path::Path;

/// One served (group, version, resource).
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Custom resources count `metadata.generation` and require a resourceVersion on update.
    pub custom: bool,
    /// `openAPIV3Schema`; `None` accepts any object (built-ins the server does not validate).
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
}

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as Kubernetes names a resource in messages.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` as Kubernetes names a kind in validation messages.
    pub fn kind_name(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The URL prefix of this type's collection, without namespace.
    pub fn base_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short: &[&str],
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            namespaced,
            status_subresource: plural == "namespaces",
            custom: false,
            schema: None,
            printer_columns: Vec::new(),
        }
    }
}

/// Why a CRD file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub types: Vec<ResourceType>,
}

impl Registry {
    /// The built-ins: namespaces, both Event APIs, and leases.
    pub fn with_builtins() -> Self {
        Self {
            types: vec![
                ResourceType::builtin("", "v1", "namespaces", "Namespace", false, &["ns"]),
                ResourceType::builtin("", "v1", "events", "Event", true, &["ev"]),
                ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
                ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
                // The other kinds `deploy/` installs, stored as plain objects (nothing runs).
                ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
                ResourceType::builtin("", "v1", "services", "Service", true, &["svc"]),
                ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
                ResourceType::builtin("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
                ResourceType::builtin(
                    "policy",
                    "v1",
                    "poddisruptionbudgets",
                    "PodDisruptionBudget",
                    true,
                    &["pdb"],
                ),
                ResourceType::builtin(
                    "networking.k8s.io",
                    "v1",
                    "networkpolicies",
                    "NetworkPolicy",
                    true,
                    &["netpol"],
                ),
                ResourceType::builtin(RBAC_GROUP, "v1", "roles", "Role", true, &[]),
                ResourceType::builtin(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", true, &[]),
                ResourceType::builtin(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", false, &[]),
                ResourceType::builtin(
                    RBAC_GROUP,
                    "v1",
                    "clusterrolebindings",
                    "ClusterRoleBinding",
                    false,
                    &[],
                ),
            ],
        }
    }

    /// Adds every CustomResourceDefinition found in the YAML files of `dir`.
    pub fn load_crd_dir(&mut self, dir: &Path) -> Result<usize, RegistryError> {
        let read_error = |source| RegistryError::Read {
            path: dir.display().to_string(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        paths.sort();
        let mut added = 0;
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| RegistryError::Read {
                path: path.display().to_string(),
                source,
            })?;
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(document).map_err(|source| {
                    RegistryError::Parse {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                if value["kind"] == "CustomResourceDefinition" {
                    added += self
                        .add_crd(&value)
                        .map_err(|message| RegistryError::Invalid {
                            path: path.display().to_string(),
                            message,
                        })?;
                }
            }
        }
        Ok(added)
    }

    /// Adds the served versions of one CRD.
    pub fn add_crd(&mut self, crd: &Value) -> Result<usize, String> {
        let spec = &crd["spec"];
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("CRD has no {what}"))
        };
        let group = text(&spec["group"], "spec.group")?;
        let names = &spec["names"];
        let plural = text(&names["plural"], "spec.names.plural")?;
        let kind = text(&names["kind"], "spec.names.kind")?;
        let singular = names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase());
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespaced = spec["scope"] != "Cluster";
        let mut added = 0;
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == false {
                continue;
            }
            let columns = version["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    type_: c["type"].as_str().unwrap_or("string").to_string(),
                    json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                    description: c["description"].as_str().unwrap_or_default().to_string(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                })
                .collect();
            self.types.push(ResourceType {
                group: group.clone(),
                version: text(&version["name"], "version name")?,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                namespaced,
                status_subresource: version["subresources"].get("status").is_some(),
                custom: true,
                schema: version["schema"].get("openAPIV3Schema").cloned(),
                printer_columns: columns,
            });
            added += 1;
        }
        Ok(added)
    }

    /// Index of the core `namespaces` type (always registered first by `with_builtins`).
    pub fn namespace_type_id(&self) -> usize {
        self.types
            .iter()
            .position(|t| t.group.is_empty() && t.plural == "namespaces")
            .unwrap_or(0)
    }

    /// Indexes of the RBAC types (Roles, ClusterRoles and their bindings).
    pub fn rbac_type_ids(&self) -> impl Iterator<Item = usize> + '_ {
        self.types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.group == RBAC_GROUP)
            .map(|(id, _)| id)
    }

    /// Index of the type of `kind` in `group`.
    pub fn type_id_of_kind(&self, group: &str, kind: &str) -> Option<usize> {
        self.types
            .iter()
            .position(|t| t.group == group && t.kind == kind)
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The groups other than core, in registration order, each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) if !versions.contains(&t.version) => {
                    versions.push(t.version.clone())
                }
                Some(_) => {}
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> {
        self.types
            .iter()
            .filter(move |t| t.group == group && t.version == version)
    }
}

/// The verbs every served type supports (for discovery).
pub fn verbs() -> Value {
    json!([
        "create", "delete", "get", "list", "patch", "update", "watch"
    ])
}
