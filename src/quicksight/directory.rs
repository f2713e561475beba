//! Finds one request among an account's self-upgrade requests.
//!
//! QuickSight has no read of a single request and no filter: the only way to see a request is to
//! page through `ListSelfUpgrades`. Doing that per decision costs N² pages for N decisions, so the
//! directory keeps one listing per [`Scope`] for a short TTL, fetched by one caller while the others
//! wait for it (single flight). After `UpdateSelfUpgrade` the request's cached entry is replaced by
//! the update's own answer, or forgotten when the call failed (unless it was throttled, which
//! QuickSight refuses before acting), so no read of that request ever comes from before the call.

use super::{Credentials, QuickSightError, RequestDetail, Scope, SelfUpgradeApi, UpdateResult};
use crate::api::Action;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A listing is restarted from its first page at most this often when QuickSight rejects a
/// next-token (the listing changed while we paged).
const MAX_LISTING_RESTARTS: usize = 3;
/// Guards against a server that never stops returning a next-token.
const MAX_PAGES: usize = 10_000;

struct Listing {
    fetched_at: Instant,
    by_id: HashMap<String, RequestDetail>,
    /// Requests whose cached entry must not be trusted: an update was sent and failed, so its
    /// effect is unknown until the next listing.
    unknown: HashSet<String>,
}

#[derive(Default)]
struct ScopeEntry {
    listing: Option<Listing>,
    /// Held while fetching, so concurrent reconciles in one scope share one listing.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

/// The listing cache in front of [`SelfUpgradeApi`]; every QuickSight call goes through it.
pub struct RequestDirectory {
    api: Arc<dyn SelfUpgradeApi>,
    ttl: Duration,
    scopes: Mutex<HashMap<Scope, ScopeEntry>>,
}

impl RequestDirectory {
    pub fn new(api: Arc<dyn SelfUpgradeApi>, ttl: Duration) -> Self {
        Self {
            api,
            ttl,
            scopes: Mutex::new(HashMap::new()),
        }
    }

    /// Whether calls with `credentials` can be signed in `region` (see
    /// [`SelfUpgradeApi::check_credentials`]).
    pub async fn check_credentials(
        &self,
        credentials: &Credentials,
        region: &str,
    ) -> Result<(), String> {
        self.api.check_credentials(credentials, region).await
    }

    /// The request's current detail, or `None` when the account has no request with that id.
    pub async fn find(
        &self,
        scope: &Scope,
        upgrade_request_id: &str,
    ) -> Result<Option<RequestDetail>, QuickSightError> {
        self.lookup(scope, upgrade_request_id, false).await
    }

    /// [`RequestDirectory::find`] from a listing fetched after this call began: for judging
    /// whether a call another process may have made took effect, which a cached listing from
    /// before that call cannot tell.
    pub async fn find_fresh(
        &self,
        scope: &Scope,
        upgrade_request_id: &str,
    ) -> Result<Option<RequestDetail>, QuickSightError> {
        self.lookup(scope, upgrade_request_id, true).await
    }

    async fn lookup(
        &self,
        scope: &Scope,
        upgrade_request_id: &str,
        fresh: bool,
    ) -> Result<Option<RequestDetail>, QuickSightError> {
        let asked_at = Instant::now();
        if let Some(answer) = self.cached_answer(scope, upgrade_request_id, asked_at, fresh) {
            return Ok(answer);
        }
        let fetching = self.with_entry(scope, |entry| entry.fetching.clone());
        let _single_flight = fetching.lock().await;
        // Another caller may have listed while we waited.
        if let Some(answer) = self.cached_answer(scope, upgrade_request_id, asked_at, fresh) {
            return Ok(answer);
        }
        let by_id = self.list_all(scope).await?;
        let answer = by_id.get(upgrade_request_id).cloned();
        self.keep_listing(scope, by_id);
        Ok(answer)
    }

    /// Every request of `scope`, listed now (the request mirror's read); the listing also
    /// serves reconciles from the cache.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<RequestDetail>, QuickSightError> {
        let fetching = self.with_entry(scope, |entry| entry.fetching.clone());
        let _single_flight = fetching.lock().await;
        let by_id = self.list_all(scope).await?;
        let requests = by_id.values().cloned().collect();
        self.keep_listing(scope, by_id);
        Ok(requests)
    }

    fn keep_listing(&self, scope: &Scope, by_id: HashMap<String, RequestDetail>) {
        self.with_entry(scope, |entry| {
            entry.listing = Some(Listing {
                fetched_at: Instant::now(),
                by_id,
                unknown: HashSet::new(),
            })
        });
    }

    /// Sends `action` for one request and keeps the cache coherent with the answer.
    pub async fn update(
        &self,
        scope: &Scope,
        upgrade_request_id: &str,
        action: Action,
    ) -> Result<UpdateResult, QuickSightError> {
        let result = self.api.update(scope, upgrade_request_id, action).await;
        match &result {
            Ok(answer) => self.record_update(scope, &answer.detail),
            // QuickSight refuses a throttled call before acting on it: nothing changed.
            Err(error) if error.is_throttling() => {}
            Err(_) => self.forget(scope, upgrade_request_id),
        }
        result
    }

    /// Records what `UpdateSelfUpgrade` answered for a request.
    fn record_update(&self, scope: &Scope, detail: &RequestDetail) {
        self.with_entry(scope, |entry| {
            if let Some(listing) = entry.listing.as_mut() {
                listing.unknown.remove(&detail.upgrade_request_id);
                listing
                    .by_id
                    .insert(detail.upgrade_request_id.clone(), detail.clone());
            }
        });
    }

    /// Forgets a request after a failed `UpdateSelfUpgrade`: whether it took effect is unknown
    /// until QuickSight is asked again.
    fn forget(&self, scope: &Scope, upgrade_request_id: &str) {
        self.with_entry(scope, |entry| {
            if let Some(listing) = entry.listing.as_mut() {
                listing.unknown.insert(upgrade_request_id.to_string());
            }
        });
    }

    /// What the cache can answer without calling QuickSight: `Some(found or absent)` when the
    /// cached listing is conclusive, `None` when it is expired, missing, not conclusive, or
    /// (`fresh`) fetched before the question was asked.
    fn cached_answer(
        &self,
        scope: &Scope,
        id: &str,
        asked_at: Instant,
        fresh: bool,
    ) -> Option<Option<RequestDetail>> {
        self.with_entry(scope, |entry| {
            let listing = entry.listing.as_ref()?;
            if listing.fetched_at.elapsed() >= self.ttl
                || listing.unknown.contains(id)
                || (fresh && listing.fetched_at < asked_at)
            {
                return None;
            }
            match listing.by_id.get(id) {
                Some(detail) => Some(Some(detail.clone())),
                // Absent from a listing fetched after the question was asked: conclusive.
                // Absent from an older one: the request may be newer than the listing.
                None if listing.fetched_at >= asked_at => Some(None),
                None => None,
            }
        })
    }

    fn with_entry<T>(&self, scope: &Scope, f: impl FnOnce(&mut ScopeEntry) -> T) -> T {
        // Poisoning only means a panic elsewhere mid-update of a cache; a cache may be rebuilt.
        let mut scopes = self
            .scopes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        f(scopes.entry(scope.clone()).or_default())
    }

    async fn list_all(
        &self,
        scope: &Scope,
    ) -> Result<HashMap<String, RequestDetail>, QuickSightError> {
        let mut restarts = 0;
        'listing: loop {
            let mut by_id = HashMap::new();
            let mut next_token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let page = match self.api.list_page(scope, next_token.as_deref()).await {
                    Ok(page) => page,
                    Err(e) if e.is_invalid_next_token() && restarts < MAX_LISTING_RESTARTS => {
                        restarts += 1;
                        continue 'listing;
                    }
                    Err(e) => return Err(e),
                };
                for detail in page.requests {
                    by_id.insert(detail.upgrade_request_id.clone(), detail);
                }
                match page.next_token {
                    Some(token) if Some(&token) == next_token.as_ref() => {
                        return Err(endless_listing(scope, "returned the same next-token twice"));
                    }
                    Some(token) => next_token = Some(token),
                    None => return Ok(by_id),
                }
            }
            return Err(endless_listing(scope, "returned more than 10000 pages"));
        }
    }
}

fn endless_listing(scope: &Scope, what: &str) -> QuickSightError {
    QuickSightError::transport(
        "ListSelfUpgrades",
        "EndlessListing",
        format!("listing {scope} {what}; giving up on this listing"),
    )
}
