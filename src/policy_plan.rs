//! What a policy does with its matches in one evaluation (pure): which decisions it creates
//! within the brake, which it holds back, and which of the decisions it created earlier stand
//! down because a person decided their request (or the policy went back to `DryRun`) before
//! they acted. Also the decision it creates for a match. The store, the clock and the
//! policy's own memory of what it created are handed in; `crate::policy_apply` writes.

use crate::api::{
    POLICY_LABEL, PolicyMatch, PolicyMode, RULE_LABEL, SelfUpgradeDecision,
    SelfUpgradeDecisionStatus, SelfUpgradePolicy,
};
use crate::quicksight::RequestDetail;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The window the brake counts in.
pub const BRAKE_WINDOW: SignedDuration = SignedDuration::from_hours(1);

/// A decision the policy created, as the controller's store shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub name: String,
    pub created: Option<Timestamp>,
    /// It has sent (or announced) an `UpdateSelfUpgrade`: from then on it is the record of
    /// what was done, and nobody removes it.
    pub acted: bool,
    /// The version the store holds: a removal is conditional on it, so that it loses to the
    /// intent write it would race with.
    pub resource_version: Option<String>,
    /// A decision a person wrote (not a policy) that names the same request and may act on it.
    pub person_decision: Option<String>,
}

/// Why a created decision that has not acted is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandDownReason {
    /// A person's decision names the same request (`namespace/name`, or a phrase when the
    /// policy's namespace may not see it).
    Superseded { by: String },
    /// The policy is back in `DryRun`: it decides nothing, also not what it had begun to.
    DryRun,
}

/// A created decision to remove, at the version it was judged at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandDown {
    pub name: String,
    pub resource_version: Option<String>,
    pub reason: StandDownReason,
}

/// What one evaluation does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Matches to create a decision for now (Enforce, within the brake), oldest first.
    pub create: Vec<PolicyMatch>,
    /// Matches the brake holds back.
    pub held_back: usize,
    /// Decisions created within the last hour before this evaluation.
    pub created_last_hour: usize,
    /// When the oldest creation of the window leaves it (the brake's next room), when held.
    pub room_at: Option<Timestamp>,
    pub stand_down: Vec<StandDown>,
}

/// Plans one evaluation of a policy in `mode` that found `matches` (oldest first), has
/// `generated` decisions in the store and remembers creating `recent` (name → when; what the
/// store may not show yet), with the brake at `limit` an hour.
pub fn plan(
    mode: PolicyMode,
    matches: &[PolicyMatch],
    generated: &[Generated],
    recent: &BTreeMap<String, Timestamp>,
    limit: u32,
    now: Timestamp,
) -> Plan {
    let stand_down = stand_downs(mode, generated);
    if mode == PolicyMode::DryRun {
        return Plan {
            stand_down,
            ..Plan::default()
        };
    }
    let since = now - BRAKE_WINDOW;
    let mut window: BTreeMap<&str, Timestamp> = generated
        .iter()
        .filter_map(|g| g.created.map(|at| (g.name.as_str(), at)))
        .collect();
    for (name, at) in recent {
        window.entry(name).or_insert(*at);
    }
    let mut in_window: Vec<Timestamp> = window.into_values().filter(|at| *at > since).collect();
    in_window.sort();
    let room = (limit as usize).saturating_sub(in_window.len());
    let create: Vec<PolicyMatch> = matches.iter().take(room).cloned().collect();
    let held_back = matches.len() - create.len();
    Plan {
        room_at: (held_back > 0)
            .then(|| in_window.first().map(|oldest| *oldest + BRAKE_WINDOW))
            .flatten(),
        create,
        held_back,
        created_last_hour: in_window.len(),
        stand_down,
    }
}

fn stand_downs(mode: PolicyMode, generated: &[Generated]) -> Vec<StandDown> {
    generated
        .iter()
        .filter(|g| !g.acted)
        .filter_map(|g| {
            let reason = match (&g.person_decision, mode) {
                (Some(by), _) => StandDownReason::Superseded { by: by.clone() },
                (None, PolicyMode::DryRun) => StandDownReason::DryRun,
                (None, PolicyMode::Enforce) => return None,
            };
            Some(StandDown {
                name: g.name.clone(),
                resource_version: g.resource_version.clone(),
                reason,
            })
        })
        .collect()
}

/// Whether a decision's status shows an `UpdateSelfUpgrade` sent or announced.
pub fn has_acted(status: Option<&SelfUpgradeDecisionStatus>) -> bool {
    status.is_some_and(|s| {
        s.intent.is_some()
            || s.applied_action.is_some()
            || s.rejection.is_some()
            || s.attempts.unwrap_or(0) > 0
    })
}

/// The reference a created decision holds to its policy. No `blockOwnerDeletion`: setting it
/// would need `update` on the policy's finalizers under the OwnerReferencesPermissionEnforcement
/// admission plugin, and the policy's own finalizer already orders its deletion.
pub fn owner_reference(policy: &SelfUpgradePolicy) -> OwnerReference {
    OwnerReference {
        api_version: SelfUpgradePolicy::api_version(&()).to_string(),
        kind: SelfUpgradePolicy::kind(&()).to_string(),
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The UID of the policy that created `decision`, if a policy did.
pub fn creator_uid(decision: &SelfUpgradeDecision) -> Option<&str> {
    decision
        .owner_references()
        .iter()
        .find(|owner| {
            owner.controller == Some(true)
                && owner.kind == SelfUpgradePolicy::kind(&())
                && owner.api_version == SelfUpgradePolicy::api_version(&())
        })
        .map(|owner| owner.uid.as_str())
}

/// The name of the decision a policy creates for a request: from the request alone, so that a
/// restart, a second replica or a second policy in the namespace finds it taken
/// (AlreadyExists) instead of deciding the request twice.
pub fn decision_name(account: &str, quicksight_namespace: &str, request_id: &str) -> String {
    let request = crate::mirror::object_name(account, quicksight_namespace, request_id);
    crate::names::object_name(&format!("policy-{request}"))
}

/// The decision `policy` creates for `request`, which `matched` one of its rules: the
/// request's account and namespace, the rule's action, the policy's region, retry and labels,
/// the request shown in annotations as the inbox CLI writes them, owned by the policy.
pub fn decision_for_match(
    policy: &SelfUpgradePolicy,
    matched: &PolicyMatch,
    request: &RequestDetail,
) -> SelfUpgradeDecision {
    let spec = &policy.spec;
    let name = decision_name(
        &spec.aws_account_id,
        &spec.quicksight_namespace,
        &request.upgrade_request_id,
    );
    let mut decision = crate::inbox::decision_for(
        &name,
        request,
        &spec.aws_account_id,
        &spec.quicksight_namespace,
        matched.action,
        policy.namespace().as_deref(),
    );
    decision.spec.region = spec.region.clone();
    decision.spec.retry = spec.retry.clone();
    let mut labels = spec.decision_labels.clone();
    labels.insert(
        POLICY_LABEL.to_string(),
        crate::names::label_value(&policy.name_any()),
    );
    labels.insert(RULE_LABEL.to_string(), matched.rule.clone());
    decision.metadata.labels = Some(labels);
    decision.metadata.owner_references = Some(vec![owner_reference(policy)]);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Action;
    use PolicyMode::{DryRun, Enforce};

    const NOW: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    fn matched(id: &str) -> PolicyMatch {
        PolicyMatch {
            upgrade_request_id: id.into(),
            rule: "readers".into(),
            action: Action::Approve,
            user_name: None,
            original_role: None,
            requested_role: None,
        }
    }

    fn generated(name: &str, created: i64, acted: bool, person: Option<&str>) -> Generated {
        Generated {
            name: name.into(),
            created: Some(at(created)),
            acted,
            resource_version: Some("7".into()),
            person_decision: person.map(str::to_string),
        }
    }

    /// (limit, ages in seconds of the decisions created earlier, expected created, held,
    /// room at)
    type BrakeCase = (
        u32,
        &'static [i64],
        &'static [&'static str],
        usize,
        Option<i64>,
    );

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.create
            .iter()
            .map(|m| m.upgrade_request_id.as_str())
            .collect()
    }

    #[test]
    fn the_brake_lets_through_what_the_hour_has_room_for() {
        let matches = [matched("r-1"), matched("r-2"), matched("r-3")];
        let none = BTreeMap::new();
        let cases: [BrakeCase; 5] = [
            (10, &[], &["r-1", "r-2", "r-3"], 0, None),
            (2, &[], &["r-1", "r-2"], 1, None),
            (3, &[600, 1200], &["r-1"], 2, Some(NOW - 1200 + 3600)),
            (2, &[600, 1200], &[], 3, Some(NOW - 1200 + 3600)),
            // A creation an hour old no longer counts; one a second younger does.
            (2, &[3600, 3599], &["r-1"], 2, Some(NOW - 3599 + 3600)),
        ];
        for (limit, ages, created, held, room_at) in cases {
            let earlier: Vec<Generated> = ages
                .iter()
                .enumerate()
                .map(|(i, age)| generated(&format!("d-{i}"), NOW - age, true, None))
                .collect();
            let plan = plan(Enforce, &matches, &earlier, &none, limit, at(NOW));
            assert_eq!(ids(&plan), created, "limit {limit}, ages {ages:?}");
            assert_eq!(plan.held_back, held, "limit {limit}, ages {ages:?}");
            assert_eq!(
                plan.room_at,
                room_at.map(at),
                "limit {limit}, ages {ages:?}"
            );
        }
    }

    #[test]
    fn creations_the_store_does_not_show_yet_count_against_the_brake_once() {
        let matches = [matched("r-3"), matched("r-4")];
        let in_store = [generated("d-1", NOW - 10, false, None)];
        let recent = BTreeMap::from([
            ("d-1".to_string(), at(NOW - 10)),
            ("d-2".to_string(), at(NOW - 5)),
        ]);
        let plan = plan(Enforce, &matches, &in_store, &recent, 3, at(NOW));
        assert_eq!(plan.created_last_hour, 2);
        assert_eq!(ids(&plan), ["r-3"]);
        assert_eq!(plan.held_back, 1);
    }

    #[test]
    fn created_decisions_stand_down_only_before_they_act() {
        let by = Some("team-a/approve-alice");
        let earlier = [
            generated("superseded", NOW, false, by),
            generated("acted-superseded", NOW, true, by),
            generated("alone", NOW, false, None),
            generated("acted", NOW, true, None),
        ];
        let none = BTreeMap::new();
        let enforce = plan(Enforce, &[], &earlier, &none, 10, at(NOW));
        assert_eq!(
            enforce.stand_down,
            [StandDown {
                name: "superseded".into(),
                resource_version: Some("7".into()),
                reason: StandDownReason::Superseded {
                    by: "team-a/approve-alice".into()
                },
            }]
        );
        let dry_run = plan(DryRun, &[matched("r-1")], &earlier, &none, 10, at(NOW));
        let removed: Vec<(&str, &StandDownReason)> = dry_run
            .stand_down
            .iter()
            .map(|s| (s.name.as_str(), &s.reason))
            .collect();
        assert_eq!(
            removed,
            [
                ("superseded", &enforce.stand_down[0].reason),
                ("alone", &StandDownReason::DryRun)
            ]
        );
        assert!(dry_run.create.is_empty(), "a dry run creates nothing");
    }

    #[test]
    fn a_decision_has_acted_once_it_announced_or_sent_a_call() {
        let blank = SelfUpgradeDecisionStatus::default();
        assert!(!has_acted(None));
        assert!(!has_acted(Some(&blank)));
        let sent = SelfUpgradeDecisionStatus {
            attempts: Some(1),
            ..blank.clone()
        };
        assert!(has_acted(Some(&sent)));
        let applied = SelfUpgradeDecisionStatus {
            applied_action: Some(Action::Approve),
            ..blank
        };
        assert!(has_acted(Some(&applied)));
    }

    #[test]
    fn the_created_decision_is_named_from_the_request_and_owned_by_the_policy() {
        let spec = crate::api::SelfUpgradePolicySpec {
            aws_account_id: "111122223333".into(),
            quicksight_namespace: "default".into(),
            region: Some("eu-west-1".into()),
            rules: Vec::new(),
            mode: Enforce,
            max_decisions_per_hour: 10,
            decision_labels: BTreeMap::from([("team".into(), "bi".into())]),
            retry: None,
        };
        let mut policy = SelfUpgradePolicy::new("routine-upgrades", spec);
        policy.metadata.namespace = Some("analytics".into());
        policy.metadata.uid = Some("uid-1".into());
        let request = RequestDetail {
            upgrade_request_id: "Req_42".into(),
            ..crate::fixtures::request(crate::quicksight::RequestStatus::Pending)
        };
        let decision = decision_for_match(&policy, &matched("Req_42"), &request);
        assert_eq!(
            decision.name_any(),
            "policy-111122223333-req-42-b24f803d8fb5fa53"
        );
        assert_eq!(
            decision.name_any(),
            decision_name("111122223333", "default", "Req_42")
        );
        assert_eq!(decision.namespace().as_deref(), Some("analytics"));
        assert_eq!(decision.spec.region.as_deref(), Some("eu-west-1"));
        assert_eq!(decision.labels()[POLICY_LABEL], "routine-upgrades");
        assert_eq!(decision.labels()[RULE_LABEL], "readers");
        assert_eq!(decision.labels()["team"], "bi");
        assert_eq!(creator_uid(&decision), Some("uid-1"));
        let mut by_hand = decision.clone();
        by_hand.metadata.owner_references = None;
        assert_eq!(creator_uid(&by_hand), None);
    }
}
