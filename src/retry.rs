//! Cluster-managed retries of an action QuickSight reported as failed (UPDATE_FAILED after
//! APPROVE, VERIFY_FAILED after VERIFY: group membership is often granted later by another
//! pipeline). Pure: the clock is handed in.

use crate::api::RetryPolicy;
use crate::reconcile::backoff_delay;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The retry policy in force for one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Calls per generation, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles per retry ...
    pub backoff: Duration,
    /// ... up to this.
    pub backoff_cap: Duration,
}

impl RetrySettings {
    /// The operator's defaults overridden by the decision's `spec.retry`; a malformed duration
    /// is an error naming the field.
    pub fn with_policy(self, policy: Option<&RetryPolicy>) -> Result<Self, String> {
        let Some(policy) = policy else {
            return Ok(self);
        };
        let duration = |value: &Option<String>, field: &str, default: Duration| match value {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                format!("spec.retry.{field} is not a duration such as 30s or 5m: {text:?} ({e})")
            }),
        };
        Ok(Self {
            max_attempts: policy.max_attempts.unwrap_or(self.max_attempts).max(1),
            backoff: duration(&policy.backoff, "backoff", self.backoff)?,
            backoff_cap: duration(&policy.backoff_cap, "backoffCap", self.backoff_cap)?,
        })
    }

    /// The wait after the `attempts`-th failed attempt.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        backoff_delay(attempts, self.backoff, self.backoff_cap)
    }
}

/// What to do about a failed action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryStep {
    /// The wait is over: send the action again.
    SendNow,
    /// Not yet: look again after this long.
    WaitFor(Duration),
    /// All attempts are spent.
    Exhausted,
}

/// After `attempts` calls, the last of which QuickSight reports at `last_attempt`.
pub fn retry_step(
    settings: RetrySettings,
    attempts: u32,
    last_attempt: Option<Timestamp>,
    now: Timestamp,
) -> RetryStep {
    if attempts >= settings.max_attempts {
        return RetryStep::Exhausted;
    }
    let delay = settings.delay_after(attempts.max(1));
    let Some(last) = last_attempt else {
        return RetryStep::SendNow;
    };
    let elapsed = Duration::from_millis(
        now.as_millisecond()
            .saturating_sub(last.as_millisecond())
            .max(0) as u64,
    );
    if elapsed >= delay {
        RetryStep::SendNow
    } else {
        RetryStep::WaitFor(delay - elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: RetrySettings = RetrySettings {
        max_attempts: 3,
        backoff: Duration::from_secs(60),
        backoff_cap: Duration::from_secs(90),
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    #[test]
    fn retries_wait_their_backoff_then_run_out() {
        assert_eq!(
            retry_step(DEFAULTS, 1, Some(at(1000)), at(1030)),
            RetryStep::WaitFor(Duration::from_secs(30))
        );
        assert_eq!(
            retry_step(DEFAULTS, 1, Some(at(1000)), at(1060)),
            RetryStep::SendNow
        );
        // The second retry waits twice as long, capped at 90s.
        assert_eq!(
            retry_step(DEFAULTS, 2, Some(at(1000)), at(1060)),
            RetryStep::WaitFor(Duration::from_secs(30))
        );
        assert_eq!(
            retry_step(DEFAULTS, 2, Some(at(1000)), at(1090)),
            RetryStep::SendNow
        );
        assert_eq!(
            retry_step(DEFAULTS, 3, Some(at(1000)), at(9999)),
            RetryStep::Exhausted
        );
        assert_eq!(retry_step(DEFAULTS, 1, None, at(0)), RetryStep::SendNow);
    }

    #[test]
    fn a_decision_overrides_the_defaults_field_by_field() {
        let policy = RetryPolicy {
            max_attempts: Some(7),
            backoff: Some("5s".into()),
            backoff_cap: None,
        };
        let settings = DEFAULTS.with_policy(Some(&policy)).expect("valid");
        assert_eq!(settings.max_attempts, 7);
        assert_eq!(settings.backoff, Duration::from_secs(5));
        assert_eq!(settings.backoff_cap, DEFAULTS.backoff_cap);
        let bad = RetryPolicy {
            backoff: Some("soon".into()),
            ..Default::default()
        };
        let error = DEFAULTS
            .with_policy(Some(&bad))
            .expect_err("not a duration");
        assert!(error.starts_with("spec.retry.backoff"), "{error}");
    }
}
