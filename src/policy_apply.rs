//! The Kubernetes writes of an `Enforce` policy: its finalizer, the decisions it creates, the
//! created decisions that stand down, and what its deletion does to them (removes those that
//! have not acted, keeps those that have). Every removal is conditional on the version it was
//! judged at, so that it loses to the write-ahead intent of a reconcile about to call
//! QuickSight: a decision is never removed after it may have acted.

use crate::api::{
    POLICY_FINALIZER, PolicyMatch, SelfUpgradeDecision, SelfUpgradePolicy, SelfUpgradePolicyStatus,
};
use crate::context::{Context, FIELD_MANAGER};
use crate::policy_plan::{Generated, StandDown, StandDownReason, creator_uid, decision_for_match};
use crate::quicksight::RequestDetail;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

/// What creating the planned decisions came to.
#[derive(Debug, Default)]
pub struct Created {
    /// The decisions created now (name, rule).
    pub names: Vec<(String, String)>,
    /// Why a creation failed, the first of them; the rest are tried at the next evaluation.
    pub failed: Option<String>,
}

/// Creates a decision for each of `matches` (their requests in `requests`), after making sure
/// the policy holds its finalizer. A name already taken (an earlier run, another replica, a
/// second policy) is skipped: its holder decides the request.
pub async fn create(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    matches: &[PolicyMatch],
    requests: &[RequestDetail],
) -> Created {
    let mut created = Created::default();
    if matches.is_empty() {
        return created;
    }
    if let Err(error) = hold_finalizer(ctx, policy).await {
        created.failed = Some(format!(
            "could not add the finalizer {POLICY_FINALIZER}: {error}"
        ));
        return created;
    }
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<SelfUpgradeDecision> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    for matched in matches {
        let Some(request) = requests
            .iter()
            .find(|r| r.upgrade_request_id == matched.upgrade_request_id)
        else {
            continue;
        };
        let decision = decision_for_match(policy, matched, request);
        match api.create(&params, &decision).await {
            Ok(_) => created
                .names
                .push((decision.name_any(), matched.rule.clone())),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                warn!(%error, decision = %decision.name_any(), %namespace, "could not create a SelfUpgradeDecision");
                created.failed.get_or_insert_with(|| {
                    format!("could not create decision {}: {error}", decision.name_any())
                });
            }
        }
    }
    created
}

/// Adds the policy's finalizer unless it holds it, to the version read now: the watched copy
/// may be older than the policy's last status write, and a merge patch replaces the whole
/// list, so it is conditional on that version.
async fn hold_finalizer(ctx: &Context, policy: &SelfUpgradePolicy) -> Result<(), kube::Error> {
    if holds_finalizer(policy) {
        return Ok(());
    }
    let api = policies(ctx, policy);
    let current = api.get(&policy.name_any()).await?;
    if holds_finalizer(&current) {
        return Ok(());
    }
    let mut finalizers = current.finalizers().to_vec();
    finalizers.push(POLICY_FINALIZER.to_string());
    set_finalizers(&api, &current, finalizers).await
}

fn holds_finalizer(policy: &SelfUpgradePolicy) -> bool {
    policy.finalizers().iter().any(|f| f == POLICY_FINALIZER)
}

fn policies(ctx: &Context, policy: &SelfUpgradePolicy) -> Api<SelfUpgradePolicy> {
    Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default())
}

/// Sets the policy's finalizers, if it is still at the version `policy` was read at (a merge
/// patch replaces the whole list: someone else's finalizer added meanwhile must not go).
async fn set_finalizers(
    api: &Api<SelfUpgradePolicy>,
    policy: &SelfUpgradePolicy,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": policy.resource_version(),
    }});
    let params = PatchParams::default();
    api.patch(&policy.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Removes the created decisions that stand down, each only at the version it was judged at;
/// an Event on the policy says which and why.
pub async fn stand_down(ctx: &Context, policy: &SelfUpgradePolicy, decisions: &[StandDown]) {
    for decision in decisions {
        if !remove_unacted(ctx, policy, &decision.name, &decision.resource_version).await {
            continue;
        }
        let why = match &decision.reason {
            StandDownReason::Superseded { by } => format!("{by} decides its request"),
            StandDownReason::DryRun => "the policy is in DryRun".to_string(),
        };
        let note = format!("removed decision {} before it acted: {why}", decision.name);
        info!(policy = %policy.name_any(), decision = %decision.name, %why, "a created decision stood down");
        publish(ctx, policy, EventType::Normal, "DecisionSuperseded", note).await;
    }
}

/// Deletes a decision the policy created if it is still at `version` (so it has not written
/// an intent since it was judged). Whether it is gone.
async fn remove_unacted(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    name: &str,
    version: &Option<String>,
) -> bool {
    let api: Api<SelfUpgradeDecision> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        // 409: it changed since it was judged (it may have written its intent); judged again
        // at the next evaluation.
        Err(error) => {
            info!(%error, decision = name, "did not remove a created decision");
            false
        }
    }
}

/// A deleted policy's last step: its decisions that have not acted are removed, those that
/// have are released (their owner reference to it dropped, so that no garbage collection
/// removes the record of what was done), then the finalizer goes. `pending` says whether a
/// decision the policy created is not in the store yet; then the finalizer stays for the next
/// evaluation.
pub async fn finalize(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    generated: &[(Generated, SelfUpgradeDecision)],
    pending: bool,
) {
    let mut done = !pending;
    for (judged, decision) in generated {
        done &= match judged.acted {
            false => remove_unacted(ctx, policy, &judged.name, &judged.resource_version).await,
            true => release(ctx, policy, decision).await,
        };
    }
    if !done || !holds_finalizer(policy) {
        return;
    }
    let others: Vec<String> = policy
        .finalizers()
        .iter()
        .filter(|f| *f != POLICY_FINALIZER)
        .cloned()
        .collect();
    if let Err(error) = set_finalizers(&policies(ctx, policy), policy, others).await {
        info!(%error, policy = %policy.name_any(), "could not remove the policy's finalizer yet");
    }
}

/// Drops the decision's owner reference to `policy`, at the version it was judged at.
async fn release(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    decision: &SelfUpgradeDecision,
) -> bool {
    let uid = policy.uid().unwrap_or_default();
    if creator_uid(decision) != Some(uid.as_str()) {
        return true;
    }
    let others: Vec<_> = decision
        .owner_references()
        .iter()
        .filter(|owner| owner.uid != uid)
        .collect();
    // null, not [], when none is left: a merge patch removes the field.
    let owners = match others.is_empty() {
        true => serde_json::Value::Null,
        false => serde_json::json!(others),
    };
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": owners,
        "resourceVersion": decision.resource_version(),
    }});
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        ctx.client.clone(),
        &decision.namespace().unwrap_or_default(),
    );
    match api
        .patch(
            &decision.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        Err(error) => {
            info!(%error, decision = %decision.name_any(), "could not release a created decision yet");
            false
        }
    }
}

/// Events on the policy for what this evaluation did: the decisions it created, and the
/// brake starting to hold (once, when it was not holding at the last evaluation).
pub async fn announce(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    created: &Created,
    status: &SelfUpgradePolicyStatus,
) {
    if !created.names.is_empty() {
        let names: Vec<&str> = created
            .names
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        // The publisher cuts the note to the API server's limit.
        let note = format!("created {} decision(s): {}", names.len(), names.join(", "));
        publish(ctx, policy, EventType::Normal, "DecisionsCreated", note).await;
    }
    let was_holding = policy
        .status
        .as_ref()
        .and_then(|s| s.held_back)
        .is_some_and(|held| held > 0);
    if status.held_back.unwrap_or(0) > 0 && !was_holding {
        let note = status
            .conditions
            .first()
            .map(|ready| ready.message.clone())
            .unwrap_or_default();
        publish(ctx, policy, EventType::Warning, "BrakeHolding", note).await;
    }
}

async fn publish(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Enforce".to_string(),
        secondary: None,
    };
    ctx.events.publish(&event, &policy.object_ref(&())).await;
}
