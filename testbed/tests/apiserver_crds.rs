//! CustomResourceDefinitions are objects on the embedded API server, as on a real one: creating,
//! changing and deleting one changes what is served, without a restart; a CRD created through
//! the API survives a restart over `--state-dir`. Driven through kube-rs.

mod common;

use common::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use selfupgrade_operator::api::Action;
use selfupgrade_testbed::apiserver::{ApiServerConfig, InitialCrds, RunningApiServer};
use serde_json::{Value, json};

const DECISIONS_CRD: &str = "selfupgradedecisions.quicksight.selfupgrade.io";

fn decisions_crd() -> CustomResourceDefinition {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/selfupgradedecision.yaml"
    ))
    .expect("CRD file");
    serde_yaml::from_str(&text).expect("a CRD")
}

async fn empty_server(state_dir: Option<std::path::PathBuf>) -> RunningApiServer {
    RunningApiServer::start(ApiServerConfig {
        crds: InitialCrds::None,
        state_dir,
        ..ApiServerConfig::default()
    })
    .await
    .expect("starts")
}

/// A CRD directory given at start is validated as a create through the API is: a scope
/// kube-apiserver does not know keeps the server from starting, with the field named.
#[tokio::test]
async fn an_invalid_crd_given_at_start_keeps_the_server_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut crd = serde_json::to_value(decisions_crd()).expect("json");
    crd["spec"]["scope"] = json!("Galactic");
    let yaml = serde_yaml::to_string(&crd).expect("yaml");
    std::fs::write(dir.path().join("decision.yaml"), yaml).expect("written");
    let started = RunningApiServer::start(ApiServerConfig {
        crds: InitialCrds::Directory(dir.path().to_path_buf()),
        ..ApiServerConfig::default()
    })
    .await;
    let error = started.err().expect("refused").to_string();
    assert!(error.contains(DECISIONS_CRD), "{error}");
    assert!(error.contains("spec.scope: Unsupported value"), "{error}");
}

fn decisions(client: Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "quicksight.selfupgrade.io".into(),
        version: "v1alpha1".into(),
        api_version: "quicksight.selfupgrade.io/v1alpha1".into(),
        kind: "SelfUpgradeDecision".into(),
        plural: "selfupgradedecisions".into(),
    };
    Api::namespaced_with(client, "default", &resource)
}

fn decision(name: &str, action: &str) -> DynamicObject {
    let mut object =
        serde_json::to_value(new_decision(name, ACCOUNT, "r-1", Action::Approve)).expect("JSON");
    object["spec"]["action"] = json!(action);
    serde_json::from_value(object).expect("an object")
}

async fn served_groups(client: &Client) -> Vec<String> {
    let groups = client.list_api_groups().await.expect("discovery");
    groups.groups.into_iter().map(|g| g.name).collect()
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Established" && c.status == "True")
}

async fn openapi_url(client: &Client) -> String {
    let request = http::Request::get("/openapi/v3")
        .body(Vec::new())
        .expect("request");
    let root: Value = client.request(request).await.expect("OpenAPI root");
    root["paths"]["apis/quicksight.selfupgrade.io/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_crd_created_changed_and_deleted_through_the_api_changes_what_is_served() {
    let server = empty_server(None).await;
    let client = server.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let decisions = decisions(client.clone());
    assert!(
        decisions.list(&Default::default()).await.is_err(),
        "nothing served yet"
    );

    let created = crds
        .create(&PostParams::default(), &decisions_crd())
        .await
        .expect("created");
    assert!(is_established(&created), "{:?}", created.status);
    assert!(
        served_groups(&client)
            .await
            .contains(&"quicksight.selfupgrade.io".into())
    );
    decisions
        .create(&PostParams::default(), &decision("approve", "APPROVE"))
        .await
        .expect("a valid decision is stored");
    let refused = decisions
        .create(&PostParams::default(), &decision("maybe", "MAYBE"))
        .await
        .expect_err("the schema's enum refuses MAYBE");
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 422),
        "{refused:?}"
    );

    // A new schema is in force at once, and published under a new OpenAPI URL (kubectl caches
    // documents by URL).
    let before = openapi_url(&client).await;
    let widened = json!({"spec": {"versions": [{
        "name": "v1alpha1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
        "subresources": {"status": {}},
    }]}});
    crds.patch(
        DECISIONS_CRD,
        &PatchParams::default(),
        &Patch::Merge(&widened),
    )
    .await
    .expect("the CRD is updated");
    decisions
        .create(&PostParams::default(), &decision("maybe", "MAYBE"))
        .await
        .expect("the new schema admits MAYBE");
    assert_ne!(openapi_url(&client).await, before);

    crds.delete(DECISIONS_CRD, &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(
        decisions.list(&Default::default()).await.is_err(),
        "no longer served"
    );
    assert!(
        !served_groups(&client)
            .await
            .contains(&"quicksight.selfupgrade.io".into())
    );
    crds.create(&PostParams::default(), &decisions_crd())
        .await
        .expect("created again");
    let listed = decisions
        .list(&Default::default())
        .await
        .expect("served again");
    assert!(
        listed.items.is_empty(),
        "a deleted CRD takes its objects with it"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_invalid_crd_is_refused_with_the_field_named() {
    let server = empty_server(None).await;
    let crds: Api<CustomResourceDefinition> = Api::all(server.client().await.expect("client"));
    let mut misnamed = decisions_crd();
    misnamed.metadata.name = Some("decisions.quicksight.selfupgrade.io".into());
    let refused = crds
        .create(&PostParams::default(), &misnamed)
        .await
        .expect_err("the name must be plural.group");
    let kube::Error::Api(status) = refused else {
        panic!("expected an API error, got {refused:?}");
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("must be spec.names.plural+\".\"+spec.group"),
        "{}",
        status.message
    );
    server.stop().await;
}

#[tokio::test]
async fn a_crd_created_through_the_api_survives_a_restart_over_the_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = empty_server(Some(dir.path().to_path_buf())).await;
    let client = server.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &decisions_crd())
        .await
        .expect("created");
    decisions(client)
        .create(&PostParams::default(), &decision("approve", "APPROVE"))
        .await
        .expect("stored");
    server.stop().await;

    let again = empty_server(Some(dir.path().to_path_buf())).await;
    let stored = decisions(again.client().await.expect("client"))
        .get("approve")
        .await
        .expect("the decision and its type are back");
    assert_eq!(stored.data["spec"]["action"], "APPROVE");
    again.stop().await;
}
