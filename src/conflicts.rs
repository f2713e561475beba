//! Two decisions for one request: the oldest wins, so that two pull requests cannot make the
//! operator approve and deny the same person in turn.
//!
//! [`ClaimIndex`] (pure) keeps, per request, the decisions that name it ordered by age, so that
//! finding the winner costs one lookup rather than a scan of every decision in the cluster.
//! [`Claims`] keeps it in step with the controller's watch.

use crate::api::SelfUpgradeDecision;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// (AWS account, QuickSight namespace, request id).
type RequestKey = (String, String, String);
/// (Kubernetes namespace, name).
pub type ObjectKey = (String, String);

/// One decision's claim on a request, ordered oldest first: by creation time, then namespace
/// and name.
#[derive(Clone, Debug)]
struct Claim {
    created: Option<Timestamp>,
    namespace: String,
    name: String,
    /// The region the decision names: whether it may act at all depends on it, and one that
    /// may not must not block one that may.
    region: Option<String>,
}

impl Claim {
    fn order(&self) -> (&Option<Timestamp>, &str, &str) {
        (&self.created, &self.namespace, &self.name)
    }
}

impl PartialEq for Claim {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Claim {}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

fn request_of(decision: &SelfUpgradeDecision) -> RequestKey {
    (
        decision.spec.aws_account_id.clone(),
        decision.spec.quicksight_namespace.clone(),
        decision.spec.upgrade_request_id.clone(),
    )
}

fn claim_of(decision: &SelfUpgradeDecision) -> Claim {
    Claim {
        created: decision.metadata.creation_timestamp.as_ref().map(|t| t.0),
        namespace: decision.namespace().unwrap_or_default(),
        name: decision.name_any(),
        region: decision.spec.region.clone(),
    }
}

/// The decision `namespace/name` as a decision in `viewer`'s namespace may be told of it: by
/// name in the same namespace, otherwise only that it is in another, which that namespace may
/// not be allowed to read.
pub fn shown_to(viewer: &str, namespace: &str, name: &str) -> String {
    match viewer == namespace {
        true => format!("SelfUpgradeDecision {name}"),
        false => "a SelfUpgradeDecision in another namespace".to_string(),
    }
}

/// Which decisions claim which request.
#[derive(Default)]
pub struct ClaimIndex {
    /// Each request's claims, oldest first. A sorted `Vec`, not a `BTreeSet`: nearly every
    /// request has one claim, and a B-tree allocates a node for eleven (~0.8 KB per decision
    /// at 10,000 decisions).
    by_request: HashMap<Arc<RequestKey>, Vec<Claim>>,
    /// Each decision's request (shared with `by_request`) and creation time: with the key,
    /// its claim.
    by_object: HashMap<ObjectKey, (Arc<RequestKey>, Option<Timestamp>)>,
}

impl ClaimIndex {
    /// Records the decision as it is now; a decision being deleted no longer claims anything,
    /// and then the other decisions that claim its request are returned (see [`Self::forget`]).
    pub fn observe(&mut self, decision: &SelfUpgradeDecision) -> Vec<ObjectKey> {
        let claim = claim_of(decision);
        if decision.metadata.deletion_timestamp.is_some() {
            return self.forget(&claim.namespace, &claim.name);
        }
        // An update (a status write, most events) re-files the claim: nobody is released.
        self.remove(&claim.namespace, &claim.name);
        let request = request_of(decision);
        let request = match self.by_request.get_key_value(&request) {
            Some((shared, _)) => shared.clone(),
            None => Arc::new(request),
        };
        let object = (claim.namespace.clone(), claim.name.clone());
        let created = claim.created;
        let claims = self.by_request.entry(request.clone()).or_default();
        if let Err(position) = claims.binary_search(&claim) {
            claims.insert(position, claim);
        }
        self.by_object.insert(object, (request, created));
        Vec::new()
    }

    /// Drops the claim of a deleted (or unreadable) decision; returns the decisions that still
    /// claim its request (one of them may have lost to it and may decide now).
    pub fn forget(&mut self, namespace: &str, name: &str) -> Vec<ObjectKey> {
        let Some(request) = self.remove(namespace, name) else {
            return Vec::new();
        };
        self.by_request
            .get(&request)
            .into_iter()
            .flatten()
            .map(|c| (c.namespace.clone(), c.name.clone()))
            .collect()
    }

    /// Removes a decision's claim; returns the request it claimed, if it claimed one.
    fn remove(&mut self, namespace: &str, name: &str) -> Option<Arc<RequestKey>> {
        let key = (namespace.to_string(), name.to_string());
        let (request, created) = self.by_object.remove(&key)?;
        let (namespace, name) = key;
        // Found by its order (creation, namespace, name); the region does not take part.
        let claim = Claim {
            region: None,
            created,
            namespace,
            name,
        };
        if let Some(claims) = self.by_request.get_mut(&request) {
            if let Ok(position) = claims.binary_search(&claim) {
                claims.remove(position);
            }
            if claims.is_empty() {
                self.by_request.remove(&request);
            }
        }
        Some(request)
    }

    /// The older decision (namespace, name) that decides `decision`'s request, if any.
    /// Only decisions `admitted` (by namespace and the region they name: bound to the request's
    /// account there) compete: a decision that may not act on the account must not block one
    /// that may.
    pub fn winner_over(
        &self,
        decision: &SelfUpgradeDecision,
        admitted: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<ObjectKey> {
        let own = claim_of(decision);
        let oldest = self.oldest(&request_of(decision), admitted)?;
        let is_self = oldest.namespace == own.namespace && oldest.name == own.name;
        (!is_self && *oldest < own).then(|| (oldest.namespace.clone(), oldest.name.clone()))
    }

    /// The decision (`namespace/name`) that decides a request: the oldest admitted claim.
    pub fn decider(
        &self,
        account: &str,
        quicksight_namespace: &str,
        request_id: &str,
        admitted: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<String> {
        let key = (
            account.to_string(),
            quicksight_namespace.to_string(),
            request_id.to_string(),
        );
        self.oldest(&key, admitted)
            .map(|claim| format!("{}/{}", claim.namespace, claim.name))
    }

    /// Every decision (namespace, name) that claims the request, oldest first.
    pub fn claimants(
        &self,
        account: &str,
        quicksight_namespace: &str,
        request_id: &str,
    ) -> Vec<ObjectKey> {
        let key = (
            account.to_string(),
            quicksight_namespace.to_string(),
            request_id.to_string(),
        );
        self.by_request
            .get(&key)
            .into_iter()
            .flatten()
            .map(|claim| (claim.namespace.clone(), claim.name.clone()))
            .collect()
    }

    fn oldest(
        &self,
        request: &RequestKey,
        admitted: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<&Claim> {
        self.by_request
            .get(request)?
            .iter()
            .find(|claim| admitted(&claim.namespace, claim.region.as_deref()))
    }
}

/// A [`ClaimIndex`] fed by the controller's watch events, rebuilt on every re-list as the
/// reflector's store is.
pub struct Claims {
    current: Mutex<ClaimIndex>,
    /// Filled during a re-list, then swapped in.
    relisting: Mutex<Option<ClaimIndex>>,
    /// The decisions that still claim a request whose claim by another decision just went:
    /// one of them lost to it (`Stalled` Conflict) and is reconciled at once rather than at
    /// its next re-check.
    released: broadcast::Sender<ObjectKey>,
}

/// Released claimants a slow controller may fall behind by before the oldest are dropped (a
/// dropped one is still reconciled at its next re-check).
const RELEASED_BACKLOG: usize = 1024;

impl Default for Claims {
    fn default() -> Self {
        Self {
            current: Mutex::default(),
            relisting: Mutex::default(),
            released: broadcast::channel(RELEASED_BACKLOG).0,
        }
    }
}

impl Claims {
    pub fn on_event(&self, event: &watcher::Event<DeserializeGuard<SelfUpgradeDecision>>) {
        let released = match event {
            watcher::Event::Apply(object) => observe(&mut lock(&self.current), object),
            watcher::Event::Delete(object) => lock(&self.current)
                .forget(&object.namespace().unwrap_or_default(), &object.name_any()),
            watcher::Event::Init => {
                *lock(&self.relisting) = Some(ClaimIndex::default());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let Some(index) = lock(&self.relisting).as_mut() {
                    observe(index, object);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                if let Some(index) = lock(&self.relisting).take() {
                    *lock(&self.current) = index;
                }
                Vec::new()
            }
        };
        for claimant in released {
            // Nobody listening (no controller running) is fine.
            let _ = self.released.send(claimant);
        }
    }

    /// The decisions (namespace, name) to reconcile because a decision that claimed their
    /// request went away.
    pub fn released(&self) -> impl futures::Stream<Item = ObjectKey> + Send + 'static {
        futures::stream::unfold(self.released.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(claimant) => return Some((claimant, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// See [`ClaimIndex::decider`].
    pub fn decider(
        &self,
        account: &str,
        quicksight_namespace: &str,
        request_id: &str,
        admitted: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<String> {
        lock(&self.current).decider(account, quicksight_namespace, request_id, admitted)
    }

    /// See [`ClaimIndex::claimants`].
    pub fn claimants(
        &self,
        account: &str,
        quicksight_namespace: &str,
        request_id: &str,
    ) -> Vec<ObjectKey> {
        lock(&self.current).claimants(account, quicksight_namespace, request_id)
    }

    /// See [`ClaimIndex::winner_over`].
    pub fn winner_over(
        &self,
        decision: &SelfUpgradeDecision,
        admitted: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<ObjectKey> {
        lock(&self.current).winner_over(decision, admitted)
    }
}

fn observe(
    index: &mut ClaimIndex,
    object: &DeserializeGuard<SelfUpgradeDecision>,
) -> Vec<ObjectKey> {
    match &object.0 {
        Ok(decision) => index.observe(decision),
        // An unreadable object claims nothing (it is Stalled with the reason).
        Err(invalid) => index.forget(
            invalid.metadata.namespace.as_deref().unwrap_or_default(),
            invalid.metadata.name.as_deref().unwrap_or_default(),
        ),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-update leaves at worst one stale claim; the next re-list rebuilds the index.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, SelfUpgradeDecisionSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn decision(namespace: &str, name: &str, created: i64, request: &str) -> SelfUpgradeDecision {
        let mut d = SelfUpgradeDecision::new(
            name,
            SelfUpgradeDecisionSpec {
                aws_account_id: "111122223333".into(),
                quicksight_namespace: "default".into(),
                upgrade_request_id: request.into(),
                action: Action::Approve,
                region: None,
                retry: None,
            },
        );
        d.metadata.namespace = Some(namespace.into());
        d.metadata.uid = Some(format!("{namespace}/{name}"));
        d.metadata.creation_timestamp = Timestamp::from_second(created).ok().map(Time);
        d
    }

    /// A winner as `namespace/name`.
    fn shown(winner: Option<ObjectKey>) -> Option<String> {
        winner.map(|(namespace, name)| format!("{namespace}/{name}"))
    }

    /// Every namespace is bound to the account.
    fn anywhere(_: &str, _: Option<&str>) -> bool {
        true
    }

    fn index(all: &[&SelfUpgradeDecision]) -> ClaimIndex {
        let mut index = ClaimIndex::default();
        for decision in all {
            index.observe(decision);
        }
        index
    }

    #[test]
    fn claims_stay_oldest_first_whatever_order_they_arrive_and_leave_in() {
        let claims: Vec<SelfUpgradeDecision> = [300, 100, 500, 200, 400]
            .iter()
            .map(|created| decision("ns", &format!("d{created}"), *created, "r1"))
            .collect();
        let mut index = index(&claims.iter().collect::<Vec<_>>());
        let decider = |index: &ClaimIndex| index.decider("111122223333", "default", "r1", anywhere);
        assert_eq!(decider(&index).as_deref(), Some("ns/d100"));
        for (gone, next) in [
            ("d100", "ns/d200"),
            ("d300", "ns/d200"),
            ("d200", "ns/d400"),
        ] {
            index.forget("ns", gone);
            assert_eq!(decider(&index).as_deref(), Some(next), "after {gone}");
        }
        // Seen again (every watch event re-observes), a claim is not counted twice.
        index.observe(&claims[2]);
        index.observe(&claims[2]);
        assert_eq!(
            index.claimants("111122223333", "default", "r1"),
            [
                ("ns".to_string(), "d400".to_string()),
                ("ns".into(), "d500".into())
            ]
        );
        assert!(index.claimants("111122223333", "default", "r2").is_empty());
    }

    #[test]
    fn the_oldest_decision_for_a_request_wins() {
        let old = decision("team-a", "approve", 100, "r1");
        let new = decision("team-b", "deny", 200, "r1");
        let other_request = decision("team-c", "x", 50, "r2");
        let index = index(&[&old, &new, &other_request]);
        assert_eq!(
            shown(index.winner_over(&new, anywhere)).as_deref(),
            Some("team-a/approve")
        );
        assert_eq!(index.winner_over(&old, anywhere), None);
        assert_eq!(index.winner_over(&other_request, anywhere), None);
    }

    #[test]
    fn a_decision_naming_a_region_it_may_not_call_does_not_block_one_that_may() {
        let mut elsewhere = decision("team-a", "elsewhere", 100, "r1");
        elsewhere.spec.region = Some("ap-south-1".into());
        let owner = decision("team-a", "approve", 200, "r1");
        let index = index(&[&elsewhere, &owner]);
        let in_us_east_1 = |_: &str, region: Option<&str>| region.is_none_or(|r| r == "us-east-1");
        assert_eq!(index.winner_over(&owner, in_us_east_1), None);
        assert_eq!(
            shown(index.winner_over(&owner, anywhere)).as_deref(),
            Some("team-a/elsewhere")
        );
    }

    #[test]
    fn a_decision_from_an_unbound_namespace_does_not_block_a_bound_one() {
        let squatter = decision("intruder", "deny", 100, "r1");
        let owner = decision("team-a", "approve", 200, "r1");
        let index = index(&[&squatter, &owner]);
        assert_eq!(index.winner_over(&owner, |ns, _| ns == "team-a"), None);
        assert_eq!(
            shown(index.winner_over(&owner, anywhere)).as_deref(),
            Some("intruder/deny")
        );
    }

    #[test]
    fn ties_are_broken_by_namespace_and_name_and_deleting_decisions_do_not_count() {
        let a = decision("team-a", "b-name", 100, "r1");
        let b = decision("team-a", "a-name", 100, "r1");
        let mut index = index(&[&a, &b]);
        assert_eq!(
            shown(index.winner_over(&a, anywhere)).as_deref(),
            Some("team-a/a-name")
        );
        assert_eq!(index.winner_over(&b, anywhere), None);
        let mut leaving = b.clone();
        leaving.metadata.deletion_timestamp = Timestamp::from_second(300).ok().map(Time);
        index.observe(&leaving);
        assert_eq!(index.winner_over(&a, anywhere), None);
    }

    #[test]
    fn a_deleted_or_edited_winner_hands_the_request_over() {
        let old = decision("team-a", "approve", 100, "r1");
        let new = decision("team-b", "deny", 200, "r1");
        let mut index = index(&[&old, &new]);
        index.forget("team-a", "approve");
        assert_eq!(index.winner_over(&new, anywhere), None);
        index.observe(&old);
        assert_eq!(
            shown(index.winner_over(&new, anywhere)).as_deref(),
            Some("team-a/approve")
        );
        // The old decision now names another request: it no longer claims r1.
        let mut moved = old.clone();
        moved.spec.upgrade_request_id = "r2".into();
        index.observe(&moved);
        assert_eq!(index.winner_over(&new, anywhere), None);
        assert!(
            index
                .by_request
                .get(&request_of(&old))
                .is_some_and(|c| c.len() == 1)
        );
    }

    #[test]
    fn a_relist_replaces_the_index() {
        let old = decision("team-a", "approve", 100, "r1");
        let new = decision("team-b", "deny", 200, "r1");
        let claims = Claims::default();
        for event in [
            watcher::Event::Apply(DeserializeGuard(Ok(old.clone()))),
            watcher::Event::Apply(DeserializeGuard(Ok(new.clone()))),
        ] {
            claims.on_event(&event);
        }
        assert_eq!(
            shown(claims.winner_over(&new, anywhere)).as_deref(),
            Some("team-a/approve")
        );
        // After a re-list that no longer contains the old decision (deleted while the watch
        // was down), the new one decides.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Ok(new.clone()))),
        ] {
            claims.on_event(&event);
        }
        assert_eq!(
            shown(claims.winner_over(&new, anywhere)).as_deref(),
            Some("team-a/approve"),
            "until InitDone"
        );
        claims.on_event(&watcher::Event::InitDone);
        assert_eq!(claims.winner_over(&new, anywhere), None);
    }

    #[test]
    fn the_decisions_left_claiming_a_request_are_named_when_a_claim_goes_and_only_then() {
        let older = decision("team-a", "approve", 100, "r1");
        let younger = decision("team-b", "deny", 200, "r1");
        let mut index = index(&[&older, &younger]);
        // An update of a decision (a status write) releases nothing.
        assert!(index.observe(&older).is_empty());
        let mut leaving = older.clone();
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone();
        assert_eq!(
            index.observe(&leaving),
            [("team-b".to_string(), "deny".to_string())]
        );
        assert!(
            index.forget("team-b", "deny").is_empty(),
            "no one else claims r1"
        );
        assert!(
            index.forget("team-b", "deny").is_empty(),
            "forgetting twice is harmless"
        );
    }
}
