//! Finds one request among an account's self-upgrade requests.
//!
//! QuickSight has no read of a single request and no filter: the only way to see a request is to
//! page through `ListSelfUpgrades`. Doing that per decision costs N² pages for N decisions, so the
//! directory keeps one listing per [`Scope`] for a short TTL, fetched by one caller while the others
//! wait for it (single flight). After `UpdateSelfUpgrade` the request's cached entry is replaced by
//! the update's own answer, or forgotten when the call failed (unless it was throttled, which
//! QuickSight refuses before acting), so no read of that request ever comes from before the call.

use super::{
    Credentials, QuickSightError, RequestDetail, RequestPage, Scope, SelfUpgradeApi, UpdateResult,
};
use crate::api::{Action, ApprovalMode};
use crate::retry::{backoff_delay, full_jitter};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A listing is restarted from its first page at most this often when QuickSight rejects a
/// next-token (the listing changed while we paged).
const MAX_LISTING_RESTARTS: usize = 3;
/// Guards against a server that never stops returning a next-token.
const MAX_PAGES: usize = 10_000;
/// A page that failed retryably (throttled, 5xx, timeout) is asked for this often in all before
/// the listing fails, as the SDK's standard retry mode would.
const PAGE_ATTEMPTS: u32 = 4;
/// Backoff between attempts at one page (full jitter under a doubling ceiling).
const PAGE_BACKOFF_BASE: Duration = Duration::from_millis(200);
const PAGE_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// One page of the account's requests, asked for again while it fails retryably, so that one
/// throttled page neither fails a whole listing nor restarts it from the first page. Through
/// [`super::Paced`], a throttled attempt also pauses the account, and the next attempt waits
/// for that pause.
pub async fn fetch_page(
    api: &dyn SelfUpgradeApi,
    scope: &Scope,
    next_token: Option<&str>,
) -> Result<RequestPage, QuickSightError> {
    let mut attempt = 1;
    loop {
        match api.list_page(scope, next_token).await {
            // Refused credentials stay refused for the next moment: no point asking again now.
            Err(error)
                if error.is_retryable()
                    && error.class != super::ErrorClass::Unauthenticated
                    && attempt < PAGE_ATTEMPTS =>
            {
                let ceiling = backoff_delay(attempt, PAGE_BACKOFF_BASE, PAGE_BACKOFF_CAP);
                tokio::time::sleep(full_jitter(ceiling, rand::random::<f64>())).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

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
    /// When a reconcile last asked about the scope.
    used_at: Option<Instant>,
}

/// A scope nobody asked about for this long is forgotten, listing and all: scopes come and go
/// with bindings, regions and QuickSight namespaces, and a cache must not keep every one ever
/// seen.
const SCOPE_IDLE: Duration = Duration::from_secs(15 * 60);
/// How often the cache looks for idle scopes (a look walks every scope).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Scopes {
    entries: HashMap<Scope, ScopeEntry>,
    swept_at: Option<Instant>,
}

impl Scopes {
    /// Forgets the scopes idle for [`SCOPE_IDLE`] (not one being fetched), at most once per
    /// [`SWEEP_INTERVAL`].
    fn sweep(&mut self, now: Instant) {
        if self.swept_at.is_some_and(|at| now < at + SWEEP_INTERVAL) {
            return;
        }
        self.swept_at = Some(now);
        self.entries.retain(|_, entry| {
            let recent = entry.used_at.is_some_and(|at| now < at + SCOPE_IDLE);
            recent || Arc::strong_count(&entry.fetching) > 1
        });
    }
}

/// The listing cache in front of [`SelfUpgradeApi`]; every QuickSight call goes through it.
pub struct RequestDirectory {
    api: Arc<dyn SelfUpgradeApi>,
    ttl: Duration,
    scopes: Mutex<Scopes>,
}

impl RequestDirectory {
    pub fn new(api: Arc<dyn SelfUpgradeApi>, ttl: Duration) -> Self {
        Self {
            api,
            ttl,
            scopes: Mutex::new(Scopes::default()),
        }
    }

    /// How many scopes the cache keeps, by region.
    pub fn scopes_by_region(&self) -> HashMap<String, i64> {
        let mut by_region = HashMap::new();
        for scope in self.lock_scopes().entries.keys() {
            *by_region.entry(scope.region.clone()).or_default() += 1;
        }
        by_region
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

    /// The approval mode of the scope's QuickSight namespace (not cached: it is read on its own
    /// cadence).
    pub async fn approval_mode(&self, scope: &Scope) -> Result<ApprovalMode, QuickSightError> {
        self.api.approval_mode(scope).await
    }

    /// Sets the approval mode of the scope's QuickSight namespace.
    pub async fn set_approval_mode(
        &self,
        scope: &Scope,
        mode: ApprovalMode,
    ) -> Result<(), QuickSightError> {
        self.api.set_approval_mode(scope, mode).await
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
        let started = Instant::now();
        let by_id = self.list_all(scope).await?;
        let answer = by_id.get(upgrade_request_id).cloned();
        self.keep_listing(scope, by_id, started);
        Ok(answer)
    }

    /// Every request of `scope`, listed now (the request mirror's read); the listing also
    /// serves reconciles from the cache.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<RequestDetail>, QuickSightError> {
        let fetching = self.with_entry(scope, |entry| entry.fetching.clone());
        let _single_flight = fetching.lock().await;
        self.list_and_keep(scope).await
    }

    /// Lists `scope` now and keeps the listing; the caller holds the scope's single flight.
    async fn list_and_keep(&self, scope: &Scope) -> Result<Vec<RequestDetail>, QuickSightError> {
        let started = Instant::now();
        let by_id = self.list_all(scope).await?;
        let requests = by_id.values().cloned().collect();
        self.keep_listing(scope, by_id, started);
        Ok(requests)
    }

    /// Every request of `scope` from the cached listing while it is within its TTL, else listed
    /// now (single flight with the reconciles): what a policy reads, so that a listing the
    /// decisions fetched serves it and one it fetches serves them. Requests whose entry is
    /// not trusted (an update failed) are left out until the next listing.
    pub async fn cached_list(&self, scope: &Scope) -> Result<Vec<RequestDetail>, QuickSightError> {
        let cached = |directory: &Self| {
            directory.with_entry(scope, |entry| {
                let listing = entry.listing.as_ref()?;
                (listing.fetched_at.elapsed() < directory.ttl).then(|| {
                    let trusted =
                        |r: &&RequestDetail| !listing.unknown.contains(&r.upgrade_request_id);
                    listing.by_id.values().filter(trusted).cloned().collect()
                })
            })
        };
        if let Some(requests) = cached(self) {
            return Ok(requests);
        }
        let fetching = self.with_entry(scope, |entry| entry.fetching.clone());
        let _single_flight = fetching.lock().await;
        if let Some(requests) = cached(self) {
            return Ok(requests);
        }
        self.list_and_keep(scope).await
    }

    /// Keeps a listing as of when it `started`: its pages show the requests as they were from
    /// then on, so a question asked after that start but before its end (a caller that waited
    /// for this single flight after a refused call) must not take it as fresh.
    fn keep_listing(&self, scope: &Scope, by_id: HashMap<String, RequestDetail>, started: Instant) {
        self.with_entry(scope, |entry| {
            entry.listing = Some(Listing {
                fetched_at: started,
                by_id,
                unknown: HashSet::new(),
            })
        });
    }

    /// Sends `action` for one request, not after `send_by` (see [`SelfUpgradeApi::update`]),
    /// and keeps the cache coherent with the answer.
    pub async fn update(
        &self,
        scope: &Scope,
        upgrade_request_id: &str,
        action: Action,
        send_by: Instant,
    ) -> Result<UpdateResult, QuickSightError> {
        let result = self
            .api
            .update(scope, upgrade_request_id, action, send_by)
            .await;
        match &result {
            Ok(answer) => self.record_update(scope, &answer.detail),
            // Throttled (QuickSight refuses those before acting) or never sent: nothing changed.
            Err(error) if error.took_no_effect() => {}
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

    fn lock_scopes(&self) -> std::sync::MutexGuard<'_, Scopes> {
        // Poisoning only means a panic elsewhere mid-update of a cache; a cache may be rebuilt.
        self.scopes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn with_entry<T>(&self, scope: &Scope, f: impl FnOnce(&mut ScopeEntry) -> T) -> T {
        let mut scopes = self.lock_scopes();
        let now = Instant::now();
        scopes.sweep(now);
        let entry = scopes.entries.entry(listing_key(scope)).or_default();
        entry.used_at = Some(now);
        f(entry)
    }

    async fn list_all(
        &self,
        scope: &Scope,
    ) -> Result<HashMap<String, RequestDetail>, QuickSightError> {
        let requests = list_requests(self.api.as_ref(), scope, |_| {}).await?;
        Ok(requests
            .into_iter()
            .map(|detail| (detail.upgrade_request_id.clone(), detail))
            .collect())
    }
}

/// Every request of `scope`, page by page (each page asked for again while it fails
/// retryably, see [`fetch_page`]). An invalid next-token means the listing changed under it:
/// it starts again from the first page, a few times. A next-token answered twice in a row, or
/// more pages than any account has, end it with an error instead of looping. `progress` hears
/// the count listed so far after each page.
pub async fn list_requests(
    api: &dyn SelfUpgradeApi,
    scope: &Scope,
    mut progress: impl FnMut(usize),
) -> Result<Vec<RequestDetail>, QuickSightError> {
    let mut restarts = 0;
    'listing: loop {
        let mut requests = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = match fetch_page(api, scope, next_token.as_deref()).await {
                Ok(page) => page,
                Err(e) if e.is_invalid_next_token() && restarts < MAX_LISTING_RESTARTS => {
                    restarts += 1;
                    continue 'listing;
                }
                Err(e) => return Err(e),
            };
            requests.extend(page.requests);
            progress(requests.len());
            match page.next_token {
                Some(token) if Some(&token) == next_token.as_ref() => {
                    return Err(endless_listing(scope, "returned the same next-token twice"));
                }
                Some(token) => next_token = Some(token),
                None => return Ok(requests),
            }
        }
        return Err(endless_listing(scope, "returned more than 10000 pages"));
    }
}

fn endless_listing(scope: &Scope, what: &str) -> QuickSightError {
    QuickSightError::transport(
        "ListSelfUpgrades",
        "EndlessListing",
        format!("listing {scope} {what}; giving up on this listing"),
    )
}

/// The scope a listing is kept under: the session name is left out, so that the decisions of
/// several namespaces bound to one role share the role's listings (the session name says which
/// namespace acted, for CloudTrail; it does not change what QuickSight lists).
fn listing_key(scope: &Scope) -> Scope {
    let mut key = scope.clone();
    if let crate::quicksight::Credentials::AssumeRole(role) = &mut key.credentials {
        role.session_name.clear();
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::fake::FakeQuickSight;

    fn failure(code: &str, status: u16) -> QuickSightError {
        QuickSightError::from_service("ListSelfUpgrades", code, "m", Some(status), None)
    }

    fn scope() -> Scope {
        Scope {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            namespace: "default".into(),
            credentials: Credentials::default(),
        }
    }

    fn pages(tokens: &[Option<&str>]) -> Vec<Option<String>> {
        tokens.iter().map(|t| t.map(str::to_string)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_nobody_asks_about_are_forgotten() {
        let api = Arc::new(FakeQuickSight::default());
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(30));
        let in_region = |region: &str| Scope {
            region: region.into(),
            ..scope()
        };
        for region in ["us-east-1", "eu-west-1", "ap-south-1"] {
            directory
                .cached_list(&in_region(region))
                .await
                .expect("listed");
        }
        let count = || directory.lock_scopes().entries.len();
        assert_eq!(count(), 3);
        tokio::time::advance(SCOPE_IDLE / 2).await;
        directory
            .cached_list(&in_region("us-east-1"))
            .await
            .expect("listed");
        tokio::time::advance(SCOPE_IDLE / 2 + SWEEP_INTERVAL).await;
        directory
            .cached_list(&in_region("us-east-1"))
            .await
            .expect("listed");
        assert_eq!(count(), 1, "only the scope still in use is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn namespaces_bound_to_one_role_share_its_listings() {
        let api = Arc::new(FakeQuickSight::default());
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(30));
        let acting_for = |session: &str| Scope {
            credentials: Credentials::AssumeRole(crate::quicksight::AssumeRole {
                role_arn: "arn:aws:iam::111122223333:role/approver".into(),
                external_id: None,
                session_name: session.into(),
            }),
            ..scope()
        };
        directory
            .cached_list(&acting_for("sud-team-a"))
            .await
            .expect("listed");
        let shared = directory
            .cached_list(&acting_for("sud-team-b"))
            .await
            .expect("cached");
        assert_eq!(shared.len(), 3);
        assert_eq!(
            api.asked().len(),
            3,
            "one listing of three pages serves both"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_page_is_asked_for_again_without_restarting_the_listing() {
        let api = Arc::new(FakeQuickSight::failing(
            Some("p2"),
            vec![
                failure("ThrottlingException", 429),
                failure("InternalFailureException", 500),
            ],
        ));
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(60));
        let listed = directory.list(&scope()).await.expect("listed");
        assert_eq!(listed.len(), 3);
        assert_eq!(
            api.asked(),
            pages(&[None, Some("p2"), Some("p2"), Some("p2"), Some("p3")])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminal_page_error_fails_the_listing_at_once() {
        let api = Arc::new(FakeQuickSight::failing(
            Some("p2"),
            vec![failure("AccessDeniedException", 401)],
        ));
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(60));
        let error = directory.list(&scope()).await.expect_err("refused");
        assert_eq!(error.code, "AccessDeniedException");
        assert_eq!(api.asked(), pages(&[None, Some("p2")]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_that_keeps_failing_fails_the_listing_after_the_last_attempt() {
        let failures = (0..PAGE_ATTEMPTS + 1)
            .map(|_| failure("ResourceUnavailableException", 503))
            .collect();
        let api = Arc::new(FakeQuickSight::failing(None, failures));
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(60));
        let error = directory.list(&scope()).await.expect_err("gave up");
        assert_eq!(error.code, "ResourceUnavailableException");
        assert_eq!(api.asked().len(), PAGE_ATTEMPTS as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_read_is_served_by_the_listing_until_its_ttl_and_leaves_out_untrusted_entries()
    {
        let api = Arc::new(FakeQuickSight::default());
        let directory = RequestDirectory::new(api.clone(), Duration::from_secs(30));
        let ids = |requests: Vec<RequestDetail>| {
            let mut ids: Vec<String> = requests.into_iter().map(|r| r.upgrade_request_id).collect();
            ids.sort();
            ids
        };
        assert_eq!(
            ids(directory.cached_list(&scope()).await.expect("listed")),
            ["r-1", "r-2", "r-3"]
        );
        assert_eq!(
            directory.cached_list(&scope()).await.expect("cached").len(),
            3
        );
        assert_eq!(
            api.asked().len(),
            3,
            "one listing, of three pages, for both reads"
        );
        // An update of r-2 failed: its entry is unknown until the next listing.
        directory.forget(&scope(), "r-2");
        assert_eq!(
            ids(directory.cached_list(&scope()).await.expect("cached")),
            ["r-1", "r-3"]
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(
            directory.cached_list(&scope()).await.expect("listed").len(),
            3
        );
        assert_eq!(
            api.asked().len(),
            6,
            "listed again once the listing expired"
        );
    }
}
