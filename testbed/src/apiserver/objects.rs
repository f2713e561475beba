//! The verbs on objects: get, list, watch, create, update, patch (merge, JSON, apply), delete,
//! and the status subresource, with the API server's rules for resourceVersion, generation,
//! status isolation, finalizers, validation and field ownership.

use super::apply;
use super::errors::ApiError;
use super::event_views::{self, EventShape};
use super::meta_validation;
use super::persist::PersistError;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{ApiState, Target};
use super::store::{ChangeKind, ObjectKey, Store};
use super::table;
use super::watch::{self, WatchRequest};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// kube-rs and client-go ask for watches of ~5 minutes; without `timeoutSeconds`, 30 minutes.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Whether the query asks for a watch (`watch=true` or `watch=1`).
pub fn is_watch(query: &HashMap<String, String>) -> bool {
    matches!(query.get("watch").map(String::as_str), Some("true" | "1"))
}

pub fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": now(),
                     "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// Gives an object created outside a request (at start) the uid and creation time a create
/// gives.
pub fn stamp_new(object: &mut Value) {
    object["metadata"]["uid"] = json!(new_uid());
    object["metadata"]["creationTimestamp"] = json!(now());
}

fn new_uid() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Who is writing, for managedFields: `fieldManager`, else the User-Agent's program name.
fn manager_of(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    query.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .unwrap_or("unknown")
            .to_string()
    })
}

pub async fn dispatch(
    state: &Arc<ApiState>,
    method: &Method,
    target: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    accept: Option<&str>,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    match target.subresource.as_deref() {
        None => {}
        Some("status") if resource.status_subresource => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let is_watch = is_watch(query);
    let is_write = matches!(*method, Method::PUT | Method::PATCH);
    if is_write
        && target.subresource.as_deref() == Some("status")
        && state.faults.refuse_status_write()
    {
        let name = target.name.clone().unwrap_or_default();
        return Err(ApiError::conflict(&resource.resource_name(), &name));
    }
    let as_table = table::wants_table(accept);
    match (method.clone(), target.name.is_some()) {
        (Method::GET, false) if is_watch => watch::watch(
            state.clone(),
            WatchRequest {
                resource_version: query.get("resourceVersion").cloned(),
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_WATCH_TIMEOUT),
                labels: LabelSelector::parse(
                    query.get("labelSelector").map(String::as_str).unwrap_or(""),
                )?,
                fields: FieldSelector::parse(
                    query.get("fieldSelector").map(String::as_str).unwrap_or(""),
                )?,
                as_table,
                target,
            },
        ),
        (Method::GET, false) => list(state, &target, query, as_table),
        (Method::GET, true) => get(state, &target, query, as_table),
        (Method::POST, false) => create(state, &target, query, headers, &body),
        (Method::PUT, true) => update(state, &target, query, headers, &body),
        (Method::PATCH, true) => patch(state, &target, query, headers, &body),
        (Method::DELETE, true) => delete(state, &target, &body),
        (other, _) => Err(ApiError::method_not_allowed(other.as_str())),
    }
}

fn key_of(target: &Target, name: &str) -> ObjectKey {
    ObjectKey {
        type_id: target.type_id,
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    }
}

fn ok(value: Value) -> Result<Response, ApiError> {
    Ok(axum::Json(value).into_response())
}

fn created(value: Value) -> Result<Response, ApiError> {
    Ok((axum::http::StatusCode::CREATED, axum::Json(value)).into_response())
}

fn get(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let name = target.name.as_deref().unwrap_or_default();
    let store = state.lock_store();
    let object = store
        .get(&key_of(target, name))
        .ok_or_else(|| ApiError::not_found(&resource.resource_name(), name))?;
    if as_table {
        let revision = store.revision().to_string();
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return ok(table::table(
            resource,
            &[object],
            &revision,
            include,
            Timestamp::now(),
        ));
    }
    ok(object.clone())
}

fn list(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let labels =
        LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields =
        FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // The continue token names the last object returned; the next page starts after it.
    let after = query.get("continue").filter(|c| !c.is_empty()).cloned();
    let store = state.lock_store();
    let mut matching = store
        .list(target.type_id, target.namespace.as_deref())
        .filter(|(key, _)| {
            after
                .as_ref()
                .is_none_or(|a| format!("{}/{}", key.namespace, key.name) > *a)
        })
        .filter(|(_, object)| labels.matches(object) && fields.matches(object));
    let mut page: Vec<(&ObjectKey, &Value)> = Vec::new();
    let mut more = 0usize;
    for entry in matching.by_ref() {
        if limit.is_some_and(|l| page.len() >= l) {
            more = 1 + matching.count();
            break;
        }
        page.push(entry);
    }
    let revision = store.revision().to_string();
    let mut metadata = json!({"resourceVersion": revision});
    if more > 0
        && let Some((key, _)) = page.last()
    {
        metadata["continue"] = json!(format!("{}/{}", key.namespace, key.name));
        metadata["remainingItemCount"] = json!(more);
    }
    if as_table {
        let objects: Vec<&Value> = page.iter().map(|(_, o)| *o).collect();
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        let mut table = table::table(resource, &objects, &revision, include, Timestamp::now());
        table["metadata"] = metadata;
        return ok(table);
    }
    ok(json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": page.iter().map(|(_, o)| (*o).clone()).collect::<Vec<_>>(),
    }))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice::<Value>(body))
        .map_err(|e| ApiError::bad_request(format!("the request body could not be decoded: {e}")))
}

/// How a write reached the server.
struct Write<'a> {
    target: &'a Target,
    manager: String,
    strict: bool,
    dry_run: bool,
    /// managedFields computed by server-side apply; other writes record an Update.
    applied_fields: Option<Vec<Value>>,
}

impl<'a> Write<'a> {
    fn new(target: &'a Target, query: &HashMap<String, String>, headers: &HeaderMap) -> Self {
        Self {
            target,
            manager: manager_of(query, headers),
            strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
            dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
            applied_fields: None,
        }
    }
}

fn create(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let mut object = parse_body(body)?;
    if let Some(ns) = object["metadata"]["namespace"].as_str()
        && target
            .namespace
            .as_deref()
            .is_some_and(|path_ns| path_ns != ns)
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let name = match (
        object["metadata"]["name"].as_str(),
        object["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) if !name.is_empty() => name.to_string(),
        (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
        _ => {
            return Err(ApiError::invalid(
                &resource.kind_name(),
                "",
                vec![super::errors::Cause {
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
    };
    object["metadata"]["name"] = json!(name);
    let mut store = state.lock_store();
    if let Some(ns) = &target.namespace {
        let namespace_key = ObjectKey {
            type_id: state.registry().namespace_type_id(),
            namespace: String::new(),
            name: ns.clone(),
        };
        if store.get(&namespace_key).is_none() {
            return Err(ApiError::not_found("namespaces", ns));
        }
    }
    let key = key_of(target, &name);
    if store.get(&key).is_some() {
        return Err(ApiError::already_exists(&resource.resource_name(), &name));
    }
    let write = Write::new(target, query, headers);
    created(commit(state, &mut store, key, None, object, &write)?)
}

fn update(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let name = target.name.clone().unwrap_or_default();
    let object = parse_body(body)?;
    let mut store = state.lock_store();
    let key = key_of(target, &name);
    let current = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&resource.resource_name(), &name))?;
    match object["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if !rv.is_empty() && current["metadata"]["resourceVersion"].as_str() != Some(rv) =>
        {
            return Err(ApiError::conflict(&resource.resource_name(), &name));
        }
        Some(rv) if !rv.is_empty() => {}
        _ if resource.custom => {
            return Err(ApiError::invalid(
                &resource.kind_name(),
                &name,
                vec![super::errors::Cause {
                    reason: "FieldValueInvalid",
                    message: "Invalid value: 0x0: must be specified for an update".into(),
                    field: "metadata.resourceVersion".into(),
                }],
            ));
        }
        _ => {}
    }
    let write = Write::new(target, query, headers);
    ok(commit(
        state,
        &mut store,
        key,
        Some(&current),
        object,
        &write,
    )?)
}

fn patch(
    state: &ApiState,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let name = target.name.clone().unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let mut store = state.lock_store();
    let key = key_of(target, &name);
    let current = store.get(&key).cloned();
    let mut write = Write::new(target, query, headers);

    if content_type == "application/apply-patch+yaml" {
        let manager = query
            .get("fieldManager")
            .cloned()
            .ok_or_else(|| ApiError::bad_request("PATCH, with apply, requires fieldManager"))?;
        write.manager = manager.clone();
        let config = parse_body(body)?;
        if config["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if current.is_none() && target.subresource.is_some() {
            return Err(ApiError::not_found(&resource.resource_name(), &name));
        }
        // A resourceVersion in the configuration is a precondition, as for an update.
        if let Some(expected) = config["metadata"]["resourceVersion"].as_str() {
            let actual = current
                .as_ref()
                .and_then(|c| c["metadata"]["resourceVersion"].as_str());
            if actual != Some(expected) {
                return Err(ApiError::conflict(&resource.resource_name(), &name));
            }
        }
        let base = current.clone().unwrap_or_else(|| json!({"metadata": {}}));
        let force = query.get("force").is_some_and(|f| f == "true");
        let applied = apply::apply(
            &base,
            &config,
            &manager,
            force,
            target.subresource.as_deref(),
            resource.schema.as_ref(),
            &resource.api_version(),
            &now(),
        )
        .map_err(|causes| ApiError::apply_conflict(&resource.resource_name(), &name, causes))?;
        write.applied_fields = Some(applied.managed_fields);
        let mut object = applied.object;
        object["metadata"]["name"] = json!(name);
        return match current {
            Some(current) => ok(commit(
                state,
                &mut store,
                key,
                Some(&current),
                object,
                &write,
            )?),
            None => created(commit(state, &mut store, key, None, object, &write)?),
        };
    }

    let current = current.ok_or_else(|| ApiError::not_found(&resource.resource_name(), &name))?;
    let patch_body = parse_body(body)?;
    let mut object = current.clone();
    match content_type.as_str() {
        "application/merge-patch+json" => json_patch::merge(&mut object, &patch_body),
        "application/strategic-merge-patch+json" if !resource.custom => {
            json_patch::merge(&mut object, &patch_body)
        }
        "application/json-patch+json" => {
            let operations: json_patch::Patch = serde_json::from_value(patch_body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut object, &operations).map_err(|e| {
                ApiError::invalid(
                    &resource.kind_name(),
                    &name,
                    vec![super::errors::Cause {
                        reason: "FieldValueInvalid",
                        message: e.to_string(),
                        field: String::new(),
                    }],
                )
            })?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return Err(ApiError::conflict(&resource.resource_name(), &name));
    }
    ok(commit(
        state,
        &mut store,
        key,
        Some(&current),
        object,
        &write,
    )?)
}

fn delete(state: &ApiState, target: &Target, body: &Bytes) -> Result<Response, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[target.type_id];
    let name = target.name.clone().unwrap_or_default();
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    let mut store = state.lock_store();
    let key = key_of(target, &name);
    let current = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&resource.resource_name(), &name))?;
    let preconditions = &options["preconditions"];
    let precondition_failed = ["resourceVersion", "uid"].iter().any(|field| {
        preconditions[field]
            .as_str()
            .is_some_and(|expected| current["metadata"][field].as_str() != Some(expected))
    });
    if precondition_failed {
        return Err(ApiError::conflict(&resource.resource_name(), &name));
    }
    let has_finalizers = current["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if has_finalizers && !(resource.group.is_empty() && resource.plural == "namespaces") {
        if current["metadata"]["deletionTimestamp"].is_null() {
            let mut marked = current.clone();
            // `markAsDeleting` (k8s.io/apiserver/pkg/registry/generic/registry/store.go) bumps
            // the generation of generational objects: their controllers must act on the
            // deletion, as on a spec change.
            if let Some(generation) = current["metadata"]["generation"]
                .as_i64()
                .filter(|g| *g > 0)
            {
                marked["metadata"]["generation"] = json!(generation + 1);
            }
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return ok(put(state, &mut store, key, marked, ChangeKind::Modified)?);
        }
        return ok(current);
    }
    if resource.group.is_empty() && resource.plural == "namespaces" {
        remove_namespace_contents(state, &mut store, &name)?;
    }
    let removed = remove(state, &mut store, &key)?.unwrap_or(current);
    ok(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": removed["metadata"]["uid"]},
    }))
}

fn remove_namespace_contents(
    state: &ApiState,
    store: &mut Store,
    namespace: &str,
) -> Result<(), ApiError> {
    for type_id in 0..state.registry().types.len() {
        let keys: Vec<ObjectKey> = store
            .list(type_id, Some(namespace))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            // Each view of an Event is listed under its own type.
            store.remove(&key, None).map_err(not_stored)?;
        }
    }
    state.refresh_rbac(store);
    Ok(())
}

/// What a client is told when the state directory refuses a write: what kube-apiserver answers
/// when etcd does (a 500 InternalError), nothing having changed.
fn not_stored(error: PersistError) -> ApiError {
    ApiError::internal(format!("the write could not be stored: {error}"))
}

/// Stores `object`, and an Event in both its shapes (see [`event_views`]).
fn put(
    state: &ApiState,
    store: &mut Store,
    key: ObjectKey,
    object: Value,
    kind: ChangeKind,
) -> Result<Value, ApiError> {
    let grants = is_rbac(state, &key);
    let defines = is_crd(state, &key);
    let stored = match view_key(state, &key) {
        Some((view_key, shape)) => {
            let view = event_views::convert(&object, shape);
            store.put_with_view(key, object, (view_key, view), kind)
        }
        None => store.put(key, object, kind),
    }
    .map_err(not_stored)?;
    if grants {
        state.refresh_rbac(store);
    }
    if defines {
        state.refresh_crds(store);
    }
    Ok(stored)
}

/// Whether `key` is a Role, ClusterRole or binding: writing it changes what is allowed.
fn is_rbac(state: &ApiState, key: &ObjectKey) -> bool {
    state.registry().types[key.type_id].group == super::rbac::RBAC_GROUP
}

/// Whether `key` is a CustomResourceDefinition: writing it changes what is served.
fn is_crd(state: &ApiState, key: &ObjectKey) -> bool {
    state.registry().crd_type_id() == Some(key.type_id)
}

/// Removes an object, and an Event in both its shapes; a CRD with all its custom resources.
fn remove(state: &ApiState, store: &mut Store, key: &ObjectKey) -> Result<Option<Value>, ApiError> {
    let view = view_key(state, key).map(|(view_key, _)| view_key);
    let removed = store.remove(key, view.as_ref()).map_err(not_stored)?;
    if is_rbac(state, key) {
        state.refresh_rbac(store);
    }
    if let (true, Some(crd)) = (is_crd(state, key), &removed) {
        remove_custom_resources(state, store, crd)?;
        state.refresh_crds(store);
    }
    Ok(removed)
}

/// What the API server's `customresourcecleanup` finalizer does before a CRD goes: every
/// object of its types is deleted (done at once here; watchers see each go).
fn remove_custom_resources(
    state: &ApiState,
    store: &mut Store,
    crd: &Value,
) -> Result<(), ApiError> {
    for type_id in state.registry().type_ids_of_crd(crd) {
        let keys: Vec<ObjectKey> = store.list(type_id, None).map(|(k, _)| k.clone()).collect();
        for key in keys {
            store.remove(&key, None).map_err(not_stored)?;
        }
    }
    Ok(())
}

/// Where the other shape of an Event is stored, and the shape `key`'s type writes.
fn view_key(state: &ApiState, key: &ObjectKey) -> Option<(ObjectKey, EventShape)> {
    let registry = state.registry();
    let shape = event_views::shape_of(&registry, key.type_id)?;
    let type_id = event_views::other_type(&registry, shape)?;
    Some((
        ObjectKey {
            type_id,
            ..key.clone()
        },
        shape,
    ))
}

/// Everything a write must hold to: identity, status isolation, admission, generation, field
/// ownership, finalizers; then the store.
fn commit(
    state: &ApiState,
    store: &mut Store,
    key: ObjectKey,
    old: Option<&Value>,
    mut object: Value,
    write: &Write<'_>,
) -> Result<Value, ApiError> {
    let registry = state.registry();
    let resource = &registry.types[key.type_id];
    let status_write = write.target.subresource.as_deref() == Some("status");
    if !resource.served {
        // Its CRD went while the request was on its way.
        return Err(ApiError::no_route());
    }
    if !object.is_object() {
        return Err(ApiError::bad_request("the request body is not an object"));
    }
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }

    // Status isolation: /status changes only status; the main resource never changes status.
    if resource.status_subresource {
        match (old, status_write) {
            (Some(old), true) => {
                let status = object.get("status").cloned();
                object = old.clone();
                match status {
                    Some(status) => object["status"] = status,
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            (Some(old), false) => match old.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(map) = object.as_object_mut() {
                        map.remove("status");
                    }
                }
            },
            (None, _) => {
                if let Some(map) = object.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }

    if key.type_id == registry.namespace_type_id() {
        namespace_defaults(&mut object, &key.name, old.is_none());
    }
    if registry.crd_type_id() == Some(key.type_id) {
        super::crds::set_defaults(&mut object);
        super::crds::set_status(&mut object, old);
    }

    // Identity and server-owned metadata.
    let metadata = &mut object["metadata"];
    metadata["name"] = json!(key.name);
    if resource.namespaced {
        metadata["namespace"] = json!(key.namespace);
    } else if let Some(map) = metadata.as_object_mut() {
        map.remove("namespace");
    }
    match old {
        Some(old) => {
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(field) {
                    Some(value) => metadata[field] = value.clone(),
                    None => {
                        if let Some(map) = metadata.as_object_mut() {
                            map.remove(field);
                        }
                    }
                }
            }
        }
        None => {
            metadata["uid"] = json!(new_uid());
            metadata["creationTimestamp"] = json!(now());
            if let Some(map) = metadata.as_object_mut() {
                map.remove("deletionTimestamp");
                map.remove("resourceVersion");
            }
            if resource.custom {
                metadata["generation"] = json!(1);
            }
        }
    }

    // Metadata (and Events) as kube-apiserver checks them for every resource.
    let causes = metadata_causes(state, &key, &object, old);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&resource.kind_name(), &key.name, causes));
    }

    // Admission: defaults, pruning, schema, CEL (transition rules against the stored object).
    if let Some(validator) = registry.validator(key.type_id) {
        let admitted = validator
            .admit(object, old)
            .map_err(|causes| ApiError::invalid(&resource.kind_name(), &key.name, causes))?;
        if write.strict && !admitted.pruned.is_empty() {
            let unknown: Vec<String> = admitted
                .pruned
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                resource.kind,
                resource.version,
                resource.kind,
                unknown.join(", ")
            )));
        }
        object = admitted.object;
    }

    // generation counts spec changes of custom resources.
    if let (Some(old), true) = (old, resource.custom) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed = without_metadata_and_status(old) != without_metadata_and_status(&object);
        object["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
    }

    let managed_fields = match &write.applied_fields {
        Some(fields) => fields.clone(),
        None => apply::record_update(
            old.unwrap_or(&json!({})),
            &object,
            &write.manager,
            write.target.subresource.as_deref(),
            resource.schema.as_ref(),
            &resource.api_version(),
            &now(),
        ),
    };
    object["metadata"]["managedFields"] = Value::Array(managed_fields);

    if write.dry_run {
        return Ok(object);
    }
    let finalized = !object["metadata"]["deletionTimestamp"].is_null()
        && object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    if finalized {
        put(state, store, key.clone(), object, ChangeKind::Modified)?;
        return remove(state, store, &key)?
            .ok_or_else(|| ApiError::internal("object vanished while finalizing"));
    }
    let kind = if old.is_some() {
        ChangeKind::Modified
    } else {
        ChangeKind::Added
    };
    if old.is_some_and(|old| *old == object_with_version(&object, old)) {
        // A no-op write does not bump the resourceVersion, as on a real API server.
        return Ok(old.cloned().unwrap_or(object));
    }
    put(state, store, key, object, kind)
}

/// What kube-apiserver's namespace strategy sets (`pkg/registry/core/namespace/strategy.go`):
/// the `kubernetes.io/metadata.name` label on every write, and on create the `kubernetes`
/// finalizer and phase `Active`.
fn namespace_defaults(object: &mut Value, name: &str, creating: bool) {
    object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if !creating {
        return;
    }
    let finalizers = &mut object["spec"]["finalizers"];
    let listed = finalizers
        .as_array()
        .is_some_and(|all| all.iter().any(|f| f == "kubernetes"));
    if !listed {
        match finalizers.as_array_mut() {
            Some(all) => all.push(json!("kubernetes")),
            None => *finalizers = json!(["kubernetes"]),
        }
    }
    object["status"] = json!({ "phase": "Active" });
}

/// What [`meta_validation`] finds wrong with `object`, stored under `key`.
fn metadata_causes(
    state: &ApiState,
    key: &ObjectKey,
    object: &Value,
    old: Option<&Value>,
) -> Vec<super::errors::Cause> {
    let registry = state.registry();
    let resource = &registry.types[key.type_id];
    let rule = if key.type_id == registry.namespace_type_id() {
        meta_validation::NameRule::Label
    } else {
        meta_validation::NameRule::Subdomain
    };
    let mut causes = meta_validation::object_meta(object, rule);
    if let Some(old) = old {
        causes.extend(meta_validation::no_new_finalizers_while_deleting(
            object, old,
        ));
    }
    match (resource.group.as_str(), resource.plural.as_str()) {
        ("events.k8s.io", "events") => causes.extend(meta_validation::event(object)),
        ("", "events") => causes.extend(meta_validation::legacy_event(object)),
        ("", "configmaps") => causes.extend(super::config_maps::causes(object)),
        (super::registry::CRD_GROUP, "customresourcedefinitions") => {
            causes.extend(super::crds::causes(object, old))
        }
        _ => {}
    }
    causes
}

fn object_with_version(object: &Value, old: &Value) -> Value {
    let mut copy = object.clone();
    copy["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    copy["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
    copy
}

fn without_metadata_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    copy
}
