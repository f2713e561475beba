//! The embedded API server behaves like a real one where the operator and its users rely on it,
//! driven through kube-rs.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_testbed::apiserver::{ApiServerConfig, RbacSettings, RunningApiServer};
use serde_json::json;

async fn server(history_limit: usize) -> (RunningApiServer, Api<SelfUpgradeDecision>) {
    let server = RunningApiServer::start(ApiServerConfig {
        history_limit,
        ..ApiServerConfig::default()
    })
    .await
    .expect("starts");
    let api = Api::namespaced(server.client().await.expect("client"), "default");
    (server, api)
}

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let (_server, api) = server(100).await;
    let created = api
        .create(
            &PostParams::default(),
            &new_decision("a", ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect("created");
    let mut first = created.clone();
    first.spec.action = Action::Deny;
    let replaced = api
        .replace("a", &PostParams::default(), &first)
        .await
        .expect("replaced");
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    // Server-side apply with a resourceVersion in the configuration is conditional too.
    let stale_status = serde_json::json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1",
        "kind": "SelfUpgradeDecision",
        "metadata": {"resourceVersion": created.metadata.resource_version},
        "status": {"attempts": 1},
    });
    let error = api_error(
        api.patch_status(
            "a",
            &kube::api::PatchParams::apply("tests").force(),
            &kube::api::Patch::Apply(&stale_status),
        )
        .await
        .expect_err("stale apply"),
    );
    assert_eq!((error.code, error.reason.as_str()), (409, "Conflict"));
    let mut current_status = stale_status.clone();
    current_status["metadata"]["resourceVersion"] =
        replaced.metadata.resource_version.clone().into();
    api.patch_status(
        "a",
        &kube::api::PatchParams::apply("tests").force(),
        &kube::api::Patch::Apply(&current_status),
    )
    .await
    .expect("apply at the current version");

    let mut stale = created;
    stale.spec.action = Action::Verify;
    let error = api_error(
        api.replace("a", &PostParams::default(), &stale)
            .await
            .expect_err("stale"),
    );
    assert_eq!((error.code, error.reason.as_str()), (409, "Conflict"));

    let error = api_error(
        api.create(
            &PostParams::default(),
            &new_decision("a", ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect_err("exists"),
    );
    assert_eq!((error.code, error.reason.as_str()), (409, "AlreadyExists"));
    let error = api_error(api.get("missing").await.expect_err("missing"));
    assert_eq!((error.code, error.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_only_later_changes() {
    let (_server, api) = server(100).await;
    let first = api
        .create(
            &PostParams::default(),
            &new_decision("first", ACCOUNT, "r1", Action::Approve),
        )
        .await
        .expect("created");
    let since = first.metadata.resource_version.clone().expect("rv");
    api.create(
        &PostParams::default(),
        &new_decision("second", ACCOUNT, "r2", Action::Deny),
    )
    .await
    .expect("created");
    api.delete("first", &Default::default())
        .await
        .expect("deleted");

    let events: Vec<String> = api
        .watch(&WatchParams::default().timeout(2), &since)
        .await
        .expect("watch")
        .map_ok(|event| match event {
            WatchEvent::Added(d) => format!("ADDED {}", d.metadata.name.unwrap_or_default()),
            WatchEvent::Modified(d) => format!("MODIFIED {}", d.metadata.name.unwrap_or_default()),
            WatchEvent::Deleted(d) => format!("DELETED {}", d.metadata.name.unwrap_or_default()),
            WatchEvent::Bookmark(_) => "BOOKMARK".to_string(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .try_collect()
        .await
        .expect("events");
    assert_eq!(events, ["ADDED second", "DELETED first"]);
}

#[tokio::test]
async fn a_watch_from_an_expired_resource_version_gets_410_gone() {
    let (_server, api) = server(3).await;
    let first = api
        .create(
            &PostParams::default(),
            &new_decision("d0", ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect("created");
    for i in 1..6 {
        api.create(
            &PostParams::default(),
            &new_decision(&format!("d{i}"), ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect("created");
    }
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(2),
            &first.metadata.resource_version.expect("rv"),
        )
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(error))) => {
            assert_eq!(error.code, 410);
            assert_eq!(error.reason, "Expired");
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_merges_by_field_and_keeps_other_managers_fields() {
    let (_server, api) = server(100).await;
    let alice = PatchParams::apply("alice");
    let full = json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
        "metadata": {"name": "shared", "labels": {"owner": "alice"}},
        "spec": {"awsAccountId": ACCOUNT, "upgradeRequestId": "r", "action": "VERIFY"},
    });
    api.patch("shared", &alice, &Patch::Apply(&full))
        .await
        .expect("created by apply");
    let bob_label = json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
        "metadata": {"name": "shared", "labels": {"reviewed-by": "bob"}},
    });
    api.patch(
        "shared",
        &PatchParams::apply("bob"),
        &Patch::Apply(&bob_label),
    )
    .await
    .expect("bob applies");

    // alice drops her label: bob's stays, hers goes.
    let mut without_label = full.clone();
    without_label["metadata"]["labels"] = json!({});
    let merged = api
        .patch("shared", &alice, &Patch::Apply(&without_label))
        .await
        .expect("re-applied");
    let labels = merged.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("reviewed-by").map(String::as_str), Some("bob"));
    assert!(!labels.contains_key("owner"), "{labels:?}");

    // bob changing alice's field conflicts, unless forced.
    let bob_action = json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
        "metadata": {"name": "shared"}, "spec": {"action": "DENY"},
    });
    let error = api_error(
        api.patch(
            "shared",
            &PatchParams::apply("bob"),
            &Patch::Apply(&bob_action),
        )
        .await
        .expect_err("conflict"),
    );
    assert_eq!(error.code, 409);
    assert!(error.message.contains("alice"), "{}", error.message);
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob_action),
        )
        .await
        .expect("forced");
    assert_eq!(forced.spec.action, Action::Deny);
}

#[tokio::test]
async fn status_is_isolated_and_generation_counts_only_spec_changes() {
    let (_server, api) = server(100).await;
    let created = api
        .create(
            &PostParams::default(),
            &new_decision("iso", ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect("created");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status on create is dropped");

    // A status write changes only status, and not the generation.
    let status_patch = json!({"status": {"requestStatus": "PENDING"}, "spec": {"action": "DENY"}});
    let after_status = api
        .patch_status("iso", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await
        .expect("status patched");
    assert_eq!(after_status.spec.action, Action::Approve);
    assert_eq!(
        after_status
            .status
            .as_ref()
            .and_then(|s| s.request.request_status.as_deref()),
        Some("PENDING")
    );
    assert_eq!(after_status.metadata.generation, Some(1));

    // A main-resource write never changes status; a label is not a spec change.
    let main_patch =
        json!({"metadata": {"labels": {"x": "y"}}, "status": {"requestStatus": "DENIED"}});
    let after_label = api
        .patch("iso", &PatchParams::default(), &Patch::Merge(&main_patch))
        .await
        .expect("patched");
    assert_eq!(
        after_label
            .status
            .as_ref()
            .and_then(|s| s.request.request_status.as_deref()),
        Some("PENDING")
    );
    assert_eq!(after_label.metadata.generation, Some(1));

    let spec_patch = json!({"spec": {"action": "VERIFY"}});
    let after_spec = api
        .patch("iso", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .expect("patched");
    assert_eq!(after_spec.metadata.generation, Some(2));
    let rv = |d: &SelfUpgradeDecision| {
        d.metadata
            .resource_version
            .clone()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
    };
    assert!(rv(&after_spec) > rv(&after_label) && rv(&after_label) > rv(&after_status));
}

#[tokio::test]
async fn the_schema_and_cel_rules_reject_bad_decisions_naming_the_fields() {
    let (_server, api) = server(100).await;
    // `MAYBE` is no Action, so the bad object goes through a dynamic API.
    let bad = json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
        "metadata": {"name": "bad"},
        "spec": {"awsAccountId": "12345", "upgradeRequestId": "r", "action": "MAYBE"},
    });
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        api.clone().into_client(),
        "default",
        &kube::api::ApiResource::erase::<SelfUpgradeDecision>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(bad).expect("dynamic object");
    let error = api_error(
        dynamic
            .create(&PostParams::default(), &object)
            .await
            .expect_err("invalid"),
    );
    assert_eq!((error.code, error.reason.as_str()), (422, "Invalid"));
    let mut fields: Vec<String> = error
        .details
        .expect("details")
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    fields.sort();
    // The account breaks two rules (its length and its pattern), each a cause.
    fields.dedup();
    assert_eq!(fields, ["spec.action", "spec.awsAccountId"]);

    // The immutability rule (CEL, transition) names its field too.
    let good = new_decision("good", ACCOUNT, "r", Action::Approve);
    api.create(&PostParams::default(), &good)
        .await
        .expect("created");
    let change = json!({"spec": {"upgradeRequestId": "other"}});
    let error = api_error(
        api.patch("good", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect_err("immutable"),
    );
    assert_eq!(error.code, 422);
    let cause = &error.details.expect("details").causes[0];
    assert_eq!(cause.field, "spec.upgradeRequestId");
    assert!(
        cause.message.contains("upgradeRequestId is immutable"),
        "{}",
        cause.message
    );
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let (_server, api) = server(100).await;
    let mut decision = new_decision("fin", ACCOUNT, "r", Action::Approve);
    decision.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &decision)
        .await
        .expect("created");
    api.delete("fin", &Default::default())
        .await
        .expect("delete accepted");
    let held = api.get("fin").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    // `markAsDeleting`: the deletion is a change its controller must see, as a spec change.
    assert_eq!(held.metadata.generation, Some(2));
    let another = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/late"]}});
    let error = api_error(
        api.patch("fin", &PatchParams::default(), &Patch::Merge(&another))
            .await
            .expect_err("no new finalizer while deleting"),
    );
    assert_eq!(error.code, 422);
    assert!(
        error.message.contains("no new finalizers"),
        "{}",
        error.message
    );
    let release = json!({"metadata": {"finalizers": null}});
    api.patch("fin", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("released");
    assert!(api.get_opt("fin").await.expect("query").is_none());
}

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let (server, _) = server(100).await;
    let mut kubeconfig = server.kubeconfig_yaml();
    kubeconfig = kubeconfig.replace(&server.token, "wrong-token");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("yaml");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client, "default");
    let error = api_error(
        api.list(&Default::default())
            .await
            .expect_err("unauthorized"),
    );
    assert_eq!(error.code, 401);
}

#[tokio::test]
async fn create_sets_identity_defaults_and_generated_names() {
    let (_server, api) = server(100).await;
    let raw = json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision",
        "metadata": {"generateName": "approve-"},
        "spec": {"awsAccountId": ACCOUNT, "upgradeRequestId": "r", "action": "APPROVE"},
    });
    let decision: SelfUpgradeDecision = serde_json::from_value(raw).expect("typed");
    let created = api
        .create(&PostParams::default(), &decision)
        .await
        .expect("created");
    let name = created.metadata.name.clone().expect("generated name");
    assert!(
        name.starts_with("approve-") && name.len() == "approve-".len() + 5,
        "{name}"
    );
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.spec.quicksight_namespace, "default",
        "the schema default is applied"
    );
}

#[tokio::test]
async fn json_patch_applies_and_unsupported_patch_types_are_415() {
    let (_server, api) = server(100).await;
    api.create(
        &PostParams::default(),
        &new_decision("jp", ACCOUNT, "r", Action::Approve),
    )
    .await
    .expect("created");
    let operations: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/action", "value": "APPROVE"},
        {"op": "replace", "path": "/spec/action", "value": "DENY"},
    ]))
    .expect("patch");
    let patched = api
        .patch(
            "jp",
            &PatchParams::default(),
            &Patch::<()>::Json(operations),
        )
        .await
        .expect("json patch");
    assert_eq!(patched.spec.action, Action::Deny);
    let strategic = json!({"spec": {"action": "VERIFY"}});
    let error = api_error(
        api.patch("jp", &PatchParams::default(), &Patch::Strategic(&strategic))
            .await
            .expect_err("custom resources take no strategic merge patch"),
    );
    assert_eq!(
        (error.code, error.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

#[tokio::test]
async fn lists_page_with_limit_and_continue_and_filter_by_labels() {
    let (_server, api) = server(100).await;
    for i in 0..5 {
        let mut decision = new_decision(&format!("p{i}"), ACCOUNT, "r", Action::Approve);
        decision.metadata.labels = Some([("parity".to_string(), (i % 2).to_string())].into());
        api.create(&PostParams::default(), &decision)
            .await
            .expect("created");
    }
    let first = api
        .list(&kube::api::ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = api
        .list(
            &kube::api::ListParams::default()
                .limit(10)
                .continue_token(&token),
        )
        .await
        .expect("page 2");
    assert_eq!(second.items.len(), 3);
    assert!(
        second
            .metadata
            .continue_
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    let even = api
        .list(&kube::api::ListParams::default().labels("parity=0"))
        .await
        .expect("filtered");
    let names: Vec<String> = even
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    assert_eq!(names, ["p0", "p2", "p4"]);
    let by_name = api
        .list(&kube::api::ListParams::default().fields("metadata.name=p3"))
        .await
        .expect("by name");
    assert_eq!(by_name.items.len(), 1);
}

#[tokio::test]
async fn watches_that_allow_bookmarks_receive_them() {
    let server = RunningApiServer::start(ApiServerConfig {
        bookmark_interval: std::time::Duration::from_millis(200),
        ..ApiServerConfig::default()
    })
    .await
    .expect("starts");
    let api: Api<SelfUpgradeDecision> =
        Api::namespaced(server.client().await.expect("client"), "default");
    let created = api
        .create(
            &PostParams::default(),
            &new_decision("b", ACCOUNT, "r", Action::Approve),
        )
        .await
        .expect("created");
    let since = created.metadata.resource_version.expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), &since)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert!(
                bookmark
                    .metadata
                    .resource_version
                    .parse::<u64>()
                    .expect("numeric")
                    >= since.parse::<u64>().expect("numeric")
            );
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

/// What kube-apiserver refuses of any object's metadata is refused here too, as 422 Invalid
/// naming the field; a body over 3 MiB is 413.
#[tokio::test]
async fn metadata_past_apimachinerys_limits_is_refused() {
    let (_server, api) = server(100).await;
    let mut decision = new_decision("labelled", ACCOUNT, "r", Action::Approve);
    let key = "quicksight.selfupgrade.io/decision".to_string();
    decision.metadata.labels = Some([(key.clone(), "d".repeat(63))].into());
    api.create(&PostParams::default(), &decision)
        .await
        .expect("a 63-character label value is valid");
    let mut too_long = new_decision("labelled-too-long", ACCOUNT, "r", Action::Approve);
    too_long.metadata.labels = Some([(key, "d".repeat(64))].into());
    let status = api_error(
        api.create(&PostParams::default(), &too_long)
            .await
            .expect_err("a 64-character label value is not"),
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    let causes = status.details.expect("details").causes;
    assert_eq!(causes[0].field, "metadata.labels");
    assert!(
        causes[0]
            .message
            .contains("must be no more than 63 characters"),
        "{causes:?}"
    );

    let bad_name = new_decision("Not_A_Name", ACCOUNT, "r", Action::Approve);
    let status = api_error(
        api.create(&PostParams::default(), &bad_name)
            .await
            .expect_err("not a DNS-1123 subdomain"),
    );
    assert_eq!(status.code, 422);

    let mut huge = new_decision("huge", ACCOUNT, "r", Action::Approve);
    huge.metadata.annotations = Some([("note".to_string(), "x".repeat(3 * 1024 * 1024))].into());
    let status = api_error(
        api.create(&PostParams::default(), &huge)
            .await
            .expect_err("over the body limit"),
    );
    assert_eq!(status.code, 413, "{status:?}");
}

/// Core `v1` Events follow `legacyValidateEvent`: an old-style Event must agree with its
/// object's namespace; a new-style one (with `eventTime`) is held to the 128-character and
/// 1 KiB limits.
#[tokio::test]
async fn core_events_are_validated_as_kube_apiserver_validates_them() {
    use k8s_openapi::api::core::v1::Event;
    let (server, _) = server(100).await;
    let events: Api<Event> = Api::namespaced(server.client().await.expect("client"), "default");
    let event = |name: &str, involved_namespace: &str, message_len: usize| -> Event {
        let mut event = json!({
            "metadata": {"name": name, "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": involved_namespace},
            "eventTime": "2026-12-02T00:00:00.000000Z",
            "reportingComponent": "selfupgrade-operator",
            "reportingInstance": "pod-1",
            "action": "Reconcile",
            "reason": "Applied",
            "message": "m".repeat(message_len),
            "type": "Normal",
        });
        // Only an old-style Event (no eventTime) must name its object's namespace.
        if involved_namespace != "default" {
            event.as_object_mut().expect("object").remove("eventTime");
        }
        serde_json::from_value(event).expect("an Event")
    };
    events
        .create(&PostParams::default(), &event("just-fits", "default", 1024))
        .await
        .expect("a 1 KiB message is valid");
    for (name, involved, len, field) in [
        ("too-long", "default", 1025, "message"),
        ("elsewhere", "team-a", 10, "involvedObject.namespace"),
    ] {
        let status = api_error(
            events
                .create(&PostParams::default(), &event(name, involved, len))
                .await
                .expect_err(name),
        );
        assert_eq!(status.code, 422, "{name}");
        let causes = status.details.expect("details").causes;
        assert_eq!(causes[0].field, field, "{name}: {causes:?}");
    }
}

/// ConfigMaps follow `ValidateConfigMap`: config keys only, and 1 MiB of data in all (the
/// operator's notification record stays under it).
#[tokio::test]
async fn config_maps_are_validated_as_kube_apiserver_validates_them() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let (server, _) = server(100).await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client().await.expect("client"), "default");
    let map = |name: &str, key: &str, len: usize| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "data": {key: "x".repeat(len)},
        }))
        .expect("a ConfigMap")
    };
    maps.create(
        &PostParams::default(),
        &map("fits", "notified.json", 1024 * 1024),
    )
    .await
    .expect("1 MiB of data is valid");
    for (name, key, len, field) in [
        ("too-big", "notified.json", 1024 * 1024 + 1, ""),
        ("bad-key", "notified/json", 10, "data[notified/json]"),
    ] {
        let Err(error) = maps
            .create(&PostParams::default(), &map(name, key, len))
            .await
        else {
            panic!("{name} was stored");
        };
        let status = api_error(error);
        assert_eq!(status.code, 422, "{name}");
        let causes = status.details.expect("details").causes;
        assert_eq!(causes[0].field, field, "{name}: {causes:?}");
    }
}

/// A client of `kubeconfig_yaml` that does not retry 429s, to see what the server answers.
async fn client_without_retries(kubeconfig_yaml: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

/// Four lists at once, each held for a while by the server: how many were answered, and how
/// many refused with 429.
async fn four_lists_at_once(client: kube::Client) -> (usize, usize) {
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client, "default");
    let params = kube::api::ListParams::default();
    let lists = (0..4).map(|_| api.list(&params));
    let results = futures::future::join_all(lists).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(status)) if status.code == 429))
        .count();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    (answered, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_limit_get_429_and_kube_rs_retries_them() {
    let reader_role = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
  - apiGroups: [quicksight.selfupgrade.io]
    resources: [selfupgradedecisions]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: default}]
"#;
    let server = RunningApiServer::start(ApiServerConfig {
        max_requests_in_flight: 2,
        rbac: Some(RbacSettings {
            manifests: reader_role.to_string(),
            service_accounts: vec![("default".into(), "reader".into())],
        }),
        ..ApiServerConfig::default()
    })
    .await
    .expect("starts");
    let admin = server.client().await.expect("client");
    // Every request is held long enough that all four are in flight together.
    apiserver_command(&admin, "PUT", "faults", json!({ "latencyMs": 2000 })).await;
    let reader_yaml = server
        .service_account_kubeconfig_yaml("default", "reader")
        .expect("token issued");

    let reader = client_without_retries(&reader_yaml).await;
    assert_eq!(four_lists_at_once(reader).await, (2, 2));
    // kube-rs's default client honours the 429 and tries again: every list is answered.
    let retrying = server
        .service_account_client("default", "reader")
        .await
        .expect("client");
    assert_eq!(four_lists_at_once(retrying).await, (4, 0));
    // system:masters (the admin token) is not limited, as in kube-apiserver.
    let unlimited = client_without_retries(&server.kubeconfig_yaml()).await;
    assert_eq!(four_lists_at_once(unlimited).await, (4, 0));
}

/// A binding's role is a role of its own account: the CRD's CEL rule, as the API server runs it.
#[tokio::test]
async fn a_binding_whose_role_is_in_another_account_is_refused() {
    use selfupgrade_operator::api::{QuickSightAccount, QuickSightAccountSpec};
    let (server, _) = server(100).await;
    let bindings: Api<QuickSightAccount> = Api::all(server.client().await.expect("client"));
    let with_role = |name: &str, role: &str| {
        QuickSightAccount::new(
            name,
            QuickSightAccountSpec {
                account_id: ACCOUNT.into(),
                role_arn: Some(role.into()),
                ..Default::default()
            },
        )
    };
    let foreign = with_role("foreign", "arn:aws:iam::999999999999:role/approver");
    let error = api_error(
        bindings
            .create(&PostParams::default(), &foreign)
            .await
            .expect_err("refused"),
    );
    assert_eq!(error.code, 422);
    assert!(
        error
            .message
            .contains("roleArn must be a role in accountId"),
        "{}",
        error.message
    );
    let own = with_role("own", &format!("arn:aws:iam::{ACCOUNT}:role/approver"));
    bindings
        .create(&PostParams::default(), &own)
        .await
        .expect("a role of the account is accepted");
}

/// The admin kubeconfig holds the admin's token: only its owner may read it, also when the file
/// was there before.
#[tokio::test]
async fn the_admin_kubeconfig_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (server, _) = server(100).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "old").expect("an older file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    server.write_kubeconfig(&path).expect("written");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains(&server.token)
    );
}
