//! Stage 5, report: from the status before, the status acting left and the outcome, the new
//! status with its conditions, the Event, the requeue and the metric label. Pure: the clock is
//! handed in, and the backoff a retry waits is left to the caller, who keeps the failure counts.

use super::act::Outcome;
use super::plan::{Asked, Observed, retry_failed};
use crate::api::SelfUpgradeDecisionStatus;
use crate::context::Timing;
use crate::decide::{Plan, Stall, Verdict, decide};
use crate::events::Announce;
use crate::quicksight::{QuickSightError, RequestDetail, UpdateResult};
use crate::retry::RetrySettings;
use crate::status;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Event;
use std::time::Duration;
use tracing::info;

/// When to look at the decision again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After the object's next backoff delay (a retryable QuickSight failure).
    Backoff,
    /// After this long (and the object's backoff is reset).
    After(Duration),
    /// Only when the object changes.
    OnChange,
}

/// Everything a reconcile reports.
pub struct Report {
    pub status: SelfUpgradeDecisionStatus,
    pub verdict: Verdict,
    /// Published when the status write succeeds.
    pub event: Option<Event>,
    pub requeue: Requeue,
    /// The `result` label of `selfupgrade_reconciles_total`.
    pub label: &'static str,
}

/// Reports `outcome` for the decision `asked` describes.
pub fn report(
    asked: &Asked,
    mut status: SelfUpgradeDecisionStatus,
    outcome: Outcome,
    timing: &Timing,
    now: Timestamp,
) -> Report {
    let verdict = judge(asked, &mut status, outcome, now);
    status::set_conditions(&mut status, &verdict, asked.action, asked.generation, now);
    let (label, requeue, announce) = outcome_of(&verdict, timing);
    let event = crate::events::transition_event(asked.previous, &status, announce);
    Report {
        status,
        verdict,
        event,
        requeue,
        label,
    }
}

/// The metric label, the requeue and the Event kind of a verdict, from one match.
fn outcome_of(verdict: &Verdict, timing: &Timing) -> (&'static str, Requeue, Announce) {
    use Announce::{Applied, Nothing, Observed, Warning};
    match verdict {
        Verdict::Retrying(_) => ("retrying", Requeue::Backoff, Nothing),
        // Removing the annotation is a change the controller sees (see `controller`).
        Verdict::Paused(_) => ("paused", Requeue::OnChange, Observed),
        // Looked at again on the resync, for a request that moved meanwhile.
        Verdict::DryRun { .. } => ("dry_run", Requeue::After(timing.resync), Observed),
        Verdict::AwaitingResult => ("awaiting", Requeue::After(timing.awaiting_recheck), Nothing),
        // Look again at the retry (or sooner, to notice changes made elsewhere).
        Verdict::ActionFailed { next_retry, .. } => {
            let delay = next_retry.unwrap_or(timing.failed_recheck);
            let requeue = Requeue::After(delay.min(timing.failed_recheck));
            ("action_failed", requeue, Warning)
        }
        // QuickSight does not reopen a decided request; only a decision made elsewhere could
        // still change the picture.
        Verdict::Satisfied {
            applied_by_operator,
        } => {
            let announce = if *applied_by_operator {
                Applied
            } else {
                Observed
            };
            ("satisfied", Requeue::After(timing.final_resync), announce)
        }
        Verdict::Stalled(stall) => {
            let requeue = match stall {
                // The winner may be deleted: look again on the slower re-check cadence.
                Stall::RequestNotFound | Stall::Conflict { .. } => {
                    Requeue::After(timing.not_found_recheck)
                }
                Stall::InvalidSpec(_) => Requeue::OnChange,
                Stall::AlreadyDecided { .. } => Requeue::After(timing.final_resync),
                _ => Requeue::After(timing.resync),
            };
            ("stalled", requeue, Warning)
        }
    }
}

/// The verdict on an outcome, recording in `status` what the call did.
fn judge(
    asked: &Asked,
    status: &mut SelfUpgradeDecisionStatus,
    outcome: Outcome,
    now: Timestamp,
) -> Verdict {
    match outcome {
        Outcome::NotSent(verdict) => verdict,
        Outcome::Applied { answer, retry } => applied(asked, status, answer, retry, now),
        Outcome::CallFailed(error) => {
            status::record_failed_call(status, asked.action, asked.generation, &error);
            Verdict::Retrying(error)
        }
        Outcome::Refused { error, fresh } => refused(asked, status, error, fresh),
    }
}

/// An answered call: the attempt counts, and a failed outcome is judged by the retry policy at
/// once, so the status says when the action is sent again, or that the attempts are spent.
fn applied(
    asked: &Asked,
    status: &mut SelfUpgradeDecisionStatus,
    answer: UpdateResult,
    retry: RetrySettings,
    now: Timestamp,
) -> Verdict {
    let (action, generation) = (asked.action, asked.generation);
    status::count_attempt(status);
    status::record_applied(status, action, generation, answer.aws_request_id);
    status::record_remote(status, Some(&answer.detail));
    let verdict = match decide(action, generation, Some(&answer.detail), Some(status)) {
        Plan::Report(verdict) => verdict,
        // `decide` never sends an action already applied for this generation (a unit test
        // holds it to that); should it ever, waiting is the safe reading.
        Plan::Send(_) => Verdict::AwaitingResult,
    };
    match retry_failed(
        action,
        verdict.clone(),
        retry,
        status,
        Some(&answer.detail),
        now,
    ) {
        Plan::Report(judged) => judged,
        // No backoff to wait out: look again at once, and send from there.
        Plan::Send(_) => match verdict {
            Verdict::ActionFailed {
                request_status,
                reason,
                ..
            } => Verdict::ActionFailed {
                request_status,
                reason,
                next_retry: Some(Duration::ZERO),
            },
            other => other,
        },
    }
}

/// A terminal refusal: remembered as a rejection, unless the fresh read shows the request had
/// moved on before the call, in which case what QuickSight shows now is reported.
fn refused(
    asked: &Asked,
    status: &mut SelfUpgradeDecisionStatus,
    error: QuickSightError,
    fresh: Option<Observed>,
) -> Verdict {
    let (action, generation) = (asked.action, asked.generation);
    let rejected = |status: &mut SelfUpgradeDecisionStatus, error: QuickSightError| {
        status::record_failed_call(status, action, generation, &error);
        Verdict::Stalled(Stall::Rejected {
            error: error.code,
            message: error.message,
        })
    };
    let Some(fresh) = fresh else {
        return rejected(status, error);
    };
    // The refused call changed nothing: its intent is over either way.
    status::end_intent(status, &error);
    let fresh: Option<RequestDetail> = match fresh {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, RequestRejection};
    use crate::fixtures::{
        GENERATION, applied, now, request, retry, service_error, timed_out, timing, window,
    };
    use crate::quicksight::RequestStatus::{self, *};
    use kube::runtime::events::EventType;

    /// The status as acting left it: an intent for APPROVE of the pending request.
    fn with_intent() -> SelfUpgradeDecisionStatus {
        let mut status = status::carry_over(None, GENERATION);
        status::record_intent(
            &mut status,
            Action::Approve,
            GENERATION,
            &request(Pending),
            now(),
            window(),
        );
        status
    }

    fn report_of(previous: Option<&SelfUpgradeDecisionStatus>, outcome: Outcome) -> Report {
        let asked = Asked {
            action: Action::Approve,
            generation: GENERATION,
            previous,
        };
        report(&asked, with_intent(), outcome, &timing(), now())
    }

    fn answered(status: RequestStatus) -> Outcome {
        Outcome::Applied {
            answer: UpdateResult {
                detail: RequestDetail {
                    last_update_attempt_time: Some(now()),
                    ..request(status)
                },
                aws_request_id: Some("aws-request-2".into()),
            },
            retry: retry(),
        }
    }

    fn refused(code: &str, fresh: Option<Observed>) -> Outcome {
        Outcome::Refused {
            error: service_error(code, 400),
            fresh,
        }
    }

    fn event_kind(report: &Report) -> Option<(EventType, String, String)> {
        report
            .event
            .as_ref()
            .map(|e| (e.type_, e.reason.clone(), e.action.clone()))
    }

    #[test]
    fn each_outcome_gets_its_label_requeue_and_event() {
        let throttled = service_error("ThrottlingException", 429);
        let t = timing();
        let normal =
            |reason: &str, action: &str| Some((EventType::Normal, reason.into(), action.into()));
        let warning = |reason: &str| Some((EventType::Warning, reason.into(), "Observe".into()));
        let cases = vec![
            (
                "applied",
                answered(Approved),
                "satisfied",
                Requeue::After(t.final_resync),
                normal("Applied", "UpdateSelfUpgrade"),
            ),
            (
                "already approved",
                Outcome::NotSent(Verdict::Satisfied {
                    applied_by_operator: false,
                }),
                "satisfied",
                Requeue::After(t.final_resync),
                normal("AlreadyApplied", "Observe"),
            ),
            (
                "applied, failed",
                answered(UpdateFailed),
                "action_failed",
                Requeue::After(retry().delay_after(1)),
                warning("UpdateFailed"),
            ),
            (
                "sent, not yet shown",
                answered(Pending),
                "awaiting",
                Requeue::After(t.awaiting_recheck),
                None,
            ),
            (
                "throttled call",
                Outcome::CallFailed(throttled.clone()),
                "retrying",
                Requeue::Backoff,
                None,
            ),
            (
                "not listed",
                Outcome::NotSent(Verdict::Stalled(Stall::RequestNotFound)),
                "stalled",
                Requeue::After(t.not_found_recheck),
                warning("RequestNotFound"),
            ),
            (
                "invalid spec",
                Outcome::NotSent(Verdict::Stalled(Stall::InvalidSpec("bad".into()))),
                "stalled",
                Requeue::OnChange,
                warning("InvalidSpec"),
            ),
            (
                "not authorized",
                Outcome::NotSent(Verdict::Stalled(Stall::NotAuthorized("no".into()))),
                "stalled",
                Requeue::After(t.resync),
                warning("NotAuthorized"),
            ),
            (
                "decided elsewhere meanwhile",
                refused(
                    "PreconditionNotMetException",
                    Some(Ok(Some(request(Denied)))),
                ),
                "stalled",
                Requeue::After(t.final_resync),
                warning("AlreadyDecided"),
            ),
            (
                "refused though still pending",
                refused(
                    "PreconditionNotMetException",
                    Some(Ok(Some(request(Pending)))),
                ),
                "stalled",
                Requeue::After(t.resync),
                warning("PreconditionNotMetException"),
            ),
            (
                "refused, fresh read throttled",
                refused("PreconditionNotMetException", Some(Err(throttled))),
                "retrying",
                Requeue::Backoff,
                None,
            ),
            (
                "access denied",
                refused("AccessDeniedException", None),
                "stalled",
                Requeue::After(t.resync),
                warning("AccessDeniedException"),
            ),
        ];
        for (name, outcome, label, requeue, event) in cases {
            let report = report_of(None, outcome);
            assert_eq!(report.label, label, "{name}");
            assert_eq!(report.requeue, requeue, "{name}");
            assert_eq!(event_kind(&report), event, "{name}");
        }
    }

    #[test]
    fn an_answered_call_counts_and_ends_its_intent() {
        let report = report_of(None, answered(Approved));
        assert_eq!(report.status.attempts, Some(1));
        assert_eq!(report.status.applied_action, Some(Action::Approve));
        assert_eq!(report.status.applied_generation, Some(GENERATION));
        assert_eq!(
            report.status.last_aws_request_id.as_deref(),
            Some("aws-request-2")
        );
        assert_eq!(report.status.intent, None);
        assert_eq!(
            report.status.request.request_status.as_deref(),
            Some("APPROVED")
        );
    }

    #[test]
    fn a_call_that_may_have_taken_effect_keeps_its_intent_and_one_that_did_not_ends_it() {
        let lost = report_of(None, Outcome::CallFailed(timed_out()));
        assert!(
            lost.status.intent.is_some(),
            "the next look tells from the request"
        );
        let throttled = Outcome::CallFailed(service_error("ThrottlingException", 429));
        assert_eq!(report_of(None, throttled).status.intent, None);
    }

    #[test]
    fn only_a_refusal_the_fresh_read_does_not_explain_is_remembered() {
        let explained = refused(
            "PreconditionNotMetException",
            Some(Ok(Some(request(Denied)))),
        );
        let report = report_of(None, explained);
        assert_eq!(report.status.rejection, None);
        assert_eq!(
            report.status.request.request_status.as_deref(),
            Some("DENIED")
        );
        let unexplained = refused(
            "PreconditionNotMetException",
            Some(Ok(Some(request(Pending)))),
        );
        let report = report_of(None, unexplained);
        assert_eq!(
            report.status.rejection,
            Some(RequestRejection {
                generation: GENERATION,
                action: Action::Approve,
                error: "PreconditionNotMetException".into(),
                message: "PreconditionNotMetException from QuickSight".into(),
            })
        );
        assert_eq!(report.status.intent, None);
    }

    #[test]
    fn the_same_outcome_again_has_no_event() {
        let first = report_of(None, answered(Approved));
        let again = report_of(Some(&first.status), answered(Approved));
        assert!(first.event.is_some());
        assert!(again.event.is_none());
        // A retried failure says nothing new either.
        let before = applied(Action::Approve, GENERATION, 1);
        let retrying = Outcome::CallFailed(service_error("ThrottlingException", 429));
        assert!(report_of(Some(&before), retrying).event.is_none());
    }
}
