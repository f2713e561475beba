//! The production adapter: [`SelfUpgradeApi`] over `aws-sdk-quicksight`.

use super::{
    QuickSightError, RequestDetail, RequestPage, RequestStatus, Scope, SelfUpgradeApi,
    UpdateResult, timestamp_from_epoch,
};
use crate::api::Action;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_quicksight::Client;
use aws_sdk_quicksight::config::Region;
use aws_sdk_quicksight::config::http::HttpResponse;
use aws_sdk_quicksight::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_quicksight::operation::RequestId;
use aws_sdk_quicksight::types::{SelfUpgradeAdminAction, SelfUpgradeRequestDetail};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// `ListSelfUpgrades` accepts at most 100 results a page; fewer pages means fewer throttled calls.
const PAGE_SIZE: i32 = 100;

/// How the SDK clients are built.
#[derive(Clone, Debug)]
pub struct SdkSettings {
    /// Overrides the QuickSight endpoint (a simulator, a VPC endpoint); `None` uses AWS's.
    pub endpoint_url: Option<String>,
    /// Upper bound for one call including the SDK's own retries of reads.
    pub call_timeout: Duration,
}

/// QuickSight through the AWS SDK. One client per region, built on first use and reused, so
/// connections and credentials are shared by every decision in that region.
pub struct SdkQuickSight {
    base: aws_config::SdkConfig,
    settings: SdkSettings,
    clients: Mutex<HashMap<String, Client>>,
}

impl SdkQuickSight {
    /// `base` carries credentials (aws-config's default chain in production).
    pub fn new(base: aws_config::SdkConfig, settings: SdkSettings) -> Self {
        Self {
            base,
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> Client {
        // A poisoned lock only means another thread panicked while inserting a client; the map
        // itself is still a valid cache.
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let mut config = aws_sdk_quicksight::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(self.settings.call_timeout)
                            .build(),
                    );
                if let Some(url) = &self.settings.endpoint_url {
                    config = config.endpoint_url(url);
                }
                Client::from_conf(config.build())
            })
            .clone()
    }
}

impl SelfUpgradeApi for SdkQuickSight {
    fn list_page<'a>(
        &'a self,
        scope: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
        async move {
            let output = self
                .client(&scope.region)
                .list_self_upgrades()
                .aws_account_id(&scope.account_id)
                .namespace(&scope.namespace)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.map(str::to_string))
                .send()
                .await
                .map_err(|e| classify("ListSelfUpgrades", e))?;
            Ok(RequestPage {
                requests: output
                    .self_upgrade_request_details()
                    .iter()
                    .map(to_detail)
                    .collect(),
                next_token: output
                    .next_token()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            })
        }
        .boxed()
    }

    fn update<'a>(
        &'a self,
        scope: &'a Scope,
        upgrade_request_id: &'a str,
        action: Action,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        async move {
            let output = self
                .client(&scope.region)
                .update_self_upgrade()
                .aws_account_id(&scope.account_id)
                .namespace(&scope.namespace)
                .upgrade_request_id(upgrade_request_id)
                .action(SelfUpgradeAdminAction::from(action.as_str()))
                .customize()
                // The SDK would resend an update whose answer was lost (timeout, 5xx) without
                // knowing whether it took effect. The reconciler instead re-reads the request
                // first, so a lost answer never turns into a second update.
                .config_override(
                    aws_sdk_quicksight::config::Builder::default()
                        .retry_config(RetryConfig::disabled()),
                )
                .send()
                .await
                .map_err(|e| classify("UpdateSelfUpgrade", e))?;
            let detail = output.self_upgrade_request_detail().ok_or_else(|| {
                QuickSightError::from_service(
                    "UpdateSelfUpgrade",
                    "MissingRequestDetail",
                    "the answer carried no SelfUpgradeRequestDetail",
                    Some(200),
                    output.request_id().map(str::to_string),
                )
            })?;
            Ok(UpdateResult {
                detail: to_detail(detail),
                aws_request_id: output.request_id().map(str::to_string),
            })
        }
        .boxed()
    }
}

fn to_detail(detail: &SelfUpgradeRequestDetail) -> RequestDetail {
    RequestDetail {
        upgrade_request_id: detail.upgrade_request_id().unwrap_or_default().to_string(),
        user_name: detail.user_name().map(str::to_string),
        original_role: detail.original_role().map(|r| r.as_str().to_string()),
        requested_role: detail.requested_role().map(|r| r.as_str().to_string()),
        request_note: detail.request_note().map(str::to_string),
        creation_time: timestamp_from_epoch(detail.creation_time()),
        request_status: RequestStatus::from_wire(
            detail
                .request_status()
                .map(|s| s.as_str())
                .unwrap_or_default(),
        ),
        last_update_attempt_time: timestamp_from_epoch(detail.last_update_attempt_time()),
        last_update_failure_reason: detail.last_update_failure_reason().map(str::to_string),
    }
}

fn classify<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> QuickSightError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let request_id = error.request_id().map(str::to_string);
    match &error {
        SdkError::ServiceError(context) => QuickSightError::from_service(
            operation,
            context.err().code().unwrap_or("UnknownError"),
            context.err().message().unwrap_or_default(),
            Some(context.raw().status().as_u16()),
            request_id,
        ),
        SdkError::TimeoutError(_) => QuickSightError::transport(
            operation,
            "TimeoutError",
            DisplayErrorContext(&error).to_string(),
        ),
        SdkError::DispatchFailure(_) => QuickSightError::transport(
            operation,
            "DispatchFailure",
            DisplayErrorContext(&error).to_string(),
        ),
        SdkError::ResponseError(_) => QuickSightError::transport(
            operation,
            "ResponseError",
            DisplayErrorContext(&error).to_string(),
        ),
        // Construction failures are bugs or bad input (e.g. an empty label) that no retry fixes.
        _ => QuickSightError::from_service(
            operation,
            "ConstructionFailure",
            &DisplayErrorContext(&error).to_string(),
            None,
            request_id,
        ),
    }
}
