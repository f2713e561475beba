//! Send times under a rate with a burst, per account and region: each call reserves its own
//! slot and sleeps once, until then, on tokio's clock.
//!
//! This is the generic cell rate algorithm (GCRA) in its virtual-scheduling form, as token
//! buckets such as governor's implement it, but reserving rather than checking: governor's
//! `until_key_ready` sleeps on futures-timer's own timer thread and wakes every waiter of a key
//! at each free token, of which one wins and the rest sleep again. At the rates users run
//! (5 to 50 per second per account), with a dozen reconciles waiting per account, those wake-ups
//! and the hand-offs between threads doubled the operator's CPU per decision (BENCHMARKS.md).
//! A reserved slot that its caller then abandons (its send window closed) is left unused: the
//! pace only ever errs slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct SendSlots {
    /// One call per this, sustained.
    period: Duration,
    /// How far ahead of the sustained pace an idle key may run: `burst - 1` periods.
    tolerance: Duration,
    /// Per key, the theoretical arrival time: when the next call would be due at the sustained
    /// pace. A key whose time has passed is as good as new, and is forgotten by [`Self::forget_idle`].
    due: Mutex<HashMap<String, Instant>>,
}

impl SendSlots {
    /// `burst` is at least 1 (the caller checks).
    pub fn new(period: Duration, burst: u32) -> Self {
        Self {
            period,
            tolerance: period.saturating_mul(burst.saturating_sub(1)),
            due: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves the next send time of `key` at `now` or later, unless it would come after
    /// `latest`: then nothing is reserved, and the time it would have been is the error.
    pub fn reserve(
        &self,
        key: &str,
        now: Instant,
        latest: Option<Instant>,
    ) -> Result<Instant, Instant> {
        let mut due = self.lock();
        let next = due.get(key).copied().unwrap_or(now).max(now);
        // Never later than `next`: the slot runs at most `tolerance` ahead of the pace.
        let send = next.checked_sub(self.tolerance).unwrap_or(now).max(now);
        if latest.is_some_and(|latest| send > latest) {
            return Err(send);
        }
        due.insert(key.to_string(), next + self.period);
        Ok(send)
    }

    /// Forgets the keys whose next call is due already: a new key behaves the same.
    pub fn forget_idle(&self, now: Instant) {
        self.lock().retain(|_, next| *next > now);
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A poisoned map lost at most one reservation; pacing is advisory.
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(20);

    fn offsets(slots: &SendSlots, key: &str, start: Instant, calls: usize) -> Vec<Duration> {
        (0..calls)
            .map(|_| slots.reserve(key, start, None).expect("no limit") - start)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_key_sends_its_burst_at_once_then_one_per_period() {
        let slots = SendSlots::new(PERIOD, 3);
        let start = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            offsets(&slots, "a", start, 6),
            [ms(0), ms(0), ms(0), ms(20), ms(40), ms(60)]
        );
        // Keys do not share a pace.
        assert_eq!(offsets(&slots, "b", start, 2), [ms(0), ms(0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_is_the_sustained_pace_from_the_first_call() {
        let slots = SendSlots::new(PERIOD, 1);
        let start = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(offsets(&slots, "a", start, 3), [ms(0), ms(20), ms(40)]);
    }

    #[tokio::test(start_paused = true)]
    async fn time_spent_idle_refills_the_burst_but_never_beyond_it() {
        let slots = SendSlots::new(PERIOD, 3);
        let start = Instant::now();
        offsets(&slots, "a", start, 3);
        // Long idle: the burst is whole again, and no larger.
        let later = start + Duration::from_secs(10);
        let ms = Duration::from_millis;
        assert_eq!(
            offsets(&slots, "a", later, 4),
            [ms(0), ms(0), ms(0), ms(20)]
        );
        // Twenty milliseconds after the last of those went, one call's worth is back.
        let soon = later + ms(40);
        assert_eq!(offsets(&slots, "a", soon, 2), [ms(0), ms(20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_later_than_the_caller_can_use_is_not_taken() {
        let slots = SendSlots::new(PERIOD, 1);
        let start = Instant::now();
        let ms = Duration::from_millis;
        offsets(&slots, "a", start, 1);
        assert_eq!(
            slots.reserve("a", start, Some(start + ms(10))),
            Err(start + ms(20))
        );
        // The slot it did not take is the next caller's.
        assert_eq!(
            slots.reserve("a", start, Some(start + ms(20))),
            Ok(start + ms(20))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_whose_next_call_is_due_are_forgotten() {
        let slots = SendSlots::new(PERIOD, 2);
        let start = Instant::now();
        offsets(&slots, "a", start, 1);
        offsets(&slots, "b", start, 5);
        slots.forget_idle(start + Duration::from_millis(30));
        assert_eq!(slots.keys(), 1, "b still has reservations ahead");
        slots.forget_idle(start + Duration::from_secs(1));
        assert_eq!(slots.keys(), 0);
    }
}
