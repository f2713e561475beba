//! Stage 3, plan: from what the decision asks and what QuickSight shows, the status so far and
//! the one step to take — report, or send the action once. Pure: the retry policy, the guard
//! against a call still in flight and the settling of an earlier intent all happen here, with
//! the clock handed in.

use super::admit::Admitted;
use crate::api::{Action, SelfUpgradeDecisionStatus};
use crate::decide::{CallWindow, Plan, Stall, Verdict, decide, in_flight_for, unsettled_intent};
use crate::quicksight::{QuickSightError, RequestDetail};
use crate::retry::{RetrySettings, RetryStep, retry_step};
use crate::status;
use k8s_openapi::jiff::Timestamp;
use tracing::info;

/// What the decision asks, as this reconcile read it.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    pub action: Action,
    pub generation: i64,
    /// The status as read: what this operator wrote before.
    pub previous: Option<&'a SelfUpgradeDecisionStatus>,
}

/// The request as the listing shows it (`None`: not listed), or why it could not be read.
pub type Observed = Result<Option<RequestDetail>, QuickSightError>;

/// The one `UpdateSelfUpgrade` a reconcile may make.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub action: Action,
    /// The window the call's intent announces.
    pub window: CallWindow,
    /// The policy that judges a failed outcome.
    pub retry: RetrySettings,
    /// The request as it was before the call (recorded in the intent).
    pub remote: RequestDetail,
}

/// What the reconcile does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Make no call; report this.
    Report(Verdict),
    Send(Call),
}

/// The status drafted so far (request detail recorded, an earlier intent settled), and the step.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub status: SelfUpgradeDecisionStatus,
    pub step: Step,
}

/// Plans the reconcile of an admitted decision.
pub fn plan(
    asked: &Asked,
    admitted: &Admitted,
    observed: Observed,
    mut status: SelfUpgradeDecisionStatus,
    window: CallWindow,
    now: Timestamp,
) -> Planned {
    let report = |status, verdict| Planned {
        status,
        step: Step::Report(verdict),
    };
    let remote = match observed {
        Ok(remote) => remote,
        Err(error) if error.is_retryable() => return report(status, Verdict::Retrying(error)),
        Err(error) => {
            let stall = Stall::Rejected {
                error: error.code,
                message: error.message,
            };
            return report(status, Verdict::Stalled(stall));
        }
    };
    status::record_remote(&mut status, remote.as_ref());
    let planned = decide(
        asked.action,
        asked.generation,
        remote.as_ref(),
        asked.previous,
    );
    status::settle_intent(&mut status, asked.action, asked.generation, remote.as_ref());
    let planned = match planned {
        Plan::Report(failed @ Verdict::ActionFailed { .. }) => retry_failed(
            asked.action,
            failed,
            admitted.retry,
            &status,
            remote.as_ref(),
            now,
        ),
        other => other,
    };
    if matches!(planned, Plan::Send(_)) && call_in_flight(asked, remote.as_ref(), window, now) {
        return report(status, Verdict::AwaitingResult);
    }
    match (planned, remote) {
        (Plan::Report(verdict), _) => report(status, verdict),
        (Plan::Send(action), Some(remote)) => Planned {
            status,
            step: Step::Send(Call {
                action,
                window,
                retry: admitted.retry,
                remote,
            }),
        },
        // `decide` sends only for a request it found; without one there is nothing to send to.
        (Plan::Send(_), None) => report(status, Verdict::Stalled(Stall::RequestNotFound)),
    }
}

/// Whether an earlier call for this action, whose effect the request does not show yet, may
/// still be in flight: sending now could make it twice.
fn call_in_flight(
    asked: &Asked,
    remote: Option<&RequestDetail>,
    window: CallWindow,
    now: Timestamp,
) -> bool {
    let intent = unsettled_intent(asked.previous, asked.action, asked.generation, remote);
    match intent.and_then(|intent| in_flight_for(intent, now, window)) {
        Some(wait) => {
            info!(
                ?wait,
                "an earlier call for this action may still be in flight; not sending yet"
            );
            true
        }
        None => false,
    }
}

/// Applies the retry policy to an action QuickSight reported as failed: send it again once its
/// backoff has passed, wait, or give up.
pub(super) fn retry_failed(
    action: Action,
    failed: Verdict,
    retry: RetrySettings,
    status: &SelfUpgradeDecisionStatus,
    remote: Option<&RequestDetail>,
    now: Timestamp,
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
    match retry_step(retry, attempts_u32, last_attempt, now) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{GENERATION, admitted, applied, at, now, request, retry, window};
    use crate::quicksight::RequestStatus::{self, *};

    fn asked(action: Action, previous: Option<&SelfUpgradeDecisionStatus>) -> Asked<'_> {
        Asked {
            action,
            generation: GENERATION,
            previous,
        }
    }

    fn plan_for(
        action: Action,
        previous: Option<&SelfUpgradeDecisionStatus>,
        observed: Observed,
    ) -> Planned {
        let status = status::carry_over(previous, GENERATION);
        plan(
            &asked(action, previous),
            &admitted(),
            observed,
            status,
            window(),
            now(),
        )
    }

    fn failed_at(status: RequestStatus, seconds_ago: i64) -> RequestDetail {
        RequestDetail {
            last_update_attempt_time: Some(at(-seconds_ago)),
            ..request(status)
        }
    }

    fn send(action: Action, remote: RequestDetail) -> Step {
        Step::Send(Call {
            action,
            window: window(),
            retry: retry(),
            remote,
        })
    }

    /// An intent for `action` written `seconds_ago`, for the request as `remote` was then.
    fn intent(
        action: Action,
        remote: &RequestDetail,
        seconds_ago: i64,
    ) -> SelfUpgradeDecisionStatus {
        let mut status = status::carry_over(None, GENERATION);
        status::record_intent(
            &mut status,
            action,
            GENERATION,
            remote,
            at(-seconds_ago),
            window(),
        );
        status
    }

    #[test]
    fn each_observation_gets_its_step() {
        use Action::{Approve, Deny};
        let throttled = crate::fixtures::service_error("ThrottlingException", 429);
        let denied = crate::fixtures::service_error("AccessDeniedException", 401);
        let once = applied(Approve, GENERATION, 1);
        let spent = applied(Approve, GENERATION, 3);
        let cases: Vec<(
            &str,
            Action,
            Option<&SelfUpgradeDecisionStatus>,
            Observed,
            Step,
        )> = vec![
            (
                "pending: send",
                Approve,
                None,
                Ok(Some(request(Pending))),
                send(Approve, request(Pending)),
            ),
            (
                "approved already",
                Approve,
                None,
                Ok(Some(request(Approved))),
                Step::Report(Verdict::Satisfied {
                    applied_by_operator: false,
                }),
            ),
            (
                "not listed",
                Deny,
                None,
                Ok(None),
                Step::Report(Verdict::Stalled(Stall::RequestNotFound)),
            ),
            (
                "listing throttled",
                Approve,
                None,
                Err(throttled.clone()),
                Step::Report(Verdict::Retrying(throttled)),
            ),
            (
                "listing refused",
                Approve,
                None,
                Err(denied.clone()),
                Step::Report(Verdict::Stalled(Stall::Rejected {
                    error: denied.code.clone(),
                    message: denied.message.clone(),
                })),
            ),
            (
                "failed, backoff passed: send again",
                Approve,
                Some(&once),
                Ok(Some(failed_at(UpdateFailed, 11))),
                send(Approve, failed_at(UpdateFailed, 11)),
            ),
            (
                "failed, backoff running: wait",
                Approve,
                Some(&once),
                Ok(Some(failed_at(UpdateFailed, 2))),
                Step::Report(Verdict::ActionFailed {
                    request_status: UpdateFailed,
                    reason: Some("group membership missing".into()),
                    next_retry: Some(retry().delay_after(1)),
                }),
            ),
            (
                "failed on every attempt",
                Approve,
                Some(&spent),
                Ok(Some(failed_at(UpdateFailed, 600))),
                Step::Report(Verdict::Stalled(Stall::RetriesExhausted {
                    attempts: 3,
                    request_status: UpdateFailed,
                    reason: Some("group membership missing".into()),
                })),
            ),
        ];
        for (name, action, previous, observed, expected) in cases {
            assert_eq!(
                plan_for(action, previous, observed).step,
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn the_observed_request_is_recorded_in_the_status() {
        let planned = plan_for(Action::Approve, None, Ok(Some(request(Pending))));
        assert_eq!(
            planned.status.request.request_status.as_deref(),
            Some("PENDING")
        );
        assert_eq!(planned.status.request.user_name.as_deref(), Some("alice"));
        let failed = crate::fixtures::service_error("ThrottlingException", 429);
        let planned = plan_for(Action::Approve, None, Err(failed));
        assert_eq!(
            planned.status.request.request_status, None,
            "nothing was read"
        );
    }

    #[test]
    fn a_call_that_may_still_be_in_flight_is_not_sent_again() {
        let pending = request(Pending);
        let young = intent(Action::Approve, &pending, 5);
        let planned = plan_for(Action::Approve, Some(&young), Ok(Some(pending.clone())));
        assert_eq!(planned.step, Step::Report(Verdict::AwaitingResult));
        // Past its window (and the skew margin) the call is over: the action is sent again.
        let old = intent(Action::Approve, &pending, 3600);
        let planned = plan_for(Action::Approve, Some(&old), Ok(Some(pending.clone())));
        assert_eq!(planned.step, send(Action::Approve, pending));
    }

    #[test]
    fn an_intent_whose_effect_shows_is_settled_as_applied() {
        let pending = request(Pending);
        let written = intent(Action::Approve, &pending, 5);
        let after = RequestDetail {
            last_update_attempt_time: Some(at(-4)),
            ..request(Approved)
        };
        let planned = plan_for(Action::Approve, Some(&written), Ok(Some(after)));
        assert_eq!(
            planned.step,
            Step::Report(Verdict::Satisfied {
                applied_by_operator: true
            })
        );
        assert_eq!(planned.status.applied_action, Some(Action::Approve));
        assert_eq!(planned.status.attempts, Some(1), "the attempt counts");
        assert_eq!(planned.status.intent, None);
    }
}
