//! Two decisions for one request: the oldest wins, so that two pull requests cannot make the
//! operator approve and deny the same person in turn. Pure.

use crate::api::SelfUpgradeDecision;
use kube::ResourceExt;

/// The decision that decides `decision`'s request, when it is another one: among all decisions
/// naming the same (account, QuickSight namespace, request id), the oldest by creation time,
/// then by namespace and name.
pub fn winner_over<'a>(
    decision: &SelfUpgradeDecision,
    all: impl IntoIterator<Item = &'a SelfUpgradeDecision>,
) -> Option<&'a SelfUpgradeDecision> {
    let same_request = |other: &SelfUpgradeDecision| {
        other.spec.aws_account_id == decision.spec.aws_account_id
            && other.spec.quicksight_namespace == decision.spec.quicksight_namespace
            && other.spec.upgrade_request_id == decision.spec.upgrade_request_id
            && other.metadata.deletion_timestamp.is_none()
    };
    let age = |d: &SelfUpgradeDecision| {
        (
            d.metadata.creation_timestamp.as_ref().map(|t| t.0),
            d.namespace().unwrap_or_default(),
            d.name_any(),
        )
    };
    let oldest = all
        .into_iter()
        .filter(|d| same_request(d))
        .min_by_key(|d| age(d))?;
    let is_self = oldest.uid().is_some() && oldest.uid() == decision.uid()
        || (oldest.namespace() == decision.namespace() && oldest.name_any() == decision.name_any());
    (!is_self && age(oldest) < age(decision)).then_some(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, SelfUpgradeDecisionSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

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

    #[test]
    fn the_oldest_decision_for_a_request_wins() {
        let old = decision("team-a", "approve", 100, "r1");
        let new = decision("team-b", "deny", 200, "r1");
        let other_request = decision("team-c", "x", 50, "r2");
        let all = [old.clone(), new.clone(), other_request];
        assert_eq!(
            winner_over(&new, &all).map(|d| d.name_any()),
            Some("approve".to_string())
        );
        assert!(winner_over(&old, &all).is_none());
    }

    #[test]
    fn ties_are_broken_by_namespace_and_name_and_deleting_decisions_do_not_count() {
        let a = decision("team-a", "b-name", 100, "r1");
        let b = decision("team-a", "a-name", 100, "r1");
        let all = [a.clone(), b.clone()];
        assert_eq!(
            winner_over(&a, &all).map(|d| d.name_any()),
            Some("a-name".to_string())
        );
        assert!(winner_over(&b, &all).is_none());
        let mut leaving = b.clone();
        leaving.metadata.deletion_timestamp = Timestamp::from_second(300).ok().map(Time);
        assert!(winner_over(&a, &[a.clone(), leaving]).is_none());
    }
}
