//! The status of each `QuickSightAccount`: how many decisions it admits and whether its
//! credentials resolve, so that a cluster admin sees a wrong role ARN or trust policy on the
//! binding itself rather than on every decision. Refreshed on an interval while leading;
//! written only when it changed.

use crate::api::{
    ApprovalModeStatus, QuickSightAccount, QuickSightAccountStatus, SelfUpgradeDecision,
};
use crate::approval_modes::not_ready_because;
use crate::context::{Context, FIELD_MANAGER};
use crate::quicksight::Credentials;
use crate::tenancy::{self, Grant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tracing::warn;

/// What was found of one binding, before it becomes a status.
#[derive(Clone, Debug, PartialEq)]
pub struct Findings {
    pub bound_decisions: i64,
    /// `Err`: why the binding cannot be used (an invalid selector, credentials that do not
    /// resolve); `Ok(None)`: not checked (no region to check in).
    pub usable: Result<Option<()>, (String, String)>,
}

/// The status for `binding` given `findings` and the approval modes found of its namespaces;
/// `lastTransitionTime` is kept while Ready keeps its value, so that an unchanged binding
/// yields an equal status (and no write).
pub fn account_status(
    binding: &QuickSightAccount,
    findings: &Findings,
    approval_modes: Vec<ApprovalModeStatus>,
    now: Timestamp,
) -> QuickSightAccountStatus {
    let generation = binding.meta().generation;
    let modes_not_ready = binding
        .spec
        .self_upgrade
        .as_ref()
        .and_then(|settings| not_ready_because(settings, &approval_modes));
    let (status, reason, message) = match (&findings.usable, modes_not_ready) {
        (Ok(_), Some((reason, message))) => ("False", reason.to_string(), message),
        (usable, _) => ready_for_credentials(binding, usable),
    };
    let previous = binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let last_transition_time = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    QuickSightAccountStatus {
        observed_generation: generation,
        bound_decisions: Some(findings.bound_decisions),
        approval_modes,
        conditions: vec![Condition {
            type_: "Ready".to_string(),
            status: status.to_string(),
            reason,
            message,
            observed_generation: generation,
            last_transition_time,
        }],
    }
}

/// Ready as the credentials make it: (status, reason, message).
fn ready_for_credentials(
    binding: &QuickSightAccount,
    usable: &Result<Option<()>, (String, String)>,
) -> (&'static str, String, String) {
    match usable {
        Ok(Some(())) => (
            "True",
            "CredentialsResolved".to_string(),
            match &binding.spec.role_arn {
                Some(role) => format!("the operator can assume {role}"),
                None => "calls use the operator's own credentials".to_string(),
            },
        ),
        Ok(None) => (
            "Unknown",
            "NoRegion".to_string(),
            "credentials were not checked: neither the binding nor the operator names a region"
                .to_string(),
        ),
        Err((reason, message)) => ("False", reason.clone(), message.clone()),
    }
}

/// The status of a binding the operator cannot read (see [`crate::tenancy::Unreadable`]).
pub fn unreadable_status(
    metadata: &ObjectMeta,
    error: &str,
    now: Timestamp,
) -> QuickSightAccountStatus {
    QuickSightAccountStatus {
        observed_generation: metadata.generation,
        bound_decisions: Some(0),
        approval_modes: Vec::new(),
        conditions: vec![Condition {
            type_: "Ready".to_string(),
            status: "False".to_string(),
            reason: "InvalidSpec".to_string(),
            message: format!(
                "the operator cannot read this QuickSightAccount ({error}); it binds no \
                 decision until it is fixed"
            ),
            observed_generation: metadata.generation,
            last_transition_time: Time(now),
        }],
    }
}

/// Refreshes every binding's status each `ctx.timing.account_status_interval`, until dropped.
pub async fn maintain(ctx: Arc<Context>, decisions: Store<DeserializeGuard<SelfUpgradeDecision>>) {
    let mut tick = tokio::time::interval(ctx.timing.account_status_interval);
    // A new approval-mode reading is written at once, not at the next interval.
    let mut modes_read = ctx.approval_modes.statuses_changed();
    // An unreadable binding's own status cannot be read back to compare with, so what was
    // written is remembered (by UID and generation) to write it once, not every interval.
    let mut reported_unreadable: HashMap<(String, Option<i64>), String> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = modes_read.changed() => {}
        }
        let bound = bound_decisions(&ctx, &decisions);
        let mut still_unreadable = HashSet::new();
        for binding in ctx.bindings.accounts() {
            match &binding.0 {
                Ok(binding) => {
                    let count = bound.get(&binding.name_any()).copied().unwrap_or(0);
                    let findings = find(&ctx, binding, count).await;
                    let modes = ctx.approval_modes.of_binding(&binding.name_any());
                    let status = account_status(binding, &findings, modes, Timestamp::now());
                    if binding.status.as_ref() != Some(&status) {
                        write(&ctx.client, &binding.name_any(), &status).await;
                    }
                }
                Err(invalid) => {
                    let key = (
                        invalid.metadata.uid.clone().unwrap_or_default(),
                        invalid.metadata.generation,
                    );
                    still_unreadable.insert(key.clone());
                    if reported_unreadable.get(&key) == Some(&invalid.error) {
                        continue;
                    }
                    let name = invalid.metadata.name.clone().unwrap_or_default();
                    warn!(binding = %name, error = %invalid.error, "cannot read a QuickSightAccount");
                    let status =
                        unreadable_status(&invalid.metadata, &invalid.error, Timestamp::now());
                    if write(&ctx.client, &name, &status).await {
                        reported_unreadable.insert(key, invalid.error.clone());
                    }
                }
            }
        }
        reported_unreadable.retain(|key, _| still_unreadable.contains(key));
    }
}

/// How many decisions each binding admits (by binding name): one authorization per decision
/// per pass, whatever the number of bindings.
fn bound_decisions(
    ctx: &Context,
    decisions: &Store<DeserializeGuard<SelfUpgradeDecision>>,
) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for decision in decisions.state() {
        let Ok(decision) = &decision.0 else { continue };
        if let Ok(Grant {
            binding: Some(name),
            ..
        }) = ctx
            .bindings
            .authorize(&decision.namespace().unwrap_or_default(), &decision.spec)
        {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

async fn find(ctx: &Context, binding: &QuickSightAccount, bound_decisions: i64) -> Findings {
    let usable = match tenancy::selector_of(binding) {
        Err(message) => Err(("InvalidNamespaceSelector".to_string(), message)),
        Ok(_) => check_credentials(ctx, binding).await,
    };
    Findings {
        bound_decisions,
        usable,
    }
}

async fn check_credentials(
    ctx: &Context,
    binding: &QuickSightAccount,
) -> Result<Option<()>, (String, String)> {
    let Some(region) = binding.spec.region.as_ref().or(ctx.default_region.as_ref()) else {
        return Ok(None);
    };
    let credentials = tenancy::credentials_of(binding);
    let described = match &credentials {
        Credentials::Operator => "the operator's own credentials".to_string(),
        Credentials::AssumeRole(role) => format!("role {}", role.role_arn),
    };
    ctx.directory
        .check_credentials(&credentials, region)
        .await
        .map(Some)
        .map_err(|error| {
            (
                "CredentialsUnresolvable".to_string(),
                format!("{described} could not be used: {error}"),
            )
        })
}

/// Whether the status was written.
async fn write(client: &kube::Client, name: &str, status: &QuickSightAccountStatus) -> bool {
    let api: Api<QuickSightAccount> = Api::all(client.clone());
    let patch = serde_json::json!({
        "apiVersion": QuickSightAccount::api_version(&()),
        "kind": QuickSightAccount::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // The next interval writes it again; a failed write is only logged.
    match api.patch_status(name, &params, &Patch::Apply(&patch)).await {
        Ok(_) => true,
        Err(error) => {
            warn!(%error, binding = %name, "could not write the QuickSightAccount status");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::QuickSightAccountSpec;

    fn binding() -> QuickSightAccount {
        let mut binding = QuickSightAccount::new(
            "analytics",
            QuickSightAccountSpec {
                account_id: "111122223333".into(),
                role_arn: Some("arn:aws:iam::111122223333:role/approver".into()),
                namespaces: vec!["team-a".into()],
                ..Default::default()
            },
        );
        binding.metadata.generation = Some(3);
        binding
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    #[test]
    fn resolvable_credentials_make_the_binding_ready() {
        let findings = Findings {
            bound_decisions: 4,
            usable: Ok(Some(())),
        };
        let status = account_status(&binding(), &findings, vec![], at(1_800_000_000));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.bound_decisions, Some(4));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "CredentialsResolved")
        );
        assert!(ready.message.contains("role/approver"), "{}", ready.message);
    }

    #[test]
    fn an_unchanged_binding_yields_an_equal_status() {
        let findings = Findings {
            bound_decisions: 1,
            usable: Err(("CredentialsUnresolvable".into(), "AccessDenied".into())),
        };
        let mut binding = binding();
        binding.status = Some(account_status(
            &binding,
            &findings,
            vec![],
            at(1_800_000_000),
        ));
        let again = account_status(&binding, &findings, vec![], at(1_800_000_600));
        assert_eq!(binding.status.as_ref(), Some(&again));
        assert_eq!(again.conditions[0].status, "False");
    }

    #[test]
    fn a_changed_outcome_moves_the_transition_time() {
        let failing = Findings {
            bound_decisions: 1,
            usable: Err(("CredentialsUnresolvable".into(), "AccessDenied".into())),
        };
        let mut binding = binding();
        binding.status = Some(account_status(
            &binding,
            &failing,
            vec![],
            at(1_800_000_000),
        ));
        let fixed = Findings {
            bound_decisions: 1,
            usable: Ok(Some(())),
        };
        let status = account_status(&binding, &fixed, vec![], at(1_800_000_600));
        assert_eq!(
            status.conditions[0].last_transition_time,
            Time(at(1_800_000_600))
        );
    }
}
