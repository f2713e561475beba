//! Admission for custom resources, in the API server's order: defaults, pruning of unknown
//! fields, the structural schema (required, enum, pattern, lengths, types), then the CRD's CEL
//! `x-kubernetes-validations` (including transition rules against the stored object).

use super::errors::Cause;
use serde_json::{Map, Value};

/// The compiled validators of one resource type.
pub struct TypeValidator {
    schema: Value,
    structural: jsonschema::Validator,
    cel: kube_cel::CompiledSchema,
}

/// What admission did to an object.
pub struct Admitted {
    pub object: Value,
    /// Fields dropped because the schema does not declare them (`spec.foo`).
    pub pruned: Vec<String>,
}

impl TypeValidator {
    pub fn new(schema: &Value) -> Result<Self, String> {
        let structural = jsonschema::validator_for(&as_json_schema(schema))
            .map_err(|e| format!("the openAPIV3Schema does not compile: {e}"))?;
        Ok(Self {
            schema: schema.clone(),
            structural,
            cel: kube_cel::compile_schema(schema),
        })
    }

    /// Defaults, prunes and validates `object`; `old` is the stored object on update.
    pub fn admit(&self, object: Value, old: Option<&Value>) -> Result<Admitted, Vec<Cause>> {
        let mut object = kube_cel::apply_defaults(&self.schema, &object);
        let mut pruned = Vec::new();
        prune(&self.schema, &mut object, "", true, &mut pruned);

        let mut causes: Vec<Cause> = self
            .structural
            .iter_errors(&object)
            .map(|e| cause_of(&e))
            .collect();
        if causes.is_empty() {
            let validator = kube_cel::Validator::new();
            if let Err(errors) = validator.validate_compiled(&self.cel, &object, old) {
                causes.extend(errors.iter().map(|e| Cause {
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {}: {}",
                        describe_value(&object, &e.field_path),
                        e.message
                    ),
                    field: e.field_path.clone(),
                }));
            }
        }
        if causes.is_empty() {
            Ok(Admitted { object, pruned })
        } else {
            Err(causes)
        }
    }
}

/// OpenAPI v3 schemas say `nullable: true` where JSON Schema says `type: [t, "null"]`.
fn as_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), as_json_schema(v)))
                .collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type") {
                    out.insert(
                        "type".into(),
                        Value::Array(vec![Value::String(t.clone()), Value::String("null".into())]),
                    );
                }
                if let Some(Value::Array(options)) = out.get_mut("enum")
                    && !options.contains(&Value::Null)
                {
                    options.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(as_json_schema).collect()),
        other => other.clone(),
    }
}

/// Drops fields the schema does not declare, as the API server does for structural schemas.
/// At the root, `apiVersion`, `kind` and `metadata` are always kept.
fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let child_schema = properties.and_then(|p| p.get(&key)).or(additional);
                match (child_schema, map.get_mut(&key)) {
                    (Some(child_schema), Some(child)) => {
                        prune(child_schema, child, &child_path, false, pruned)
                    }
                    (None, _) if properties.is_some() || additional.is_none() => {
                        map.remove(&key);
                        pruned.push(child_path);
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune(
                        item_schema,
                        item,
                        &format!("{path}[{index}]"),
                        false,
                        pruned,
                    );
                }
            }
        }
        _ => {}
    }
}

fn cause_of(error: &jsonschema::ValidationError<'_>) -> Cause {
    use jsonschema::error::ValidationErrorKind as Kind;
    let mut field = pointer_to_field(&error.instance_path().to_string());
    let value = error.instance();
    let shown = serde_json::to_string(value).unwrap_or_default();
    let (reason, message) = match error.kind() {
        Kind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
            ("FieldValueRequired", "Required value".to_string())
        }
        Kind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| !o.is_null())
                .map(|o| o.to_string())
                .collect();
            (
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {shown}: supported values: {}",
                    supported.join(", ")
                ),
            )
        }
        Kind::Pattern { pattern } => (
            "FieldValueInvalid",
            format!("Invalid value: {shown}: {field} in body should match '{pattern}'"),
        ),
        Kind::MaxLength { limit } => (
            "FieldValueTooLong",
            format!("Too long: may not be more than {limit} bytes"),
        ),
        Kind::MinLength { limit } => (
            "FieldValueInvalid",
            format!(
                "Invalid value: {shown}: {field} in body should be at least {limit} chars long"
            ),
        ),
        Kind::Type { kind } => (
            "FieldValueTypeInvalid",
            format!(
                "Invalid value: {shown}: {field} in body must be of type {}",
                type_name(kind)
            ),
        ),
        _ => (
            "FieldValueInvalid",
            format!("Invalid value: {shown}: {error}"),
        ),
    };
    Cause {
        reason,
        message,
        field,
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => set
            .iter()
            .map(|t| t.to_string())
            .filter(|t| t != "null")
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// `/spec/conditions/0/type` → `spec.conditions[0].type`.
fn pointer_to_field(pointer: &str) -> String {
    let mut field = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            field.push_str(&format!("[{segment}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&segment);
        }
    }
    field
}

/// The value at a dotted field path, JSON-encoded, or "object" where it cannot be found.
fn describe_value(object: &Value, field: &str) -> String {
    let mut current = object;
    for part in field.split('.').filter(|p| !p.is_empty()) {
        match current.get(part) {
            Some(next) => current = next,
            None => return "\"object\"".to_string(),
        }
    }
    match current {
        Value::Object(_) => "\"object\"".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "id is immutable"}]},
                        "mode": {"type": "string", "enum": ["A", "B"], "default": "A"},
                        "note": {"type": "string", "nullable": true}
                    }
                }
            }
        })
    }

    #[test]
    fn defaults_pruning_and_null_for_nullable_fields() {
        let validator = TypeValidator::new(&schema()).expect("compiles");
        let admitted = validator
            .admit(json!({"apiVersion": "x/v1", "kind": "K", "metadata": {}, "spec": {"id": "a", "note": null, "extra": 1}}), None)
            .map_err(|c| format!("{c:?}"))
            .expect("valid");
        assert_eq!(admitted.object["spec"]["mode"], "A");
        assert_eq!(admitted.object["metadata"], json!({}));
        assert_eq!(admitted.pruned, ["spec.extra"]);
    }

    #[test]
    fn structural_errors_name_their_fields() {
        let validator = TypeValidator::new(&schema()).expect("compiles");
        let causes = validator
            .admit(json!({"spec": {"mode": "C"}}), None)
            .err()
            .expect("invalid");
        let fields: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.reason, c.field.as_str()))
            .collect();
        assert!(
            fields.contains(&("FieldValueRequired", "spec.id")),
            "{causes:?}"
        );
        assert!(
            fields.contains(&("FieldValueNotSupported", "spec.mode")),
            "{causes:?}"
        );
    }

    #[test]
    fn transition_rules_compare_with_the_stored_object() {
        let validator = TypeValidator::new(&schema()).expect("compiles");
        let old = json!({"spec": {"id": "a"}});
        assert!(
            validator
                .admit(json!({"spec": {"id": "a", "mode": "B"}}), Some(&old))
                .is_ok()
        );
        let causes = validator
            .admit(json!({"spec": {"id": "b"}}), Some(&old))
            .err()
            .expect("immutable");
        assert_eq!(causes[0].field, "spec.id");
        assert!(causes[0].message.contains("id is immutable"), "{causes:?}");
    }
}
