//! The simulator's state: accounts, namespaces and their self-upgrade requests, and the rules by
//! which actions move a request. Pure apart from the clock handed in.
//!
//! AWS does not document what `UpdateSelfUpgrade` answers for a request that is already APPROVED
//! or DENIED; the simulator answers `PreconditionNotMetException`, the service's error for "the
//! resource is not in a state that allows this".

use super::error::SimError;
use super::faults::UpdateFault;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// `SelfUpgradeRequestStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimStatus {
    Pending,
    Approved,
    Denied,
    UpdateFailed,
    VerifyFailed,
}

/// One self-upgrade request as the simulator keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimRequest {
    pub id: String,
    pub user_name: String,
    pub original_role: String,
    pub requested_role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Epoch milliseconds; 0 in a seed file means "now".
    #[serde(default)]
    pub created_at_ms: i64,
    #[serde(default = "pending")]
    pub status: SimStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_attempt_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_reason: Option<String>,
    /// For VERIFY: whether the user is already in the group the upgrade requires.
    #[serde(default)]
    pub in_required_group: bool,
    /// The next K APPROVE actions end UPDATE_FAILED.
    #[serde(default)]
    pub fail_next_updates: u32,
    /// Successful `UpdateSelfUpgrade` calls on this request, for tests that count effects.
    #[serde(default)]
    pub updates_applied: u32,
    /// What the next `UpdateSelfUpgrade` calls of this request meet, one entry per call, in
    /// order (admin interface: `update-faults`).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub update_faults: VecDeque<UpdateFault>,
}

fn pending() -> SimStatus {
    SimStatus::Pending
}

impl SimRequest {
    /// A PENDING READER → AUTHOR request by `user_name`, created at `created_at_ms`, untouched
    /// by any action; set the other fields with struct update syntax.
    pub fn pending(id: &str, user_name: &str, created_at_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            user_name: user_name.to_string(),
            original_role: "READER".into(),
            requested_role: "AUTHOR".into(),
            note: None,
            created_at_ms,
            status: SimStatus::Pending,
            last_update_attempt_ms: None,
            last_failure_reason: None,
            in_required_group: false,
            fail_next_updates: 0,
            updates_applied: 0,
            update_faults: VecDeque::new(),
        }
    }
}

/// Whether `CreationTime` / `lastUpdateAttemptTime` go out in seconds or milliseconds (the
/// service model does not say which; clients must handle both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EpochUnit {
    Seconds,
    #[default]
    Milliseconds,
}

/// An account's QuickSight namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimNamespace {
    /// `ADMIN_APPROVAL` or `AUTO_APPROVAL`.
    pub self_upgrade_status: String,
    /// Since when (epoch milliseconds) the namespace is in `AUTO_APPROVAL`; unset for one that
    /// always was (a seeded one), whose requests are approved their delay after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approval_since_ms: Option<i64>,
    /// In creation order, which is the listing order.
    pub requests: Vec<SimRequest>,
}

/// Every account the simulator knows. Accounts and namespaces it does not know answer
/// `ResourceNotFoundException`, as for an account without a QuickSight subscription.
#[derive(Clone, Debug)]
pub struct World {
    pub namespaces: BTreeMap<(String, String), SimNamespace>,
    pub epoch_unit: EpochUnit,
    /// How long after a request is made (or its namespace switched to `AUTO_APPROVAL`)
    /// QuickSight approves it by itself in `AUTO_APPROVAL`. The user guide says "within about
    /// ten minutes"; the simulator's default is short enough for tests to watch.
    pub auto_approval_delay_ms: i64,
}

/// The simulator's default [`World::auto_approval_delay_ms`].
pub const DEFAULT_AUTO_APPROVAL_DELAY_MS: i64 = 2_000;

impl Default for World {
    fn default() -> Self {
        Self {
            namespaces: BTreeMap::new(),
            epoch_unit: EpochUnit::default(),
            auto_approval_delay_ms: DEFAULT_AUTO_APPROVAL_DELAY_MS,
        }
    }
}

/// The two values of `SelfUpgradeStatus`.
pub const ADMIN_APPROVAL: &str = "ADMIN_APPROVAL";
pub const AUTO_APPROVAL: &str = "AUTO_APPROVAL";

/// `ListSelfUpgrades` accepts 1..=100.
const MAX_PAGE: usize = 100;

impl World {
    pub fn ensure_namespace(&mut self, account: &str, namespace: &str) -> &mut SimNamespace {
        self.namespaces
            .entry((account.to_string(), namespace.to_string()))
            .or_insert_with(|| SimNamespace {
                self_upgrade_status: ADMIN_APPROVAL.to_string(),
                auto_approval_since_ms: None,
                requests: Vec::new(),
            })
    }

    /// Sets a namespace's approval mode, as `UpdateSelfUpgradeConfiguration` or a console user
    /// does; switching to `AUTO_APPROVAL` starts the clock of its pending requests.
    pub fn set_self_upgrade_status(
        &mut self,
        account: &str,
        namespace: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<(), SimError> {
        if !matches!(status, ADMIN_APPROVAL | AUTO_APPROVAL) {
            return Err(SimError::invalid_parameter(format!(
                "SelfUpgradeStatus must be ADMIN_APPROVAL or AUTO_APPROVAL, got {status:?}"
            )));
        }
        let ns = self.namespace_mut(account, namespace)?;
        if ns.self_upgrade_status != status {
            ns.self_upgrade_status = status.to_string();
            ns.auto_approval_since_ms = (status == AUTO_APPROVAL).then_some(now_ms);
        }
        Ok(())
    }

    /// What QuickSight does by itself in `AUTO_APPROVAL`: each PENDING request becomes APPROVED
    /// [`World::auto_approval_delay_ms`] after it was made or after the mode was switched on,
    /// whichever is later, with `lastUpdateAttemptTime` set then. Applied lazily, before every
    /// look at the state, so that no clock runs in the background.
    pub fn auto_approve(&mut self, now_ms: i64) {
        let delay = self.auto_approval_delay_ms;
        for ns in self.namespaces.values_mut() {
            if ns.self_upgrade_status != AUTO_APPROVAL {
                continue;
            }
            let since = ns.auto_approval_since_ms.unwrap_or(i64::MIN);
            for request in ns.requests.iter_mut() {
                let due = request.created_at_ms.max(since).saturating_add(delay);
                if request.status == SimStatus::Pending && due <= now_ms {
                    request.status = SimStatus::Approved;
                    request.last_update_attempt_ms = Some(due);
                }
            }
        }
    }

    pub fn namespace(&self, account: &str, namespace: &str) -> Result<&SimNamespace, SimError> {
        self.namespaces
            .get(&(account.to_string(), namespace.to_string()))
            .ok_or_else(|| SimError::namespace_not_found(account, namespace))
    }

    pub fn namespace_mut(
        &mut self,
        account: &str,
        namespace: &str,
    ) -> Result<&mut SimNamespace, SimError> {
        self.namespaces
            .get_mut(&(account.to_string(), namespace.to_string()))
            .ok_or_else(|| SimError::namespace_not_found(account, namespace))
    }

    pub fn request_mut(
        &mut self,
        account: &str,
        namespace: &str,
        id: &str,
    ) -> Result<&mut SimRequest, SimError> {
        self.namespace_mut(account, namespace)?
            .requests
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| SimError::request_not_found(id))
    }

    /// The fault scripted for the next update of a request (admin `update-faults`), taken off
    /// its queue; none for requests that do not exist (the update then answers for itself).
    pub fn take_update_fault(&mut self, account: &str, namespace: &str, id: &str) -> UpdateFault {
        self.request_mut(account, namespace, id)
            .ok()
            .and_then(|r| r.update_faults.pop_front())
            .unwrap_or(UpdateFault::None)
    }

    /// One page of requests and the token for the next.
    pub fn list(
        &self,
        account: &str,
        namespace: &str,
        next_token: Option<&str>,
        max_results: Option<i64>,
    ) -> Result<(Vec<&SimRequest>, Option<String>), SimError> {
        let page_size = match max_results {
            None => MAX_PAGE,
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(SimError::invalid_parameter(format!(
                    "max-results must be between 1 and 100, got {n}"
                )));
            }
        };
        let requests = &self.namespace(account, namespace)?.requests;
        let start = match next_token {
            None => 0,
            Some(token) => parse_token(token, account, namespace)
                .filter(|offset| *offset <= requests.len())
                .ok_or_else(SimError::invalid_next_token)?,
        };
        let end = (start + page_size).min(requests.len());
        let next = (end < requests.len()).then(|| make_token(end, account, namespace));
        Ok((requests[start..end].iter().collect(), next))
    }

    /// `UpdateSelfUpgrade`: applies `action` to one request.
    pub fn update(
        &mut self,
        account: &str,
        namespace: &str,
        id: &str,
        action: &str,
        now_ms: i64,
    ) -> Result<SimRequest, SimError> {
        let request = self.request_mut(account, namespace, id)?;
        use SimStatus::*;
        let next = match (action, request.status) {
            (_, Approved | Denied) => {
                return Err(SimError::precondition(format!(
                    "request {id} is already {:?} and cannot be updated",
                    request.status
                )));
            }
            ("APPROVE", Pending | UpdateFailed) if request.fail_next_updates > 0 => {
                request.fail_next_updates -= 1;
                request.last_failure_reason =
                    Some("The user's role could not be updated; try again later".to_string());
                UpdateFailed
            }
            ("APPROVE", Pending | UpdateFailed) => Approved,
            ("VERIFY", Pending | VerifyFailed) if request.in_required_group => Approved,
            ("VERIFY", Pending | VerifyFailed) => {
                request.last_failure_reason = Some(format!(
                    "User {} is not a member of the group required for role {}",
                    request.user_name, request.requested_role
                ));
                VerifyFailed
            }
            ("DENY", Pending | UpdateFailed | VerifyFailed) => Denied,
            ("APPROVE" | "VERIFY", status) => {
                return Err(SimError::precondition(format!(
                    "action {action} is not allowed on a request that is {status:?}"
                )));
            }
            (other, _) => {
                return Err(SimError::invalid_parameter(format!(
                    "Action must be one of APPROVE, DENY, VERIFY; got {other:?}"
                )));
            }
        };
        if matches!(next, Approved | Denied) {
            request.last_failure_reason = None;
        }
        request.status = next;
        request.last_update_attempt_ms = Some(now_ms);
        request.updates_applied += 1;
        Ok(request.clone())
    }
}

/// Tokens are opaque to clients; they carry the offset and a checksum of the scope so that a
/// token from another account, or a made-up one, is refused like the real service refuses it.
fn make_token(offset: usize, account: &str, namespace: &str) -> String {
    format!("{offset}.{:016x}", scope_checksum(account, namespace))
}

fn parse_token(token: &str, account: &str, namespace: &str) -> Option<usize> {
    let (offset, checksum) = token.split_once('.')?;
    let checksum = u64::from_str_radix(checksum, 16).ok()?;
    (checksum == scope_checksum(account, namespace)).then_some(())?;
    offset.parse().ok()
}

/// FNV-1a: stable across runs and processes, unlike std's randomly seeded hasher.
fn scope_checksum(account: &str, namespace: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in account.bytes().chain([0]).chain(namespace.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";

    fn world_with(requests: Vec<SimRequest>) -> World {
        let mut world = World::default();
        world.ensure_namespace(ACCOUNT, "default").requests = requests;
        world
    }

    fn request(id: &str) -> SimRequest {
        SimRequest::pending(id, "alice", 1_700_000_000_000)
    }

    fn status_after(
        actions: &[&str],
        setup: impl Fn(&mut SimRequest),
    ) -> Result<SimStatus, String> {
        let mut r = request("r");
        setup(&mut r);
        let mut world = world_with(vec![r]);
        let mut last = Err("no action".to_string());
        for action in actions {
            last = world
                .update(ACCOUNT, "default", "r", action, 1)
                .map(|r| r.status)
                .map_err(|e| e.code.to_string());
        }
        last
    }

    #[test]
    fn actions_move_requests_as_documented() {
        use SimStatus::*;
        let none = |_: &mut SimRequest| {};
        assert_eq!(status_after(&["APPROVE"], none), Ok(Approved));
        assert_eq!(status_after(&["DENY"], none), Ok(Denied));
        assert_eq!(status_after(&["VERIFY"], none), Ok(VerifyFailed));
        assert_eq!(
            status_after(&["VERIFY"], |r| r.in_required_group = true),
            Ok(Approved)
        );
        assert_eq!(
            status_after(&["APPROVE"], |r| r.fail_next_updates = 1),
            Ok(UpdateFailed)
        );
        assert_eq!(
            status_after(&["APPROVE", "APPROVE"], |r| r.fail_next_updates = 1),
            Ok(Approved)
        );
        assert_eq!(status_after(&["VERIFY", "DENY"], none), Ok(Denied));
        assert_eq!(
            status_after(&["APPROVE", "DENY"], |r| r.fail_next_updates = 1),
            Ok(Denied)
        );
        let precondition = Err("PreconditionNotMetException".to_string());
        assert_eq!(status_after(&["APPROVE", "APPROVE"], none), precondition);
        assert_eq!(status_after(&["DENY", "APPROVE"], none), precondition);
        assert_eq!(status_after(&["VERIFY", "APPROVE"], none), precondition);
        assert_eq!(
            status_after(&["MAYBE"], none),
            Err("InvalidParameterValueException".into())
        );
    }

    #[test]
    fn listing_pages_through_every_request_once() {
        let requests = (0..250).map(|i| request(&format!("r{i}"))).collect();
        let world = world_with(requests);
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = world
                .list(ACCOUNT, "default", token.as_deref(), Some(100))
                .expect("page");
            seen.extend(page.iter().map(|r| r.id.clone()));
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 250);
        assert_eq!(seen[249], "r249");
    }

    #[test]
    fn bad_tokens_and_page_sizes_are_refused() {
        let world = world_with(vec![request("a"), request("b")]);
        let code = |r: Result<_, SimError>| r.map(|_| ()).map_err(|e| e.code);
        assert_eq!(
            code(world.list(ACCOUNT, "default", Some("garbage"), None)),
            Err("InvalidNextTokenException")
        );
        let foreign = make_token(1, "999988887777", "default");
        assert_eq!(
            code(world.list(ACCOUNT, "default", Some(&foreign), None)),
            Err("InvalidNextTokenException")
        );
        assert_eq!(
            code(world.list(ACCOUNT, "default", None, Some(0))),
            Err("InvalidParameterValueException")
        );
        assert_eq!(
            code(world.list(ACCOUNT, "default", None, Some(101))),
            Err("InvalidParameterValueException")
        );
        assert_eq!(
            code(world.list("999988887777", "default", None, None)),
            Err("ResourceNotFoundException")
        );
    }

    #[test]
    fn auto_approval_approves_pending_requests_after_the_delay_and_admin_approval_stops_it() {
        let mut world = World {
            auto_approval_delay_ms: 2_000,
            ..World::default()
        };
        let ns = world.ensure_namespace("111122223333", "default");
        ns.requests = vec![
            SimRequest::pending("old", "a", 0),
            SimRequest {
                status: SimStatus::Denied,
                ..SimRequest::pending("denied", "b", 0)
            },
        ];
        world
            .set_self_upgrade_status("111122223333", "default", AUTO_APPROVAL, 1_000)
            .expect("switched");
        let status = |world: &World, id: &str| {
            let ns = world.namespace("111122223333", "default").expect("ns");
            let r = ns.requests.iter().find(|r| r.id == id).expect("request");
            (r.status, r.last_update_attempt_ms)
        };
        world.auto_approve(2_999);
        assert_eq!(status(&world, "old"), (SimStatus::Pending, None), "not yet");
        world.auto_approve(3_000);
        assert_eq!(
            status(&world, "old"),
            (SimStatus::Approved, Some(3_000)),
            "the delay after the switch, not after the request"
        );
        assert_eq!(
            status(&world, "denied"),
            (SimStatus::Denied, None),
            "decided stays"
        );
        // A request made while the mode is on waits its own delay.
        let ns = world.namespace_mut("111122223333", "default").expect("ns");
        ns.requests.push(SimRequest::pending("new", "c", 5_000));
        world.auto_approve(6_999);
        assert_eq!(status(&world, "new").0, SimStatus::Pending);
        world.auto_approve(7_000);
        assert_eq!(status(&world, "new"), (SimStatus::Approved, Some(7_000)));
        // Back in ADMIN_APPROVAL nothing is approved by itself.
        world
            .set_self_upgrade_status("111122223333", "default", ADMIN_APPROVAL, 8_000)
            .expect("switched back");
        let ns = world.namespace_mut("111122223333", "default").expect("ns");
        ns.requests.push(SimRequest::pending("later", "d", 9_000));
        world.auto_approve(60_000);
        assert_eq!(status(&world, "later").0, SimStatus::Pending);
    }

    #[test]
    fn an_unknown_approval_mode_is_refused_as_quicksight_refuses_it() {
        let mut world = World::default();
        world.ensure_namespace("111122223333", "default");
        let refused = world
            .set_self_upgrade_status("111122223333", "default", "SOMETIMES", 0)
            .expect_err("refused");
        assert_eq!(refused.code, "InvalidParameterValueException");
        let missing = world
            .set_self_upgrade_status("111122223333", "nowhere", AUTO_APPROVAL, 0)
            .expect_err("refused");
        assert_eq!(missing.code, "ResourceNotFoundException");
    }
}
