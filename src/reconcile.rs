//! One reconcile: observe the request in QuickSight, decide, act at most once, report.
//!
//! The two edges are [`RequestDirectory`] (QuickSight) and the status patch (Kubernetes); all
//! judgement lives in [`decide`] and [`crate::status`], which are pure.

use crate::api::{Action as DecisionAction, SelfUpgradeDecision, SelfUpgradeDecisionStatus};
use crate::bindings::Bindings;
use crate::decide::{
    CallWindow, Plan, Stall, Verdict, decide, in_flight_for, intent_for, unsettled_intent,
};
use crate::metrics::Metrics;
use crate::quicksight::{RequestDirectory, Scope};
use crate::retry::{RetrySettings, RetryStep, backoff_delay, full_jitter, retry_step};
use crate::status;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info, warn};

/// The field manager that owns `.status` (server-side apply).
pub const FIELD_MANAGER: &str = "selfupgrade-operator";

/// When to look at a decision again.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Re-check of a request whose action was sent but not yet reflected.
    pub awaiting_recheck: Duration,
    /// Re-check of a request that ended UPDATE_FAILED / VERIFY_FAILED after our call.
    pub failed_recheck: Duration,
    /// Re-check of a request id QuickSight does not list.
    pub not_found_recheck: Duration,
    /// Re-check of decisions that are stalled but may yet move (rejected, retries exhausted),
    /// to notice changes made elsewhere.
    pub resync: Duration,
    /// Re-check of decisions whose request is decided for good (APPROVED, DENIED): only to
    /// notice the rare change made outside the cluster.
    pub final_resync: Duration,
    /// First delay after a retryable error; doubles per consecutive failure ...
    pub backoff_base: Duration,
    /// ... up to this.
    pub backoff_cap: Duration,
    /// Retries of actions QuickSight reported as failed, unless `spec.retry` says otherwise.
    pub retry: RetrySettings,
    /// The longest a QuickSight call can take. An intent younger than this whose effect is not
    /// visible may belong to a call still in flight, so the action is not sent again yet.
    pub call_timeout: Duration,
    /// How often the `QuickSightAccount` statuses (bound decisions, credentials) are refreshed.
    pub account_status_interval: Duration,
    /// How long a change to a decision waits before its reconcile, to fold quick edits into one.
    pub debounce: Duration,
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub directory: RequestDirectory,
    /// Which namespaces may act on which accounts, with which credentials.
    pub bindings: Bindings,
    /// Publishes one Event per transition (see [`crate::events`]).
    events: crate::events::EventPublisher,
    /// Region for decisions without `spec.region`.
    pub default_region: Option<String>,
    pub timing: Timing,
    /// Consecutive retryable failures per object UID, for capped exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Which decisions name which request, fed by the controller's watch, to find two
    /// decisions for one request.
    pub claims: crate::conflicts::Claims,
    pub metrics: Arc<Metrics>,
    /// `--mirror-requests`: where the requests are mirrored.
    pub mirror: Option<crate::mirror::MirrorSettings>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        directory: RequestDirectory,
        bindings: Bindings,
        default_region: Option<String>,
        timing: Timing,
    ) -> Self {
        Self {
            events: crate::events::EventPublisher::new(client.clone(), FIELD_MANAGER),
            client,
            directory,
            bindings,
            default_region,
            timing,
            failures: Mutex::new(HashMap::new()),
            claims: Default::default(),
            metrics: Arc::default(),
            mirror: None,
        }
    }

    /// Mirrors the requests of the bound (and `settings.accounts`) accounts.
    pub fn with_mirror(self, settings: crate::mirror::MirrorSettings) -> Self {
        Self {
            mirror: Some(settings),
            ..self
        }
    }

    /// Exports into `metrics` (shared with the QuickSight port's [`crate::metrics::Measured`]).
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// Records one more consecutive failure for `uid` and returns the delay before retrying:
    /// "full jitter" (a random delay up to the capped exponential one), so that decisions
    /// throttled together do not retry together.
    fn next_backoff(&self, uid: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(uid.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let ceiling = backoff_delay(*count, self.timing.backoff_base, self.timing.backoff_cap);
        self.metrics.retry_queue_depth.set(failures.len() as i64);
        full_jitter(ceiling, rand::random::<f64>())
    }

    fn reset_backoff(&self, uid: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(uid);
        self.metrics.retry_queue_depth.set(failures.len() as i64);
    }

    /// Drops backoff state of objects that no longer exist.
    pub fn retain_backoff(&self, live_uids: &std::collections::HashSet<String>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|uid, _| live_uids.contains(uid));
        self.metrics.retry_queue_depth.set(failures.len() as i64);
    }
}

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
            report_unreadable(invalid, &ctx).await?;
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
    let delay = ctx.next_backoff(&object.meta().uid.clone().unwrap_or_default());
    ctx.metrics
        .observe_reconcile("error", std::time::Instant::now());
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
    reconcile_decision(decision, ctx).instrument(span).await
}

async fn reconcile_decision(
    decision: Arc<SelfUpgradeDecision>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let generation = decision.metadata.generation.unwrap_or(0);
    let action = decision.spec.action;
    let uid = decision.uid().unwrap_or_default();
    let mut status = status::carry_over(decision.status.as_ref(), generation);
    let mut written_at = decision.metadata.resource_version.clone();
    let verdict = match admit(&decision, &ctx) {
        Err(stall) => Verdict::Stalled(stall),
        Ok((scope, retry)) => {
            status.mirrored_as = ctx.mirror.as_ref().and_then(|mirror| {
                crate::mirror::covers(&ctx, mirror, &scope).then(|| {
                    let name = crate::mirror::object_name(
                        &scope.account_id,
                        &scope.namespace,
                        &decision.spec.upgrade_request_id,
                    );
                    format!("{}/{name}", mirror.namespace)
                })
            });
            let draft = Draft {
                status: &mut status,
                written_at: &mut written_at,
            };
            observe_and_act(&decision, &ctx, &scope, generation, retry, draft).await?
        }
    };
    status::set_conditions(&mut status, &verdict, action, generation, Timestamp::now());
    if decision.status.as_ref() != Some(&status) {
        // Conditional, as the intent write is: on the version this reconcile read, or the one
        // its intent write produced. A status another writer stored meanwhile (a second
        // replica's fresh intent) is never overwritten; the 409 makes the retry read it.
        write_status(
            &decision.metadata,
            &ctx.client,
            &status,
            written_at.as_deref(),
        )
        .await?;
        if let Some(event) =
            crate::events::transition_event(decision.status.as_ref(), &status, &verdict)
        {
            publish(&ctx.events, &event, &decision).await;
        }
    }

    ctx.metrics
        .observe_reconcile(result_label(&verdict), started);
    let requeue = match &verdict {
        Verdict::Retrying(error) => {
            let delay = ctx.next_backoff(&uid);
            warn!(%error, ?delay, "retryable QuickSight failure");
            return Ok(Action::requeue(delay));
        }
        Verdict::AwaitingResult => ctx.timing.awaiting_recheck,
        // Look again at the retry (or sooner, to notice changes made elsewhere).
        Verdict::ActionFailed { next_retry, .. } => next_retry
            .unwrap_or(ctx.timing.failed_recheck)
            .min(ctx.timing.failed_recheck),
        // The winner may be deleted: look again on the slower re-check cadence.
        Verdict::Stalled(Stall::RequestNotFound | Stall::Conflict { .. }) => {
            ctx.timing.not_found_recheck
        }
        Verdict::Stalled(Stall::InvalidSpec(_)) => return Ok(Action::await_change()),
        // QuickSight does not reopen a decided request; only a decision made elsewhere could
        // still change the picture.
        Verdict::Satisfied { .. } | Verdict::Stalled(Stall::AlreadyDecided { .. }) => {
            ctx.timing.final_resync
        }
        Verdict::Stalled(_) => ctx.timing.resync,
    };
    ctx.reset_backoff(&uid);
    Ok(Action::requeue(requeue))
}

/// The status a reconcile builds, and the resourceVersion its final write is conditional on:
/// the one read, until the intent write stores a newer one.
struct Draft<'a> {
    status: &'a mut SelfUpgradeDecisionStatus,
    written_at: &'a mut Option<String>,
}

/// Steps 2–4 of the path: observe, decide, act (at most one `UpdateSelfUpgrade`, preceded by
/// its write-ahead intent in the status).
async fn observe_and_act(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    scope: &Scope,
    generation: i64,
    retry: RetrySettings,
    draft: Draft<'_>,
) -> Result<Verdict, Error> {
    let status = &mut *draft.status;
    let request_id = &decision.spec.upgrade_request_id;
    let action = decision.spec.action;
    // An intent left by a crash or by another replica is judged against a listing fetched now:
    // a cached one may predate its call.
    let lookup = if intent_for(decision.status.as_ref(), action, generation).is_some() {
        ctx.directory.find_fresh(scope, request_id).await
    } else {
        ctx.directory.find(scope, request_id).await
    };
    let remote = match lookup {
        Ok(remote) => remote,
        Err(error) if error.is_retryable() => return Ok(Verdict::Retrying(error)),
        Err(error) => {
            return Ok(Verdict::Stalled(Stall::Rejected {
                error: error.code,
                message: error.message,
            }));
        }
    };
    status::record_remote(status, remote.as_ref());
    let plan = decide(
        decision.spec.action,
        generation,
        remote.as_ref(),
        decision.status.as_ref(),
    );
    status::settle_intent(status, decision.spec.action, generation, remote.as_ref());
    let plan = match plan {
        Plan::Report(failed @ Verdict::ActionFailed { .. }) => {
            retry_failed(decision.spec.action, failed, retry, status, remote.as_ref())
        }
        other => other,
    };
    let window = CallWindow::new(ctx.timing.call_timeout);
    if matches!(plan, Plan::Send(_))
        && let Some(wait) = unsettled_intent(
            decision.status.as_ref(),
            action,
            generation,
            remote.as_ref(),
        )
        .and_then(|intent| in_flight_for(intent, Timestamp::now(), window))
    {
        info!(
            ?wait,
            "an earlier call for this action may still be in flight; not sending yet"
        );
        return Ok(Verdict::AwaitingResult);
    }
    match (plan, remote) {
        (Plan::Report(verdict), _) => Ok(verdict),
        (Plan::Send(action), Some(remote)) => {
            let call = Call {
                action,
                window,
                retry,
            };
            let draft = Draft {
                status,
                written_at: draft.written_at,
            };
            send_once(decision, ctx, scope, call, &remote, draft).await
        }
        // `decide` sends only for a request it found; without one there is nothing to send to.
        (Plan::Send(_), None) => Ok(Verdict::Stalled(Stall::RequestNotFound)),
    }
}

/// The one call a reconcile may make: what to send, the window its intent announces, and the
/// retry policy that judges a failed outcome.
struct Call {
    action: DecisionAction,
    window: CallWindow,
    retry: RetrySettings,
}

/// Step 4, act: the write-ahead intent, then at most one `UpdateSelfUpgrade`, sent only within
/// the window the intent announces.
async fn send_once(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    scope: &Scope,
    call: Call,
    remote: &crate::quicksight::RequestDetail,
    draft: Draft<'_>,
) -> Result<Verdict, Error> {
    let Call {
        action,
        window,
        retry,
    } = call;
    let generation = decision.metadata.generation.unwrap_or(0);
    // The send window starts before the intent is written, so the write itself counts against
    // it: a call never leaves later than the intent says, however long the write or the pacer
    // takes.
    let send_by = tokio::time::Instant::now() + window.send_by;
    *draft.written_at = write_intent(decision, ctx, action, window, remote, draft.status).await?;
    let status = draft.status;

    let request_id = &decision.spec.upgrade_request_id;
    match ctx
        .directory
        .update(scope, request_id, action, send_by)
        .await
    {
        Ok(answer) => {
            info!(request_status = %answer.detail.request_status, "UpdateSelfUpgrade applied");
            status::count_attempt(status);
            status::record_applied(status, action, generation, answer.aws_request_id);
            status::record_remote(status, Some(&answer.detail));
            let verdict = verdict_after_call(action, generation, &answer.detail, status);
            Ok(judge_failed_outcome(
                action,
                verdict,
                retry,
                status,
                &answer.detail,
            ))
        }
        Err(error) if error.is_retryable() => {
            status::record_failed_call(status, action, generation, &error);
            Ok(Verdict::Retrying(error))
        }
        Err(error) => Ok(judge_refusal(decision, ctx, scope, action, error, status).await),
    }
}

/// Write-ahead: the intent is stored before the call, so a crash between the call and the
/// status write after it cannot lead to a second call (see `decide::seen_since`). Returns the
/// resourceVersion it stored.
async fn write_intent(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    action: DecisionAction,
    window: CallWindow,
    remote: &crate::quicksight::RequestDetail,
    status: &mut SelfUpgradeDecisionStatus,
) -> Result<Option<String>, Error> {
    let generation = decision.metadata.generation.unwrap_or(0);
    let announced = Timestamp::now();
    status::record_intent(status, action, generation, remote, announced, window);
    status::set_conditions(
        status,
        &Verdict::AwaitingResult,
        action,
        generation,
        announced,
    );
    // Conditional on the version this reconcile read: if another writer (a second replica that
    // also believes it leads, or a reconcile working from a stale cache) got there first, the
    // write fails with 409 and no call is made; the retry reads the newer intent.
    write_status(
        &decision.metadata,
        &ctx.client,
        status,
        decision.metadata.resource_version.as_deref(),
    )
    .await
}

/// A terminal refusal of `UpdateSelfUpgrade`. When it may only mean that the request moved on
/// since it was read (an admin decided it in the console, QuickSight dropped it), the request
/// is read afresh and decided from what it shows now; only a refusal that the fresh read does
/// not explain is remembered as a rejection.
async fn judge_refusal(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    scope: &Scope,
    action: DecisionAction,
    error: crate::quicksight::QuickSightError,
    status: &mut SelfUpgradeDecisionStatus,
) -> Verdict {
    warn!(
        exception = %error.code,
        message = %error.message,
        aws_request_id = error.aws_request_id.as_deref().unwrap_or("none"),
        "QuickSight refused UpdateSelfUpgrade"
    );
    let generation = decision.metadata.generation.unwrap_or(0);
    let rejected = |status: &mut SelfUpgradeDecisionStatus,
                    error: crate::quicksight::QuickSightError| {
        status::record_failed_call(status, action, generation, &error);
        Verdict::Stalled(Stall::Rejected {
            error: error.code,
            message: error.message,
        })
    };
    if !error.may_be_a_stale_read() {
        return rejected(status, error);
    }
    // The refused call changed nothing: its intent is over either way.
    status::end_intent(status, &error);
    let fresh = match ctx
        .directory
        .find_fresh(scope, &decision.spec.upgrade_request_id)
        .await
    {
        Ok(fresh) => fresh,
        Err(read_error) if read_error.is_retryable() => return Verdict::Retrying(read_error),
        Err(_) => return rejected(status, error),
    };
    status::record_remote(status, fresh.as_ref());
    match decide(action, generation, fresh.as_ref(), Some(status)) {
        // Still open to this action: the refusal is not explained by a stale read.
        Plan::Send(_) | Plan::Report(Verdict::AwaitingResult | Verdict::ActionFailed { .. }) => {
            rejected(status, error)
        }
        Plan::Report(verdict) => {
            info!(
                request_status = ?fresh.map(|r| r.request_status),
                "the request had moved on before the call; reporting what QuickSight shows now"
            );
            verdict
        }
    }
}

/// Applies the retry policy to an action QuickSight reported as failed: send it again once its
/// backoff has passed, wait, or give up.
fn retry_failed(
    action: DecisionAction,
    failed: Verdict,
    retry: RetrySettings,
    status: &SelfUpgradeDecisionStatus,
    remote: Option<&crate::quicksight::RequestDetail>,
) -> Plan {
    let Verdict::ActionFailed {
        request_status,
        reason,
        ..
    } = failed
    else {
        return Plan::Report(failed);
    };
    let attempts = status.attempts.unwrap_or(1).max(1);
    let last_attempt = remote.and_then(|r| r.last_update_attempt_time);
    let attempts_u32 = u32::try_from(attempts).unwrap_or(u32::MAX);
    match retry_step(retry, attempts_u32, last_attempt, Timestamp::now()) {
        RetryStep::SendNow => Plan::Send(action),
        RetryStep::WaitFor(_) => Plan::Report(Verdict::ActionFailed {
            request_status,
            reason,
            next_retry: Some(retry.delay_after(attempts_u32)),
        }),
        RetryStep::Exhausted => Plan::Report(Verdict::Stalled(Stall::RetriesExhausted {
            attempts,
            request_status,
            reason,
        })),
    }
}

/// An outcome QuickSight reports as failed, judged by the retry policy at once: the status then
/// says when the action is sent again, or that the attempts are spent, without waiting for the
/// next look.
fn judge_failed_outcome(
    action: DecisionAction,
    verdict: Verdict,
    retry: RetrySettings,
    status: &SelfUpgradeDecisionStatus,
    detail: &crate::quicksight::RequestDetail,
) -> Verdict {
    match retry_failed(action, verdict.clone(), retry, status, Some(detail)) {
        Plan::Report(judged) => judged,
        // No backoff to wait out: look again at once, and send from there.
        Plan::Send(_) => {
            let mut again = verdict;
            if let Verdict::ActionFailed { next_retry, .. } = &mut again {
                *next_retry = Some(Duration::ZERO);
            }
            again
        }
    }
}

fn verdict_after_call(
    action: DecisionAction,
    generation: i64,
    detail: &crate::quicksight::RequestDetail,
    status: &SelfUpgradeDecisionStatus,
) -> Verdict {
    match decide(action, generation, Some(detail), Some(status)) {
        Plan::Report(verdict) => verdict,
        // `decide` never sends an action already applied for this generation (a unit test
        // holds it to that); should it ever, waiting is the safe reading.
        Plan::Send(_) => Verdict::AwaitingResult,
    }
}

/// The `result` label of `selfupgrade_reconciles_total`.
fn result_label(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Satisfied { .. } => "satisfied",
        Verdict::AwaitingResult => "awaiting",
        Verdict::ActionFailed { .. } => "action_failed",
        Verdict::Stalled(_) => "stalled",
        Verdict::Retrying(_) => "retrying",
    }
}

/// Step 1 of the path: what must hold before QuickSight is touched — a readable spec, a
/// binding that admits the decision, a valid retry policy, and no older decision for the same
/// request. Yields where to call and with which credentials, and the retry policy.
fn admit(decision: &SelfUpgradeDecision, ctx: &Context) -> Result<(Scope, RetrySettings), Stall> {
    let spec = &decision.spec;
    if let Some(problem) = crate::validate::spec_problem(spec) {
        return Err(Stall::InvalidSpec(problem));
    }
    let grant = ctx
        .bindings
        .authorize(&decision.namespace().unwrap_or_default(), spec)
        .map_err(Stall::NotAuthorized)?;
    let retry = ctx
        .timing
        .retry
        .with_policy(spec.retry.as_ref())
        .map_err(Stall::InvalidSpec)?;
    let region = spec
        .region
        .as_deref()
        .or(grant.region.as_deref())
        .or(ctx.default_region.as_deref())
        .ok_or_else(|| {
            Stall::InvalidSpec(
                "spec.region is not set, the account's QuickSightAccount names no region and the \
                 operator has no default region (--region / AWS_REGION)"
                    .to_string(),
            )
        })?;
    let admitted = |namespace: &str| ctx.bindings.authorize(namespace, spec).is_ok();
    if let Some(winner) = ctx.claims.winner_over(decision, admitted) {
        return Err(Stall::Conflict { winner });
    }
    Ok((
        Scope {
            account_id: spec.aws_account_id.clone(),
            region: region.to_string(),
            namespace: spec.quicksight_namespace.clone(),
            credentials: grant.credentials,
        },
        retry,
    ))
}

/// Events are for people: a failed publish is logged and never fails the reconcile.
async fn publish(
    events: &crate::events::EventPublisher,
    event: &Event,
    decision: &SelfUpgradeDecision,
) {
    if let Err(error) = events.publish(event, &decision.object_ref(&())).await {
        warn!(%error, reason = %event.reason, "could not publish an Event");
    }
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
            &PatchParams::apply(FIELD_MANAGER).force(),
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
