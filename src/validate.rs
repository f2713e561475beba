//! The spec checks the CRD schema makes, repeated in the operator: objects can reach it without
//! them (a CRD installed without validation, an older CRD, a restore from backup), and a bad
//! account id must become a clear `Stalled` message, never an AWS call. Pure.

use crate::api::SelfUpgradeDecisionSpec;

/// The first problem with `spec`, naming the field.
pub fn spec_problem(spec: &SelfUpgradeDecisionSpec) -> Option<String> {
    let account = &spec.aws_account_id;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "spec.awsAccountId must be 12 digits, got {account:?}"
        ));
    }
    let namespace = &spec.quicksight_namespace;
    let namespace_ok = namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !namespace_ok {
        return Some(format!(
            "spec.quicksightNamespace must match ^[a-zA-Z0-9._-]*$ and have at most 64 characters, got {namespace:?}"
        ));
    }
    if spec.upgrade_request_id.trim().is_empty() {
        return Some("spec.upgradeRequestId must not be empty".to_string());
    }
    // A region of any partition is well formed; which partition, and whether the binding
    // admits it, the tenant guard judges (`crate::regions`).
    if let Some(region) = &spec.region
        && crate::regions::partition_of(region).is_none()
    {
        return Some(format!(
            "spec.region must be an AWS region such as us-east-1, got {region:?}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Action;

    fn spec() -> SelfUpgradeDecisionSpec {
        SelfUpgradeDecisionSpec {
            aws_account_id: "111122223333".into(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: "r-1".into(),
            action: Action::Approve,
            region: Some("eu-central-1".into()),
            retry: None,
        }
    }

    #[test]
    fn a_valid_spec_has_no_problem() {
        assert_eq!(spec_problem(&spec()), None);
    }

    /// Breaks one field of a valid spec.
    type Breakage = fn(&mut SelfUpgradeDecisionSpec);

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(Breakage, &str); 5] = [
            (
                |s| s.aws_account_id = "1111222233334".into(),
                "spec.awsAccountId",
            ),
            (
                |s| s.aws_account_id = "11112222333x".into(),
                "spec.awsAccountId",
            ),
            (
                |s| s.quicksight_namespace = "a/b".into(),
                "spec.quicksightNamespace",
            ),
            (
                |s| s.upgrade_request_id = " ".into(),
                "spec.upgradeRequestId",
            ),
            (|s| s.region = Some("Mars".into()), "spec.region"),
        ];
        for (break_it, field) in cases {
            let mut bad = spec();
            break_it(&mut bad);
            let problem = spec_problem(&bad).expect("a problem");
            assert!(problem.starts_with(field), "{problem}");
        }
    }
}
