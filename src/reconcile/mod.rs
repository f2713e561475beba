//! One reconcile, as five stages that each hand the next a typed value:
//!
//! 1. [`admit`] — binding, tenant guard, scope, retry settings → [`Admitted`] (or a stall);
//! 2. [`observe`] — the request through the listing cache → [`Observed`];
//! 3. [`plan`] — pure: the status so far and the one [`Step`] to take → [`Planned`];
//! 4. [`act`] — the only I/O in between: the intent write and the one `UpdateSelfUpgrade` →
//!    [`Acted`];
//! 5. [`report`] — pure: the new status, the Event, the requeue and the metric label.
//!
//! This module wires them to the controller and writes the status (the Kubernetes edge).

mod act;
mod admit;
mod observe;
mod plan;
mod report;

pub use act::{Acted, Outcome, act};
pub use admit::{Admitted, admit};
pub use observe::observe;
pub use plan::{Asked, Call, Observed, Planned, Step, plan};
pub use report::{Report, Requeue, report};

use crate::api::{Action as DecisionAction, SelfUpgradeDecision, SelfUpgradeDecisionStatus};
use crate::context::Context;
use crate::decide::{CallWindow, Stall, Verdict};
use crate::metrics::ReconcileTimer;
use crate::status;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use tracing::{Instrument, info, warn};

/// Failures the reconciler cannot report in the object's status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of {object}: {source}")]
    WriteStatus {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("object {0} has no namespace; SelfUpgradeDecision is namespaced")]
    MissingNamespace(String),
}

impl Error {
    /// A status write refused with 409: the object changed since this reconcile read it.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::WriteStatus {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409
        )
    }
}

/// The controller's entry point: objects that do not even deserialize (a CRD installed without
/// validation, `action: MAYBE`) get `Stalled` with the reason instead of stopping the watch.
pub async fn reconcile_guarded(
    object: Arc<DeserializeGuard<SelfUpgradeDecision>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &object.0 {
        Ok(decision) => reconcile(Arc::new(decision.clone()), ctx).await,
        Err(invalid) => {
            let mut timer = ReconcileTimer::start(ctx.metrics.clone());
            report_unreadable(invalid, &ctx).await?;
            timer.result("stalled");
            Ok(Action::await_change())
        }
    }
}

/// Requeue after a failed reconcile (a status write the API server refused), with the same
/// per-object backoff as QuickSight errors.
pub fn error_policy_guarded(
    object: Arc<DeserializeGuard<SelfUpgradeDecision>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    // The failed reconcile's duration was recorded by its timer, under `error`.
    let delay = ctx.next_backoff(&object.meta().uid.clone().unwrap_or_default());
    if error.is_conflict() {
        // Another writer (or this operator's own write, not yet in the watch cache) stored the
        // status after this reconcile read it: expected now and then, and the retry reads it.
        info!(%error, ?delay, "the status changed since it was read; reconciling again");
    } else {
        warn!(%error, ?delay, "reconcile failed");
    }
    Action::requeue(delay)
}

async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<(), Error> {
    let generation = invalid.metadata.generation.unwrap_or(0);
    warn!(name = ?invalid.metadata.name, error = %invalid.error, "unreadable SelfUpgradeDecision");
    let mut status = status::carry_over(None, generation);
    let stall = Stall::InvalidSpec(format!(
        "the object cannot be read as a SelfUpgradeDecision: {}",
        invalid.error
    ));
    // The action is unknown; the message above does not mention it.
    status::set_conditions(
        &mut status,
        &Verdict::Stalled(stall),
        DecisionAction::Deny,
        generation,
        Timestamp::now(),
    );
    write_status(&invalid.metadata, &ctx.client, &status, None).await?;
    Ok(())
}

/// Reconciles one decision. Every outcome QuickSight can produce is written to the status;
/// only a failed status write is returned as an error.
pub async fn reconcile(
    decision: Arc<SelfUpgradeDecision>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = decision.namespace().unwrap_or_default(),
        name = decision.name_any(),
        account = decision.spec.aws_account_id,
        request = decision.spec.upgrade_request_id,
        action = %decision.spec.action,
        generation = decision.metadata.generation.unwrap_or(0),
    );
    let mut timer = ReconcileTimer::start(ctx.metrics.clone());
    reconcile_decision(decision, ctx, &mut timer)
        .instrument(span)
        .await
}

async fn reconcile_decision(
    decision: Arc<SelfUpgradeDecision>,
    ctx: Arc<Context>,
    timer: &mut ReconcileTimer,
) -> Result<Action, Error> {
    // The one clock read of the reconcile (the intent, a promise about its call, is dated when
    // written: see `act`).
    let now = Timestamp::now();
    let generation = decision.metadata.generation.unwrap_or(0);
    let asked = Asked {
        action: decision.spec.action,
        generation,
        previous: decision.status.as_ref(),
    };
    let mut status = status::carry_over(asked.previous, generation);
    let acted = match admit(&decision, &ctx) {
        Err(stall) => Acted {
            status,
            outcome: Outcome::NotSent(Verdict::Stalled(stall)),
            written_at: decision.metadata.resource_version.clone(),
        },
        Ok(Admitted {
            paused: Some(why), ..
        }) => Acted {
            status,
            outcome: Outcome::NotSent(Verdict::Paused(why)),
            written_at: decision.metadata.resource_version.clone(),
        },
        Ok(admitted) => {
            status.mirrored_as = admitted.mirrored_as.clone();
            status.account_approval_mode = admitted.approval_mode;
            let id = &decision.spec.upgrade_request_id;
            let observed = observe(&ctx, &admitted, &asked, id).await;
            let window = CallWindow::new(ctx.timing.call_timeout);
            let planned = plan(&asked, &admitted, observed, status, window, now);
            act(&decision, &ctx, &admitted, &asked, planned).await?
        }
    };
    let report = report(&asked, acted.status, acted.outcome, &ctx.timing, now);
    if asked.previous != Some(&report.status) {
        // Conditional, as the intent write is: on the version this reconcile read, or the one
        // its intent write produced. A status another writer stored meanwhile (a second
        // replica's fresh intent) is never overwritten; the 409 makes the retry read it.
        let if_version = acted.written_at.as_deref();
        write_status(&decision.metadata, &ctx.client, &report.status, if_version).await?;
        if let Some(event) = &report.event {
            ctx.events.publish(event, &decision.object_ref(&())).await;
            if let Verdict::Stalled(Stall::Conflict { winner_object, .. }) = &report.verdict {
                tell_the_winner(&ctx.events, &decision, winner_object).await;
            }
        }
    }
    announce(&ctx, &decision, &report.verdict);
    timer.result(report.label);
    Ok(requeue(&ctx, &decision.uid().unwrap_or_default(), &report))
}

/// Offers the notification of exhausted retries (at every reconcile that finds them: the
/// notifier sends it once per generation).
fn announce(ctx: &Context, decision: &SelfUpgradeDecision, verdict: &Verdict) {
    let (
        Some(notifier),
        Verdict::Stalled(Stall::RetriesExhausted {
            attempts,
            request_status,
            reason,
        }),
    ) = (&ctx.notifier, verdict)
    else {
        return;
    };
    let exhausted = crate::notify::Exhausted {
        attempts: *attempts,
        request_status: request_status.clone(),
        reason: reason.as_deref(),
    };
    notifier.offer(crate::notify::retries_exhausted(decision, &exhausted));
}

/// The controller's action for a report, keeping the object's backoff count.
fn requeue(ctx: &Context, uid: &str, report: &Report) -> Action {
    match report.requeue {
        Requeue::Backoff => {
            let delay = ctx.next_backoff(uid);
            if let Verdict::Retrying(error) = &report.verdict {
                warn!(%error, ?delay, "retryable QuickSight failure");
            }
            Action::requeue(delay)
        }
        Requeue::After(delay) => {
            ctx.reset_backoff(uid);
            Action::requeue(delay)
        }
        Requeue::OnChange => Action::await_change(),
    }
}

/// A Warning Event on the decision that won a request, once per loser that starts to wait
/// for it: its owners learn that someone else also decides the request, and where only as far
/// as their namespace may know (the loser's name in the same namespace, not its namespace
/// otherwise).
async fn tell_the_winner(
    events: &crate::events::EventPublisher,
    loser: &SelfUpgradeDecision,
    (namespace, name): &(String, String),
) {
    let loser_namespace = loser.namespace().unwrap_or_default();
    let who = crate::conflicts::shown_to(namespace, &loser_namespace, &loser.name_any());
    let event = Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "ConflictingDecision".to_string(),
        note: Some(format!(
            "{who} also decides this request; it makes no call while this one exists"
        )),
        action: "Observe".to_string(),
        secondary: None,
    };
    let winner = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(SelfUpgradeDecision::api_version(&()).to_string()),
        kind: Some(SelfUpgradeDecision::kind(&()).to_string()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        ..Default::default()
    };
    events.publish(&event, &winner).await;
}

/// Server-side applies the status; with `if_version`, only if the object is still at that
/// resourceVersion. Returns the resourceVersion it stored (`None` if the answer does not say):
/// of the object the API server answers with only that is decoded, as nothing else reads it and
/// the watch brings the new version into the store anyway.
async fn write_status(
    metadata: &kube::core::ObjectMeta,
    client: &kube::Client,
    status: &SelfUpgradeDecisionStatus,
    if_version: Option<&str>,
) -> Result<Option<String>, Error> {
    let name = metadata.name.clone().unwrap_or_default();
    let namespace = metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), &namespace);
    let mut patch = serde_json::json!({
        "apiVersion": SelfUpgradeDecision::api_version(&()),
        "kind": SelfUpgradeDecision::kind(&()),
        "status": status,
    });
    if let Some(version) = if_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    let write_error = |source| Error::WriteStatus {
        object: format!("{namespace}/{name}"),
        source,
    };
    let request = kube::core::Request::new(api.resource_url())
        .patch_subresource(
            "status",
            &name,
            &PatchParams::apply(crate::context::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .map_err(|e| write_error(kube::Error::BuildRequest(e)))?;
    let answer = client.request_text(request).await.map_err(write_error)?;
    Ok(stored_version(&answer))
}

/// The `metadata.resourceVersion` of an object's JSON.
fn stored_version(object_json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Stored {
        metadata: StoredMeta,
    }
    #[derive(serde::Deserialize)]
    struct StoredMeta {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    serde_json::from_str::<Stored>(object_json)
        .ok()
        .and_then(|stored| stored.metadata.resource_version)
}
