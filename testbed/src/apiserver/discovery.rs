//! Discovery (`/version`, `/api`, `/apis`, per group-version lists, and the aggregated
//! discovery kubectl asks for first) and the OpenAPI v3 documents `kubectl apply` and
//! `kubectl explain` read.

use super::registry::{Registry, ResourceType, verbs};
use serde_json::{Value, json};
use sha2::Digest as _;

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client prefers aggregated discovery (kubectl 1.32 does; it falls back to the
/// legacy lists otherwise).
pub fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').next().is_some_and(|first| {
            first.contains("g=apidiscovery.k8s.io")
                && first.contains("v=v2")
                && !first.contains("v2beta1")
        })
    })
}

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-selfupgrade-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64",
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry.in_group_version(group, version).collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        resources.push(json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": verbs(), "shortNames": t.short_names, "categories": t.categories,
        }));
        if t.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `APIGroupDiscoveryList` for `/api` (core) or `/apis` (all other groups).
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        registry.groups()
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = registry
                        .in_group_version(&group, version)
                        .map(|t| {
                            let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
                            let mut resource = json!({
                                "resource": t.plural, "responseKind": kind,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular, "verbs": verbs(),
                                "shortNames": t.short_names, "categories": t.categories,
                            });
                            if t.status_subresource {
                                resource["subresources"] = json!([{
                                    "subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"],
                                }]);
                            }
                            resource
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if group.is_empty() { json!({"creationTimestamp": null}) } else { json!({"name": group, "creationTimestamp": null}) };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// `/openapi/v3`: where each group-version's document lives. The `hash` changes with the
/// document, as a real server's does: kubectl keeps documents in its cache by URL, so a CRD's
/// new schema must come under a new one.
pub fn openapi_root(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    let group_versions = std::iter::once((String::new(), vec!["v1".to_string()]))
        .chain(registry.groups())
        .flat_map(|(group, versions)| versions.into_iter().map(move |v| (group.clone(), v)));
    for (group, version) in group_versions {
        let Some(document) = openapi_group_version(registry, &group, &version) else {
            continue;
        };
        let key = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        let hash = hex::encode_upper(sha2::Sha512::digest(document.to_string().as_bytes()));
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group-version: each kind's schema (the CRD's, with
/// apiVersion/kind/metadata added) and the operations, whose `fieldValidation` parameter tells
/// kubectl to let the server validate fields.
pub fn openapi_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry.in_group_version(group, version).collect();
    if types.is_empty() {
        return None;
    }
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for t in types {
        let name = schema_name(t);
        let mut schema = t.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("apiVersion".into(), json!({"type": "string"}));
            properties.insert("kind".into(), json!({"type": "string"}));
            properties.insert(
                "metadata".into(),
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        schemas.insert(name.clone(), schema);

        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let responses = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
        let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let operation = |action: &str| {
            json!({
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                "parameters": [field_validation], "requestBody": body, "responses": responses,
            })
        };
        let item_path = if t.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}/{{name}}",
                t.base_path(),
                t.plural
            )
        } else {
            format!("{}/{}/{{name}}", t.base_path(), t.plural)
        };
        let collection_path = item_path.trim_end_matches("/{name}").to_string();
        paths.insert(
            item_path,
            json!({"get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": responses},
                   "put": operation("put"), "patch": operation("patch")}),
        );
        paths.insert(collection_path, json!({"post": operation("post")}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `io.selfupgrade.quicksight.v1alpha1.SelfUpgradeDecision`: reversed group, version, kind.
fn schema_name(t: &ResourceType) -> String {
    let group: Vec<&str> = if t.group.is_empty() {
        vec!["io", "k8s", "api", "core"]
    } else {
        t.group.split('.').rev().collect()
    };
    format!("{}.{}.{}", group.join("."), t.version, t.kind)
}
