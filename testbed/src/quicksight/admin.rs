//! The simulator's admin interface, under `/_sim/` (a path the real API never uses): counters,
//! faults, and the console's powers over requests.

use super::error::SimError;
use super::faults::{FaultSettings, UpdateFault};
use super::iam::IamSettings;
use super::world::{SimRequest, SimStatus};
use super::{Counters, SimHandle};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

pub fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/_sim/counters", get(counters))
        .route("/_sim/faults", get(faults).put(set_faults))
        .route("/_sim/iam", get(iam).put(set_iam))
        .route("/_sim/access-keys/{id}", put(add_access_key))
        .route("/_sim/requests", get(requests).post(add_request))
        .route(
            "/_sim/requests/{account}/{namespace}/{id}/status",
            post(set_status),
        )
        .route(
            "/_sim/requests/{account}/{namespace}/{id}/membership",
            post(set_membership),
        )
        .route(
            "/_sim/requests/{account}/{namespace}/{id}/fail-next",
            post(fail_next),
        )
        .route(
            "/_sim/requests/{account}/{namespace}/{id}/update-faults",
            post(set_update_faults),
        )
        .route(
            "/_sim/accounts/{account}/namespaces/{namespace}/self-upgrade-configuration",
            put(set_approval_mode),
        )
        .route(
            "/_sim/requests/{account}/{namespace}/{id}/hold",
            get(held_calls).post(hold).delete(release),
        )
        .with_state(handle)
}

async fn counters(State(handle): State<SimHandle>) -> Json<Counters> {
    Json(handle.counters())
}

async fn faults(State(handle): State<SimHandle>) -> Json<FaultSettings> {
    Json(handle.faults())
}

async fn set_faults(
    State(handle): State<SimHandle>,
    Json(settings): Json<FaultSettings>,
) -> StatusCode {
    handle.set_faults(settings);
    StatusCode::NO_CONTENT
}

async fn iam(State(handle): State<SimHandle>) -> Json<IamSettings> {
    Json(handle.iam())
}

async fn set_iam(State(handle): State<SimHandle>, Json(settings): Json<IamSettings>) -> StatusCode {
    handle.set_iam(settings);
    StatusCode::NO_CONTENT
}

/// `PUT /_sim/access-keys/{id}` `{"secretAccessKey": "..."}`: issues a key pair.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewAccessKey {
    secret_access_key: String,
}

async fn add_access_key(
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
    Json(key): Json<NewAccessKey>,
) -> StatusCode {
    handle.add_access_key(&id, &key.secret_access_key);
    StatusCode::NO_CONTENT
}

async fn requests(State(handle): State<SimHandle>) -> Response {
    let listing: Vec<_> = handle
        .requests()
        .into_iter()
        .map(|((account, namespace), requests)| {
            json!({ "accountId": account, "namespace": namespace, "requests": requests })
        })
        .collect();
    Json(listing).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewRequest {
    account_id: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    request: SimRequest,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// A user asking for an upgrade; without `createdAtMs` (or with 0) the request is made now, as
/// in a seed file.
async fn add_request(State(handle): State<SimHandle>, Json(mut new): Json<NewRequest>) -> Response {
    if new.request.created_at_ms <= 0 {
        new.request.created_at_ms = super::epoch_millis();
    }
    answer(handle.add_request(&new.account_id, &new.namespace, new.request))
}

#[derive(Deserialize)]
struct StatusChange {
    status: SimStatus,
}

async fn set_status(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
    Json(change): Json<StatusChange>,
) -> Response {
    answer(handle.set_status(&account, &namespace, &id, change.status))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Membership {
    in_required_group: bool,
}

async fn set_membership(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
    Json(membership): Json<Membership>,
) -> Response {
    answer(handle.set_group_membership(&account, &namespace, &id, membership.in_required_group))
}

#[derive(Deserialize)]
struct FailNext {
    count: u32,
}

async fn fail_next(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
    Json(fail): Json<FailNext>,
) -> Response {
    answer(handle.fail_next_updates(&account, &namespace, &id, fail.count))
}

#[derive(Deserialize)]
struct UpdateFaults {
    faults: Vec<UpdateFault>,
}

async fn set_update_faults(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
    Json(faults): Json<UpdateFaults>,
) -> Response {
    answer(handle.set_update_faults(&account, &namespace, &id, faults.faults))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApprovalModeChange {
    self_upgrade_status: String,
}

/// A console user switching the namespace's approval mode (no signature, no IAM, no faults).
async fn set_approval_mode(
    State(handle): State<SimHandle>,
    Path((account, namespace)): Path<(String, String)>,
    Json(change): Json<ApprovalModeChange>,
) -> Response {
    answer(handle.set_approval_mode(&account, &namespace, &change.self_upgrade_status))
}

async fn hold(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
) -> StatusCode {
    handle.hold_updates(&account, &namespace, &id);
    StatusCode::NO_CONTENT
}

async fn held_calls(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
) -> Json<serde_json::Value> {
    Json(json!({ "heldCalls": handle.held_calls(&account, &namespace, &id) }))
}

async fn release(
    State(handle): State<SimHandle>,
    Path((account, namespace, id)): Path<(String, String, String)>,
) -> StatusCode {
    handle.release_updates(&account, &namespace, &id);
    StatusCode::NO_CONTENT
}

fn answer(result: Result<(), SimError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_wire("sim-admin"),
    }
}
