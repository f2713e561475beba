//! The QuickSight REST API as the service model defines it for the four self-upgrade operations.

use super::error::SimError;
use super::faults::{LostAnswer, UpdateFault};
use super::sigv4::Incoming;
use super::world::{EpochUnit, SimRequest};
use super::{SimHandle, epoch_millis};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn router(handle: SimHandle) -> Router {
    Router::new()
        .route(
            "/accounts/{account}/namespaces/{namespace}/self-upgrade-requests",
            get(list_self_upgrades),
        )
        .route(
            "/accounts/{account}/namespaces/{namespace}/update-self-upgrade-request",
            post(update_self_upgrade),
        )
        .route(
            "/accounts/{account}/namespaces/{namespace}/self-upgrade-configuration",
            get(describe_configuration).put(update_configuration),
        )
        .with_state(handle)
}

/// An axum extractor (`Path`, `Query`) whose rejection — a path label or query string axum
/// cannot decode (bad percent-encoding, not UTF-8) — is answered as QuickSight answers a bad
/// parameter, with its error type, rather than with axum's plain-text 400 that no SDK can
/// classify (found by the fuzzer, `fuzz/`).
struct AsQuickSight<T>(T);

impl<S, T> FromRequestParts<S> for AsQuickSight<T>
where
    S: Send + Sync,
    T: FromRequestParts<S>,
    T::Rejection: std::fmt::Display,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        T::from_request_parts(parts, state)
            .await
            .map(AsQuickSight)
            .map_err(|rejection| {
                SimError::invalid_parameter(rejection.to_string())
                    .into_wire("sim-refused-before-the-operation")
            })
    }
}

/// The `{account}` and `{namespace}` labels of an operation's path.
type Labels = AsQuickSight<Path<(String, String)>>;

/// A request as it arrived: what SigV4 verification reads (method, path and query as sent,
/// headers, body).
pub(super) struct Raw {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Bodies above this are refused before they are read; the four operations' inputs are tiny.
const MAX_BODY_BYTES: usize = 1 << 20;

impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                SimError::invalid_parameter(format!("the request body cannot be read: {e}"))
                    .into_wire("sim-refused-before-the-operation")
            })?;
        Ok(Self {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

impl Raw {
    pub(super) fn incoming(&self) -> Incoming<'_> {
        Incoming {
            method: self.method.as_str(),
            path: self.uri.path(),
            query: self.uri.query(),
            headers: &self.headers,
            body: &self.body,
        }
    }

    pub(super) fn body(&self) -> &[u8] {
        &self.body
    }

    /// The session token temporary credentials carry.
    pub(super) fn session_token(&self) -> Option<String> {
        self.headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// The common part of every operation: SigV4 verification, path validation, latency, faults,
/// counting, and the wire shape of the answer.
async fn serve(
    handle: &SimHandle,
    operation: &str,
    raw: &Raw,
    account: &str,
    namespace: &str,
    op: impl FnOnce(&mut super::World, EpochUnit) -> Result<Value, SimError>,
) -> Response {
    let latency = handle.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let caller = handle
        .verify(raw, SERVICE)
        .map_err(SimError::refused_signature);
    let unit = handle.epoch_unit();
    let (request_id, result) = handle.call(operation, account, caller, |world| {
        validate_path(account, namespace)?;
        op(world, unit)
    });
    match result {
        Ok(mut body) => {
            body["RequestId"] = Value::String(request_id.clone());
            let mut response = axum::Json(body).into_response();
            if let Ok(value) = request_id.parse() {
                response.headers_mut().insert("x-amzn-RequestId", value);
            }
            response
        }
        Err(error) => error.into_wire(&request_id),
    }
}

/// QuickSight's signing name, the service in a SigV4 credential scope.
const SERVICE: &str = "quicksight";

async fn list_self_upgrades(
    State(handle): State<SimHandle>,
    AsQuickSight(Path((account, namespace))): Labels,
    AsQuickSight(Query(query)): AsQuickSight<Query<HashMap<String, String>>>,
    raw: Raw,
) -> Response {
    serve(&handle, "ListSelfUpgrades", &raw, &account, &namespace, |world, unit| {
        let max_results = match query.get("max-results") {
            None => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                SimError::invalid_parameter(format!("max-results must be a number, got {raw:?}"))
            })?),
        };
        let (page, next) = world.list(&account, &namespace, query.get("next-token").map(String::as_str), max_results)?;
        let mut body = json!({
            "SelfUpgradeRequestDetails": page.iter().map(|r| detail_json(r, unit)).collect::<Vec<_>>(),
        });
        if let Some(next) = next {
            body["NextToken"] = Value::String(next);
        }
        Ok(body)
    })
    .await
}

async fn update_self_upgrade(
    State(handle): State<SimHandle>,
    AsQuickSight(Path((account, namespace))): Labels,
    raw: Raw,
) -> Response {
    let held_id = json_body(raw.body())
        .ok()
        .and_then(|input| input.get("UpgradeRequestId")?.as_str().map(str::to_string));
    if let Some(id) = &held_id {
        handle.wait_while_held(&account, &namespace, id).await;
    }
    let mut lost = None;
    let response = serve(
        &handle,
        "UpdateSelfUpgrade",
        &raw,
        &account,
        &namespace,
        |world, unit| {
            let input = json_body(raw.body())?;
            let id = required_string(&input, "UpgradeRequestId")?;
            let action = required_string(&input, "Action")?;
            let fault = world.take_update_fault(&account, &namespace, id);
            if fault == UpdateFault::InternalFailureBeforeEffect {
                return Err(SimError::internal_failure());
            }
            let request = world.update(&account, &namespace, id, action, epoch_millis())?;
            if let UpdateFault::AfterEffect(way) = fault {
                lost = Some(way);
            }
            Ok(json!({ "SelfUpgradeRequestDetail": detail_json(&request, unit) }))
        },
    )
    .await;
    if !response.status().is_success() {
        return response;
    }
    match lost.or_else(|| handle.lost_answer()) {
        None => response,
        Some(way) => lose_answer(&handle, way, response).await,
    }
}

/// The answer to an update that took effect, lost `way`.
async fn lose_answer(handle: &SimHandle, way: LostAnswer, answer: Response) -> Response {
    handle.count_lost_answer(way);
    match way {
        LostAnswer::InternalFailure => {
            let request_id = answer
                .headers()
                .get("x-amzn-RequestId")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("sim-lost-answer")
                .to_string();
            SimError::internal_failure().into_wire(&request_id)
        }
        LostAnswer::DroppedConnection => {
            // A body that fails makes the server cut the connection after the status line.
            let broken = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection dropped by the simulator"))
            });
            let (mut parts, _) = answer.into_parts();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, axum::body::Body::from_stream(broken))
        }
        LostAnswer::Slow => {
            tokio::time::sleep(handle.slow_answer()).await;
            answer
        }
    }
}

async fn describe_configuration(
    State(handle): State<SimHandle>,
    AsQuickSight(Path((account, namespace))): Labels,
    raw: Raw,
) -> Response {
    serve(&handle, "DescribeSelfUpgradeConfiguration", &raw, &account, &namespace, |world, _| {
        let ns = world.namespace(&account, &namespace)?;
        Ok(json!({ "SelfUpgradeConfiguration": { "SelfUpgradeStatus": ns.self_upgrade_status } }))
    })
    .await
}

async fn update_configuration(
    State(handle): State<SimHandle>,
    AsQuickSight(Path((account, namespace))): Labels,
    raw: Raw,
) -> Response {
    serve(
        &handle,
        "UpdateSelfUpgradeConfiguration",
        &raw,
        &account,
        &namespace,
        |world, _| {
            let input = json_body(raw.body())?;
            let status = required_string(&input, "SelfUpgradeStatus")?;
            world.set_self_upgrade_status(&account, &namespace, status, epoch_millis())?;
            Ok(json!({}))
        },
    )
    .await
}

fn json_body(body: &[u8]) -> Result<Value, SimError> {
    serde_json::from_slice(body)
        .map_err(|e| SimError::invalid_parameter(format!("the request body is not JSON: {e}")))
}

fn required_string<'a>(input: &'a Value, member: &str) -> Result<&'a str, SimError> {
    input
        .get(member)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SimError::invalid_parameter(format!("{member} is required")))
}

/// The account id and namespace constraints of the service model.
fn validate_path(account: &str, namespace: &str) -> Result<(), SimError> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SimError::invalid_parameter(format!(
            "AwsAccountId must be 12 digits, got {account:?}"
        )));
    }
    let namespace_ok = namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !namespace_ok {
        return Err(SimError::invalid_parameter(format!(
            "Namespace must match ^[a-zA-Z0-9._-]*$ and be at most 64 characters, got {namespace:?}"
        )));
    }
    Ok(())
}

fn epoch(ms: i64, unit: EpochUnit) -> i64 {
    match unit {
        EpochUnit::Milliseconds => ms,
        EpochUnit::Seconds => ms / 1000,
    }
}

/// `SelfUpgradeRequestDetail` with the service model's member names (note the two lower-case
/// ones).
fn detail_json(request: &SimRequest, unit: EpochUnit) -> Value {
    let mut detail = json!({
        "UpgradeRequestId": request.id,
        "UserName": request.user_name,
        "OriginalRole": request.original_role,
        "RequestedRole": request.requested_role,
        "CreationTime": epoch(request.created_at_ms, unit),
        "RequestStatus": request.status,
    });
    if let Some(note) = &request.note {
        detail["RequestNote"] = Value::String(note.clone());
    }
    if let Some(at) = request.last_update_attempt_ms {
        detail["lastUpdateAttemptTime"] = json!(epoch(at, unit));
    }
    if let Some(reason) = &request.last_failure_reason {
        detail["lastUpdateFailureReason"] = Value::String(reason.clone());
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_namespace_follow_the_service_model() {
        assert!(validate_path("111122223333", "default").is_ok());
        assert!(validate_path("111122223333", "team.a_b-c").is_ok());
        assert!(validate_path("11112222333", "default").is_err());
        assert!(validate_path("11112222333a", "default").is_err());
        assert!(validate_path("111122223333", "bad/ns").is_err());
        assert!(validate_path("111122223333", &"n".repeat(65)).is_err());
    }
}
