//! `ValidateConfigMap` (`k8s.io/kubernetes/pkg/apis/core/validation/validation.go`), so that a
//! ConfigMap a real API server refuses is refused here too:
//! - every key of `data` and `binaryData` is a config key (`IsConfigMapKey` in
//!   `k8s.io/apimachinery/pkg/util/validation`: at most 253 characters of `[-._a-zA-Z0-9]`, not
//!   `.` or `..`, not starting with `..`), and no key is in both;
//! - the values together are at most `core.MaxSecretSize`, 1 MiB (a `FieldValueTooLong` of the
//!   whole object, field `""`). `binaryData` values count decoded; they arrive as base64, so
//!   three quarters of their length is counted.

use super::errors::Cause;
use super::meta_validation::invalid;
use serde_json::{Map, Value};

/// `core.MaxSecretSize`.
const MAX_DATA_BYTES: usize = 1024 * 1024;
/// `DNS1123SubdomainMaxLength`.
const KEY_MAX: usize = 253;
const KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// `IsConfigMapKey`.
fn key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if key.len() > KEY_MAX {
        errors.push(format!("must be no more than {KEY_MAX} characters"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if key.is_empty() || !key.chars().all(allowed) {
        errors.push(KEY_MESSAGE.to_string());
    }
    match key {
        "." => errors.push("must not be '.'".to_string()),
        ".." => errors.push("must not be '..'".to_string()),
        _ if key.starts_with("..") => errors.push("must not start with '..'".to_string()),
        _ => {}
    }
    errors
}

fn members<'a>(object: &'a Value, member: &str) -> Option<&'a Map<String, Value>> {
    object[member].as_object()
}

pub fn causes(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut total = 0;
    let data = members(object, "data");
    let binary = members(object, "binaryData");
    for (member, map) in [("data", data), ("binaryData", binary)] {
        for (key, value) in map.into_iter().flatten() {
            let field = format!("{member}[{key}]");
            causes.extend(key_errors(key).into_iter().map(|e| invalid(&field, key, e)));
            let text = value.as_str().unwrap_or_default();
            total += match member {
                "data" => text.len(),
                _ => text.len() / 4 * 3,
            };
        }
    }
    for key in data.into_iter().flat_map(|d| d.keys()) {
        if binary.is_some_and(|b| b.contains_key(key)) {
            let field = format!("data[{key}]");
            let message = "duplicate of key present in binaryData".to_string();
            causes.push(invalid(&field, key, message));
        }
    }
    if total > MAX_DATA_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
            field: String::new(),
        });
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(object: Value) -> Vec<String> {
        causes(&object).into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn keys_must_be_config_keys() {
        assert!(fields(json!({"data": {"notified.json": "[]", "A_b-1": "x"}})).is_empty());
        assert_eq!(fields(json!({"data": {"a/b": "x"}})), ["data[a/b]"]);
        assert_eq!(fields(json!({"data": {"..x": "x"}})), ["data[..x]"]);
        assert_eq!(
            fields(json!({"binaryData": {".": "eA=="}})),
            ["binaryData[.]"]
        );
        let long = "k".repeat(254);
        assert_eq!(
            fields(json!({"data": {long.clone(): "x"}})),
            [format!("data[{long}]")]
        );
        assert_eq!(
            fields(json!({"data": {"k": "x"}, "binaryData": {"k": "eA=="}})),
            ["data[k]"]
        );
    }

    #[test]
    fn the_values_together_hold_one_mebibyte() {
        let half = "x".repeat(MAX_DATA_BYTES / 2);
        assert!(fields(json!({"data": {"a": half, "b": half}})).is_empty());
        let causes = causes(&json!({"data": {"a": half, "b": half, "c": "x"}}));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueTooLong");
        assert_eq!(causes[0].field, "");
    }
}
