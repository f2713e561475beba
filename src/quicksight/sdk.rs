//! The production adapter: [`SelfUpgradeApi`] over `aws-sdk-quicksight`.

use super::{
    Credentials, QuickSightError, RequestDetail, RequestPage, RequestStatus, Scope, SelfUpgradeApi,
    UpdateResult, timestamp_from_epoch,
};
use crate::api::{Action, ApprovalMode};
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_quicksight::Client;
use aws_sdk_quicksight::config::Region;
use aws_sdk_quicksight::config::http::HttpResponse;
use aws_sdk_quicksight::config::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_quicksight::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_quicksight::operation::RequestId;
use aws_sdk_quicksight::types::{
    SelfUpgradeAdminAction, SelfUpgradeRequestDetail, SelfUpgradeStatus,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `ListSelfUpgrades` accepts at most 100 results a page; fewer pages means fewer throttled calls.
const PAGE_SIZE: i32 = 100;

/// How the SDK clients are built.
#[derive(Clone, Debug)]
pub struct SdkSettings {
    /// Overrides the QuickSight endpoint (a simulator, a VPC endpoint); `None` uses AWS's.
    pub endpoint_url: Option<String>,
    /// Overrides the STS endpoint used to assume bound accounts' roles; `None` uses AWS's
    /// regional STS endpoint.
    pub sts_endpoint_url: Option<String>,
    /// Upper bound for one call.
    pub call_timeout: Duration,
}

/// Whose credentials, in which region: what one SDK client is built for.
type SignerKey = (Credentials, String);

/// A signer (an SDK client with its credentials) unused for this long is dropped when another
/// is built.
const SIGNER_IDLE: Duration = Duration::from_secs(60 * 60);

/// When credentials were last checked, and the outcome.
type CredentialCheck = (Instant, Result<(), String>);

/// How long the answer of [`SdkQuickSight::check_credentials`] is reused: the check is an STS
/// call, and a binding's status need not be fresher than this.
const CREDENTIAL_CHECK_TTL: Duration = Duration::from_secs(600);

/// QuickSight through the AWS SDK. One client per (credentials, region), built on first use and
/// reused, so that connections and cached credentials are shared by every decision that calls
/// with the same identity; an assumed role's client refreshes its credentials before they
/// expire (the SDK's identity cache).
///
/// The SDK retries nothing itself: one method call is one HTTP call. An update whose answer was
/// lost (timeout, 5xx) might have taken effect, so the reconciler re-reads the request before
/// sending again; a failed page is asked for again by [`super::directory::fetch_page`], through the pacer,
/// so that a throttled page pauses the whole account and every attempt is paced and counted.
pub struct SdkQuickSight {
    base: aws_config::SdkConfig,
    settings: SdkSettings,
    /// Each signer with when it was last used.
    clients: Mutex<HashMap<SignerKey, (Signer, Instant)>>,
    /// The last credential check per signer.
    checks: Mutex<HashMap<SignerKey, CredentialCheck>>,
}

impl SdkQuickSight {
    /// `base` carries the operator's own credentials (aws-config's default chain in production).
    pub fn new(base: aws_config::SdkConfig, settings: SdkSettings) -> Self {
        // `load_defaults` sets a clock; a hand-built config may not, and aws-config's
        // AssumeRoleProvider panics without one.
        let base = match base.time_source() {
            Some(_) => base,
            None => base
                .into_builder()
                .time_source(aws_smithy_async::time::SystemTimeSource::new())
                .build(),
        };
        Self {
            base,
            settings,
            clients: Mutex::new(HashMap::new()),
            checks: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, scope: &Scope) -> Client {
        self.signer(&scope.credentials, &scope.region).await.client
    }

    async fn signer(&self, credentials: &Credentials, region: &str) -> Signer {
        let key = (credentials.clone(), region.to_string());
        if let Some((signer, used_at)) = lock(&self.clients).get_mut(&key) {
            *used_at = Instant::now();
            return signer.clone();
        }
        // Built outside the lock (building an assume-role provider is async); two reconciles
        // racing here build twice and keep the first.
        let built = self.build_signer(credentials, region).await;
        let mut clients = lock(&self.clients);
        // A new signer is the moment the map grows: the ones idle for long go (credentials
        // and regions come and go with bindings), and their credential checks with them.
        clients.retain(|_, (_, used_at)| used_at.elapsed() < SIGNER_IDLE);
        lock(&self.checks).retain(|key, _| clients.contains_key(key));
        let (signer, _) = clients.entry(key).or_insert((built, Instant::now()));
        signer.clone()
    }

    async fn build_signer(&self, credentials: &Credentials, region: &str) -> Signer {
        let region = Region::new(region.to_string());
        let mut config = aws_sdk_quicksight::config::Builder::from(&self.base)
            .region(region.clone())
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.settings.call_timeout)
                    .build(),
            );
        let mut provider = self.base.credentials_provider();
        if let Credentials::AssumeRole(role) = credentials {
            let mut sts = self.base.to_builder();
            sts.set_endpoint_url(self.settings.sts_endpoint_url.clone());
            let mut assume = AssumeRoleProvider::builder(role.role_arn.clone())
                .session_name(role.session_name.clone())
                .region(region)
                .configure(&sts.build());
            if let Some(external_id) = &role.external_id {
                assume = assume.external_id(external_id.clone());
            }
            let assumed = SharedCredentialsProvider::new(assume.build().await);
            config = config.credentials_provider(assumed.clone());
            provider = Some(assumed);
        }
        if let Some(url) = &self.settings.endpoint_url {
            config = config.endpoint_url(url);
        }
        Signer {
            client: Client::from_conf(config.build()),
            credentials: provider,
        }
    }
}

/// A client and the credentials provider it signs with (the SDK does not hand its provider back).
#[derive(Clone)]
struct Signer {
    client: Client,
    credentials: Option<SharedCredentialsProvider>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl SelfUpgradeApi for SdkQuickSight {
    fn list_page<'a>(
        &'a self,
        scope: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
        async move {
            let output = self
                .client(scope)
                .await
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
        send_by: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        async move {
            // Getting the client may assume a role first (an STS call): check the send window
            // after it, right before the request leaves.
            let client = self.client(scope).await;
            if tokio::time::Instant::now() > send_by {
                return Err(QuickSightError::not_sent(
                    "UpdateSelfUpgrade",
                    "the call's send window closed while its credentials were fetched".into(),
                ));
            }
            let output = client
                .update_self_upgrade()
                .aws_account_id(&scope.account_id)
                .namespace(&scope.namespace)
                .upgrade_request_id(upgrade_request_id)
                .action(SelfUpgradeAdminAction::from(action.as_str()))
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

    fn approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<ApprovalMode, QuickSightError>> {
        const OPERATION: &str = "DescribeSelfUpgradeConfiguration";
        async move {
            let output = self
                .client(scope)
                .await
                .describe_self_upgrade_configuration()
                .aws_account_id(&scope.account_id)
                .namespace(&scope.namespace)
                .send()
                .await
                .map_err(|e| classify(OPERATION, e))?;
            let wire = output
                .self_upgrade_configuration()
                .and_then(|c| c.self_upgrade_status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            // A mode this operator does not know is reported, never guessed at.
            ApprovalMode::parse(&wire).ok_or_else(|| {
                QuickSightError::from_service(
                    OPERATION,
                    "UnrecognizedSelfUpgradeStatus",
                    &format!("the answer carried SelfUpgradeStatus {wire:?}"),
                    Some(200),
                    output.request_id().map(str::to_string),
                )
            })
        }
        .boxed()
    }

    fn set_approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
        mode: ApprovalMode,
    ) -> BoxFuture<'a, Result<(), QuickSightError>> {
        async move {
            self.client(scope)
                .await
                .update_self_upgrade_configuration()
                .aws_account_id(&scope.account_id)
                .namespace(&scope.namespace)
                .self_upgrade_status(SelfUpgradeStatus::from(mode.as_str()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("UpdateSelfUpgradeConfiguration", e))
        }
        .boxed()
    }

    /// Whether `credentials` resolve for calls in `region` (for an assumed role: whether STS
    /// lets the operator assume it), remembered for [`CREDENTIAL_CHECK_TTL`].
    fn check_credentials<'a>(
        &'a self,
        credentials: &'a Credentials,
        region: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let key = (credentials.clone(), region.to_string());
            if let Some((at, result)) = lock(&self.checks).get(&key)
                && at.elapsed() < CREDENTIAL_CHECK_TTL
            {
                return result.clone();
            }
            let result = match self.signer(credentials, region).await.credentials {
                None => Err("no credentials provider is configured".to_string()),
                // The error's own text names the cause (AccessDenied from STS, no base
                // credentials); credentials themselves are never part of it.
                Some(provider) => provider
                    .provide_credentials()
                    .await
                    .map(|_| ())
                    .map_err(|e| DisplayErrorContext(&e).to_string()),
            };
            lock(&self.checks).insert(key, (Instant::now(), result.clone()));
            result
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
