//! Watches: the initial state (for `resourceVersion` unset or "0"), the retained history after a
//! given resourceVersion (or `410 Gone` with an `Expired` status when it is older than the
//! history), then live changes, with BOOKMARK events and `timeoutSeconds`.

use super::errors::ApiError;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{ApiState, Target};
use super::store::{Change, ChangeKind};
use super::table;
use axum::body::{Body, Bytes};
use axum::response::Response;
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub struct WatchRequest {
    pub target: Target,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub as_table: bool,
}

type Sender = mpsc::Sender<Result<Bytes, Infallible>>;

pub fn watch(state: Arc<ApiState>, request: WatchRequest) -> Result<Response, ApiError> {
    let since = match request.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let mut opening: Vec<Value> = Vec::new();
    let (live, mut last_revision) = {
        let store = state.lock_store();
        match since {
            None => {
                for (key, object) in
                    store.list(request.target.type_id, request.target.namespace.as_deref())
                {
                    if request.target.name.as_ref().is_none_or(|n| *n == key.name)
                        && selected(&request, object)
                    {
                        opening.push(event(&state, &request, "ADDED", object));
                    }
                }
                (Some(store.subscribe()), store.revision())
            }
            Some(revision) => match store.changes_since(revision) {
                Some((replay, live)) => {
                    let mut last = revision;
                    for change in replay.iter().filter(|c| matches(&request, c)) {
                        opening.push(event(
                            &state,
                            &request,
                            change.kind.as_str(),
                            &change.object,
                        ));
                        last = change.revision;
                    }
                    (Some(live), last.max(revision))
                }
                None => {
                    let gone = ApiError::expired(format!(
                        "too old resource version: {revision} ({})",
                        store.compacted_through() + 1
                    ));
                    opening.push(json!({"type": "ERROR", "object": gone.status()}));
                    (None, revision)
                }
            },
        }
    };
    let bookmark_every = state.bookmark_interval;
    let dropped = state.faults.watches_dropped();
    tokio::spawn(async move {
        let mut tx = tx;
        for item in opening {
            if send(&mut tx, &item).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        tokio::pin!(dropped);
        let mut bookmarks = tokio::time::interval(bookmark_every);
        bookmarks.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                // Ended mid-stream on command, as when an API server instance goes away.
                _ = &mut dropped => return,
                _ = bookmarks.tick(), if request.bookmarks => {
                    // A bookmark promises that every change up to its resourceVersion was sent,
                    // as kube-apiserver's watch cache keeps it: the changes already committed
                    // (broadcast under the store's lock) go out first. Otherwise a client that
                    // saw the bookmark and then lost the stream would resume past a change it
                    // never received, and keep a stale object for good.
                    let current = state.lock_store().revision();
                    loop {
                        let change = match live.try_recv() {
                            Ok(change) => change,
                            Err(TryRecvError::Empty) => break,
                            Err(_) => return,
                        };
                        if !forward(&mut tx, &state, &request, &change, &mut last_revision).await {
                            return;
                        }
                    }
                    let bookmark = json!({"type": "BOOKMARK", "object": {
                        "kind": state.registry().types[request.target.type_id].kind,
                        "apiVersion": state.registry().types[request.target.type_id].api_version(),
                        "metadata": {"resourceVersion": current.max(last_revision).to_string()},
                    }});
                    if send(&mut tx, &bookmark).await.is_err() { return; }
                }
                change = live.recv() => match change {
                    Ok(change) => {
                        if !forward(&mut tx, &state, &request, &change, &mut last_revision).await {
                            return;
                        }
                    }
                    // A watcher too slow for the change rate is ended; the client re-watches
                    // from its last resourceVersion, as with a real API server.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(rx))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Sends `change` unless it was sent already or the watch does not select it; `false` when the
/// client is gone.
async fn forward(
    tx: &mut Sender,
    state: &ApiState,
    request: &WatchRequest,
    change: &Change,
    last_revision: &mut u64,
) -> bool {
    if change.revision <= *last_revision || !matches(request, change) {
        return true;
    }
    *last_revision = change.revision;
    let item = event(state, request, change.kind.as_str(), &change.object);
    send(tx, &item).await.is_ok()
}

fn matches(request: &WatchRequest, change: &Change) -> bool {
    let target = &request.target;
    change.key.type_id == target.type_id
        && target
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == change.key.namespace)
        && target.name.as_ref().is_none_or(|n| *n == change.key.name)
        && (change.kind == ChangeKind::Deleted || selected(request, &change.object))
}

fn selected(request: &WatchRequest, object: &Value) -> bool {
    request.labels.matches(object) && request.fields.matches(object)
}

fn event(state: &ApiState, request: &WatchRequest, kind: &str, object: &Value) -> Value {
    let object = if request.as_table {
        let resource = &state.registry().types[request.target.type_id];
        let revision = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        table::table(
            resource,
            &[object],
            &revision,
            "Object",
            k8s_openapi::jiff::Timestamp::now(),
        )
    } else {
        object.clone()
    };
    json!({"type": kind, "object": object})
}

async fn send(tx: &mut Sender, item: &Value) -> Result<(), mpsc::SendError> {
    tx.send(Ok(Bytes::from(wire_line(item)))).await
}

/// One watch event as a line, `type` before `object` as the real API server writes it (a
/// `Value` would sort `object` first). Clients decode the object straight from the text only in
/// that order; in the other, serde buffers every object first.
fn wire_line(item: &Value) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct WatchLine<'a> {
        #[serde(rename = "type")]
        kind: &'a Value,
        object: &'a Value,
    }
    let line = WatchLine {
        kind: &item["type"],
        object: &item["object"],
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_names_its_type_first_and_ends_the_line() {
        let item = json!({"type": "ADDED", "object": {"metadata": {"name": "a"}}});
        let line = String::from_utf8(wire_line(&item)).expect("UTF-8");
        assert_eq!(
            line,
            "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
        );
    }
}
