//! The call-measuring decorator of the port: counts and times what QuickSight was asked and
//! how it answered, for `/metrics`.

use super::{Credentials, QuickSightError, RequestPage, Scope, SelfUpgradeApi, UpdateResult};
use crate::api::{Action, ApprovalMode};
use crate::metrics::Metrics;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// Counts and times every call to the port it wraps (the real calls: wrap the SDK adapter,
/// inside the pacer, so that pacing waits are not counted as QuickSight latency).
pub struct Measured {
    inner: Arc<dyn SelfUpgradeApi>,
    metrics: Arc<Metrics>,
}

impl Measured {
    pub fn new(inner: Arc<dyn SelfUpgradeApi>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl SelfUpgradeApi for Measured {
    fn list_page<'a>(
        &'a self,
        scope: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
        async move {
            let started = Instant::now();
            let result = self.inner.list_page(scope, next_token).await;
            self.metrics
                .observe_call("ListSelfUpgrades", started, &result);
            result
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        scope: &'a Scope,
        upgrade_request_id: &'a str,
        action: Action,
        send_by: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        async move {
            let started = Instant::now();
            let result = self
                .inner
                .update(scope, upgrade_request_id, action, send_by)
                .await;
            self.metrics
                .observe_call("UpdateSelfUpgrade", started, &result);
            result
        }
        .boxed()
    }

    fn approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<ApprovalMode, QuickSightError>> {
        async move {
            let started = Instant::now();
            let result = self.inner.approval_mode(scope).await;
            self.metrics
                .observe_call("DescribeSelfUpgradeConfiguration", started, &result);
            result
        }
        .boxed()
    }

    fn set_approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
        mode: ApprovalMode,
    ) -> BoxFuture<'a, Result<(), QuickSightError>> {
        async move {
            let started = Instant::now();
            let result = self.inner.set_approval_mode(scope, mode).await;
            self.metrics
                .observe_call("UpdateSelfUpgradeConfiguration", started, &result);
            result
        }
        .boxed()
    }

    fn check_credentials<'a>(
        &'a self,
        credentials: &'a Credentials,
        region: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.inner.check_credentials(credentials, region)
    }
}
