//! What every reconcile shares: the clients, the bindings, the timings, and the per-object
//! backoff. Its own module so that the stages of a reconcile, the mirror and the account
//! statuses share it without importing each other.

use crate::bindings::Bindings;
use crate::metrics::Metrics;
use crate::quicksight::RequestDirectory;
use crate::retry::{RetrySettings, backoff_delay, full_jitter};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The field manager that owns `.status` (server-side apply).
pub const FIELD_MANAGER: &str = "selfupgrade-operator";

/// When to look at a decision again.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Re-check of a request whose action was sent but not yet reflected.
    pub awaiting_recheck: Duration,
    /// Re-check of a request that ended UPDATE_FAILED / VERIFY_FAILED after our call.
    pub failed_recheck: Duration,
    /// Re-check of a request id QuickSight does not list.
    pub not_found_recheck: Duration,
    /// Re-check of decisions that are stalled but may yet move (rejected, retries exhausted),
    /// to notice changes made elsewhere.
    pub resync: Duration,
    /// Re-check of decisions whose request is decided for good (APPROVED, DENIED): only to
    /// notice the rare change made outside the cluster.
    pub final_resync: Duration,
    /// First delay after a retryable error; doubles per consecutive failure ...
    pub backoff_base: Duration,
    /// ... up to this.
    pub backoff_cap: Duration,
    /// Retries of actions QuickSight reported as failed, unless `spec.retry` says otherwise.
    pub retry: RetrySettings,
    /// The longest a QuickSight call can take. An intent younger than this whose effect is not
    /// visible may belong to a call still in flight, so the action is not sent again yet.
    pub call_timeout: Duration,
    /// How often the `QuickSightAccount` statuses (bound decisions, credentials) are refreshed.
    pub account_status_interval: Duration,
    /// How often the approval mode of the namespaces bindings declare one for is read.
    pub approval_mode_interval: Duration,
    /// How often every `SelfUpgradePolicy` is evaluated again (besides when it changes).
    pub policy_interval: Duration,
    /// How long a change to a decision waits before its reconcile, to fold quick edits into one.
    pub debounce: Duration,
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub directory: RequestDirectory,
    /// Which namespaces may act on which accounts, with which credentials.
    pub bindings: Bindings,
    /// Publishes one Event per transition (see [`crate::events`]).
    pub events: crate::events::EventPublisher,
    /// Region for decisions without `spec.region`.
    pub default_region: Option<String>,
    pub timing: Timing,
    /// Consecutive retryable failures per object UID, for capped exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Which decisions name which request, fed by the controller's watch, to find two
    /// decisions for one request.
    pub claims: crate::conflicts::Claims,
    pub metrics: Arc<Metrics>,
    /// `--mirror-requests`: where the requests are mirrored.
    pub mirror: Option<crate::mirror::MirrorSettings>,
    /// The approval modes found of the namespaces bindings declare one for.
    pub approval_modes: crate::approval_modes::ApprovalModes,
    /// `run --dry-run`: everything but the calls that change QuickSight.
    pub dry_run: bool,
    /// `run --notify-url`: where new requests, exhausted retries and drifts are announced.
    pub notifier: Option<crate::notify::Notifier>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        directory: RequestDirectory,
        bindings: Bindings,
        default_region: Option<String>,
        timing: Timing,
    ) -> Self {
        Self {
            events: crate::events::EventPublisher::new(client.clone(), FIELD_MANAGER),
            client,
            directory,
            bindings,
            default_region,
            timing,
            failures: Mutex::new(HashMap::new()),
            claims: Default::default(),
            metrics: Arc::default(),
            mirror: None,
            approval_modes: Default::default(),
            dry_run: false,
            notifier: None,
        }
    }

    /// Makes no call that changes QuickSight (`run --dry-run`).
    pub fn with_dry_run(self, dry_run: bool) -> Self {
        Self { dry_run, ..self }
    }

    /// Announces new requests, exhausted retries and drifts to a webhook.
    pub fn with_notifier(self, notifier: crate::notify::Notifier) -> Self {
        Self {
            notifier: Some(notifier),
            ..self
        }
    }

    /// Mirrors the requests of the bound (and `settings.accounts`) accounts.
    pub fn with_mirror(self, settings: crate::mirror::MirrorSettings) -> Self {
        Self {
            mirror: Some(settings),
            ..self
        }
    }

    /// Exports into `metrics` (shared with the QuickSight port's [`crate::quicksight::Measured`]).
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// Records one more consecutive failure for `uid` and returns the delay before retrying:
    /// "full jitter" (a random delay up to the capped exponential one), so that decisions
    /// throttled together do not retry together.
    pub fn next_backoff(&self, uid: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let ceiling = backoff_delay(*count, self.timing.backoff_base, self.timing.backoff_cap);
        self.metrics.retry_queue_depth.set(failures.len() as i64);
        full_jitter(ceiling, rand::random::<f64>())
    }

    pub fn reset_backoff(&self, uid: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(uid);
        self.metrics.retry_queue_depth.set(failures.len() as i64);
    }

    /// Drops backoff state of objects that no longer exist.
    pub fn retain_backoff(&self, live_uids: &std::collections::HashSet<String>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|uid, _| live_uids.contains(uid));
        self.metrics.retry_queue_depth.set(failures.len() as i64);
    }
}
