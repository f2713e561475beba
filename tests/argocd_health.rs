//! The Argo CD health checks in `deploy/argocd/` (decisions, bindings, policies), executed the way Argo
//! CD executes them: the object as the global `obj`, the script's returned table as the health.
//! Every case of each `health_test.yaml` (Argo CD's own test layout) must give its expected
//! status and message.

use mlua::{Lua, LuaSerdeExt, Table};
use serde::Deserialize;
use std::path::Path;

const CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/argocd/quicksight.selfupgrade.io/SelfUpgradeDecision"
);
const ACCOUNT_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/argocd/quicksight.selfupgrade.io/QuickSightAccount"
);
const POLICY_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/argocd/quicksight.selfupgrade.io/SelfUpgradePolicy"
);

#[derive(Deserialize)]
struct Cases {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    health_status: Health,
    input_path: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Health {
    status: String,
    message: String,
}

fn health_of(script: &str, object: &serde_json::Value) -> Health {
    let lua = Lua::new();
    let value = lua.to_value(object).expect("object converts to Lua");
    lua.globals().set("obj", value).expect("obj set");
    let table: Table = lua.load(script).eval().expect("the script runs");
    Health {
        status: table.get("status").expect("status"),
        message: table.get("message").expect("message"),
    }
}

/// Runs every case of the check in `dir`; returns the health statuses seen.
fn run_cases(dir: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(dir.join("health.lua")).expect("health.lua");
    let cases: Cases = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("health_test.yaml")).expect("health_test.yaml"),
    )
    .expect("cases parse");
    let mut seen = std::collections::BTreeSet::new();
    for case in cases.tests {
        let text = std::fs::read_to_string(dir.join(&case.input_path)).expect("test data");
        let object: serde_json::Value = serde_yaml::from_str(&text).expect("object parses");
        assert_eq!(
            health_of(&script, &object),
            case.health_status,
            "{}",
            case.input_path
        );
        seen.insert(case.health_status.status);
    }
    seen.into_iter().collect()
}

#[test]
fn every_argo_cd_test_case_gets_its_expected_health() {
    // Decisions can also be paused; bindings are not (their pause is their decisions').
    let every = [
        (
            CHECK,
            &["Degraded", "Healthy", "Progressing", "Suspended"][..],
        ),
        (ACCOUNT_CHECK, &["Degraded", "Healthy", "Progressing"][..]),
        (POLICY_CHECK, &["Degraded", "Healthy", "Progressing"][..]),
    ];
    for (dir, healths) in every {
        assert_eq!(run_cases(Path::new(dir)), healths, "{dir}");
    }
}

#[test]
fn a_binding_whose_approval_mode_drifted_is_degraded() {
    // The status as the operator writes it (src/account_status.rs), not hand-written.
    use selfupgrade_operator::account_status::{Findings, account_status};
    use selfupgrade_operator::api::{
        ApprovalMode, ApprovalModeStatus, Enforcement, QuickSightAccount, QuickSightAccountSpec,
        SelfUpgradeSettings,
    };
    let mut binding = QuickSightAccount::new(
        "analytics",
        QuickSightAccountSpec {
            account_id: "111122223333".into(),
            namespaces: vec!["team-a".into()],
            self_upgrade: Some(SelfUpgradeSettings {
                mode: ApprovalMode::AdminApproval,
                enforcement: Enforcement::Observe,
            }),
            ..Default::default()
        },
    );
    binding.metadata.generation = Some(1);
    let script =
        std::fs::read_to_string(Path::new(ACCOUNT_CHECK).join("health.lua")).expect("script");
    let findings = Findings {
        bound_decisions: 2,
        usable: Ok(Some(())),
    };
    for (observed, expected) in [
        (ApprovalMode::AdminApproval, "Healthy"),
        (ApprovalMode::AutoApproval, "Degraded"),
    ] {
        let modes = vec![ApprovalModeStatus {
            quicksight_namespace: "default".into(),
            observed_mode: Some(observed),
            ..Default::default()
        }];
        let now = k8s_openapi::jiff::Timestamp::now();
        binding.status = Some(account_status(&binding, &findings, modes, now));
        let object = serde_json::to_value(&binding).expect("json");
        assert_eq!(health_of(&script, &object).status, expected, "{observed}");
    }
}

#[test]
fn the_operators_own_status_is_judged_like_the_test_data() {
    // A status as the operator writes it (src/status.rs), not hand-written.
    use selfupgrade_operator::api::{Action, SelfUpgradeDecision, SelfUpgradeDecisionSpec};
    use selfupgrade_operator::decide::{Stall, Verdict};
    let mut decision = SelfUpgradeDecision::new(
        "d",
        SelfUpgradeDecisionSpec {
            aws_account_id: "111122223333".into(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: "r".into(),
            action: Action::Approve,
            region: None,
            retry: None,
        },
    );
    decision.metadata.generation = Some(1);
    let script = std::fs::read_to_string(Path::new(CHECK).join("health.lua")).expect("script");
    for (verdict, expected) in [
        (
            Verdict::Satisfied {
                applied_by_operator: true,
            },
            "Healthy",
        ),
        (Verdict::AwaitingResult, "Progressing"),
        (
            Verdict::Stalled(Stall::NotAuthorized("no binding".into())),
            "Degraded",
        ),
        (
            Verdict::Paused("the decision is paused".into()),
            "Suspended",
        ),
        (
            Verdict::DryRun {
                action: Action::Approve,
                request_status: selfupgrade_operator::quicksight::RequestStatus::Pending,
            },
            "Suspended",
        ),
    ] {
        let mut status = selfupgrade_operator::status::carry_over(None, 1);
        selfupgrade_operator::status::set_conditions(
            &mut status,
            &verdict,
            Action::Approve,
            1,
            k8s_openapi::jiff::Timestamp::now(),
        );
        decision.status = Some(status);
        let object = serde_json::to_value(&decision).expect("json");
        assert_eq!(health_of(&script, &object).status, expected, "{verdict:?}");
    }
}

#[test]
fn the_operators_own_policy_status_is_judged_like_the_test_data() {
    // Statuses as the operator writes them (src/policy.rs), not hand-written.
    use selfupgrade_operator::api::SelfUpgradePolicy;
    use selfupgrade_operator::policy::{Health, with_conditions};
    let example = include_str!("../examples/policies/reader-pro-enforced.yaml");
    let mut policy: SelfUpgradePolicy = serde_yaml::from_str(example).expect("example");
    policy.metadata.generation = Some(1);
    let script =
        std::fs::read_to_string(Path::new(POLICY_CHECK).join("health.lua")).expect("script");
    for (health, reason, expected) in [
        (Health::Ready, "Enforced", "Healthy"),
        (Health::Retrying, "BrakeHolding", "Progressing"),
        (Health::Stalled, "InvalidSpec", "Degraded"),
    ] {
        let blank = selfupgrade_operator::api::SelfUpgradePolicyStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        policy.status = Some(with_conditions(blank, health, reason, "m".into()));
        let object = serde_json::to_value(&policy).expect("json");
        assert_eq!(health_of(&script, &object).status, expected, "{reason}");
    }
}
