//! kube-apiserver's limit on requests in flight (`--max-requests-inflight`, default 400, and
//! `--max-mutating-requests-inflight`, default 200; k8s.io/apiserver `filters/maxinflight.go`,
//! `WithMaxInFlightLimit`): past it a request is answered at once with 429, `Retry-After: 1` and
//! a plain-text body, which client-go and kube-rs read as "try again". Long-running requests
//! (watches) are not counted, and neither is `system:masters` (the admin token here), as there.
//!
//! With API Priority and Fairness (on by default) a real server first queues requests past its
//! concurrency for a while before refusing them; this server refuses at once, which is
//! stricter, never kinder.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// kube-apiserver's defaults.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 400;
pub const DEFAULT_MAX_MUTATING_REQUESTS_IN_FLIGHT: usize = 200;

/// The two limits; `None` is "no limit" (a flag of 0, as kube-apiserver reads it).
pub struct InFlightLimit {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

/// A request's place among those in flight, held until its answer is built.
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
}

impl InFlightLimit {
    pub fn new(max_read_only: usize, max_mutating: usize) -> Self {
        let limit = |max: usize| (max > 0).then(|| Arc::new(Semaphore::new(max)));
        Self {
            read_only: limit(max_read_only),
            mutating: limit(max_mutating),
        }
    }

    /// Admits a request; `None` when its kind is at the limit (answer it with
    /// [`too_many_requests`]). `get`, `list` and `watch` are the non-mutating verbs; every
    /// other method mutates.
    pub fn admit(&self, method: &Method) -> Option<Admitted> {
        let read_only = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let pool = if read_only {
            &self.read_only
        } else {
            &self.mutating
        };
        match pool {
            None => Some(Admitted { _slot: None }),
            Some(pool) => pool
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|permit| Admitted {
                    _slot: Some(permit),
                }),
        }
    }
}

/// `tooManyRequests` in maxinflight.go: `Retry-After: 1` and Go's `http.Error` plain text.
pub fn too_many_requests() -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests, please try again later.\n",
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_request_has_its_own_limit_and_a_slot_frees_when_answered() {
        let limit = InFlightLimit::new(1, 1);
        let read = limit.admit(&Method::GET).expect("first read");
        let write = limit.admit(&Method::PATCH).expect("first write");
        assert!(limit.admit(&Method::GET).is_none());
        assert!(limit.admit(&Method::POST).is_none());
        drop(read);
        assert!(limit.admit(&Method::GET).is_some());
        drop(write);
        assert!(limit.admit(&Method::DELETE).is_some());
    }

    #[test]
    fn the_refusal_says_when_to_try_again() {
        let refused = too_many_requests();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn zero_means_no_limit() {
        let limit = InFlightLimit::new(0, 0);
        let held: Vec<_> = (0..1000).map(|_| limit.admit(&Method::PUT)).collect();
        assert!(held.iter().all(Option::is_some));
    }
}
