//! Fixtures the unit tests share: a fixed clock, the usual request, decision statuses, errors,
//! timings and an admitted scope, so that no test builds them by hand.

use crate::api::{Action, SelfUpgradeDecisionStatus};
use crate::context::Timing;
use crate::decide::CallWindow;
use crate::quicksight::{Credentials, QuickSightError, RequestDetail, RequestStatus, Scope};
use crate::reconcile::Admitted;
use crate::retry::RetrySettings;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The generation of the decision under test.
pub const GENERATION: i64 = 3;

/// The clock of every test: 2026-11-30T12:00:00Z.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_764_504_000).expect("a valid time")
}

/// `now()` moved by `seconds` (negative: earlier).
pub fn at(seconds: i64) -> Timestamp {
    now()
        .saturating_add(SignedDuration::from_secs(seconds))
        .expect("in range")
}

/// alice's request to move from READER to AUTHOR, in `status`.
pub fn request(status: RequestStatus) -> RequestDetail {
    RequestDetail {
        user_name: Some("alice".into()),
        original_role: Some("READER".into()),
        requested_role: Some("AUTHOR".into()),
        last_update_failure_reason: Some("group membership missing".into()),
        ..RequestDetail::new("req-1", status)
    }
}

/// The status after `action` was applied for `generation`, `attempts` times.
pub fn applied(action: Action, generation: i64, attempts: i64) -> SelfUpgradeDecisionStatus {
    SelfUpgradeDecisionStatus {
        observed_generation: Some(generation),
        applied_action: Some(action),
        applied_generation: Some(generation),
        attempts: Some(attempts),
        ..Default::default()
    }
}

/// 3 attempts, 10 s doubling to 60 s.
pub fn retry() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        backoff: Duration::from_secs(10),
        backoff_cap: Duration::from_secs(60),
    }
}

/// A 30 s call timeout.
pub fn window() -> CallWindow {
    CallWindow::new(Duration::from_secs(30))
}

/// Distinct durations, so that a test sees which one was chosen.
pub fn timing() -> Timing {
    Timing {
        awaiting_recheck: Duration::from_secs(5),
        failed_recheck: Duration::from_secs(300),
        not_found_recheck: Duration::from_secs(120),
        resync: Duration::from_secs(600),
        final_resync: Duration::from_secs(3600),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        retry: retry(),
        call_timeout: Duration::from_secs(30),
        account_status_interval: Duration::from_secs(60),
        approval_mode_interval: Duration::from_secs(60),
        policy_interval: Duration::from_secs(60),
        debounce: Duration::ZERO,
    }
}

/// A decision admitted into the account 111122223333 with the operator's credentials.
pub fn admitted() -> Admitted {
    Admitted {
        scope: Scope {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            namespace: "default".into(),
            credentials: Credentials::Operator,
        },
        retry: retry(),
        mirrored_as: None,
        approval_mode: None,
        paused: None,
    }
}

/// A service error of `UpdateSelfUpgrade`, classified as the adapter classifies it.
pub fn service_error(code: &str, http_status: u16) -> QuickSightError {
    let message = format!("{code} from QuickSight");
    QuickSightError::from_service(
        "UpdateSelfUpgrade",
        code,
        &message,
        Some(http_status),
        Some("aws-request-1".into()),
    )
}

/// A call that timed out: it may have taken effect.
pub fn timed_out() -> QuickSightError {
    QuickSightError::transport("UpdateSelfUpgrade", "TimeoutError", "no answer".into())
}
