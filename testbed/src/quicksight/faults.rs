//! Seeded fault injection: random throttling and internal failures, a rate limit, latency, and
//! errors forced for the next calls of an operation.

use super::error::SimError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Fault settings, settable at start (flags) and at run time (admin interface).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultSettings {
    /// Fraction (0..1) of calls answered `ThrottlingException`.
    pub throttle_fraction: f64,
    /// Fraction (0..1) of calls answered `InternalFailureException`.
    pub internal_failure_fraction: f64,
    /// Calls per second per account above which calls are throttled (a token bucket per
    /// account with one second of burst), as QuickSight's quotas are per account; `None` means
    /// unlimited.
    pub rate_limit: Option<f64>,
    /// Added to every call.
    pub latency_ms: u64,
    /// Errors (exception names) forced on the next calls of an operation, in order; e.g.
    /// `{"operation": "UpdateSelfUpgrade", "code": "AccessDeniedException"}`.
    pub forced: VecDeque<ForcedError>,
    /// Fraction (0..1) of `UpdateSelfUpgrade` calls that take effect and then lose their answer,
    /// each in one of the ways of [`LostAnswer`], chosen at random: the faults a client cannot
    /// tell from a failure before the effect.
    pub lost_answer_fraction: f64,
    /// How late a [`LostAnswer::Slow`] answer comes: longer than the caller waits.
    pub slow_answer_ms: u64,
}

impl Default for FaultSettings {
    fn default() -> Self {
        Self {
            throttle_fraction: 0.0,
            internal_failure_fraction: 0.0,
            rate_limit: None,
            latency_ms: 0,
            forced: VecDeque::new(),
            lost_answer_fraction: 0.0,
            slow_answer_ms: 10_000,
        }
    }
}

/// How the answer to an update that took effect is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LostAnswer {
    /// `500 InternalFailureException`, as if the service failed before acting.
    InternalFailure,
    /// The connection is cut after the status line, before the body.
    DroppedConnection,
    /// The answer comes [`FaultSettings::slow_answer_ms`] late.
    Slow,
}

/// What the next `UpdateSelfUpgrade` of one request meets (admin interface, per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpdateFault {
    /// Nothing: the call is served as usual.
    None,
    /// `500 InternalFailureException` before the effect: the request does not change.
    InternalFailureBeforeEffect,
    /// The effect, then the answer lost this way.
    AfterEffect(LostAnswer),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForcedError {
    pub operation: String,
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// The live fault state: settings plus the random source and each account's token bucket.
pub struct Faults {
    pub settings: FaultSettings,
    rng: StdRng,
    /// Account id → (tokens, when last refilled).
    buckets: HashMap<String, (f64, Instant)>,
}

impl Faults {
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            settings,
            rng: StdRng::seed_from_u64(seed),
            buckets: HashMap::new(),
        }
    }

    pub fn replace(&mut self, settings: FaultSettings) {
        self.buckets.clear();
        self.settings = settings;
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.settings.latency_ms)
    }

    /// Whether this update, which took effect, loses its answer, and how.
    pub fn lost_answer(&mut self) -> Option<LostAnswer> {
        if self.settings.lost_answer_fraction <= 0.0
            || self.rng.random::<f64>() >= self.settings.lost_answer_fraction
        {
            return None;
        }
        Some(
            [
                LostAnswer::InternalFailure,
                LostAnswer::DroppedConnection,
                LostAnswer::Slow,
            ][self.rng.random_range(0..3)],
        )
    }

    /// The error this call (of `operation`, for `account`) gets, if any.
    pub fn inject(&mut self, operation: &str, account: &str, now: Instant) -> Option<SimError> {
        if let Some(position) = self
            .settings
            .forced
            .iter()
            .position(|f| f.operation == operation)
        {
            let forced = self.settings.forced.remove(position)?;
            let message = forced
                .message
                .unwrap_or_else(|| format!("forced {} by the simulator", forced.code));
            if let Some(error) = SimError::by_code(&forced.code, message) {
                return Some(error);
            }
        }
        if let Some(rate) = self.settings.rate_limit {
            let burst = rate.max(1.0);
            let (tokens, refilled_at) = self
                .buckets
                .entry(account.to_string())
                .or_insert((burst, now));
            let elapsed = now.saturating_duration_since(*refilled_at).as_secs_f64();
            *tokens = (*tokens + elapsed * rate).min(burst);
            *refilled_at = now;
            if *tokens < 1.0 {
                return Some(SimError::throttled("Rate exceeded"));
            }
            *tokens -= 1.0;
        }
        let roll: f64 = self.rng.random();
        if roll < self.settings.throttle_fraction {
            return Some(SimError::throttled("Rate exceeded"));
        }
        if roll < self.settings.throttle_fraction + self.settings.internal_failure_fraction {
            return Some(SimError::internal_failure());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";

    #[test]
    fn forced_errors_hit_only_their_operation_and_only_once() {
        let mut faults = Faults::new(FaultSettings::default(), 1);
        faults.settings.forced.push_back(ForcedError {
            operation: "UpdateSelfUpgrade".into(),
            code: "AccessDeniedException".into(),
            message: None,
        });
        let now = Instant::now();
        assert_eq!(faults.inject("ListSelfUpgrades", ACCOUNT, now), None);
        assert_eq!(
            faults
                .inject("UpdateSelfUpgrade", ACCOUNT, now)
                .map(|e| e.code),
            Some("AccessDeniedException")
        );
        assert_eq!(faults.inject("UpdateSelfUpgrade", ACCOUNT, now), None);
    }

    #[test]
    fn the_rate_limit_throttles_a_burst_and_recovers_with_time() {
        let settings = FaultSettings {
            rate_limit: Some(5.0),
            ..Default::default()
        };
        let mut faults = Faults::new(settings, 1);
        let start = Instant::now();
        let throttled = (0..20)
            .filter(|_| faults.inject("ListSelfUpgrades", ACCOUNT, start).is_some())
            .count();
        assert_eq!(throttled, 15);
        // Another account has its own quota.
        assert_eq!(
            faults.inject("ListSelfUpgrades", "444455556666", start),
            None
        );
        let after_a_second = start + Duration::from_secs(1);
        assert_eq!(
            faults.inject("ListSelfUpgrades", ACCOUNT, after_a_second),
            None
        );
    }

    #[test]
    fn lost_answers_come_at_their_fraction_in_every_way() {
        let settings = FaultSettings {
            lost_answer_fraction: 0.5,
            ..Default::default()
        };
        let mut faults = Faults::new(settings, 3);
        let lost: Vec<_> = (0..400).filter_map(|_| faults.lost_answer()).collect();
        assert!((150..=250).contains(&lost.len()), "{}", lost.len());
        for way in [
            LostAnswer::InternalFailure,
            LostAnswer::DroppedConnection,
            LostAnswer::Slow,
        ] {
            assert!(lost.contains(&way), "{way:?}");
        }
        let mut none = Faults::new(FaultSettings::default(), 3);
        assert!((0..100).all(|_| none.lost_answer().is_none()));
    }

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let settings = FaultSettings {
            throttle_fraction: 0.3,
            internal_failure_fraction: 0.2,
            ..Default::default()
        };
        let run = |seed| {
            let mut faults = Faults::new(settings.clone(), seed);
            (0..100)
                .map(|_| {
                    faults
                        .inject("ListSelfUpgrades", ACCOUNT, Instant::now())
                        .map(|e| e.code)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let outcomes = run(7);
        let throttled = outcomes
            .iter()
            .filter(|o| **o == Some("ThrottlingException"))
            .count();
        let failed = outcomes
            .iter()
            .filter(|o| **o == Some("InternalFailureException"))
            .count();
        assert!((15..=45).contains(&throttled), "{throttled}");
        assert!((8..=35).contains(&failed), "{failed}");
    }
}
