//! The request inbox (`selfupgrade-operator requests list|decide`): what is waiting in an
//! account, printed for people or tools, and turned into ready-to-commit `SelfUpgradeDecision`
//! YAML for a GitOps pull request. Pure: listing happens in `cli`.

use crate::api::{
    Action, ApprovalMode, PolicyMatch, RequestDetails, SelfUpgradeDecision, SelfUpgradeDecisionSpec,
};
use crate::quicksight::{RequestDetail, RequestStatus};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Annotations a generated decision carries, so that a reviewer sees who asks for what.
pub const USER_ANNOTATION: &str = "quicksight.selfupgrade.io/user";
pub const ROLES_ANNOTATION: &str = "quicksight.selfupgrade.io/roles";
pub const NOTE_ANNOTATION: &str = "quicksight.selfupgrade.io/note";

/// One request as `requests list -o json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxEntry {
    pub upgrade_request_id: String,
    #[serde(flatten)]
    pub request: RequestDetails,
}

impl From<&RequestDetail> for InboxEntry {
    fn from(detail: &RequestDetail) -> Self {
        Self {
            upgrade_request_id: detail.upgrade_request_id.clone(),
            request: detail.into(),
        }
    }
}

/// What `requests list -o json|yaml` prints: whose requests, the namespace's approval mode, and
/// the requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxListing {
    pub aws_account_id: String,
    pub quicksight_namespace: String,
    /// `AUTO_APPROVAL`: QuickSight approves every request itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_mode: Option<ApprovalMode>,
    /// Why the approval mode could not be read (e.g. the permission is not granted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_mode_error: Option<String>,
    pub requests: Vec<InboxEntry>,
}

/// The line `requests list` prints above its table, and `requests mode` prints.
pub fn mode_line(mode: &Result<ApprovalMode, String>) -> String {
    match mode {
        Ok(ApprovalMode::AdminApproval) => {
            "approval mode: ADMIN_APPROVAL (requests wait for an admin's decision)".to_string()
        }
        Ok(ApprovalMode::AutoApproval) => {
            "approval mode: AUTO_APPROVAL (QuickSight approves every request itself)".to_string()
        }
        Err(error) => format!("approval mode: unknown ({error})"),
    }
}

/// Keeps the requests whose status is `status` (all when `None`), case-insensitively.
pub fn with_status<'a>(
    requests: &'a [RequestDetail],
    status: Option<&'a str>,
) -> impl Iterator<Item = &'a RequestDetail> + 'a {
    requests.iter().filter(move |r| {
        status.is_none_or(|wanted| r.request_status.to_string().eq_ignore_ascii_case(wanted))
    })
}

/// The table `requests list` prints by default.
pub fn table(requests: &[&RequestDetail], now: Timestamp) -> String {
    let header = ["ID", "USER", "ROLE", "NOTE", "AGE", "STATUS"];
    let rows = requests.iter().map(|r| {
        vec![
            r.upgrade_request_id.clone(),
            r.user_name.clone().unwrap_or_default(),
            roles(r.original_role.as_deref(), r.requested_role.as_deref()),
            one_line(r.request_note.as_deref().unwrap_or_default(), 40),
            r.creation_time.map(|t| age(t, now)).unwrap_or_default(),
            r.request_status.to_string(),
        ]
    });
    columns(&header, rows)
}

/// The table `requests evaluate` prints: what a policy's rules would decide, request by request.
pub fn policy_table(matches: &[PolicyMatch]) -> String {
    let header = ["ID", "USER", "ROLE", "RULE", "WOULD"];
    let rows = matches.iter().map(|m| {
        vec![
            m.upgrade_request_id.clone(),
            m.user_name.clone().unwrap_or_default(),
            roles(m.original_role.as_deref(), m.requested_role.as_deref()),
            m.rule.clone(),
            m.action.to_string(),
        ]
    });
    columns(&header, rows)
}

fn roles(original: Option<&str>, requested: Option<&str>) -> String {
    format!("{} → {}", original.unwrap_or("?"), requested.unwrap_or("?"))
}

/// Left-aligned columns, as wide as their widest cell, three spaces apart; every cell
/// [`printable`].
fn columns(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(rows.map(|row| row.iter().map(|cell| printable(cell)).collect()))
        .collect();
    let mut widths = vec![0; rows[0].len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("   ").trim_end());
        text.push('\n');
    }
    text
}

/// `text` safe to put on a terminal: user names and notes are written by whoever requests an
/// upgrade, and a control character (an ANSI escape sequence, a carriage return) or a
/// bidirectional override would let them rewrite what an admin sees. Those are shown escaped
/// (`\u{1b}`); everything else, other scripts included, as it is.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        // U+202A..U+202E and U+2066..U+2069 reorder the text after them ("Trojan Source").
        let reorders = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || reorders {
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            shown.push(c);
        }
    }
    shown
}

/// A note on one line, cut to `max` characters.
fn one_line(note: &str, max: usize) -> String {
    let flat: String = note.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// `kubectl`-style age: 45s, 12m, 5h, 3d.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(since.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

/// A Kubernetes name for the decision on `request`: `<action>-<user>-<id>`, lower case, only
/// `[a-z0-9-]`, at most 63 characters, so that it is a valid name (and label value) whatever
/// the user name and id contain. The id part (its first 8 letters and digits) keeps names of
/// one user's requests apart; [`decision_names`] handles ids that share those 8.
pub fn decision_name(action: Action, user: Option<&str>, request_id: &str) -> String {
    name_with_id(action, user, &short_id(request_id))
}

/// The first 8 letters and digits of the id; a hash of it when it has none.
fn short_id(request_id: &str) -> String {
    let id: String = request_id
        .chars()
        .flat_map(char::to_lowercase)
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    // An id with no letters or digits still needs a stable, distinct name part.
    if id.is_empty() {
        format!("{:08x}", fnv1a(request_id))
    } else {
        id
    }
}

/// The short id and a hash of the whole id: distinct for ids that share their first 8
/// letters and digits (or differ only in punctuation).
fn long_id(request_id: &str) -> String {
    format!("{}{:08x}", short_id(request_id), fnv1a(request_id))
}

/// Names for the decisions on `requests` (one `action` for all), distinct from each other and
/// from the names `taken_by` reports in use for another request id (`--out-dir` files): each
/// keeps its short [`decision_name`] unless that is shared, then gets a hash of its whole id.
/// `Err` names the requests that still cannot be told apart, rather than overwrite one.
pub fn decision_names(
    action: Action,
    requests: &[&RequestDetail],
    taken_by: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let short: Vec<String> = requests
        .iter()
        .map(|r| decision_name(action, r.user_name.as_deref(), &r.upgrade_request_id))
        .collect();
    let mut ids_per_name: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (name, request) in short.iter().zip(requests) {
        ids_per_name
            .entry(name)
            .or_default()
            .insert(&request.upgrade_request_id);
    }
    let clash = |other: &str, id: &str, name: &str| {
        format!("requests {other} and {id} would both be named {name}; decide them one at a time")
    };
    // Each name is looked up in `taken_by` once (the long one only when the short one clashes).
    let mut names = Vec::with_capacity(requests.len());
    for (name, request) in short.iter().zip(requests) {
        let id = request.upgrade_request_id.as_str();
        let shared = ids_per_name
            .get(name.as_str())
            .is_some_and(|ids| ids.len() > 1);
        if !shared && taken_by(name).is_none_or(|other| other == id) {
            names.push(name.clone());
            continue;
        }
        let long = name_with_id(action, request.user_name.as_deref(), &long_id(id));
        if let Some(other) = taken_by(&long).filter(|other| other != id) {
            return Err(clash(&other, id, &long));
        }
        names.push(long);
    }
    // Long names carry a 32-bit hash: two of one batch could still meet.
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for (name, request) in names.iter().zip(requests) {
        let id = request.upgrade_request_id.as_str();
        if let Some(other) = owner.insert(name, id).filter(|other| *other != id) {
            return Err(clash(other, id, name));
        }
    }
    Ok(names)
}

fn name_with_id(action: Action, user: Option<&str>, id: &str) -> String {
    let slug = |text: &str| -> String {
        let mut slug = String::new();
        for c in text.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_matches('-').to_string()
    };
    let user = slug(user.and_then(|u| u.split('@').next()).unwrap_or("user"));
    let action = action.as_str().to_ascii_lowercase();
    let budget = 63 - action.len() - id.len() - 2;
    let user: String = user.chars().take(budget).collect();
    let user = user.trim_end_matches('-');
    let user = if user.is_empty() { "user" } else { user };
    format!("{action}-{user}-{id}")
}

/// 32-bit FNV-1a: stable across Rust versions (unlike `DefaultHasher`), which a name that ends
/// up in Git needs; six lines do not warrant a hashing crate.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The decision `name` for `request` in `namespace` (unset: the namespace `kubectl apply`
/// uses).
pub fn decision_for(
    name: &str,
    request: &RequestDetail,
    account: &str,
    quicksight_namespace: &str,
    action: Action,
    namespace: Option<&str>,
) -> SelfUpgradeDecision {
    let mut decision = SelfUpgradeDecision::new(
        name,
        SelfUpgradeDecisionSpec {
            aws_account_id: account.to_string(),
            quicksight_namespace: quicksight_namespace.to_string(),
            upgrade_request_id: request.upgrade_request_id.clone(),
            action,
            region: None,
            retry: None,
        },
    );
    decision.metadata.namespace = namespace.map(str::to_string);
    let mut annotations = BTreeMap::new();
    if let Some(user) = &request.user_name {
        annotations.insert(USER_ANNOTATION.to_string(), user.clone());
    }
    annotations.insert(
        ROLES_ANNOTATION.to_string(),
        format!(
            "{} -> {}",
            request.original_role.as_deref().unwrap_or("?"),
            request.requested_role.as_deref().unwrap_or("?")
        ),
    );
    if let Some(note) = &request.request_note {
        annotations.insert(NOTE_ANNOTATION.to_string(), note.clone());
    }
    decision.metadata.annotations = Some(annotations);
    decision
}

/// The requests `decide` acts on: the named ones (every id must exist), or all PENDING ones.
pub fn select<'a>(
    requests: &'a [RequestDetail],
    ids: &[String],
    all_pending: bool,
) -> Result<Vec<&'a RequestDetail>, String> {
    if all_pending {
        return Ok(requests
            .iter()
            .filter(|r| r.request_status == RequestStatus::Pending)
            .collect());
    }
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| !requests.iter().any(|r| &r.upgrade_request_id == *id))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "no such request in this account and QuickSight namespace: {}",
            missing.join(", ")
        ));
    }
    Ok(ids
        .iter()
        .filter_map(|id| requests.iter().find(|r| &r.upgrade_request_id == id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    fn request(id: &str, user: &str, status: RequestStatus) -> RequestDetail {
        RequestDetail {
            user_name: Some(user.into()),
            original_role: Some("READER".into()),
            requested_role: Some("AUTHOR".into()),
            request_note: Some("needs\n dashboards".into()),
            creation_time: Some(at(1_800_000_000)),
            ..RequestDetail::new(id, status)
        }
    }

    #[test]
    fn names_are_valid_kubernetes_names_whatever_the_input() {
        assert_eq!(
            decision_name(
                Action::Approve,
                Some("Alice.Smith@Example.com"),
                "5c1e7a52-0b7d-4b8e"
            ),
            "approve-alice-smith-5c1e7a52"
        );
        let long = "x".repeat(200);
        let name = decision_name(Action::Verify, Some(&long), "ID_1");
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, format!("verify-{}-id1", "x".repeat(63 - 6 - 3 - 2)));
        assert_eq!(decision_name(Action::Deny, Some("@@@"), "r"), "deny-user-r");
        assert_eq!(decision_name(Action::Deny, None, "R-9"), "deny-user-r9");
        assert_ne!(
            decision_name(Action::Deny, None, "--"),
            decision_name(Action::Deny, None, "//"),
            "ids without letters or digits still get distinct names"
        );
        for name in [
            decision_name(Action::Approve, Some("ünïcode user"), "a/b"),
            decision_name(Action::Approve, Some("-lead-"), "--"),
        ] {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
            assert!(!name.ends_with('-') && !name.starts_with('-'), "{name}");
        }
    }

    #[test]
    fn names_in_one_batch_or_beside_existing_files_never_collide() {
        let alice_1 = request("5c1e7a52-0b7d", "alice@example.com", RequestStatus::Pending);
        let alice_2 = request("5c1e7a52-9f00", "alice@example.com", RequestStatus::Pending);
        let bob = request("5c1e7a52-0b7d-b", "bob@example.com", RequestStatus::Pending);
        let free = |_: &str| None;
        let names =
            decision_names(Action::Approve, &[&alice_1, &alice_2, &bob], &free).expect("named");
        assert_eq!(names[2], "approve-bob-5c1e7a52", "no clash: the short name");
        assert_ne!(names[0], names[1]);
        for name in &names[..2] {
            assert!(name.starts_with("approve-alice-5c1e7a52"), "{name}");
            assert_eq!(name.len(), "approve-alice-5c1e7a52".len() + 8, "{name}");
        }
        // The same request twice is one name, not a clash.
        assert_eq!(
            decision_names(Action::Approve, &[&bob, &bob], &free).expect("named"),
            ["approve-bob-5c1e7a52", "approve-bob-5c1e7a52"]
        );

        // A name already used for another request (a file in --out-dir) is not reused; one
        // used for this request is.
        let taken_by_other =
            |name: &str| (name == "approve-bob-5c1e7a52").then(|| "someone-else".to_string());
        let renamed = decision_names(Action::Approve, &[&bob], &taken_by_other).expect("named");
        assert_ne!(renamed[0], "approve-bob-5c1e7a52");
        let taken_by_same = |_: &str| Some(bob.upgrade_request_id.clone());
        assert_eq!(
            decision_names(Action::Approve, &[&bob], &taken_by_same).expect("named"),
            ["approve-bob-5c1e7a52"]
        );

        // Nothing free at all: refused, naming both requests, rather than overwritten.
        let all_taken = |_: &str| Some("r-0".to_string());
        let refused = decision_names(Action::Approve, &[&bob], &all_taken).expect_err("refused");
        assert!(
            refused.contains("r-0") && refused.contains("5c1e7a52-0b7d-b"),
            "{refused}"
        );
    }

    #[test]
    fn a_decision_carries_the_request_as_annotations() {
        let decision = decision_for(
            "approve-alice-r1",
            &request("r-1", "alice@example.com", RequestStatus::Pending),
            "111122223333",
            "default",
            Action::Approve,
            Some("team-a"),
        );
        let annotations = decision.metadata.annotations.expect("annotations");
        assert_eq!(annotations[USER_ANNOTATION], "alice@example.com");
        assert_eq!(annotations[ROLES_ANNOTATION], "READER -> AUTHOR");
        assert_eq!(decision.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(decision.spec.upgrade_request_id, "r-1");
    }

    #[test]
    fn decide_refuses_unknown_ids_and_all_pending_takes_only_pending() {
        let requests = [
            request("r-1", "a", RequestStatus::Pending),
            request("r-2", "b", RequestStatus::Approved),
        ];
        let missing = select(&requests, &["r-1".into(), "r-9".into()], false).unwrap_err();
        assert!(
            missing.contains("r-9") && !missing.contains("r-1"),
            "{missing}"
        );
        let pending = select(&requests, &[], true).expect("ok");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].upgrade_request_id, "r-1");
    }

    #[test]
    fn the_table_aligns_columns_and_flattens_notes() {
        let requests = [
            request("r-1", "alice@example.com", RequestStatus::Pending),
            request("r-22", "bob@example.com", RequestStatus::Denied),
        ];
        let refs: Vec<&RequestDetail> = requests.iter().collect();
        let text = table(&refs, at(1_800_000_000 + 3 * 86_400));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID     USER"), "{text}");
        assert!(
            lines[1].contains("READER → AUTHOR   needs dashboards   3d    PENDING"),
            "{text}"
        );
        assert_eq!(with_status(&requests, Some("denied")).count(), 1);
    }

    #[test]
    fn what_a_requester_wrote_cannot_move_the_cursor_or_reorder_the_table() {
        let mut sly = request("r-1", "eve\u{1b}[2J@example.com", RequestStatus::Pending);
        sly.request_note = Some("ok\rAPPROVED \u{202e}txet".into());
        let table = table(&[&sly], at(0));
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(table.contains("eve\\u{1b}[2J@example.com"), "{table}");
        assert!(table.contains("ok APPROVED \\u{202e}txet"), "{table}");
        assert_eq!(printable("Zoë 名前 ok"), "Zoë 名前 ok");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(at(1000), at(1045)), "45s");
        assert_eq!(age(at(0), at(720)), "12m");
        assert_eq!(age(at(0), at(5 * 3600)), "5h");
        assert_eq!(age(at(0), at(3 * 86_400)), "3d");
        assert_eq!(age(at(10), at(0)), "0s");
    }
}
