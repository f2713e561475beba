//! The checks kube-apiserver makes of every object's metadata, and of Events, before it stores
//! them, with apimachinery's limits and wording, so that whatever a real server refuses is
//! refused here too (`422 Invalid`, `details.causes` naming the field):
//! - `k8s.io/apimachinery/pkg/util/validation`: `IsDNS1123Subdomain`, `IsDNS1123Label`,
//!   `IsQualifiedName`, `IsValidLabelValue`;
//! - `k8s.io/apimachinery/pkg/api/validation/objectmeta.go`: `ValidateObjectMeta` (name,
//!   generateName with its trailing `-` masked, annotations with `TotalAnnotationSizeLimitB`,
//!   finalizers, owner references with at most one controller), `ValidateNoNewFinalizers` on
//!   updates of an object being deleted, and `metav1validation.ValidateLabels`;
//! - `k8s.io/kubernetes/pkg/apis/core/validation/events.go`: `ValidateEventCreate` for the
//!   `events.k8s.io` API (`NoteLengthLimit`, the 128-character limits, required fields), and
//!   `legacyValidateEvent` for core `v1` Events.

use super::errors::Cause;
use serde_json::Value;

const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_LABEL_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// `TotalAnnotationSizeLimitB`: keys and values together.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;
/// `NoteLengthLimit` (bytes, as Go's `len`).
const EVENT_NOTE_MAX: usize = 1024;
/// `ReportingInstanceLengthLimit`, `ActionLengthLimit`, `ReasonLengthLimit`.
const EVENT_FIELD_MAX: usize = 128;

const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Which rule an object's name follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most objects (`NameIsDNSSubdomain`).
    Subdomain,
    /// Namespaces (`ValidateNamespaceName`).
    Label,
}

fn alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn max_length(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// `IsDNS1123Label`.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errors.push(max_length(DNS1123_LABEL_MAX));
    }
    if !label_shaped(value) {
        errors.push(LABEL_MESSAGE.to_string());
    }
    errors
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: one DNS-1123 label, whatever its length.
fn label_shaped(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.first().is_some_and(|c| alnum(*c))
        && bytes.last().is_some_and(|c| alnum(*c))
        && bytes.iter().all(|c| alnum(*c) || *c == b'-')
}

/// `IsDNS1123Subdomain`: dot-separated DNS-1123 labels (of any length within the whole).
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_length(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(label_shaped) {
        errors.push(SUBDOMAIN_MESSAGE.to_string());
    }
    errors
}

fn qualified_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of at most 63.
pub fn qualified_name(value: &str) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut errors = Vec::new();
    match prefix {
        Some("") => errors.push("prefix part must be non-empty".to_string()),
        Some(prefix) => errors.extend(
            dns1123_subdomain(prefix)
                .into_iter()
                .map(|e| format!("prefix part {e}")),
        ),
        None => {}
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!("name part {}", max_length(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !qualified_part(name) {
        errors.push(QUALIFIED_MESSAGE.to_string());
    }
    errors
}

/// `IsValidLabelValue`.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(max_length(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !qualified_part(value) {
        errors.push(LABEL_VALUE_MESSAGE.to_string());
    }
    errors
}

pub(super) fn invalid(field: &str, value: &str, message: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value:?}: {message}"),
        field: field.to_string(),
    }
}

pub(super) fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: "Required value".to_string(),
        field: field.to_string(),
    }
}

fn each<'a>(field: &'a str, value: &'a str, errors: Vec<String>) -> impl Iterator<Item = Cause> {
    errors.into_iter().map(move |e| invalid(field, value, e))
}

fn string_map(metadata: &Value, member: &str) -> Vec<(String, String)> {
    metadata[member]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateObjectMeta` and `ValidateLabels` for `object`, whose name follows `rule`.
pub fn object_meta(object: &Value, rule: NameRule) -> Vec<Cause> {
    let metadata = &object["metadata"];
    let mut causes = Vec::new();
    let name_check = |value: &str| match rule {
        NameRule::Subdomain => dns1123_subdomain(value),
        NameRule::Label => dns1123_label(value),
    };
    if let Some(name) = metadata["name"].as_str().filter(|n| !n.is_empty()) {
        causes.extend(each("metadata.name", name, name_check(name)));
    }
    if let Some(prefix) = metadata["generateName"].as_str().filter(|n| !n.is_empty()) {
        // `maskTrailingDash`: a prefix may end in `-`, the random suffix follows it.
        let masked = match prefix.strip_suffix('-') {
            Some(head) if !head.is_empty() => format!("{head}a"),
            _ => prefix.to_string(),
        };
        causes.extend(each("metadata.generateName", prefix, name_check(&masked)));
    }
    for (key, value) in string_map(metadata, "labels") {
        causes.extend(each("metadata.labels", &key, qualified_name(&key)));
        causes.extend(each("metadata.labels", &value, label_value(&value)));
    }
    let annotations = string_map(metadata, "annotations");
    for (key, _) in &annotations {
        // "The rule is QualifiedName except that case doesn't matter."
        causes.extend(each(
            "metadata.annotations",
            key,
            qualified_name(&key.to_lowercase()),
        ));
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
            field: "metadata.annotations".to_string(),
        });
    }
    for finalizer in metadata["finalizers"].as_array().into_iter().flatten() {
        let finalizer = finalizer.as_str().unwrap_or_default();
        causes.extend(each(
            "metadata.finalizers",
            finalizer,
            qualified_name(finalizer),
        ));
    }
    causes.extend(owner_references(metadata));
    causes
}

/// An update of an object being deleted may remove finalizers, never add one
/// (`ValidateObjectMetaAccessorUpdate`): what a finalizer guards has begun to go.
pub fn no_new_finalizers_while_deleting(object: &Value, old: &Value) -> Vec<Cause> {
    if old["metadata"]["deletionTimestamp"].is_null() {
        return Vec::new();
    }
    let finalizers = |object: &Value| -> Vec<String> {
        let listed = object["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten();
        listed
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    let before = finalizers(old);
    let new: Vec<String> = finalizers(object)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    vec![Cause {
        reason: "FieldValueForbidden",
        message: format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {new:?}"
        ),
        field: "metadata.finalizers".to_string(),
    }]
}

fn owner_references(metadata: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let owners = metadata["ownerReferences"].as_array().into_iter().flatten();
    let controllers: Vec<&str> = owners
        .filter(|owner| owner["controller"].as_bool() == Some(true))
        .map(|owner| owner["name"].as_str().unwrap_or_default())
        .collect();
    if controllers.len() > 1 {
        // `ValidateOwnerReferences`: one object has one managing controller.
        let message = format!(
            "Only one reference can have Controller set to true. Found \"true\" in references for {}",
            controllers.join(" and ")
        );
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {message}"),
            field: "metadata.ownerReferences".to_string(),
        });
    }
    for owner in metadata["ownerReferences"].as_array().into_iter().flatten() {
        for (member, message) in [
            ("apiVersion", "version must not be empty"),
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ] {
            let value = owner[member].as_str().unwrap_or_default();
            if value.is_empty() {
                let field = format!("metadata.ownerReferences.{member}");
                causes.push(invalid(&field, value, message.to_string()));
            }
        }
    }
    causes
}

/// Whether a cause shows the value it refuses (`events.k8s.io` does; the legacy core rules
/// pass an empty value).
enum Echo {
    Value,
    Nothing,
}

/// `reportingInstance`, `action` and `reason`: required, at most 128 characters.
fn reporting_fields(object: &Value, echo: Echo) -> Vec<Cause> {
    let mut causes = Vec::new();
    for member in ["reportingInstance", "action", "reason"] {
        let value = object[member].as_str().unwrap_or_default();
        if value.is_empty() {
            causes.push(required(member));
        } else if value.len() > EVENT_FIELD_MAX {
            let message = format!("can have at most {EVENT_FIELD_MAX} characters");
            let shown = match echo {
                Echo::Value => value,
                Echo::Nothing => "",
            };
            causes.push(invalid(member, shown, message));
        }
    }
    causes
}

/// `ValidateEventCreate` for an `events.k8s.io/v1` Event.
pub fn event(object: &Value) -> Vec<Cause> {
    let text = |member: &str| object[member].as_str().unwrap_or_default().to_string();
    let mut causes = Vec::new();
    if object["eventTime"].as_str().is_none_or(str::is_empty) {
        causes.push(required("eventTime"));
    }
    let type_ = text("type");
    if !matches!(type_.as_str(), "Normal" | "Warning") {
        causes.push(invalid(
            "type",
            &type_,
            "has invalid value: must be Normal or Warning".to_string(),
        ));
    }
    let controller = text("reportingController");
    if controller.is_empty() {
        causes.push(required("reportingController"));
    } else {
        causes.extend(each(
            "reportingController",
            &controller,
            qualified_name(&controller),
        ));
    }
    causes.extend(reporting_fields(object, Echo::Value));
    let note = text("note");
    if note.len() > EVENT_NOTE_MAX {
        let message = format!("can have at most {EVENT_NOTE_MAX} characters");
        causes.push(invalid("note", &note, message));
    }
    causes
}

/// `legacyValidateEvent` for a core `v1` Event: an old-style one (no `eventTime`) only has to
/// agree with its involved object's namespace; a new-style one also needs what an
/// `events.k8s.io` Event needs (core field names, the Go field paths).
pub fn legacy_event(object: &Value) -> Vec<Cause> {
    let text = |member: &str| object[member].as_str().unwrap_or_default().to_string();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let involved = object["involvedObject"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let mismatch = || {
        invalid(
            "involvedObject.namespace",
            involved,
            "does not match event.namespace".to_string(),
        )
    };
    let mut causes = Vec::new();
    if object["eventTime"].as_str().is_none_or(str::is_empty) {
        let agrees = if involved.is_empty() {
            matches!(namespace, "" | "default")
        } else {
            namespace == involved
        };
        if !agrees {
            causes.push(mismatch());
        }
        return causes;
    }
    if involved.is_empty() && !matches!(namespace, "default" | "kube-system") {
        causes.push(mismatch());
    }
    let controller = text("reportingComponent");
    if controller.is_empty() {
        causes.push(required("reportingController"));
    }
    causes.extend(each(
        "reportingController",
        &controller,
        qualified_name(&controller),
    ));
    causes.extend(reporting_fields(object, Echo::Nothing));
    if text("message").len() > EVENT_NOTE_MAX {
        let message = format!("can have at most {EVENT_NOTE_MAX} characters");
        causes.push(invalid("message", "", message));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_events_agree_with_their_object_and_new_style_ones_are_complete() {
        let old_style = |namespace: &str, involved: &str| {
            json!({
                "metadata": {"namespace": namespace},
                "involvedObject": {"kind": "Pod", "namespace": involved},
                "message": "m".repeat(5000),
            })
        };
        assert!(legacy_event(&old_style("team-a", "team-a")).is_empty());
        assert!(legacy_event(&old_style("default", "")).is_empty());
        assert_eq!(
            fields(&legacy_event(&old_style("team-a", "team-b"))),
            ["involvedObject.namespace"]
        );
        let new_style = |message: &str, reason: &str| {
            json!({
                "metadata": {"namespace": "team-a"},
                "involvedObject": {"kind": "Pod", "namespace": "team-a"},
                "eventTime": "2026-12-02T00:00:00.000000Z",
                "reportingComponent": "selfupgrade-operator",
                "reportingInstance": "pod-1",
                "action": "Reconcile",
                "reason": reason,
                "message": message,
            })
        };
        assert!(legacy_event(&new_style(&"m".repeat(1024), &"r".repeat(128))).is_empty());
        assert_eq!(
            fields(&legacy_event(&new_style(
                &"m".repeat(1025),
                &"r".repeat(129)
            ))),
            ["reason", "message"]
        );
        let mut bare = new_style("m", "r");
        for member in [
            "reportingComponent",
            "reportingInstance",
            "action",
            "reason",
        ] {
            bare.as_object_mut().expect("object").remove(member);
        }
        assert_eq!(
            fields(&legacy_event(&bare)),
            [
                "reportingController",
                "reportingController",
                "reportingInstance",
                "action",
                "reason"
            ]
        );
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn names_at_and_past_their_limits() {
        assert!(dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1123_subdomain("approve-alice.v2").is_empty());
        for bad in ["-a", "a-", "A", "a_b", "a..b", "", "a."] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        assert!(dns1123_label(&"a".repeat(63)).is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(!dns1123_label("team.a").is_empty());
    }

    #[test]
    fn label_keys_and_values_at_and_past_their_limits() {
        assert!(label_value(&"v".repeat(63)).is_empty());
        assert_eq!(label_value(&"v".repeat(64)), [max_length(63)]);
        assert!(label_value("").is_empty());
        assert!(label_value("My_value.1").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(qualified_name(&format!("{}/{}", "p".repeat(253), "n".repeat(63))).is_empty());
        assert!(!qualified_name(&format!("{}/n", "p".repeat(254))).is_empty());
        assert!(!qualified_name(&"n".repeat(64)).is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("/n").is_empty());
    }

    #[test]
    fn an_object_being_deleted_takes_no_new_finalizer_and_one_controller_at_most() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["a.io/x", "a.io/y"]}});
        let removing = json!({"metadata": {"finalizers": ["a.io/y"]}});
        assert!(no_new_finalizers_while_deleting(&removing, &deleting).is_empty());
        let adding = json!({"metadata": {"finalizers": ["a.io/y", "a.io/z"]}});
        let causes = no_new_finalizers_while_deleting(&adding, &deleting);
        assert_eq!(fields(&causes), ["metadata.finalizers"]);
        assert!(causes[0].message.contains("\"a.io/z\""), "{causes:?}");
        let alive = json!({"metadata": {"finalizers": []}});
        assert!(no_new_finalizers_while_deleting(&adding, &alive).is_empty());

        let owner = |name: &str, controller: bool| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": name, "controller": controller});
        let one = json!({"ownerReferences": [owner("a", true), owner("b", false)]});
        assert!(owner_references(&one).is_empty());
        let two = json!({"ownerReferences": [owner("a", true), owner("b", true)]});
        let causes = owner_references(&two);
        assert_eq!(fields(&causes), ["metadata.ownerReferences"]);
        assert!(causes[0].message.contains("for a and b"), "{causes:?}");
    }

    #[test]
    fn object_meta_names_each_bad_field() {
        let annotation = "x".repeat(ANNOTATIONS_MAX_BYTES);
        let object = json!({"metadata": {
            "name": "Bad_Name",
            "generateName": "ok-",
            "labels": {"quicksight.selfupgrade.io/decision": "d".repeat(64)},
            "annotations": {"a": annotation},
            "finalizers": ["example.com/ok", "not ok"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}],
        }});
        let causes = object_meta(&object, NameRule::Subdomain);
        assert_eq!(
            fields(&causes),
            [
                "metadata.name",
                "metadata.labels",
                "metadata.annotations",
                "metadata.finalizers",
                "metadata.ownerReferences.uid"
            ],
            "{causes:?}"
        );
        assert!(
            causes[1]
                .message
                .contains("must be no more than 63 characters")
        );
        let fits = "x".repeat(ANNOTATIONS_MAX_BYTES - 1);
        let good =
            json!({"metadata": {"name": "ok", "generateName": "ok-", "annotations": {"a": fits}}});
        assert!(object_meta(&good, NameRule::Subdomain).is_empty());
        let namespace = json!({"metadata": {"name": "team.a"}});
        assert_eq!(
            fields(&object_meta(&namespace, NameRule::Label)),
            ["metadata.name"]
        );
    }

    #[test]
    fn events_at_and_past_their_limits() {
        let event_with = |note: &str, reason: &str| {
            json!({
                "eventTime": "2026-12-02T00:00:00.000000Z",
                "type": "Warning",
                "reportingController": "selfupgrade-operator",
                "reportingInstance": "pod-1",
                "action": "Reconcile",
                "reason": reason,
                "note": note,
            })
        };
        assert!(event(&event_with(&"n".repeat(1024), &"r".repeat(128))).is_empty());
        assert_eq!(
            fields(&event(&event_with(&"n".repeat(1025), &"r".repeat(129)))),
            ["reason", "note"]
        );
        assert_eq!(
            fields(&event(&json!({"type": "Normal"}))),
            [
                "eventTime",
                "reportingController",
                "reportingInstance",
                "action",
                "reason"
            ]
        );
    }
}
