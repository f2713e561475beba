//! The one test double of the port the unit tests share: three scripted pages (`None` → "p2" →
//! "p3" → end, holding r-1, r-2, r-3), failures queued per page, a throttling switch, and every
//! call counted and every page asked for recorded. Updates answer APPROVED.

use super::{
    QuickSightError, RequestDetail, RequestPage, RequestStatus, Scope, SelfUpgradeApi, UpdateResult,
};
use crate::api::{Action, ApprovalMode};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::time::Instant;

#[derive(Default)]
pub struct FakeQuickSight {
    failures: Mutex<HashMap<Option<String>, VecDeque<QuickSightError>>>,
    asked: Mutex<Vec<Option<String>>>,
    /// Calls made (an update counts when it is sent, that is polled, not when created).
    pub calls: AtomicUsize,
    /// While set, every listing call is throttled.
    pub throttling: AtomicBool,
    /// The approval mode the configuration calls read and write (unset: ADMIN_APPROVAL).
    pub mode: Mutex<Option<ApprovalMode>>,
}

impl FakeQuickSight {
    /// Answers `failures`, in order, to the calls for `page` before answering it.
    pub fn failing(page: Option<&str>, failures: Vec<QuickSightError>) -> Self {
        let fake = Self::default();
        lock(&fake.failures).insert(page.map(str::to_string), failures.into());
        fake
    }

    /// The next-tokens of the pages asked for, in order.
    pub fn asked(&self) -> Vec<Option<String>> {
        lock(&self.asked).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn throttled() -> QuickSightError {
    QuickSightError::from_service(
        "ListSelfUpgrades",
        "ThrottlingException",
        "Rate exceeded",
        Some(429),
        None,
    )
}

impl SelfUpgradeApi for FakeQuickSight {
    fn list_page<'a>(
        &'a self,
        _: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = next_token.map(str::to_string);
        lock(&self.asked).push(token.clone());
        let failure = match self.throttling.load(Ordering::SeqCst) {
            true => Some(throttled()),
            false => lock(&self.failures)
                .get_mut(&token)
                .and_then(VecDeque::pop_front),
        };
        let (id, next) = match next_token {
            None => ("r-1", Some("p2")),
            Some("p2") => ("r-2", Some("p3")),
            _ => ("r-3", None),
        };
        let answer = match failure {
            Some(error) => Err(error),
            None => Ok(RequestPage {
                requests: vec![RequestDetail::new(id, RequestStatus::Pending)],
                next_token: next.map(str::to_string),
            }),
        };
        futures::future::ready(answer).boxed()
    }

    fn update<'a>(
        &'a self,
        _: &'a Scope,
        upgrade_request_id: &'a str,
        _: Action,
        _: Instant,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let detail = RequestDetail::new(upgrade_request_id, RequestStatus::Approved);
            Ok(UpdateResult {
                detail,
                aws_request_id: None,
            })
        }
        .boxed()
    }

    fn approval_mode<'a>(
        &'a self,
        _: &'a Scope,
    ) -> BoxFuture<'a, Result<ApprovalMode, QuickSightError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = lock(&self.mode).unwrap_or(ApprovalMode::AdminApproval);
        futures::future::ready(Ok(mode)).boxed()
    }

    fn set_approval_mode<'a>(
        &'a self,
        _: &'a Scope,
        mode: ApprovalMode,
    ) -> BoxFuture<'a, Result<(), QuickSightError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *lock(&self.mode) = Some(mode);
        futures::future::ready(Ok(())).boxed()
    }
}
