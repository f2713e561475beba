//! Reconcile scenarios against a mocked Kubernetes API (kube-rs `ApiServerVerifier` style) and
//! the QuickSight simulator through the real SDK: the exact status patch each scenario writes,
//! and the exact QuickSight calls it makes.

mod common;

use common::*;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action as Requeue;
use selfupgrade_operator::api::{
    Action, SelfUpgradeDecision, SelfUpgradeDecisionSpec, SelfUpgradeDecisionStatus,
};
use selfupgrade_operator::bindings::Bindings;
use selfupgrade_operator::context::{Context, Timing};
use selfupgrade_operator::quicksight::{RequestDirectory, SelfUpgradeApi};
use selfupgrade_operator::reconcile::reconcile;
use selfupgrade_testbed::quicksight::{RunningSim, SimStatus};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

const NAMESPACE: &str = "team-a";
const NAME: &str = "upgrade-alice";

fn timing() -> Timing {
    Timing {
        awaiting_recheck: Duration::from_secs(11),
        failed_recheck: Duration::from_secs(61),
        not_found_recheck: Duration::from_secs(301),
        resync: Duration::from_secs(3601),
        final_resync: Duration::from_secs(36001),
        backoff_base: Duration::from_secs(2),
        backoff_cap: Duration::from_secs(300),
        retry: selfupgrade_operator::retry::RetrySettings {
            max_attempts: 3,
            backoff: Duration::from_secs(60),
            backoff_cap: Duration::from_secs(600),
        },
        call_timeout: Duration::from_secs(30),
        account_status_interval: Duration::from_secs(60),
        approval_mode_interval: Duration::from_secs(60),
        policy_interval: Duration::from_secs(60),
        debounce: Duration::ZERO,
    }
}

fn decision(action: Action, request_id: &str) -> SelfUpgradeDecision {
    let mut decision = SelfUpgradeDecision::new(
        NAME,
        SelfUpgradeDecisionSpec {
            aws_account_id: ACCOUNT.into(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: request_id.into(),
            action,
            region: None,
            retry: None,
        },
    );
    decision.metadata.namespace = Some(NAMESPACE.into());
    decision.metadata.generation = Some(1);
    decision.metadata.uid = Some("uid-1".into());
    decision.metadata.resource_version = Some("41".into());
    decision
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn context(sim: &RunningSim) -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let directory = RequestDirectory::new(Arc::new(quicksight(sim)), Duration::from_secs(30));
    let rules = selfupgrade_operator::tenancy::OperatorRules::single_tenant(REGION);
    let bindings = Bindings::fixed(rules, Vec::new(), Vec::new());
    let ctx = Context::new(client, directory, bindings, Some(REGION.into()), timing());
    (Arc::new(ctx), handle)
}

fn normalize_times(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "lastTransitionTime"
                    || key == "lastUpdateAttemptTime"
                    || key == "recordedAt"
                    || key == "expiresAt"
                {
                    *field = json!("<time>");
                } else if key == "lastAwsRequestId" {
                    *field = json!("<request-id>");
                } else {
                    *field = normalize_times(field.take());
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| *v = normalize_times(v.take())),
        _ => {}
    }
    value
}

fn conditions(
    ready: (&str, &str),
    reconciling: (&str, &str),
    stalled: (&str, &str),
    messages: [&str; 3],
) -> Value {
    let one = |type_: &str, (status, reason): (&str, &str), message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": "<time>",
        })
    };
    json!([
        one("Ready", ready, messages[0]),
        one("Reconciling", reconciling, messages[1]),
        one("Stalled", stalled, messages[2]),
    ])
}

fn detail(status: &str) -> Value {
    json!({
        "requestStatus": status,
        "userName": "req-1@example.com",
        "originalRole": "READER",
        "requestedRole": "AUTHOR",
        "requestNote": "needs dashboards",
        "creationTime": "2025-11-26T00:00:00Z",
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// Runs one reconcile alongside the verifier and returns its requeue and every status patch it
/// made (each answered as the API server would), with times normalized.
async fn reconcile_once(sim: &RunningSim, decision: SelfUpgradeDecision) -> (Requeue, Vec<Value>) {
    let (requeue, patches, _) = reconcile_with_events(sim, decision).await;
    (requeue, patches)
}

/// [`reconcile_once`], also returning the Events it published.
async fn reconcile_with_events(
    sim: &RunningSim,
    decision: SelfUpgradeDecision,
) -> (Requeue, Vec<Value>, Vec<Value>) {
    let (ctx, mut handle) = context(sim);
    let expected = decision.clone();
    let verifier = tokio::spawn(async move {
        let (mut patches, mut events) = (Vec::new(), Vec::new());
        // The reconciler's client is dropped when it returns, which ends the stream.
        while let Some(write) = expect_write_or_end(&mut handle, &expected).await {
            match write {
                Write::Status(patch) => patches.push(patch),
                Write::Event(event) => events.push(event),
            }
        }
        (patches, events)
    });
    let requeue = reconcile(Arc::new(decision), ctx)
        .await
        .expect("reconciled");
    let (patches, events) = verifier.await.expect("verifier");
    (requeue, patches, events)
}

enum Write {
    Status(Value),
    Event(Value),
}

async fn expect_write_or_end(
    handle: &mut ApiHandle,
    decision: &SelfUpgradeDecision,
) -> Option<Write> {
    let next = tokio::time::timeout(Duration::from_secs(30), handle.next_request())
        .await
        .expect("the reconciler neither wrote nor finished");
    let (request, respond) = next?;
    if request.method() == Method::POST {
        assert_eq!(
            request.uri().path(),
            format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events")
        );
        let body = request.into_body().collect_bytes().await.expect("body");
        respond.send_response(Response::new(Body::from(body.to_vec())));
        return Some(Write::Event(
            serde_json::from_slice(&body).expect("json event"),
        ));
    }
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(
        request.uri().path(),
        format!(
            "/apis/quicksight.selfupgrade.io/v1alpha1/namespaces/{NAMESPACE}/selfupgradedecisions/{NAME}/status"
        )
    );
    let query = request.uri().query().unwrap_or_default().to_string();
    assert!(
        query.contains("fieldManager=selfupgrade-operator"),
        "{query}"
    );
    assert!(query.contains("force=true"), "{query}");
    assert_eq!(
        request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/apply-patch+yaml")
    );
    let body = request.into_body().collect_bytes().await.expect("body");
    let patch: Value = serde_json::from_slice(&body).expect("json patch");
    let mut answered = serde_json::to_value(decision).expect("serializes");
    answered["status"] = patch["status"].clone();
    // As a real server: every write stores a newer resourceVersion than the one written over.
    let written_over = patch["metadata"]["resourceVersion"]
        .as_str()
        .or(decision.metadata.resource_version.as_deref())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    answered["metadata"]["resourceVersion"] = json!((written_over + 1).to_string());
    respond.send_response(Response::new(Body::from(
        serde_json::to_vec(&answered).expect("json"),
    )));
    Some(Write::Status(normalize_times(patch)))
}

#[tokio::test]
async fn approve_writes_its_intent_calls_quicksight_once_and_records_the_outcome() {
    let sim = start_sim(vec![request("req-1")]).await;
    let (requeue, patches, events) =
        reconcile_with_events(&sim, decision(Action::Approve, "req-1")).await;
    assert_eq!(
        patches.len(),
        2,
        "the intent, then the outcome: {patches:#?}"
    );

    let waiting = "APPROVE was sent; QuickSight still shows the request PENDING";
    let intent = merge(
        detail("PENDING"),
        json!({
            "observedGeneration": 1,
            "intent": {"action": "APPROVE", "generation": 1, "requestStatus": "PENDING", "recordedAt": "<time>", "expiresAt": "<time>"},
            // Not counted yet: an attempt counts once QuickSight shows it.
            "conditions": conditions(
                ("False", "AwaitingResult"), ("True", "AwaitingResult"), ("False", "AwaitingResult"), [waiting; 3]),
        }),
    );
    assert_eq!(patches[0]["status"], intent);
    assert_eq!(
        patches[0]["metadata"],
        json!({"resourceVersion": "41"}),
        "the intent is written only over the version this reconcile read"
    );
    assert_eq!(
        patches[1]["metadata"],
        json!({"resourceVersion": "42"}),
        "the outcome is written only over the intent this reconcile wrote, never over a newer \
         status another writer stored meanwhile"
    );

    let message =
        "QuickSight shows the request APPROVED, as APPROVE asks, after this operator sent it";
    let status = merge(
        detail("APPROVED"),
        json!({
            "observedGeneration": 1,
            "lastUpdateAttemptTime": "<time>",
            "appliedAction": "APPROVE",
            "appliedGeneration": 1,
            "lastAwsRequestId": "<request-id>",
            "attempts": 1,
            "conditions": conditions(("True", "Applied"), ("False", "Applied"), ("False", "Applied"), [message; 3]),
        }),
    );
    assert_eq!(
        patches[1],
        json!({"apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision", "metadata": {"resourceVersion": "42"}, "status": status})
    );
    // Decided for good: looked at again only on the slow cadence.
    assert_eq!(requeue, Requeue::requeue(timing().final_resync));
    assert_eq!(events.len(), 1, "one Event for the transition: {events:#?}");
    assert_eq!(
        (
            &events[0]["type"],
            &events[0]["reason"],
            &events[0]["action"]
        ),
        (
            &json!("Normal"),
            &json!("Applied"),
            &json!("UpdateSelfUpgrade")
        )
    );
    assert_eq!(events[0]["regarding"]["name"], NAME);
    assert_eq!(events[0]["note"], message);
    let counters = sim.handle.counters();
    assert_eq!(counters.count("UpdateSelfUpgrade", "ok"), 1);
    assert_eq!(counters.count("ListSelfUpgrades", "ok"), 1);
    assert_eq!(
        sim.handle
            .request(ACCOUNT, "default", "req-1")
            .expect("exists")
            .status,
        SimStatus::Approved
    );
}

#[tokio::test]
async fn after_a_crash_between_call_and_status_write_the_call_is_not_repeated() {
    let sim = start_sim(vec![request("req-1")]).await;
    // The first reconcile wrote its intent, called VERIFY, and died before the second write.
    let mut crashed = decision(Action::Verify, "req-1");
    crashed.status = Some(SelfUpgradeDecisionStatus {
        observed_generation: Some(1),
        intent: Some(selfupgrade_operator::api::UpdateIntent {
            action: Action::Verify,
            generation: 1,
            request_status: Some("PENDING".into()),
            last_update_attempt_time: None,
            recorded_at: None,
            expires_at: None,
        }),
        attempts: Some(1),
        ..Default::default()
    });
    quicksight(&sim)
        .update(
            &selfupgrade_operator::quicksight::Scope {
                account_id: ACCOUNT.into(),
                region: REGION.into(),
                namespace: "default".into(),
                credentials: Default::default(),
            },
            "req-1",
            Action::Verify,
            soon(),
        )
        .await
        .expect("the call before the crash");

    let (_, patches) = reconcile_once(&sim, crashed).await;
    let status = &patches.last().expect("status written")["status"];
    assert_eq!(status["requestStatus"], "VERIFY_FAILED");
    assert_eq!(status["appliedAction"], "VERIFY");
    assert_eq!(status["appliedGeneration"], 1);
    assert!(status.get("intent").is_none(), "{status}");
    assert_eq!(status["conditions"][0]["reason"], "VerifyFailed");
    assert_eq!(
        sim.handle.counters().total("UpdateSelfUpgrade"),
        1,
        "VERIFY was not sent a second time"
    );
}

#[tokio::test]
async fn after_a_crash_before_the_call_the_call_is_made() {
    let sim = start_sim(vec![request("req-1")]).await;
    let mut crashed = decision(Action::Deny, "req-1");
    crashed.status = Some(SelfUpgradeDecisionStatus {
        observed_generation: Some(1),
        intent: Some(selfupgrade_operator::api::UpdateIntent {
            action: Action::Deny,
            generation: 1,
            request_status: Some("PENDING".into()),
            last_update_attempt_time: None,
            recorded_at: None,
            expires_at: None,
        }),
        ..Default::default()
    });
    let (_, patches) = reconcile_once(&sim, crashed).await;
    assert_eq!(
        patches.last().expect("written")["status"]["requestStatus"],
        "DENIED"
    );
    assert_eq!(sim.handle.counters().count("UpdateSelfUpgrade", "ok"), 1);
}

#[tokio::test]
async fn an_already_approved_request_gets_status_and_no_quicksight_call() {
    let sim = start_sim(vec![request("req-1")]).await;
    sim.handle
        .set_status(ACCOUNT, "default", "req-1", SimStatus::Approved)
        .expect("exists");
    let (requeue, patches, events) =
        reconcile_with_events(&sim, decision(Action::Approve, "req-1")).await;

    let message =
        "QuickSight shows the request APPROVED, as APPROVE asks, without a call from this operator";
    let status = merge(
        detail("APPROVED"),
        json!({
            "observedGeneration": 1,
            "lastUpdateAttemptTime": "<time>",
            "conditions": conditions(
                ("True", "AlreadyApplied"), ("False", "AlreadyApplied"), ("False", "AlreadyApplied"), [message; 3]),
        }),
    );
    assert_eq!(
        patches,
        [
            json!({"apiVersion": "quicksight.selfupgrade.io/v1alpha1", "kind": "SelfUpgradeDecision", "metadata": {"resourceVersion": "41"}, "status": status})
        ]
    );
    assert_eq!(requeue, Requeue::requeue(timing().final_resync));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (&events[0]["type"], &events[0]["reason"]),
        (&json!("Normal"), &json!("AlreadyApplied"))
    );
    assert_eq!(sim.handle.counters().total("UpdateSelfUpgrade"), 0);
}

#[tokio::test]
async fn a_contradicting_remote_decision_stalls_without_a_call() {
    let sim = start_sim(vec![request("req-1")]).await;
    sim.handle
        .set_status(ACCOUNT, "default", "req-1", SimStatus::Denied)
        .expect("exists");
    let (_, patches) = reconcile_once(&sim, decision(Action::Approve, "req-1")).await;

    let message =
        "the request is already DENIED in QuickSight, which contradicts APPROVE; no call was made";
    let status = merge(
        detail("DENIED"),
        json!({
            "observedGeneration": 1,
            "lastUpdateAttemptTime": "<time>",
            "conditions": conditions(
                ("False", "AlreadyDecided"), ("False", "AlreadyDecided"), ("True", "AlreadyDecided"), [message; 3]),
        }),
    );
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["status"], status);
    assert_eq!(sim.handle.counters().total("UpdateSelfUpgrade"), 0);
}

#[tokio::test]
async fn an_unknown_request_id_stalls_as_not_found_and_is_rechecked_slowly() {
    let sim = start_sim(vec![request("req-1")]).await;
    let (requeue, patches) = reconcile_once(&sim, decision(Action::Deny, "no-such-request")).await;

    let message = "QuickSight lists no self-upgrade request with this id in this account and QuickSight namespace; re-checked periodically";
    let status = json!({
        "observedGeneration": 1,
        "conditions": conditions(
            ("False", "RequestNotFound"), ("False", "RequestNotFound"), ("True", "RequestNotFound"), [message; 3]),
    });
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["status"], status);
    assert_eq!(requeue, Requeue::requeue(timing().not_found_recheck));
    assert_eq!(sim.handle.counters().total("UpdateSelfUpgrade"), 0);
}

#[tokio::test]
async fn a_throttled_update_is_reported_as_reconciling_and_retried_with_backoff() {
    let sim = start_sim(vec![request("req-1")]).await;
    sim.handle
        .force_error("UpdateSelfUpgrade", "ThrottlingException");
    let (requeue, patches) = reconcile_once(&sim, decision(Action::Approve, "req-1")).await;

    let message = "UpdateSelfUpgrade failed with ThrottlingException: forced ThrottlingException by the simulator; retrying with backoff";
    let status = merge(
        detail("PENDING"),
        json!({
            "observedGeneration": 1,
            "lastAwsRequestId": "<request-id>",
            // QuickSight refuses a throttled call before acting on it: no intent remains, and
            // no attempt is counted.
            "conditions": conditions(
                ("False", "ThrottlingException"),
                ("True", "ThrottlingException"),
                ("False", "ThrottlingException"),
                [message; 3]),
        }),
    );
    assert_eq!(patches.len(), 2, "intent, then the failure");
    assert_eq!(patches[1]["status"], status);
    // Full jitter: somewhere up to the first backoff step (2s), never below 100ms.
    let delay = requeue_delay(&requeue);
    assert!(
        (Duration::from_millis(100)..=Duration::from_secs(2)).contains(&delay),
        "{requeue:?}"
    );
    assert_eq!(
        sim.handle
            .counters()
            .count("UpdateSelfUpgrade", "ThrottlingException"),
        1
    );
    assert_eq!(sim.handle.counters().count("UpdateSelfUpgrade", "ok"), 0);
}

#[tokio::test]
async fn a_terminal_rejection_is_not_sent_again_for_the_same_generation() {
    let sim = start_sim(vec![request("req-1")]).await;
    sim.handle
        .force_error("UpdateSelfUpgrade", "AccessDeniedException");
    let first = decision(Action::Approve, "req-1");
    let (_, patches) = reconcile_once(&sim, first.clone()).await;
    let patch = patches.last().expect("status written").clone();
    assert_eq!(
        patch["status"]["rejection"]["error"],
        "AccessDeniedException"
    );
    assert!(
        patch["status"].get("intent").is_none(),
        "a refused call took no effect"
    );
    assert_eq!(patch["status"]["conditions"][2]["status"], "True");

    // The next reconcile of the same generation, with that status, makes no call.
    let mut again = first;
    let status: SelfUpgradeDecisionStatus =
        serde_json::from_value(reconstruct_times(patch["status"].clone())).expect("status");
    again.status = Some(status);
    let (_, second_patches) = reconcile_once(&sim, again).await;
    assert!(
        second_patches.is_empty(),
        "nothing changed, nothing written"
    );
    assert_eq!(sim.handle.counters().total("UpdateSelfUpgrade"), 1);
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let sim = start_sim(vec![request("req-1")]).await;
    let first = decision(Action::Approve, "req-1");
    let (_, patches) = reconcile_once(&sim, first.clone()).await;
    let mut again = first;
    again.status = Some(
        serde_json::from_value(reconstruct_times(
            patches.last().expect("written")["status"].clone(),
        ))
        .expect("status"),
    );
    // The request's lastUpdateAttemptTime is part of the status: take it from the simulator,
    // as Kubernetes keeps it (whole seconds; the simulator's has milliseconds).
    let stored = sim
        .handle
        .request(ACCOUNT, "default", "req-1")
        .expect("exists");
    again
        .status
        .as_mut()
        .expect("status")
        .request
        .last_update_attempt_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(
            stored
                .last_update_attempt_ms
                .expect("updated")
                .div_euclid(1000),
        )
        .expect("time"),
    ));
    let (requeue, second_patches, events) = reconcile_with_events(&sim, again).await;
    assert!(second_patches.is_empty());
    assert!(events.is_empty(), "no transition, no Event: {events:#?}");
    assert_eq!(requeue, Requeue::requeue(timing().final_resync));
    assert_eq!(sim.handle.counters().count("UpdateSelfUpgrade", "ok"), 1);
}

/// The delay of a requeue. kube-runtime's `Action` does not expose it, but its Debug form does
/// (`Action { requeue_after: Some(1.5s) }`), and `Duration`'s Debug form is humantime-like.
fn requeue_delay(action: &Requeue) -> Duration {
    let debug = format!("{action:?}");
    let inner = debug
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("a requeue delay");
    let (number, unit) = inner.split_at(
        inner
            .find(|c: char| c.is_alphabetic() || c == 'µ')
            .expect("unit"),
    );
    let value: f64 = number.parse().expect("number");
    match unit {
        "s" => Duration::from_secs_f64(value),
        "ms" => Duration::from_secs_f64(value / 1e3),
        "µs" => Duration::from_secs_f64(value / 1e6),
        "ns" => Duration::from_secs_f64(value / 1e9),
        other => panic!("unexpected unit {other}"),
    }
}

/// Turns the "<time>" placeholders back into a fixed, valid timestamp.
fn reconstruct_times(mut value: Value) -> Value {
    match &mut value {
        Value::String(s) if s == "<time>" => json!("2026-01-01T00:00:00Z"),
        Value::Object(map) => {
            for field in map.values_mut() {
                *field = reconstruct_times(field.take());
            }
            value
        }
        Value::Array(items) => {
            items
                .iter_mut()
                .for_each(|v| *v = reconstruct_times(v.take()));
            value
        }
        _ => value,
    }
}

#[tokio::test]
async fn a_call_that_may_still_be_in_flight_is_not_sent_again_before_the_call_timeout() {
    let sim = start_sim(vec![request("req-1")]).await;
    // A 5xx may or may not have taken effect: the intent stays.
    sim.handle
        .force_error("UpdateSelfUpgrade", "InternalFailureException");
    let first = decision(Action::Approve, "req-1");
    let (_, patches) = reconcile_once(&sim, first.clone()).await;
    let failed = patches.last().expect("written")["status"].clone();
    assert!(failed.get("intent").is_some(), "{failed}");

    // The next reconcile, within the call timeout of the intent: the request is unchanged, but
    // the call (here: another replica's, or one cut off by a crash) may still land.
    let mut again = first;
    let mut status = failed.clone();
    let now = k8s_openapi::jiff::Timestamp::now();
    let window = selfupgrade_operator::decide::CallWindow::new(timing().call_timeout);
    status["intent"]["recordedAt"] = json!(now.to_string());
    status["intent"]["expiresAt"] = json!(window.expires_at(now).to_string());
    again.status = Some(serde_json::from_value(reconstruct_times(status)).expect("status"));
    let (requeue, patches) = reconcile_once(&sim, again).await;
    assert_eq!(
        sim.handle.counters().total("UpdateSelfUpgrade"),
        1,
        "not sent again"
    );
    assert_eq!(
        patches.last().expect("written")["status"]["conditions"][0]["reason"],
        "AwaitingResult"
    );
    assert_eq!(requeue, Requeue::requeue(timing().awaiting_recheck));
}
