//! Misbehaviour on command, so that tests can prove the operator recovers from what real API
//! servers do: slow answers, 409 on status writes, watches dropped mid-stream, history compacted
//! (a resumed watch gets 410 Gone), resources whose storage does not answer (504), and restarts
//! (see `RunningApiServer::restart`).
//!
//! Driven through `/_apiserver/` (same bearer token as the API): `GET|PUT /_apiserver/faults`,
//! `POST /_apiserver/drop-watches`, `POST /_apiserver/compact`.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// Settable faults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiFaults {
    /// Added before answering every request.
    pub latency_ms: u64,
    /// The next this many writes to a `status` subresource are answered 409 Conflict, as when
    /// another writer got there first.
    pub conflict_status_writes: u32,
    /// Every request for these resources (plural names, e.g. `leases`) is answered 504 Timeout,
    /// as when the storage behind them does not answer.
    pub unavailable_resources: Vec<String>,
}

/// The live fault state of one API server.
pub struct FaultState {
    settings: Mutex<ApiFaults>,
    /// Bumped to end every open watch.
    watch_epoch: tokio::sync::watch::Sender<u64>,
}

impl Default for FaultState {
    fn default() -> Self {
        Self {
            settings: Mutex::new(ApiFaults::default()),
            watch_epoch: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl FaultState {
    pub fn settings(&self) -> ApiFaults {
        self.lock().clone()
    }

    pub fn set(&self, faults: ApiFaults) {
        *self.lock() = faults;
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.lock().latency_ms)
    }

    /// Whether this status write is to be refused with 409 (and counts it down).
    pub fn refuse_status_write(&self) -> bool {
        let mut settings = self.lock();
        let refuse = settings.conflict_status_writes > 0;
        settings.conflict_status_writes = settings.conflict_status_writes.saturating_sub(1);
        refuse
    }

    /// Whether requests for `resource` (a plural name, with or without `/subresource`) are to
    /// be answered as timed out.
    pub fn unavailable(&self, resource: &str) -> bool {
        let plural = resource.split('/').next().unwrap_or(resource);
        self.lock()
            .unavailable_resources
            .iter()
            .any(|r| r == plural)
    }

    /// Ends every open watch.
    pub fn drop_watches(&self) {
        self.watch_epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Resolves when [`FaultState::drop_watches`] is called after this.
    pub fn watches_dropped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut epoch = self.watch_epoch.subscribe();
        async move {
            let _ = epoch.changed().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiFaults> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_write_conflicts_count_down() {
        let faults = FaultState::default();
        faults.set(ApiFaults {
            conflict_status_writes: 2,
            ..ApiFaults::default()
        });
        let refused: Vec<bool> = (0..4).map(|_| faults.refuse_status_write()).collect();
        assert_eq!(refused, [true, true, false, false]);
    }

    #[test]
    fn unavailable_resources_cover_their_subresources_and_nothing_else() {
        let faults = FaultState::default();
        assert!(!faults.unavailable("leases"));
        faults.set(ApiFaults {
            unavailable_resources: vec!["leases".into()],
            ..ApiFaults::default()
        });
        assert!(faults.unavailable("leases"));
        assert!(faults.unavailable("leases/status"));
        assert!(!faults.unavailable("selfupgradedecisions"));
        assert!(!faults.unavailable("leasesx"));
    }

    #[tokio::test]
    async fn dropping_watches_wakes_every_watch_opened_before() {
        let faults = FaultState::default();
        let first = faults.watches_dropped();
        let second = faults.watches_dropped();
        faults.drop_watches();
        tokio::time::timeout(Duration::from_secs(1), async {
            first.await;
            second.await;
        })
        .await
        .expect("both woken");
    }
}
