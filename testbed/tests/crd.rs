//! The committed CRD is the generated one, and its schema holds the rules users rely on.

use kube::CustomResourceExt;
use selfupgrade_operator::api::SelfUpgradeDecision;
use serde_json::{Value, json};

const COMMITTED: &str = include_str!("../../crds/selfupgradedecision.yaml");

fn crd() -> Value {
    serde_json::to_value(SelfUpgradeDecision::crd()).expect("crd serializes")
}

#[test]
fn the_committed_crds_equal_the_generated_ones() {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
    for (name, generated) in selfupgrade_operator::cli::crd_files().expect("renders") {
        let committed = std::fs::read_to_string(format!("{crds}/{name}")).expect("committed");
        assert!(
            committed == generated,
            "crds/{name} is stale: run `cargo run -- crd --out-dir crds`"
        );
    }
    assert!(COMMITTED.contains("kind: SelfUpgradeDecision"));
}

fn spec_schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn validate(spec: Value) -> Result<(), Vec<String>> {
    let schema = spec_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&spec)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn valid_spec() -> Value {
    json!({
        "awsAccountId": "111122223333",
        "quicksightNamespace": "default",
        "upgradeRequestId": "3f2a9c1e-0000-4000-8000-000000000001",
        "action": "APPROVE",
    })
}

#[test]
fn a_valid_spec_passes_the_schema() {
    assert_eq!(validate(valid_spec()), Ok(()));
    let mut with_region = valid_spec();
    with_region["region"] = json!("eu-west-1");
    assert_eq!(validate(with_region), Ok(()));
}

#[test]
fn the_schema_rejects_a_bad_account_id_and_names_the_field() {
    for bad in ["11112222333", "1111222233334", "11112222333a"] {
        let mut spec = valid_spec();
        spec["awsAccountId"] = json!(bad);
        let errors = validate(spec).expect_err(bad);
        assert!(
            errors.iter().any(|e| e.starts_with("/awsAccountId")),
            "{errors:?}"
        );
    }
}

#[test]
fn the_schema_rejects_an_unknown_action_and_names_the_field() {
    let mut spec = valid_spec();
    spec["action"] = json!("MAYBE");
    let errors = validate(spec).expect_err("MAYBE is no action");
    assert!(
        errors.iter().any(|e| e.starts_with("/action")),
        "{errors:?}"
    );
}

#[test]
fn the_schema_rejects_bad_namespaces_empty_request_ids_and_missing_fields() {
    let mut spec = valid_spec();
    spec["quicksightNamespace"] = json!("has/slash");
    assert!(validate(spec).is_err());
    let mut spec = valid_spec();
    spec["quicksightNamespace"] = json!("n".repeat(65));
    assert!(validate(spec).is_err());
    let mut spec = valid_spec();
    spec["upgradeRequestId"] = json!("");
    assert!(validate(spec).is_err());
    let mut spec = valid_spec();
    spec.as_object_mut()
        .expect("object")
        .remove("upgradeRequestId");
    assert!(validate(spec).is_err());
}

#[test]
fn identity_fields_are_immutable_and_the_action_is_not() {
    let schema = spec_schema();
    for field in ["awsAccountId", "quicksightNamespace", "upgradeRequestId"] {
        let rules = &schema["properties"][field]["x-kubernetes-validations"];
        assert_eq!(rules[0]["rule"], "self == oldSelf", "{field}");
        assert_eq!(rules[0]["message"], format!("{field} is immutable"));
    }
    assert!(
        schema["properties"]["action"]
            .get("x-kubernetes-validations")
            .is_none()
    );
    assert_eq!(
        schema["properties"]["quicksightNamespace"]["default"],
        "default"
    );
}

#[test]
fn the_crd_has_the_names_status_subresource_and_printer_columns() {
    let crd = crd();
    assert_eq!(
        crd["metadata"]["name"],
        "selfupgradedecisions.quicksight.selfupgrade.io"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["sud"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Action",
            "Request",
            "Status",
            "User",
            "Requested",
            "Ready",
            "Approval",
            "Age"
        ]
    );
}

#[test]
fn every_example_is_a_valid_decision_for_a_seeded_request() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let seed = std::fs::read_to_string(format!("{examples}/simulator/seed.yaml")).expect("seed");
    let seed = selfupgrade_testbed::quicksight::SeedFile::parse(&seed).expect("seed parses");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).expect("examples/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let decision: SelfUpgradeDecision =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw: Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(validate(raw["spec"].clone()), Ok(()), "{name}");
        let seeded = seed.accounts.iter().any(|ns| {
            ns.account_id == decision.spec.aws_account_id
                && ns.namespace == decision.spec.quicksight_namespace
                && ns
                    .requests
                    .iter()
                    .any(|r| r.id == decision.spec.upgrade_request_id)
        });
        assert!(
            seeded,
            "{name} refers to a request the example seed does not have"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} examples found");
}

/// `examples/bindings/` holds bindings the schema accepts, each declaring the approval mode of
/// a seeded account (so that the playground shows it at work).
#[test]
fn every_example_binding_is_valid_and_binds_a_seeded_account() {
    use selfupgrade_operator::api::QuickSightAccount;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let seed = std::fs::read_to_string(format!("{examples}/simulator/seed.yaml")).expect("seed");
    let seed = selfupgrade_testbed::quicksight::SeedFile::parse(&seed).expect("seed parses");
    let bindings = valid_examples::<QuickSightAccount>("bindings");
    for (path, binding) in &bindings {
        assert!(binding.spec.self_upgrade.is_some(), "{path}");
        assert!(
            seed.accounts
                .iter()
                .any(|ns| ns.account_id == binding.spec.account_id),
            "{path} binds an account the seed does not have"
        );
    }
    assert!(!bindings.is_empty());
}

/// `examples/policies/` holds policies the schema accepts and whose every rule compiles.
#[test]
fn every_example_policy_is_valid_and_compiles() {
    use selfupgrade_operator::api::SelfUpgradePolicy;
    let policies = valid_examples::<SelfUpgradePolicy>("policies");
    for (path, policy) in &policies {
        if let Err(why) = selfupgrade_operator::policy::compile(&policy.spec) {
            panic!("{path}: {why}");
        }
    }
    assert!(
        policies.len() >= 3,
        "only {} example policies",
        policies.len()
    );
}

/// The objects in `examples/<dir>/`, each read as `K` and its spec passing `K`'s CRD schema,
/// with their paths.
fn valid_examples<K>(dir: &str) -> Vec<(String, K)>
where
    K: kube::CustomResourceExt + serde::de::DeserializeOwned,
{
    let crd = serde_json::to_value(K::crd()).expect("crd serializes");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let validator = jsonschema::validator_for(schema).expect("schema compiles");
    let examples = format!("{}/../examples/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&examples).expect("examples directory") {
        let path = entry.expect("entry").path();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        let object: K = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let raw: Value = serde_yaml::from_str(&text).expect("yaml");
        let errors: Vec<String> = validator
            .iter_errors(&raw["spec"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{shown}: {errors:?}");
        found.push((shown, object));
    }
    found
}

/// Every input is bounded: in the spec of every CRD, each string has a `maxLength` (or is an
/// enum), each list a `maxItems`, each map a `maxProperties`, so that no field can carry more
/// than its purpose needs (the API server's 3 MiB body limit is the only other bound).
#[test]
fn every_string_list_and_map_of_every_spec_is_bounded() {
    fn unbounded(schema: &Value, path: &str, found: &mut Vec<String>) {
        let has = |key: &str| schema.get(key).is_some();
        match schema["type"].as_str() {
            Some("string") if !has("maxLength") && !has("enum") => found.push(path.to_string()),
            Some("array") if !has("maxItems") => found.push(path.to_string()),
            Some("object")
                if schema.get("additionalProperties").is_some() && !has("maxProperties") =>
            {
                found.push(path.to_string())
            }
            _ => {}
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                unbounded(property, &format!("{path}.{name}"), found);
            }
        }
        if let Some(items) = schema.get("items") {
            unbounded(items, &format!("{path}[]"), found);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            unbounded(values, &format!("{path}{{}}"), found);
        }
    }
    let mut found = Vec::new();
    for (_, crd) in selfupgrade_operator::cli::crds() {
        let crd = serde_json::to_value(crd).expect("crd serializes");
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .expect("kind")
            .to_string();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(spec["properties"].is_object(), "{kind} has a spec schema");
        unbounded(spec, &format!("{kind}.spec"), &mut found);
    }
    assert!(found.is_empty(), "unbounded: {found:#?}");
}
