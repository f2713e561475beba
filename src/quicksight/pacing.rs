//! Throttle-aware pacing in front of QuickSight: a token bucket per account and region, a limit
//! on calls in flight across all accounts, and an account-wide pause after a throttled call.
//!
//! QuickSight's API quotas are per account and region. Without pacing, 5,000 decisions created at
//! once would send thousands of calls within a second and get a storm of `ThrottlingException`s,
//! each followed by per-object retries that throttle again. With it, the operator stays under the
//! configured rate, and a 429 (which carries no `Retry-After`) slows every caller of that
//! account, not just the one that was throttled.

use super::send_slots::SendSlots;
use super::{Credentials, QuickSightError, RequestPage, Scope, SelfUpgradeApi, UpdateResult};
use crate::api::{Action, ApprovalMode};
use crate::retry::backoff_delay;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
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

/// Why a call with a send window was abandoned before it was sent.
#[derive(Debug, thiserror::Error)]
enum PacerWait {
    #[error("the account is paused after throttling beyond the call's send window")]
    PausedPastWindow,
    #[error("the account's rate limit has no slot for the call within its send window")]
    SlotPastWindow,
    #[error("the call's send window closed while it waited for a place among the calls in flight")]
    WindowClosed,
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
    slots: SendSlots,
    in_flight: Semaphore,
    pauses: Mutex<HashMap<String, Pause>>,
    /// When idle accounts' send slots and pauses were last forgotten.
    swept_at: Mutex<Instant>,
}

/// How often the pacer forgets what it keeps of accounts and regions no longer called: their
/// send slots that are due already (as a new key's would be) and pauses that ended this long ago.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

impl Paced {
    pub fn new(
        inner: Arc<dyn SelfUpgradeApi>,
        settings: PacingSettings,
    ) -> Result<Self, PacingError> {
        let rate = settings.rate_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(PacingError::Rate(rate));
        }
        let period = Duration::try_from_secs_f64(1.0 / rate)
            .ok()
            .filter(|period| !period.is_zero())
            .ok_or(PacingError::Rate(rate))?;
        if settings.burst == 0 || settings.concurrency == 0 {
            return Err(PacingError::Zero);
        }
        Ok(Self {
            inner,
            slots: SendSlots::new(period, settings.burst),
            in_flight: Semaphore::new(settings.concurrency),
            pauses: Mutex::new(HashMap::new()),
            swept_at: Mutex::new(Instant::now()),
            settings,
        })
    }

    /// Runs one call once the account may make it, and learns from its outcome. With
    /// `send_by`, the wait ends there: the call is then abandoned unsent
    /// ([`QuickSightError::not_sent`]), at once when the account's pause outlasts it.
    async fn paced<T>(
        &self,
        scope: &Scope,
        operation: &'static str,
        send_by: Option<Instant>,
        call: impl Future<Output = Result<T, QuickSightError>>,
    ) -> Result<T, QuickSightError> {
        let key = format!("{}/{}", scope.account_id, scope.region);
        self.forget_idle();
        let admission = self.admit(&key, send_by);
        let _permit = match send_by {
            None => admission.await,
            Some(deadline) => tokio::time::timeout_at(deadline, admission)
                .await
                .unwrap_or(Err(PacerWait::WindowClosed)),
        }
        .map_err(|wait| QuickSightError::not_sent(operation, wait.to_string()))?;
        let result = call.await;
        match &result {
            Err(error) if error.is_throttling() => self.pause(&key),
            Err(_) => {}
            Ok(_) => self.end_pause(&key),
        }
        result
    }

    /// Waits until the account may call: its pause over, its send slot come, a place among the
    /// calls in flight — and the account still not paused once all three are had, so that a
    /// call that waited for its slot or a place before a pause began does not go out during it.
    async fn admit(
        &self,
        key: &str,
        send_by: Option<Instant>,
    ) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, PacerWait> {
        loop {
            self.wait_for_pause(key, send_by).await?;
            let slot = self
                .slots
                .reserve(key, Instant::now(), send_by)
                .map_err(|_| PacerWait::SlotPastWindow)?;
            tokio::time::sleep_until(slot).await;
            // The semaphore is never closed, so acquiring cannot fail; were it closed, calling
            // without a permit is still correct, only less paced.
            let permit = self.in_flight.acquire().await.ok();
            // `timeout_at` lets an admission that is ready at once through even past its
            // deadline: check it here, where the call would be let go.
            if send_by.is_some_and(|deadline| Instant::now() > deadline) {
                return Err(PacerWait::WindowClosed);
            }
            if !self.is_paused(key) {
                return Ok(permit);
            }
        }
    }

    fn is_paused(&self, key: &str) -> bool {
        self.lock_pauses()
            .get(key)
            .is_some_and(|p| p.until > Instant::now())
    }

    async fn wait_for_pause(&self, key: &str, send_by: Option<Instant>) -> Result<(), PacerWait> {
        loop {
            let until = self.lock_pauses().get(key).map(|p| p.until);
            match until {
                Some(until) if send_by.is_some_and(|deadline| until > deadline) => {
                    return Err(PacerWait::PausedPastWindow);
                }
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return Ok(()),
            }
        }
    }

    /// A successful answer ends the throttling streak, but not a pause that began while the
    /// call was in flight: that pause answers a later overload signal than this call saw.
    fn end_pause(&self, key: &str) {
        let mut pauses = self.lock_pauses();
        if pauses.get(key).is_some_and(|p| p.until <= Instant::now()) {
            pauses.remove(key);
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

    /// Forgets the send slots that are due already (as a new key's would be) and the pauses long
    /// over, at most once per [`SWEEP_INTERVAL`]: the keys come and go with bindings and
    /// regions.
    fn forget_idle(&self) {
        let now = Instant::now();
        {
            let mut swept_at = self.swept_at.lock().unwrap_or_else(|p| p.into_inner());
            if now < *swept_at + SWEEP_INTERVAL {
                return;
            }
            *swept_at = now;
        }
        self.slots.forget_idle(now);
        self.lock_pauses()
            .retain(|_, pause| pause.until + SWEEP_INTERVAL > now);
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
        self.paced(
            scope,
            "ListSelfUpgrades",
            None,
            self.inner.list_page(scope, next_token),
        )
        .boxed()
    }

    fn update<'a>(
        &'a self,
        scope: &'a Scope,
        upgrade_request_id: &'a str,
        action: Action,
        send_by: Instant,
    ) -> BoxFuture<'a, Result<UpdateResult, QuickSightError>> {
        self.paced(
            scope,
            "UpdateSelfUpgrade",
            Some(send_by),
            self.inner
                .update(scope, upgrade_request_id, action, send_by),
        )
        .boxed()
    }

    fn approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
    ) -> BoxFuture<'a, Result<ApprovalMode, QuickSightError>> {
        self.paced(
            scope,
            "DescribeSelfUpgradeConfiguration",
            None,
            self.inner.approval_mode(scope),
        )
        .boxed()
    }

    fn set_approval_mode<'a>(
        &'a self,
        scope: &'a Scope,
        mode: ApprovalMode,
    ) -> BoxFuture<'a, Result<(), QuickSightError>> {
        self.paced(
            scope,
            "UpdateSelfUpgradeConfiguration",
            None,
            self.inner.set_approval_mode(scope, mode),
        )
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
    use crate::quicksight::fake::FakeQuickSight;
    use std::sync::atomic::Ordering;

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

    // Paused time: the pacer sleeps on tokio's clock, so waits are exact.
    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test(start_paused = true)]
    async fn an_account_gets_its_burst_then_its_rate() {
        let fake = Arc::new(FakeQuickSight::default());
        let paced = Paced::new(fake.clone(), settings(50.0, 5)).expect("valid");
        assert_eq!(list(&paced, "111122223333", 5).await, NO_WAIT, "the burst");
        // Ten more calls at fifty a second: one every 20 ms.
        let paced_calls = list(&paced, "111122223333", 10).await;
        assert_eq!(paced_calls, Duration::from_millis(200));
        // Another account is not slowed by the first.
        assert_eq!(list(&paced, "444455556666", 5).await, NO_WAIT);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_of_an_account_no_longer_called_is_forgotten() {
        let fake = Arc::new(FakeQuickSight::default());
        let paced = Paced::new(fake.clone(), settings(1000.0, 1000)).expect("valid");
        fake.throttling.store(true, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await;
        fake.throttling.store(false, Ordering::SeqCst);
        assert_eq!(paced.lock_pauses().len(), 1);
        tokio::time::advance(SWEEP_INTERVAL * 3).await;
        // Another account's call is the pacer's next look.
        list(&paced, "444455556666", 1).await;
        assert!(paced.lock_pauses().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_answer_pauses_the_whole_account_and_success_resets_it() {
        let fake = Arc::new(FakeQuickSight::default());
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
        assert_eq!(list(&paced, "111122223333", 3).await, NO_WAIT);
        // Another account never waited.
        fake.throttling.store(true, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await;
        assert_eq!(list(&paced, "444455556666", 1).await, NO_WAIT);
    }

    async fn update(paced: &Paced, send_by: Instant) -> Result<UpdateResult, QuickSightError> {
        paced
            .update(&scope("111122223333"), "r-1", Action::Approve, send_by)
            .await
    }

    /// The intent announced this call's window; a call that cannot leave within it must not
    /// leave at all (another replica may send the action once the window has passed), and
    /// need not wait for the window to close to know it.
    #[tokio::test(start_paused = true)]
    async fn an_update_that_cannot_leave_within_its_send_window_is_abandoned_unsent() {
        let fake = Arc::new(FakeQuickSight::default());
        let paced = Paced::new(fake.clone(), settings(1.0, 1)).expect("valid");
        assert!(
            update(&paced, Instant::now() + Duration::from_secs(5))
                .await
                .is_ok()
        );
        // The next slot is a second away: a window of 300 ms closes first.
        let started = Instant::now();
        let error = update(&paced, started + Duration::from_millis(300))
            .await
            .expect_err("abandoned");
        assert_eq!(error.class, crate::quicksight::ErrorClass::NotSent);
        assert!(error.took_no_effect());
        assert_eq!(started.elapsed(), Duration::ZERO, "known at once");
        // A window already closed is not entered.
        let closed = update(&paced, Instant::now() - Duration::from_millis(1)).await;
        assert!(closed.is_err());
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            1,
            "only the first call left"
        );
        // A window long enough waits for the slot (which the abandoned call did not take).
        assert!(
            update(&paced, Instant::now() + Duration::from_secs(5))
                .await
                .is_ok()
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_longer_than_the_send_window_abandons_the_update_at_once() {
        let fake = Arc::new(FakeQuickSight::default());
        let paced = Paced::new(fake.clone(), settings(1000.0, 1000)).expect("valid");
        fake.throttling.store(true, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await; // paused for 100 ms
        let started = Instant::now();
        let error = update(&paced, started + Duration::from_millis(50))
            .await
            .expect_err("abandoned");
        assert_eq!(error.class, crate::quicksight::ErrorClass::NotSent);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no wait for a pause it cannot outlast"
        );
        // A window that outlasts the pause waits for it.
        assert!(
            update(&paced, started + Duration::from_secs(1))
                .await
                .is_ok()
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    /// A call that waited for its slot before the account was paused must not go out during the
    /// pause once its slot comes.
    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_for_its_slot_when_a_pause_begins_waits_for_the_pause() {
        let fake = Arc::new(FakeQuickSight::default());
        let pause = Duration::from_secs(3);
        let settings = PacingSettings {
            throttle_pause: pause,
            throttle_pause_cap: pause,
            ..settings(0.5, 1)
        };
        let paced = Arc::new(Paced::new(fake.clone(), settings).expect("valid"));
        let window = Duration::from_secs(10);
        assert!(update(&paced, Instant::now() + window).await.is_ok());
        let started = Instant::now();
        let queued = tokio::spawn({
            let paced = paced.clone();
            async move {
                update(&paced, Instant::now() + window)
                    .await
                    .map(|_| started.elapsed())
            }
        });
        // The queued call runs first (one thread), reaches the pacer and waits two seconds for
        // its slot; the pause begins meanwhile and outlasts that wait.
        tokio::task::yield_now().await;
        let paused_at = started.elapsed();
        paced.pause("111122223333/us-east-1");
        let sent_after = queued.await.expect("joined").expect("sent");
        assert!(
            sent_after >= paused_at + pause,
            "sent {sent_after:?} after the start, paused at {paused_at:?}"
        );
    }

    /// An answer to a call that was in flight when the account was paused says nothing about
    /// the overload that paused it.
    #[tokio::test(start_paused = true)]
    async fn a_success_does_not_end_a_pause_that_began_after_its_call_was_sent() {
        let fake = Arc::new(FakeQuickSight::default());
        let paced = Paced::new(fake.clone(), settings(1000.0, 1000)).expect("valid");
        fake.throttling.store(true, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await; // paused for 100 ms
        paced.end_pause("111122223333/us-east-1");
        let started = Instant::now();
        fake.throttling.store(false, Ordering::SeqCst);
        list(&paced, "111122223333", 1).await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "the pause held"
        );
    }

    #[test]
    fn settings_that_cannot_pace_are_refused() {
        let fake: Arc<dyn SelfUpgradeApi> = Arc::new(FakeQuickSight::default());
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
