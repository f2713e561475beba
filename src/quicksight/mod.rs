//! The QuickSight edge: a small port ([`SelfUpgradeApi`]), its AWS SDK adapter, the listing cache
//! that finds one request among an account's requests, and the error classes the reconciler acts on.

mod directory;
mod endpoints;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod measured;
mod model;
mod pacing;
mod sdk;
mod send_slots;

pub use directory::{RequestDirectory, list_requests};
pub use endpoints::AwsEndpoints;
pub use error::{ErrorClass, QuickSightError};
pub use measured::Measured;
pub use model::{
    AssumeRole, Credentials, RequestDetail, RequestStatus, Scope, UpdateResult,
    timestamp_from_epoch,
};
pub use pacing::{Paced, PacingError, PacingSettings};
pub use sdk::{SdkQuickSight, SdkSettings};

use crate::api::{Action, ApprovalMode};
use crate::metrics::Metrics;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The stack every caller of QuickSight uses, outermost first: the listing cache (one listing
/// serves many decisions), the pacer (token buckets per account, pauses on throttling), the
/// call metrics (inside the pacer, so that pacing waits are not counted as QuickSight latency),
/// and `port`, the SDK adapter or a stand-in.
pub fn stack(
    port: Arc<dyn SelfUpgradeApi>,
    metrics: Arc<Metrics>,
    pacing: PacingSettings,
    listing_ttl: Duration,
) -> Result<RequestDirectory, PacingError> {
    let measured = Measured::new(port, metrics);
    let paced = Paced::new(Arc::new(measured), pacing)?;
    Ok(RequestDirectory::new(Arc::new(paced), listing_ttl))
}

/// One page of `ListSelfUpgrades`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestPage {
    pub requests: Vec<RequestDetail>,
    pub next_token: Option<String>,
}

/// The QuickSight operations the operator performs. Production uses [`SdkQuickSight`]; the
/// trait is the seam that keeps the reconciler free of HTTP and lets tests count calls.
pub trait SelfUpgradeApi: Send + Sync {
    /// One page of the account's self-upgrade requests in a QuickSight namespace.
    fn list_page<'a>(
        &'a self,
        scope: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>>;

    /// Send `action` for one request (QuickSight `UpdateSelfUpgrade`), but not after `send_by`:
    /// a call that could not leave by then fails with [`ErrorClass::NotSent`] unsent, so that it
    /// never outlives the window its write-ahead intent announced.
    fn update<'a>(
        &'a self,
        scope: &'a Scope,
        upgrade_request_id: &'a str,
        action: Action,
        send_by: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>>;

    /// The self-upgrade approval mode of the scope's QuickSight namespace
    /// (`DescribeSelfUpgradeConfiguration`).
    fn approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<ApprovalMode, QuickSightError>>;

    /// Sets it (`UpdateSelfUpgradeConfiguration`).
    fn set_approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
        mode: ApprovalMode,
    ) -> BoxFuture<'a, Result<(), QuickSightError>>;

    /// Whether calls with `credentials` in `region` can be signed (for an assumed role: whether
    /// STS lets the operator assume it). `Err` says why not. Stand-ins without credentials
    /// have nothing to check.
    fn check_credentials<'a>(
        &'a self,
        _credentials: &'a Credentials,
        _region: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        futures::future::ready(Ok(())).boxed()
    }
}
