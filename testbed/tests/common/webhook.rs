//! A webhook receiver on loopback, for the tests of notifications (`run --notify-url-file`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The credential the webhook URL carries, which no log may show.
pub const TOKEN: &str = "T0000-B0000-do-not-log-me";

/// What the receiver was sent.
#[derive(Default)]
pub struct Received {
    /// POSTs still to answer 500.
    refuse: AtomicUsize,
    pub refused: AtomicUsize,
    accepted: Mutex<Vec<Value>>,
}

impl Received {
    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().expect("lock").clone()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<Value> {
        let all = self.accepted();
        all.into_iter().filter(|b| b["kind"] == kind).collect()
    }

    /// Waits up to `within` until `count` notifications of `kind` have been accepted, and
    /// returns those of that kind; panics with everything accepted if they do not come.
    pub async fn until(&self, kind: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let bodies = self.of_kind(kind);
            if bodies.len() >= count {
                return bodies;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} {kind} notifications expected: {:#?}",
                self.accepted()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn receive(State(received): State<Arc<Received>>, Json(body): Json<Value>) -> StatusCode {
    let refuse = received
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if refuse.is_ok() {
        received.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    received.accepted.lock().expect("lock").push(body);
    StatusCode::OK
}

/// A webhook on loopback that answers 500 to the first `refuse` POSTs; and the file holding
/// its URL, as a mounted Secret would.
pub async fn start_receiver(refuse: usize) -> (Arc<Received>, tempfile::NamedTempFile) {
    let received = Arc::new(Received {
        refuse: AtomicUsize::new(refuse),
        ..Received::default()
    });
    let app = axum::Router::new()
        .route("/services/{token}", axum::routing::post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), format!("http://{address}/services/{TOKEN}\n")).expect("write");
    (received, file)
}
