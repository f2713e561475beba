//! Stage 4, act: the only I/O between observing and reporting — the write-ahead intent, then
//! at most one `UpdateSelfUpgrade`, and, when QuickSight refuses it in a way a stale read could
//! explain, one fresh read of the request.

use super::admit::Admitted;
use super::plan::{Asked, Call, Observed, Planned, Step};
use super::{Error, write_status};
use crate::api::{SelfUpgradeDecision, SelfUpgradeDecisionStatus};
use crate::context::Context;
use crate::decide::Verdict;
use crate::quicksight::{QuickSightError, UpdateResult};
use crate::retry::RetrySettings;
use crate::status;
use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

/// What acting came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// No call was made: the verdict of the plan (or of admission) stands.
    NotSent(Verdict),
    /// `UpdateSelfUpgrade` answered; `retry` judges a failed outcome.
    Applied {
        answer: UpdateResult,
        retry: RetrySettings,
    },
    /// The call failed in a way retrying can fix (it may or may not have taken effect).
    CallFailed(QuickSightError),
    /// QuickSight refused the call; `fresh` is the request read again when the refusal may only
    /// mean that it moved on since it was listed.
    Refused {
        error: QuickSightError,
        fresh: Option<Observed>,
    },
}

/// The status after acting (with the intent, when one was written), the outcome, and the
/// resourceVersion the final status write is conditional on.
pub struct Acted {
    pub status: SelfUpgradeDecisionStatus,
    pub outcome: Outcome,
    pub written_at: Option<String>,
}

/// Carries out the plan's step for `decision`.
pub async fn act(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    admitted: &Admitted,
    asked: &Asked<'_>,
    planned: Planned,
) -> Result<Acted, Error> {
    let Planned { mut status, step } = planned;
    let call = match step {
        Step::Report(verdict) => {
            return Ok(Acted {
                status,
                outcome: Outcome::NotSent(verdict),
                written_at: decision.metadata.resource_version.clone(),
            });
        }
        // `run --dry-run`: what would be sent is reported, and no intent is written.
        Step::Send(call) if ctx.dry_run => {
            return Ok(Acted {
                status,
                outcome: Outcome::NotSent(Verdict::DryRun {
                    action: call.action,
                    request_status: call.remote.request_status.clone(),
                }),
                written_at: decision.metadata.resource_version.clone(),
            });
        }
        Step::Send(call) => call,
    };
    // The send window starts before the intent is written, so the write itself counts against
    // it: a call never leaves later than the intent says, however long the write or the pacer
    // takes.
    let send_by = tokio::time::Instant::now() + call.window.send_by;
    let written_at = write_intent(decision, ctx, asked, &call, &mut status).await?;
    let request_id = &decision.spec.upgrade_request_id;
    let outcome = match ctx
        .directory
        .update(&admitted.scope, request_id, call.action, send_by)
        .await
    {
        Ok(answer) => {
            info!(request_status = %answer.detail.request_status, "UpdateSelfUpgrade applied");
            Outcome::Applied {
                answer,
                retry: call.retry,
            }
        }
        Err(error) if error.is_retryable() => Outcome::CallFailed(error),
        Err(error) => refused(ctx, admitted, request_id, error).await,
    };
    Ok(Acted {
        status,
        outcome,
        written_at,
    })
}

/// Write-ahead: the intent is stored before the call, so a crash between the call and the
/// status write after it cannot lead to a second call (see `decide::seen_since`). Returns the
/// resourceVersion it stored.
async fn write_intent(
    decision: &SelfUpgradeDecision,
    ctx: &Context,
    asked: &Asked<'_>,
    call: &Call,
    status: &mut SelfUpgradeDecisionStatus,
) -> Result<Option<String>, Error> {
    // The one clock read outside the reconcile's `now`: the intent promises when its call lives,
    // so it is dated when it is written, after the observing that came before it.
    let announced = Timestamp::now();
    let (action, generation) = (asked.action, asked.generation);
    status::record_intent(
        status,
        action,
        generation,
        &call.remote,
        announced,
        call.window,
    );
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

/// A terminal refusal. When it may only mean that the request moved on since it was read (an
/// admin decided it in the console, QuickSight dropped it), the request is read afresh, for
/// the report to judge.
async fn refused(
    ctx: &Context,
    admitted: &Admitted,
    request_id: &str,
    error: QuickSightError,
) -> Outcome {
    warn!(
        exception = %error.code,
        message = %error.message,
        aws_request_id = error.aws_request_id.as_deref().unwrap_or("none"),
        "QuickSight refused UpdateSelfUpgrade"
    );
    let fresh = match error.may_be_a_stale_read() {
        true => Some(ctx.directory.find_fresh(&admitted.scope, request_id).await),
        false => None,
    };
    Outcome::Refused { error, fresh }
}
