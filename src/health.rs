//! `/healthz` (the process serves) and `/readyz` (its caches are synced, leader or standby) for
//! the kubelet's probes, on `--health-addr`; and the small HTTP server both they and
//! `/metrics` (on `--metrics-addr`) run on.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the operator is ready to serve: set once its watches have synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

/// Binds `addr` (so that a taken port fails the start, not the first probe or scrape) and
/// serves `app` on a task of its own.
pub async fn start(addr: SocketAddr, app: Router) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "an HTTP server of the operator stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn status(readiness: &Readiness, path: &str) -> StatusCode {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        router(readiness.clone())
            .oneshot(request)
            .await
            .expect("answer")
            .status()
    }

    #[tokio::test]
    async fn ready_only_once_the_caches_synced() {
        let readiness = Readiness::default();
        assert_eq!(status(&readiness, "/healthz").await, StatusCode::OK);
        assert_eq!(
            status(&readiness, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_ready();
        assert_eq!(status(&readiness, "/readyz").await, StatusCode::OK);
    }
}
