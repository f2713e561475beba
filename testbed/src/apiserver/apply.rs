//! Field ownership (`metadata.managedFields`) and server-side apply: a faithful subset of the
//! API server's structured-merge-diff. Objects merge by field, lists declared
//! `x-kubernetes-list-type: map` merge by their keys, other lists and scalars are atomic. Fields
//! owned by other managers are kept; a field another manager set to a different value is a
//! conflict unless the apply is forced, which takes ownership.

use super::errors::Cause;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A field path in FieldsV1 tokens: `f:spec`, `k:{"type":"Ready"}`, `f:status`.
type FieldPath = Vec<String>;
type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields the server owns; never part of anyone's field set.
const SERVER_METADATA: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// The result of an apply: the merged object (without managedFields changes applied yet) and the
/// new managedFields list.
pub struct Applied {
    pub object: Value,
    pub managed_fields: Vec<Value>,
}

/// Server-side apply of `config` by `manager` onto `current` (an empty object when creating).
/// `subresource` is `Some("status")` for `/status`; then only `.status` of the config counts.
#[allow(clippy::too_many_arguments)] // mirrors the apply request's own parameters
pub fn apply(
    current: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
) -> Result<Applied, Vec<Cause>> {
    let config = scoped_config(config, subresource);
    let new_set = field_paths(&config, schema);
    let mut entries = managed_entries(current);

    let mut conflicts = Vec::new();
    for entry in entries
        .iter_mut()
        .filter(|e| !e.is(manager, "Apply", subresource))
    {
        let shared: Vec<FieldPath> = entry.fields.intersection(&new_set).cloned().collect();
        for path in shared {
            if value_at(current, &path, schema) == value_at(&config, &path, schema) {
                continue;
            }
            if force {
                entry.fields.remove(&path);
            } else {
                conflicts.push(Cause {
                    reason: "FieldManagerConflict",
                    message: format!(
                        "conflict with \"{}\": {}",
                        entry.manager,
                        display_path(&path)
                    ),
                    field: display_path(&path),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    let mut object = current.clone();
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.is(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&new_set) {
        let owned_elsewhere = entries
            .iter()
            .any(|e| !e.is(manager, "Apply", subresource) && e.fields.contains(path));
        if !owned_elsewhere {
            remove_at(&mut object, path, schema);
        }
    }
    merge(&mut object, &config, schema);
    set_entry(
        &mut entries,
        manager,
        "Apply",
        subresource,
        new_set,
        api_version,
        now,
    );
    Ok(Applied {
        object,
        managed_fields: entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(Entry::to_json)
            .collect(),
    })
}

/// Ownership after a non-apply write (create, update, patch) by `manager`: it takes the fields it
/// changed; removed fields leave every set.
pub fn record_update(
    old: &Value,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    schema: Option<&Value>,
    api_version: &str,
    now: &str,
) -> Vec<Value> {
    let mut entries = managed_entries(old);
    let new_paths = field_paths(&scoped_config(new, subresource), schema);
    let old_paths = field_paths(&scoped_config(old, subresource), schema);
    let changed: FieldSet = new_paths
        .iter()
        .filter(|p| value_at(old, p, schema) != value_at(new, p, schema))
        .cloned()
        .collect();
    let removed: FieldSet = old_paths.difference(&new_paths).cloned().collect();
    for entry in entries.iter_mut() {
        let mine = entry.is(manager, "Update", subresource);
        entry
            .fields
            .retain(|p| !removed.contains(p) && (mine || !changed.contains(p)));
    }
    if !changed.is_empty() {
        let mut mine = entries
            .iter()
            .find(|e| e.is(manager, "Update", subresource))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        mine.extend(changed);
        set_entry(
            &mut entries,
            manager,
            "Update",
            subresource,
            mine,
            api_version,
            now,
        );
    }
    entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect()
}

struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }
}

fn set_entry(
    entries: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    fields: FieldSet,
    api_version: &str,
    now: &str,
) {
    entries.retain(|e| !e.is(manager, operation, subresource));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        subresource: subresource.map(str::to_string),
        api_version: api_version.to_string(),
        time: now.to_string(),
        fields,
    });
}

fn managed_entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// The part of an object a write to the main resource or to `/status` may set.
fn scoped_config(config: &Value, subresource: Option<&str>) -> Value {
    let mut scoped = Map::new();
    match subresource {
        Some("status") => {
            if let Some(status) = config.get("status") {
                scoped.insert("status".into(), status.clone());
            }
        }
        _ => {
            for (key, value) in config.as_object().into_iter().flatten() {
                match key.as_str() {
                    "apiVersion" | "kind" | "status" => {}
                    "metadata" => {
                        let kept: Map<String, Value> = value
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| !SERVER_METADATA.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !kept.is_empty() {
                            scoped.insert(key.clone(), Value::Object(kept));
                        }
                    }
                    _ => {
                        scoped.insert(key.clone(), value.clone());
                    }
                }
            }
        }
    }
    Value::Object(scoped)
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let schema = schema?;
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// The key fields of a list, when the schema declares it a map-list.
fn list_map_keys(schema: Option<&Value>) -> Option<Vec<String>> {
    let schema = schema?;
    (schema.get("x-kubernetes-list-type")? == "map").then(|| {
        schema["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    })
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let key: Map<String, Value> = keys
        .iter()
        .map(|k| (k.clone(), item.get(k).cloned().unwrap_or(Value::Null)))
        .collect();
    format!("k:{}", Value::Object(key))
}

fn field_paths(value: &Value, schema: Option<&Value>) -> FieldSet {
    let mut paths = FieldSet::new();
    collect(value, schema, &mut Vec::new(), &mut paths);
    paths
}

fn collect(value: &Value, schema: Option<&Value>, path: &mut FieldPath, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(format!("f:{key}"));
                collect(child, child_schema(schema, key), path, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_map_keys(schema) {
            Some(keys) if !items.is_empty() => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in items {
                    path.push(item_key(item, &keys));
                    collect(item, item_schema, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn value_at<'a>(value: &'a Value, path: &[String], schema: Option<&Value>) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    if let Some(field) = first.strip_prefix("f:") {
        return value_at(value.get(field)?, rest, child_schema(schema, field));
    }
    let keys = list_map_keys(schema)?;
    let item = value
        .as_array()?
        .iter()
        .find(|item| item_key(item, &keys) == *first)?;
    value_at(item, rest, schema.and_then(|s| s.get("items")))
}

/// Removes the field at `path`, and containers it leaves empty.
fn remove_at(value: &mut Value, path: &[String], schema: Option<&Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(field) = first.strip_prefix("f:") {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            map.remove(field);
        } else if let Some(child) = map.get_mut(field) {
            remove_at(child, rest, child_schema(schema, field));
            if is_empty_container(child) {
                map.remove(field);
            }
        }
        return;
    }
    let Some(keys) = list_map_keys(schema) else {
        return;
    };
    let item_schema = schema.and_then(|s| s.get("items"));
    let Some(items) = value.as_array_mut() else {
        return;
    };
    if let Some(index) = items
        .iter()
        .position(|item| item_key(item, &keys) == *first)
    {
        if rest.is_empty() {
            items.remove(index);
        } else {
            remove_at(&mut items[index], rest, item_schema);
            let only_keys = items[index]
                .as_object()
                .is_some_and(|o| o.keys().all(|k| keys.contains(k)));
            if only_keys {
                items.remove(index);
            }
        }
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Merges `config` into `object` field by field.
fn merge(object: &mut Value, config: &Value, schema: Option<&Value>) {
    match (object, config) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                let sub_schema = child_schema(schema, key);
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value, sub_schema),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(source)) => match list_map_keys(schema) {
            Some(keys) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                for item in source {
                    let key = item_key(item, &keys);
                    match target.iter_mut().find(|t| item_key(t, &keys) == key) {
                        Some(existing) => merge(existing, item, item_schema),
                        None => target.push(item.clone()),
                    }
                }
            }
            None => *target = source.clone(),
        },
        (target, source) => *target = source.clone(),
    }
}

fn to_fields_v1(fields: &FieldSet) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[String]) {
        if let Some((first, rest)) = path.split_first() {
            let child = node
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                insert(child, rest);
            }
        }
    }
    let mut root = Map::new();
    for path in fields {
        insert(&mut root, path);
    }
    Value::Object(root)
}

fn from_fields_v1(tree: &Value) -> FieldSet {
    fn walk(node: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match node.as_object() {
            Some(map) if !map.is_empty() => {
                for (token, child) in map {
                    if token == "." {
                        continue;
                    }
                    path.push(token.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

/// `.spec.action` / `.status.conditions[type="Ready"].status`, as conflicts are reported.
fn display_path(path: &[String]) -> String {
    let mut shown = String::new();
    for token in path {
        if let Some(field) = token.strip_prefix("f:") {
            shown.push('.');
            shown.push_str(field);
        } else if let Some(key) = token.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            shown.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
                "status": {"type": "object", "properties": {
                    "phase": {"type": "string"},
                    "conditions": {
                        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}
                    }
                }}
            }
        })
    }

    fn run(
        current: &Value,
        config: Value,
        manager: &str,
        force: bool,
        sub: Option<&str>,
    ) -> Result<Value, Vec<Cause>> {
        apply(
            current,
            &config,
            manager,
            force,
            sub,
            Some(&schema()),
            "x/v1",
            "t",
        )
        .map(|a| {
            let mut object = a.object;
            object["metadata"]["managedFields"] = Value::Array(a.managed_fields);
            object
        })
    }

    #[test]
    fn apply_keeps_fields_of_other_managers_and_removes_its_own_dropped_fields() {
        let object = run(
            &json!({}),
            json!({"spec": {"a": "1", "b": "2"}}),
            "alice",
            false,
            None,
        )
        .expect("applied");
        let object =
            run(&object, json!({"spec": {"a": "1"}}), "alice", false, None).expect("applied");
        assert_eq!(
            object["spec"],
            json!({"a": "1"}),
            "alice dropped b, which only she owned"
        );

        let object =
            run(&object, json!({"spec": {"b": "3"}}), "bob", false, None).expect("applied");
        let object =
            run(&object, json!({"spec": {"a": "1"}}), "alice", false, None).expect("applied");
        assert_eq!(
            object["spec"],
            json!({"a": "1", "b": "3"}),
            "bob's field survives alice's apply"
        );
    }

    #[test]
    fn a_different_value_for_anothers_field_conflicts_unless_forced() {
        let object = run(
            &json!({}),
            json!({"spec": {"a": "1"}}),
            "alice",
            false,
            None,
        )
        .expect("applied");
        let conflicts =
            run(&object, json!({"spec": {"a": "2"}}), "bob", false, None).expect_err("conflict");
        assert_eq!(conflicts[0].field, ".spec.a");
        assert!(conflicts[0].message.contains("alice"));
        // Same value: shared ownership, no conflict.
        assert!(run(&object, json!({"spec": {"a": "1"}}), "bob", false, None).is_ok());
        let forced = run(&object, json!({"spec": {"a": "2"}}), "bob", true, None).expect("forced");
        assert_eq!(forced["spec"]["a"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["manager"].as_str())
            .collect();
        assert_eq!(managers, ["bob"], "alice lost her only field");
    }

    #[test]
    fn map_lists_merge_by_key_and_status_applies_touch_only_status() {
        let base = json!({"spec": {"a": "1"}});
        let object = run(
            &base,
            json!({"spec": {"a": "ignored"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            "ctrl",
            false,
            Some("status"),
        )
        .expect("applied");
        assert_eq!(object["spec"]["a"], "1");
        let object = run(
            &object,
            json!({"status": {"conditions": [{"type": "Synced", "status": "True"}]}}),
            "other",
            false,
            Some("status"),
        )
        .expect("applied");
        let types: Vec<&str> = object["status"]["conditions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(types, ["Ready", "Synced"]);
        // ctrl stops setting Ready: its item goes, the other manager's stays.
        let object = run(
            &object,
            json!({"status": {"phase": "Done"}}),
            "ctrl",
            false,
            Some("status"),
        )
        .expect("applied");
        assert_eq!(
            object["status"]["conditions"],
            json!([{"type": "Synced", "status": "True"}])
        );
    }

    #[test]
    fn updates_take_ownership_of_what_they_change() {
        let object = run(
            &json!({}),
            json!({"spec": {"a": "1", "b": "2"}}),
            "alice",
            false,
            None,
        )
        .expect("applied");
        let mut edited = object.clone();
        edited["spec"]["a"] = json!("9");
        let fields = record_update(
            &object,
            &edited,
            "kubectl-edit",
            None,
            Some(&schema()),
            "x/v1",
            "t",
        );
        edited["metadata"]["managedFields"] = Value::Array(fields);
        let owners = |field: &str| -> Vec<String> {
            managed_entries(&edited)
                .into_iter()
                .filter(|e| {
                    e.fields
                        .contains(&vec!["f:spec".to_string(), format!("f:{field}")])
                })
                .map(|e| e.manager)
                .collect()
        };
        assert_eq!(owners("a"), ["kubectl-edit"]);
        assert_eq!(owners("b"), ["alice"]);
    }
}
