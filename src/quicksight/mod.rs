//! The QuickSight edge: a small port ([`SelfUpgradeApi`]), its AWS SDK adapter, the listing cache
//! that finds one request among an account's requests, and the error classes the reconciler acts on.

mod directory;
mod error;
mod model;
mod pacing;
mod sdk;

pub use directory::{RequestDirectory, fetch_page};
pub use error::{ErrorClass, QuickSightError};
pub use model::{
    AssumeRole, Credentials, RequestDetail, RequestStatus, Scope, UpdateResult,
    timestamp_from_epoch,
};
pub use pacing::{Paced, PacingError, PacingSettings};
pub use sdk::{SdkQuickSight, SdkSettings};

use crate::api::Action;
use futures::FutureExt;
use futures::future::BoxFuture;

/// One page of `ListSelfUpgrades`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestPage {
    pub requests: Vec<RequestDetail>,
    pub next_token: Option<String>,
}

/// The two QuickSight operations the operator performs. Production uses [`SdkQuickSight`]; the
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
