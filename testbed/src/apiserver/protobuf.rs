//! Request bodies in `application/vnd.kubernetes.protobuf`, which kubectl's typed commands
//! (`create namespace`, `create serviceaccount`, `create configmap`, `create role`,
//! `create rolebinding`, …) send for built-in kinds. kube-apiserver's protobuf serializer
//! (k8s.io/apimachinery `runtime/serializer/protobuf`) frames an object as the 4-byte magic
//! `k8s\0` and a `runtime.Unknown` whose `raw` is the typed message; the messages are k8s-pb's.
//! Each is turned into the JSON object the rest of the server works with. Answers stay JSON,
//! which kubectl accepts alongside protobuf.
//!
//! Kinds without a protobuf message here (custom resources above all: a real server has none
//! for them either) are refused with 415, as kube-apiserver refuses a body it cannot decode.

use super::errors::ApiError;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

/// The media type, as `Content-Type` names it.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// Whether a `Content-Type` header names the protobuf media type.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().map(str::trim) == Some(MEDIA_TYPE)
}

/// The JSON object a protobuf request body encodes.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let framed = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| undecodable("the protobuf body does not start with the k8s magic"))?;
    let unknown =
        Unknown::decode(framed).map_err(|e| undecodable(&format!("runtime.Unknown: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let bad = |e: prost::DecodeError| undecodable(&format!("{api_version} {kind}: {e}"));
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(core::Namespace::decode(&raw[..]).map_err(bad)?),
        ("v1", "ServiceAccount") => {
            service_account(core::ServiceAccount::decode(&raw[..]).map_err(bad)?)
        }
        ("v1", "ConfigMap") => config_map(core::ConfigMap::decode(&raw[..]).map_err(bad)?),
        ("rbac.authorization.k8s.io/v1", "Role") => {
            let role = rbac::Role::decode(&raw[..]).map_err(bad)?;
            with_rules(role.metadata, &role.rules)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            let role = rbac::ClusterRole::decode(&raw[..]).map_err(bad)?;
            with_rules(role.metadata, &role.rules)
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            let binding = rbac::RoleBinding::decode(&raw[..]).map_err(bad)?;
            binding_json(binding.metadata, binding.role_ref, &binding.subjects)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            let binding = rbac::ClusterRoleBinding::decode(&raw[..]).map_err(bad)?;
            binding_json(binding.metadata, binding.role_ref, &binding.subjects)
        }
        _ => return Err(ApiError::not_protobuf_decodable(MEDIA_TYPE)),
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

fn undecodable(what: &str) -> ApiError {
    ApiError::bad_request(format!("the request body could not be decoded: {what}"))
}

/// Adds `value` under `key` unless it is empty (as JSON's `omitempty` leaves it out).
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.to_string(), value);
    }
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    let mut map = Map::new();
    put(&mut map, "name", json!(meta.name));
    put(&mut map, "generateName", json!(meta.generate_name));
    put(&mut map, "namespace", json!(meta.namespace));
    put(&mut map, "resourceVersion", json!(meta.resource_version));
    put(&mut map, "labels", json!(meta.labels));
    put(&mut map, "annotations", json!(meta.annotations));
    put(&mut map, "finalizers", json!(meta.finalizers));
    let owners: Vec<Value> = meta
        .owner_references
        .into_iter()
        .map(|owner| {
            json!({
                "apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name,
                "uid": owner.uid, "controller": owner.controller,
                "blockOwnerDeletion": owner.block_owner_deletion,
            })
        })
        .collect();
    put(&mut map, "ownerReferences", json!(owners));
    Value::Object(map)
}

fn namespace(namespace: core::Namespace) -> Value {
    let finalizers = namespace.spec.map(|s| s.finalizers).unwrap_or_default();
    let mut object = json!({ "metadata": metadata(namespace.metadata) });
    if !finalizers.is_empty() {
        object["spec"] = json!({ "finalizers": finalizers });
    }
    object
}

fn service_account(account: core::ServiceAccount) -> Value {
    let mut map = Map::new();
    map.insert("metadata".into(), metadata(account.metadata));
    let secrets: Vec<Value> = account
        .secrets
        .iter()
        .map(|s| json!({ "name": s.name, "namespace": s.namespace }))
        .collect();
    put(&mut map, "secrets", json!(secrets));
    let pulls: Vec<Value> = account
        .image_pull_secrets
        .iter()
        .map(|s| json!({ "name": s.name }))
        .collect();
    put(&mut map, "imagePullSecrets", json!(pulls));
    put(
        &mut map,
        "automountServiceAccountToken",
        json!(account.automount_service_account_token),
    );
    Value::Object(map)
}

fn config_map(config: core::ConfigMap) -> Value {
    use base64::Engine;
    let mut map = Map::new();
    map.insert("metadata".into(), metadata(config.metadata));
    put(&mut map, "data", json!(config.data));
    let binary: Map<String, Value> = config
        .binary_data
        .into_iter()
        .map(|(key, bytes)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            (key, json!(encoded))
        })
        .collect();
    put(&mut map, "binaryData", Value::Object(binary));
    put(&mut map, "immutable", json!(config.immutable));
    Value::Object(map)
}

fn with_rules(meta: Option<ObjectMeta>, rules: &[rbac::PolicyRule]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|rule| {
            let mut map = Map::new();
            put(&mut map, "verbs", json!(rule.verbs));
            put(&mut map, "apiGroups", json!(rule.api_groups));
            put(&mut map, "resources", json!(rule.resources));
            put(&mut map, "resourceNames", json!(rule.resource_names));
            put(&mut map, "nonResourceURLs", json!(rule.non_resource_ur_ls));
            Value::Object(map)
        })
        .collect();
    json!({ "metadata": metadata(meta), "rules": rules })
}

fn binding_json(
    meta: Option<ObjectMeta>,
    role_ref: Option<rbac::RoleRef>,
    subjects: &[rbac::Subject],
) -> Value {
    let role_ref = role_ref.unwrap_or_default();
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|s| {
            let mut map = Map::new();
            put(&mut map, "kind", json!(s.kind));
            put(&mut map, "apiGroup", json!(s.api_group));
            put(&mut map, "name", json!(s.name));
            put(&mut map, "namespace", json!(s.namespace));
            Value::Object(map)
        })
        .collect();
    let mut object = json!({
        "metadata": metadata(meta),
        "roleRef": {"apiGroup": role_ref.api_group, "kind": role_ref.kind, "name": role_ref.name},
    });
    if !subjects.is_empty() {
        object["subjects"] = json!(subjects);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    fn framed(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
    }

    #[test]
    fn a_config_map_in_protobuf_becomes_its_json() {
        let config = core::ConfigMap {
            metadata: Some(ObjectMeta {
                name: Some("settings".into()),
                labels: [("team".to_string(), "a".to_string())].into(),
                ..Default::default()
            }),
            data: [("mode".to_string(), "observe".to_string())].into(),
            binary_data: [("blob".to_string(), vec![0, 1, 2])].into(),
            immutable: None,
        };
        let object = decode(&framed("v1", "ConfigMap", config.encode_to_vec())).expect("decodes");
        assert_eq!(
            object,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "labels": {"team": "a"}},
                "data": {"mode": "observe"}, "binaryData": {"blob": "AAEC"},
            })
        );
    }

    #[test]
    fn custom_resources_and_unframed_bodies_are_refused() {
        let custom = decode(&framed(
            "quicksight.selfupgrade.io/v1alpha1",
            "SelfUpgradeDecision",
            vec![],
        ));
        assert_eq!(custom.map_err(|e| e.code.as_u16()), Err(415));
        let unframed = decode(b"{\"kind\": \"Namespace\"}");
        assert_eq!(unframed.map_err(|e| e.code.as_u16()), Err(400));
    }
}
