//! Filling the simulator: a seed file (YAML or JSON) or generated requests.

use super::world::{SimRequest, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use selfupgrade_operator::api::ApprovalMode;
use serde::Deserialize;

/// A seed file:
/// ```yaml
/// accounts:
///   - accountId: "111122223333"
///     namespace: default            # optional
///     selfUpgradeStatus: ADMIN_APPROVAL  # optional
///     requests:
///       - id: 3f2a...
///         userName: alice
///         originalRole: READER
///         requestedRole: AUTHOR
///         note: "Needs to build dashboards"
///         createdAtMs: 1764115200000  # optional; default now
///         inRequiredGroup: true       # optional; for VERIFY
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedFile {
    pub accounts: Vec<SeedNamespace>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedNamespace {
    pub account_id: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub self_upgrade_status: Option<ApprovalMode>,
    #[serde(default)]
    pub requests: Vec<SimRequest>,
}

fn default_namespace() -> String {
    "default".to_string()
}

impl SeedFile {
    /// Parses YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// Adds the seed's accounts and requests to `world`. Requests without a creation time get
    /// `now_ms`.
    pub fn apply(self, world: &mut World, now_ms: i64) {
        for seed in self.accounts {
            let ns = world.ensure_namespace(&seed.account_id, &seed.namespace);
            if let Some(status) = seed.self_upgrade_status {
                ns.self_upgrade_status = status.as_str().to_string();
            }
            for mut request in seed.requests {
                if request.created_at_ms <= 0 {
                    request.created_at_ms = now_ms;
                }
                ns.requests.push(request);
            }
        }
    }
}

const FIRST_NAMES: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
const UPGRADES: [(&str, &str, &str); 6] = [
    (
        "READER",
        "AUTHOR",
        "Needs to build dashboards for the quarterly review",
    ),
    (
        "READER",
        "READER_PRO",
        "Wants Q&A and generative BI on existing dashboards",
    ),
    ("AUTHOR", "AUTHOR_PRO", "Building AI-assisted analyses"),
    (
        "READER",
        "ADMIN",
        "Taking over administration of the team's assets",
    ),
    ("RESTRICTED_READER", "READER", "Joined the analytics guild"),
    ("AUTHOR", "ADMIN_PRO", "New BI platform owner"),
];

/// `count` PENDING requests with realistic users, roles and notes, created over the last days.
/// The same `seed` gives the same requests; about half the users are already in the group a
/// VERIFY checks.
pub fn generate_requests(count: usize, seed: u64, now_ms: i64) -> Vec<SimRequest> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let (from, to, note) = UPGRADES[rng.random_range(0..UPGRADES.len())];
            let name = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
            let id: u128 = rng.random();
            let created_at_ms = now_ms - rng.random_range(60_000..7 * 24 * 3_600_000);
            SimRequest {
                original_role: from.to_string(),
                requested_role: to.to_string(),
                note: Some(note.to_string()),
                in_required_group: rng.random_bool(0.5),
                ..SimRequest::pending(
                    &format_uuid(id),
                    &format!("{name}.{i}@example.com"),
                    created_at_ms,
                )
            }
        })
        .collect()
}

fn format_uuid(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::SimStatus;

    #[test]
    fn a_seed_file_fills_accounts_and_defaults_missing_fields() {
        let seed = SeedFile::parse(
            r#"
accounts:
  - accountId: "111122223333"
    requests:
      - id: r-1
        userName: alice
        originalRole: READER
        requestedRole: AUTHOR
        createdAtMs: 0
  - accountId: "444455556666"
    namespace: analytics
    selfUpgradeStatus: AUTO_APPROVAL
"#,
        )
        .expect("valid seed");
        let mut world = World::default();
        seed.apply(&mut world, 42);
        let ns = world.namespace("111122223333", "default").expect("seeded");
        assert_eq!(ns.requests[0].status, SimStatus::Pending);
        assert_eq!(ns.requests[0].created_at_ms, 42);
        assert_eq!(
            world
                .namespace("444455556666", "analytics")
                .expect("seeded")
                .self_upgrade_status,
            "AUTO_APPROVAL"
        );
    }

    #[test]
    fn a_seed_file_with_an_unknown_field_is_refused() {
        let error = SeedFile::parse("accounts:\n  - accountId: '111122223333'\n    requsts: []\n")
            .expect_err("typo must be refused");
        assert!(error.to_string().contains("requsts"), "{error}");
    }

    #[test]
    fn generated_requests_are_deterministic_and_unique() {
        let a = generate_requests(300, 9, 1_800_000_000_000);
        assert_eq!(a, generate_requests(300, 9, 1_800_000_000_000));
        let ids: std::collections::HashSet<_> = a.iter().map(|r| &r.id).collect();
        assert_eq!(ids.len(), 300);
        assert!(
            a.iter()
                .all(|r| r.status == SimStatus::Pending && r.id.len() == 36)
        );
    }
}
