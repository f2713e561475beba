//! Cluster-managed retries of an action QuickSight reported as failed (UPDATE_FAILED after
//! APPROVE, VERIFY_FAILED after VERIFY: group membership is often granted later by another
//! pipeline). Pure: the clock is handed in.

use crate::api::RetryPolicy;
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

/// The shortest retry delay, so that jitter never turns into a hot loop.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A delay of `fraction` (0..1) of `ceiling`, but at least [`MIN_RETRY_DELAY`].
pub fn full_jitter(ceiling: Duration, fraction: f64) -> Duration {
    ceiling
        .mul_f64(fraction.clamp(0.0, 1.0))
        .max(MIN_RETRY_DELAY.min(ceiling))
}

/// `base · 2^(failures-1)`, capped.
pub fn backoff_delay(failures: u32, base: Duration, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << exponent).min(cap)
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

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=9)
            .map(|n| backoff_delay(n, base, cap).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX, base, cap), cap);
    }

    #[test]
    fn jitter_stays_between_the_floor_and_the_ceiling() {
        let ceiling = Duration::from_secs(8);
        assert_eq!(full_jitter(ceiling, 0.0), MIN_RETRY_DELAY);
        assert_eq!(full_jitter(ceiling, 0.5), Duration::from_secs(4));
        assert_eq!(full_jitter(ceiling, 1.0), ceiling);
        assert_eq!(
            full_jitter(Duration::from_millis(20), 0.0),
            Duration::from_millis(20)
        );
    }

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
