//! Throttle-aware pacing in front of QuickSight: a token bucket per account and region, a limit
//! on calls in flight across all accounts, and an account-wide pause after a throttled call.
//!
//! QuickSight's API quotas are per account and region. Without pacing, 5,000 decisions created at
//! once would send thousands of calls within a second and get a storm of `ThrottlingException`s,
//! each followed by per-object retries that throttle again. With it, the operator stays under the
//! configured rate, and a 429 (which carries no `Retry-After`) slows every caller of that
//! account, not just the one that was throttled.

use super::{Credentials, QuickSightError, RequestPage, Scope, SelfUpgradeApi, UpdateResult};
use crate::api::Action;
use crate::retry::backoff_delay;
use futures::FutureExt;
use futures::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How fast the operator may call QuickSight.
#[derive(Clone, Debug, PartialEq)]
pub struct PacingSettings {
    /// Sustained calls per second per account and region.
    pub rate_per_second: f64,
    /// Calls an idle account may make at once before the rate applies.
    pub burst: u32,
    /// Calls in flight across all accounts.
    pub concurrency: usize,
    /// Pause of the whole account after a throttled call; doubles while throttling continues ...
    pub throttle_pause: Duration,
    /// ... up to this.
    pub throttle_pause_cap: Duration,
}

/// Settings that cannot pace anything (a rate of zero, no calls in flight).
#[derive(Debug, thiserror::Error)]
pub enum PacingError {
    #[error("the QuickSight call rate must be a positive number of calls per second, not {0}")]
    Rate(f64),
    #[error("the QuickSight burst and concurrency must be at least 1")]
    Zero,
}

/// An account's pause after throttling.
struct Pause {
    until: Instant,
    /// Throttled answers in a row, each arriving after the previous pause ended.
    consecutive: u32,
}

/// [`SelfUpgradeApi`] with pacing; wraps the adapter that does the calls.
pub struct Paced {
    inner: Arc<dyn SelfUpgradeApi>,
    settings: PacingSettings,
    buckets: DefaultKeyedRateLimiter<String>,
    in_flight: Semaphore,
    pauses: Mutex<HashMap<String, Pause>>,
}

impl Paced {
    pub fn new(
        inner: Arc<dyn SelfUpgradeApi>,
        settings: PacingSettings,
    ) -> Result<Self, PacingError> {
        let rate = settings.rate_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(PacingError::Rate(rate));
        }
        let period = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
            .ok_or(PacingError::Rate(rate))?;
        let burst = NonZeroU32::new(settings.burst).ok_or(PacingError::Zero)?;
        if settings.concurrency == 0 {
            return Err(PacingError::Zero);
        }
        Ok(Self {
            inner,
            buckets: RateLimiter::keyed(period.allow_burst(burst)),
            in_flight: Semaphore::new(settings.concurrency),
            pauses: Mutex::new(HashMap::new()),
            settings,
        })
    }

    /// Runs one call once the account may make it, and learns from its outcome.
    async fn paced<T>(
        &self,
        scope: &Scope,
        call: impl Future<Output = Result<T, QuickSightError>>,
    ) -> Result<T, QuickSightError> {
        let key = format!("{}/{}", scope.account_id, scope.region);
        self.wait_for_pause(&key).await;
        self.buckets.until_key_ready(&key).await;
        // The semaphore is never closed, so acquiring cannot fail; were it closed, calling
        // without a permit is still correct, only less paced.
        let _permit = self.in_flight.acquire().await.ok();
        let result = call.await;
        match &result {
            Err(error) if error.is_throttling() => self.pause(&key),
            Err(_) => {}
            Ok(_) => {
                self.lock_pauses().remove(&key);
            }
        }
        result
    }

    async fn wait_for_pause(&self, key: &str) {
        loop {
            let until = self.lock_pauses().get(key).map(|p| p.until);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Pauses the account after a throttled answer. Answers to calls that were already in
    /// flight when the pause began do not lengthen it: they report the same overload.
    fn pause(&self, key: &str) {
        let now = Instant::now();
        let mut pauses = self.lock_pauses();
        let pause = pauses.entry(key.to_string()).or_insert(Pause {
            until: now,
            consecutive: 0,
        });
        if pause.until > now {
            return;
        }
        pause.consecutive = pause.consecutive.saturating_add(1);
        pause.until = now
            + backoff_delay(
                pause.consecutive,
                self.settings.throttle_pause,
                self.settings.throttle_pause_cap,
            );
        tracing::warn!(
            account = key,
            pause = ?pause.until - now,
            "QuickSight throttled the account; pausing its calls"
        );
    }

    fn lock_pauses(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pause>> {
        // A poisoned map only lost a pause being written; pausing is advisory.
        self.pauses.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SelfUpgradeApi for Paced {
    fn list_page<'a>(
        &'a self,
        scope: &'a Scope,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
        self.paced(scope, self.inner.list_page(scope, next_token))
            .boxed()
    }

    fn update<'a>(
        &'a self,
        scope: &'a Scope,
        upgrade_request_id: &'a str,
        action: Action,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        self.paced(scope, self.inner.update(scope, upgrade_request_id, action))
            .boxed()
    }

    /// Not paced: STS calls do not count against QuickSight's quota.
    fn check_credentials<'a>(
        &'a self,
        credentials: &'a Credentials,
        region: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.inner.check_credentials(credentials, region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::RequestPage;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers every call at once: throttled while `throttling` is set, otherwise an empty page.
    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        throttling: std::sync::atomic::AtomicBool,
    }

    impl SelfUpgradeApi for Fake {
        fn list_page<'a>(
            &'a self,
            _: &'a Scope,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, Result<RequestPage, QuickSightError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = if self.throttling.load(Ordering::SeqCst) {
                Err(QuickSightError::from_service(
                    "ListSelfUpgrades",
                    "ThrottlingException",
                    "Rate exceeded",
                    Some(429),
                    None,
                ))
            } else {
                Ok(RequestPage::default())
            };
            futures::future::ready(answer).boxed()
        }

        fn update<'a>(
            &'a self,
            _: &'a Scope,
            _: &'a str,
            _: Action,
        ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
            unreachable!("these tests only list")
        }
    }

    fn scope(account: &str) -> Scope {
        Scope {
            account_id: account.into(),
            region: "us-east-1".into(),
            namespace: "default".into(),
            credentials: Default::default(),
        }
    }

    fn settings(rate: f64, burst: u32) -> PacingSettings {
        PacingSettings {
            rate_per_second: rate,
            burst,
            concurrency: 4,
            throttle_pause: Duration::from_millis(100),
            throttle_pause_cap: Duration::from_millis(800),
        }
    }

    async fn list(paced: &Paced, account: &str, calls: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..calls {
            let _ = paced.list_page(&scope(account), None).await;
        }
        start.elapsed()
    }

    // Real time: governor keeps its own clock. Lower bounds are what pacing promises; the upper
    // bounds are loose, only to tell "waited" from "did not wait".
    const NO_WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn an_account_gets_its_burst_then_its_rate() {
        let fake = Arc::new(Fake::default());
        let paced = Paced::new(fake.clone(), settings(50.0, 5)).expect("valid");
        assert!(list(&paced, "111122223333", 5).await < NO_WAIT, "the burst");
        // Ten more calls at fifty a second take at least 180 ms (the first may be due at once).
        let paced_calls = list(&paced, "111122223333", 10).await;
        assert!(paced_calls >= Duration::from_millis(180), "{paced_calls:?}");
        // Another account is not slowed by the first.
        assert!(list(&paced, "444455556666", 5).await < NO_WAIT);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_throttled_answer_pauses_the_whole_account_and_success_resets_it() {
        let fake = Arc::new(Fake::default());
        let paced = Paced::new(fake.clone(), settings(1000.0, 1000)).expect("valid");
        fake.throttling.store(true, Ordering::SeqCst);
        // Throttled three times: paused 100 ms after the first, then 200 ms after the second.
        let throttled = list(&paced, "111122223333", 3).await;
        assert!(throttled >= Duration::from_millis(300), "{throttled:?}");
        fake.throttling.store(false, Ordering::SeqCst);
        // The next call waits out the third pause (400 ms) ...
        let after_pause = list(&paced, "111122223333", 1).await;
        assert!(after_pause >= Duration::from_millis(350), "{after_pause:?}");
        // ... and its success ends the pausing.
        assert!(list(&paced, "111122223333", 3).await < NO_WAIT);
        // Another account never waited.
        fake.throttling.store(true, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await;
        assert!(list(&paced, "444455556666", 1).await < NO_WAIT);
    }

    #[test]
    fn settings_that_cannot_pace_are_refused() {
        let fake: Arc<dyn SelfUpgradeApi> = Arc::new(Fake::default());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    Paced::new(fake.clone(), settings(rate, 1)),
                    Err(PacingError::Rate(_))
                ),
                "{rate}"
            );
        }
        assert!(matches!(
            Paced::new(fake.clone(), settings(1.0, 0)),
            Err(PacingError::Zero)
        ));
    }
}
