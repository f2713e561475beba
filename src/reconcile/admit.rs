//! Stage 1, admit: what must hold before QuickSight is touched — a readable spec, a binding
//! that admits the decision, a valid retry policy, a region, and no older decision for the same
//! request. Reads only in-memory state (the bindings' and claims' stores).

use crate::api::{ApprovalMode, SelfUpgradeDecision};
use crate::context::Context;
use crate::decide::Stall;
use crate::quicksight::Scope;
use crate::retry::RetrySettings;
use kube::ResourceExt;

/// A decision the operator may act on: where to call, with which credentials, under which
/// retry policy, and where its request is mirrored.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub scope: Scope,
    pub retry: RetrySettings,
    /// `namespace/name` of the request's `SelfUpgradeRequest` mirror, when it is mirrored.
    pub mirrored_as: Option<String>,
    /// The approval mode of the account's QuickSight namespace, when a binding observes it.
    pub approval_mode: Option<ApprovalMode>,
    /// What pauses the decision (itself, or its account's binding), if anything does.
    pub paused: Option<String>,
}

/// Admits `decision`, or says why it cannot progress.
pub fn admit(decision: &SelfUpgradeDecision, ctx: &Context) -> Result<Admitted, Stall> {
    let spec = &decision.spec;
    if let Some(problem) = crate::validate::spec_problem(spec) {
        return Err(Stall::InvalidSpec(problem));
    }
    let grant = ctx
        .bindings
        .authorize(&decision.namespace().unwrap_or_default(), spec)
        .map_err(|refusal| {
            // The status says what the decision's namespace may know; the log, which bindings.
            tracing::info!(detail = %refusal.detail, "not authorized");
            Stall::NotAuthorized(refusal.message)
        })?;
    let retry = ctx
        .timing
        .retry
        .with_policy(spec.retry.as_ref())
        .map_err(Stall::InvalidSpec)?;
    let region = grant.region.as_deref().ok_or_else(|| {
        Stall::InvalidSpec(
            "spec.region is not set, the account's QuickSightAccount names no region and the \
                 operator has no default region (--region / AWS_REGION)"
                .to_string(),
        )
    })?;
    // Each claimant is judged as it is written: its namespace and the region it names.
    let admitted =
        |namespace: &str, region: Option<&str>| ctx.bindings.admits(namespace, spec, region);
    if let Some((namespace, name)) = ctx.claims.winner_over(decision, admitted) {
        let own = decision.namespace().unwrap_or_default();
        if namespace != own {
            tracing::info!(winner = %format!("{namespace}/{name}"), "conflict with a decision in another namespace");
        }
        let winner = crate::conflicts::shown_to(&own, &namespace, &name);
        return Err(Stall::Conflict {
            winner,
            winner_object: (namespace, name),
        });
    }
    let scope = Scope {
        account_id: spec.aws_account_id.clone(),
        region: region.to_string(),
        namespace: spec.quicksight_namespace.clone(),
        credentials: grant.credentials,
    };
    let paused = match (
        crate::pause::is_paused(decision.annotations()),
        grant
            .binding
            .as_deref()
            .is_some_and(|b| ctx.bindings.is_paused(b)),
    ) {
        (true, _) => Some("the decision is paused (quicksight.selfupgrade.io/paused)".to_string()),
        (false, true) => Some("its account's QuickSightAccount is paused".to_string()),
        (false, false) => None,
    };
    Ok(Admitted {
        paused,
        mirrored_as: mirrored_as(ctx, &scope, &spec.upgrade_request_id),
        approval_mode: ctx
            .approval_modes
            .observed(&scope.account_id, &scope.namespace),
        scope,
        retry,
    })
}

fn mirrored_as(ctx: &Context, scope: &Scope, request_id: &str) -> Option<String> {
    let mirror = ctx.mirror.as_ref()?;
    crate::mirror::covers(ctx, mirror, scope).then(|| {
        let name = crate::mirror::object_name(&scope.account_id, &scope.namespace, request_id);
        format!("{}/{name}", mirror.namespace)
    })
}
