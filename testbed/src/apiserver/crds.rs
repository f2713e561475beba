//! CustomResourceDefinitions as objects: what kube-apiserver refuses in one, the defaults it
//! sets, and the status its controllers write, so that `kubectl apply` of a CRD, then
//! `kubectl wait --for condition=established`, then its custom resources work as on a cluster.
//!
//! The checks follow `k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/
//! validation.go` (`ValidateCustomResourceDefinition`, `...Spec`, `...Update`) for what a CRD of
//! `apiextensions.k8s.io/v1` can get wrong; the defaults `.../apis/apiextensions/v1/defaults.go`;
//! the status the `NamingConditionController` and `EstablishingController` set. Not modelled:
//! name conflicts between CRDs (kinds or short names another CRD of the group accepted; a real
//! server answers `NamesAccepted=False`), conversion webhooks, and the deletion finalizer (a
//! deleted CRD's custom resources are removed at once rather than by the cleanup controller).

use super::errors::Cause;
use super::meta_validation::{dns1123_subdomain, invalid, required};
use super::objects::now;
use super::registry::schemas_compile;
use serde_json::{Value, json};

/// `IsDNS1035Label`: what plural and singular names and version names must be.
fn dns1035_label(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let shaped = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bytes
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if value.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    (!shaped).then(|| {
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
         alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or \
         'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            .to_string()
    })
}

/// What is wrong with `crd`; `old` is the stored CRD on update.
pub fn causes(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let spec = &crd["spec"];
    let mut causes = name_causes(crd);
    causes.extend(names_causes(&spec["names"]));
    match spec["scope"].as_str() {
        Some("Cluster" | "Namespaced") => {}
        other => causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                other.unwrap_or_default()
            ),
            field: "spec.scope".into(),
        }),
    }
    causes.extend(version_causes(spec));
    if let Some(old) = old
        && old["spec"]["scope"] != spec["scope"]
    {
        let scope = spec["scope"].as_str().unwrap_or_default();
        causes.push(invalid("spec.scope", scope, "field is immutable".into()));
    }
    if causes.is_empty()
        && let Err(message) = schemas_compile(crd)
    {
        causes.push(invalid("spec.versions", "schema", message));
    }
    causes
}

/// The name must be `plural.group`; the group a DNS subdomain with a dot.
fn name_causes(crd: &Value) -> Vec<Cause> {
    let spec = &crd["spec"];
    let mut causes = Vec::new();
    let group = spec["group"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(required("spec.group"));
    } else if !dns1123_subdomain(group).is_empty() {
        causes.extend(
            dns1123_subdomain(group)
                .into_iter()
                .map(|m| invalid("spec.group", group, m)),
        );
    } else if !group.contains('.') {
        causes.push(invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot".into(),
        ));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        causes.push(invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group".into(),
        ));
    }
    causes
}

fn names_causes(names: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (member, field) in [
        ("plural", "spec.names.plural"),
        ("singular", "spec.names.singular"),
    ] {
        match names[member].as_str() {
            None | Some("") if member == "plural" => causes.push(required(field)),
            None | Some("") => {}
            Some(value) => causes.extend(dns1035_label(value).map(|m| invalid(field, value, m))),
        }
    }
    if names["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(required("spec.names.kind"));
    }
    causes
}

/// Exactly one storage version; each version named, unique, with a schema.
fn version_causes(spec: &Value) -> Vec<Cause> {
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut causes = Vec::new();
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        causes.push(invalid(
            "spec.versions",
            &format!("{} versions, {storage} of them storage", versions.len()),
            "must have exactly one version marked as storage version".into(),
        ));
    }
    for (index, version) in versions.iter().enumerate() {
        let name = version["name"].as_str().unwrap_or_default();
        let field = format!("spec.versions[{index}].name");
        if name.is_empty() {
            causes.push(required(&field));
        } else if let Some(message) = dns1035_label(name) {
            causes.push(invalid(&field, name, message));
        } else if versions[..index].iter().any(|v| v["name"] == name) {
            causes.push(invalid(&field, name, "must be unique".into()));
        }
        if version["schema"]["openAPIV3Schema"].is_null() {
            causes.push(Cause {
                message: "Required value: schemas are required".into(),
                ..required(&format!("spec.versions[{index}].schema.openAPIV3Schema"))
            });
        }
    }
    causes
}

/// The defaults of `apiextensions.k8s.io/v1` (`SetDefaults_CustomResourceDefinitionSpec`):
/// singular and list kind from the kind, no conversion.
pub fn set_defaults(crd: &mut Value) {
    let names = &mut crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    if names["singular"].as_str().is_none_or(str::is_empty) {
        names["singular"] = json!(kind.to_ascii_lowercase());
    }
    if names["listKind"].as_str().is_none_or(str::is_empty) {
        names["listKind"] = json!(format!("{kind}List"));
    }
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
}

/// The status a real server's controllers give a valid CRD: its names accepted, established,
/// and the storage version recorded among `storedVersions` (which only ever grow). A
/// condition keeps its `lastTransitionTime` while its status stays the same.
pub fn set_status(crd: &mut Value, old: Option<&Value>) {
    let old_status = old.map(|o| &o["status"]).unwrap_or(&Value::Null);
    let condition = |type_: &str, reason: &str, message: &str| {
        let since = old_status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_ && c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now()));
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
               "lastTransitionTime": since})
    };
    let mut stored: Vec<Value> = old_status["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let storage = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .map(|v| v["name"].clone());
    if let Some(storage) = storage.filter(|s| !stored.contains(s)) {
        stored.push(storage);
    }
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object"}}}],
            },
        })
    }

    /// What a row breaks, how, and the field the refusal must name.
    type Case = (&'static str, fn(&mut Value), &'static str);

    fn fields(crd: &Value, old: Option<&Value>) -> Vec<String> {
        causes(crd, old).into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn a_crd_is_refused_as_apiextensions_validation_refuses_it() {
        assert_eq!(fields(&crd(), None), Vec::<String>::new(), "a valid CRD");
        let cases: [Case; 9] = [
            (
                "name not plural.group",
                |c| c["metadata"]["name"] = json!("w.example.com"),
                "metadata.name",
            ),
            (
                "group without a dot",
                |c| {
                    c["spec"]["group"] = json!("example");
                    c["metadata"]["name"] = json!("widgets.example");
                },
                "spec.group",
            ),
            (
                "no plural",
                |c| c["spec"]["names"]["plural"] = json!(""),
                "spec.names.plural",
            ),
            (
                "plural not a DNS-1035 label",
                |c| {
                    c["spec"]["names"]["plural"] = json!("1widgets");
                    c["metadata"]["name"] = json!("1widgets.example.com");
                },
                "spec.names.plural",
            ),
            (
                "no kind",
                |c| c["spec"]["names"]["kind"] = json!(null),
                "spec.names.kind",
            ),
            (
                "unknown scope",
                |c| c["spec"]["scope"] = json!("Global"),
                "spec.scope",
            ),
            (
                "two storage versions",
                |c| {
                    let second = json!({"name": "v2", "served": true, "storage": true,
                                    "schema": {"openAPIV3Schema": {"type": "object"}}});
                    c["spec"]["versions"]
                        .as_array_mut()
                        .expect("list")
                        .push(second);
                },
                "spec.versions",
            ),
            (
                "no schema",
                |c| c["spec"]["versions"][0]["schema"] = json!(null),
                "spec.versions[0].schema.openAPIV3Schema",
            ),
            (
                "a schema that does not compile",
                |c| {
                    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": 7});
                },
                "spec.versions",
            ),
        ];
        for (case, break_it, field) in cases {
            let mut broken = crd();
            break_it(&mut broken);
            let found = fields(&broken, None);
            assert!(found.contains(&field.to_string()), "{case}: {found:?}");
        }
    }

    #[test]
    fn the_scope_of_a_stored_crd_cannot_change() {
        let mut cluster = crd();
        cluster["spec"]["scope"] = json!("Cluster");
        assert_eq!(
            fields(&cluster, Some(&crd())),
            vec!["spec.scope".to_string()]
        );
    }

    #[test]
    fn a_stored_crd_is_established_and_keeps_every_storage_version_it_had() {
        let mut first = crd();
        set_defaults(&mut first);
        set_status(&mut first, None);
        assert_eq!(first["spec"]["names"]["singular"], "widget");
        assert_eq!(first["spec"]["names"]["listKind"], "WidgetList");
        let established = &first["status"]["conditions"][1];
        assert_eq!(
            (&established["type"], &established["status"]),
            (&json!("Established"), &json!("True"))
        );
        assert_eq!(first["status"]["storedVersions"], json!(["v1"]));

        let mut second = first.clone();
        second["status"]["conditions"][1]["lastTransitionTime"] = json!("earlier");
        let mut next = second.clone();
        next["spec"]["versions"][0]["storage"] = json!(false);
        let v2 = json!({"name": "v2", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object"}}});
        next["spec"]["versions"]
            .as_array_mut()
            .expect("list")
            .push(v2);
        set_status(&mut next, Some(&second));
        assert_eq!(next["status"]["storedVersions"], json!(["v1", "v2"]));
        assert_eq!(
            next["status"]["conditions"][1]["lastTransitionTime"], "earlier",
            "a condition that stays True keeps its transition time"
        );
    }
}
