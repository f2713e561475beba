//! The status a reconcile writes: the request detail, what was sent, and kstatus conditions
//! (`Ready`, `Reconciling`, `Stalled`) that `kubectl wait`, Argo CD and Flux understand.
//!
//! Pure: the clock is handed in. A condition keeps its `lastTransitionTime` while its status
//! stays the same, so a reconcile that changes nothing produces an identical status and the
//! reconciler skips the write (and does not trigger itself).

use crate::api::{
    Action, RequestDetails, RequestRejection, SelfUpgradeDecisionStatus, UpdateIntent,
};
use crate::decide::{CallWindow, Stall, Verdict};
use crate::quicksight::{QuickSightError, RequestDetail, RequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The status this reconcile starts from: what was recorded for this generation, with the
/// per-generation fields (attempts, rejection) reset when the spec changed.
pub fn carry_over(
    previous: Option<&SelfUpgradeDecisionStatus>,
    generation: i64,
) -> SelfUpgradeDecisionStatus {
    let mut status = previous.cloned().unwrap_or_default();
    if status.observed_generation != Some(generation) {
        status.attempts = None;
        status.rejection = None;
        status.intent = None;
    }
    status.observed_generation = Some(generation);
    status
}

/// Copies the request as QuickSight shows it into the status; `None` (not found) clears it, so
/// the status never shows details of a request that is not there.
pub fn record_remote(status: &mut SelfUpgradeDecisionStatus, remote: Option<&RequestDetail>) {
    status.request = remote.map(RequestDetails::from).unwrap_or_default();
}

/// Records the write-ahead intent of a call: the action, the request as it is before it, and
/// the window the call lives in.
pub fn record_intent(
    status: &mut SelfUpgradeDecisionStatus,
    action: Action,
    generation: i64,
    remote: &RequestDetail,
    now: Timestamp,
    window: CallWindow,
) {
    status.intent = Some(UpdateIntent {
        action,
        generation,
        request_status: Some(remote.request_status.as_str().to_string()),
        last_update_attempt_time: remote.last_update_attempt_time.map(MicroTime),
        recorded_at: Some(Time(now)),
        expires_at: Some(MicroTime(window.expires_at(now))),
    });
}

/// Turns an intent whose call took effect (the request changed since it was written) into the
/// applied record it would have become had the operator not stopped in between.
pub fn settle_intent(
    status: &mut SelfUpgradeDecisionStatus,
    action: Action,
    generation: i64,
    remote: Option<&RequestDetail>,
) {
    let Some(intent) = crate::decide::intent_for(Some(status), action, generation) else {
        return;
    };
    if !remote.is_some_and(|r| crate::decide::seen_since(intent, r)) {
        return;
    }
    // Versions that wrote no `expiresAt` counted the attempt when they wrote the intent.
    let counted_when_written = intent.expires_at.is_none();
    let request_id = status.last_aws_request_id.take();
    record_applied(status, action, generation, request_id);
    if !counted_when_written {
        count_attempt(status);
    }
}

/// Counts one attempt QuickSight saw for this generation: a call it answered, or one whose
/// effect the request shows although its answer never arrived. Calls that failed before their
/// effect are not counted.
pub fn count_attempt(status: &mut SelfUpgradeDecisionStatus) {
    status.attempts = Some(status.attempts.unwrap_or(0) + 1);
}

/// Records a successful `UpdateSelfUpgrade` (or one whose effect the request shows).
pub fn record_applied(
    status: &mut SelfUpgradeDecisionStatus,
    action: Action,
    generation: i64,
    aws_request_id: Option<String>,
) {
    status.applied_action = Some(action);
    status.applied_generation = Some(generation);
    status.last_aws_request_id = aws_request_id;
    status.rejection = None;
    status.intent = None;
}

/// Records a failed `UpdateSelfUpgrade`; a terminal one is remembered so it is not sent again
/// for this generation.
pub fn record_failed_call(
    status: &mut SelfUpgradeDecisionStatus,
    action: Action,
    generation: i64,
    error: &QuickSightError,
) {
    // A retryable failure (a timeout, a 5xx) may or may not have taken effect: the intent stays,
    // and the next reconcile tells from the request. A throttled or unsent call did not, nor
    // did a terminal one, which is also remembered.
    if error.is_retryable() && !error.took_no_effect() {
        keep_request_id(status, error);
        return;
    }
    end_intent(status, error);
    if !error.is_retryable() {
        status.rejection = Some(RequestRejection {
            generation,
            action,
            error: error.code.clone(),
            message: error.message.clone(),
        });
    }
}

/// Ends the intent of a call that changed nothing (throttled, unsent, refused — also one
/// refused because the request had already moved on, which is not held against the action).
pub fn end_intent(status: &mut SelfUpgradeDecisionStatus, error: &QuickSightError) {
    keep_request_id(status, error);
    status.intent = None;
}

fn keep_request_id(status: &mut SelfUpgradeDecisionStatus, error: &QuickSightError) {
    if error.aws_request_id.is_some() {
        status.last_aws_request_id = error.aws_request_id.clone();
    }
}

/// Which of the three kstatus conditions is True for a verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ready,
    Reconciling,
    Stalled,
    /// None: paused on purpose. Not Ready (`kubectl wait` keeps waiting), not Reconciling (the
    /// operator is not working towards it: kstatus reads that as InProgress), not Stalled (the
    /// operator can go on at once and nothing is wrong: kstatus reads that as Failed). kstatus
    /// computes Current, as for any resource at rest; Argo CD's health check says Suspended.
    Suspended,
}

/// Sets the three kstatus conditions for `verdict`: one of them True, all three with the
/// verdict's reason and message.
pub fn set_conditions(
    status: &mut SelfUpgradeDecisionStatus,
    verdict: &Verdict,
    action: Action,
    generation: i64,
    now: Timestamp,
) {
    let previous = std::mem::take(&mut status.conditions);
    let (phase, reason, message) = summarize(verdict, action, status);
    let condition = |type_: &str, state: bool| {
        let state = if state { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == state)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.to_string(),
            status: state.to_string(),
            reason: reason.clone(),
            message: message.clone(),
            observed_generation: Some(generation),
            last_transition_time,
        }
    };
    let ready = match verdict {
        // A transient failure while re-checking a request that is already done does not make
        // it un-done: Ready stays as it was for this generation.
        Verdict::Retrying(_) => previous
            .iter()
            .find(|c| {
                c.type_ == READY && c.status == "True" && c.observed_generation == Some(generation)
            })
            .cloned()
            .unwrap_or_else(|| condition(READY, false)),
        _ => condition(READY, phase == Phase::Ready),
    };
    status.conditions = vec![
        ready,
        condition(RECONCILING, phase == Phase::Reconciling),
        condition(STALLED, phase == Phase::Stalled),
    ];
}

/// The phase, condition reason and message of a verdict.
fn summarize(
    verdict: &Verdict,
    action: Action,
    status: &SelfUpgradeDecisionStatus,
) -> (Phase, String, String) {
    let request = status.request.request_status.clone().unwrap_or_default();
    match verdict {
        Verdict::Satisfied {
            applied_by_operator,
        } => {
            let (reason, how) = if *applied_by_operator {
                ("Applied", "after this operator sent it")
            } else {
                ("AlreadyApplied", "without a call from this operator")
            };
            let message =
                format!("QuickSight shows the request {request}, as {action} asks, {how}");
            (Phase::Ready, reason.to_string(), message)
        }
        Verdict::AwaitingResult => {
            let message =
                format!("{action} was sent; QuickSight still shows the request {request}");
            (Phase::Reconciling, "AwaitingResult".to_string(), message)
        }
        Verdict::ActionFailed {
            request_status,
            reason,
            next_retry,
        } => {
            let condition_reason = match request_status {
                RequestStatus::VerifyFailed => "VerifyFailed",
                _ => "UpdateFailed",
            };
            let then = match next_retry {
                Some(delay) => format!(
                    "attempt {} failed; {action} is sent again {} after it",
                    status.attempts.unwrap_or(1),
                    humantime::format_duration(*delay)
                ),
                None => "the request is re-checked periodically".to_string(),
            };
            let message = format!(
                "QuickSight could not complete {action}: {request_status}: {}; {then}",
                reason.as_deref().unwrap_or("no reason given")
            );
            (Phase::Reconciling, condition_reason.to_string(), message)
        }
        Verdict::Stalled(stall) => (
            Phase::Stalled,
            stall.reason().to_string(),
            stall_message(stall, action),
        ),
        Verdict::Retrying(error) => (
            Phase::Reconciling,
            error.code.clone(),
            format!("{error}; retrying with backoff"),
        ),
        Verdict::DryRun {
            action,
            request_status,
        } => (
            Phase::Suspended,
            "DryRun".to_string(),
            format!(
                "dry run: {action} is due (QuickSight shows the request {request_status}) and was not sent"
            ),
        ),
        Verdict::Paused(on_what) => (
            Phase::Suspended,
            "Paused".to_string(),
            format!("{on_what}: no QuickSight call is made until the annotation is removed"),
        ),
    }
}

fn stall_message(stall: &Stall, action: Action) -> String {
    match stall {
        Stall::AlreadyDecided { request_status } => format!(
            "the request is already {request_status} in QuickSight, which contradicts {action}; no call was made"
        ),
        Stall::ActionNotApplicable {
            action,
            request_status,
        } => format!(
            "{action} cannot move a request that is {request_status}; change the action (DENY works on any open request)"
        ),
        Stall::RequestNotFound => {
            "QuickSight lists no self-upgrade request with this id in this account and QuickSight namespace; re-checked periodically".to_string()
        }
        Stall::Rejected { error, message } => {
            format!("QuickSight rejected {action} with {error}: {message}; change the spec to try again")
        }
        Stall::UnrecognizedRequestStatus(value) => format!(
            "QuickSight reports request status {value}, which this operator version does not know; no call was made"
        ),
        Stall::InvalidSpec(message) => message.clone(),
        Stall::NotAuthorized(message) => format!("{message}; no AWS call was made"),
        Stall::RetriesExhausted {
            attempts,
            request_status,
            reason,
        } => format!(
            "QuickSight could not complete {action} in {attempts} attempts: {request_status}: {}; change the spec (or spec.retry) to try again",
            reason.as_deref().unwrap_or("no reason given")
        ),
        Stall::Conflict { winner, .. } => format!(
            "{winner} is older and decides the same request; this one makes no call while it exists"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::ErrorClass;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    fn window() -> CallWindow {
        CallWindow::new(std::time::Duration::from_secs(30))
    }

    fn later() -> Timestamp {
        Timestamp::from_second(1_800_000_600).expect("valid")
    }

    fn get<'a>(status: &'a SelfUpgradeDecisionStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    fn states(status: &SelfUpgradeDecisionStatus) -> [(&str, &str); 3] {
        [READY, RECONCILING, STALLED].map(|t| {
            let c = get(status, t);
            (c.status.as_str(), c.reason.as_str())
        })
    }

    fn throttled() -> QuickSightError {
        QuickSightError {
            operation: "ListSelfUpgrades",
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
            aws_request_id: None,
            class: ErrorClass::Throttled,
        }
    }

    #[test]
    fn each_verdict_sets_the_kstatus_conditions() {
        let cases = [
            (
                Verdict::Satisfied {
                    applied_by_operator: true,
                },
                [
                    ("True", "Applied"),
                    ("False", "Applied"),
                    ("False", "Applied"),
                ],
            ),
            (
                Verdict::Satisfied {
                    applied_by_operator: false,
                },
                [
                    ("True", "AlreadyApplied"),
                    ("False", "AlreadyApplied"),
                    ("False", "AlreadyApplied"),
                ],
            ),
            (
                Verdict::AwaitingResult,
                [
                    ("False", "AwaitingResult"),
                    ("True", "AwaitingResult"),
                    ("False", "AwaitingResult"),
                ],
            ),
            (
                Verdict::ActionFailed {
                    request_status: RequestStatus::VerifyFailed,
                    reason: None,
                    next_retry: Some(std::time::Duration::from_secs(60)),
                },
                [
                    ("False", "VerifyFailed"),
                    ("True", "VerifyFailed"),
                    ("False", "VerifyFailed"),
                ],
            ),
            (
                Verdict::ActionFailed {
                    request_status: RequestStatus::UpdateFailed,
                    reason: None,
                    next_retry: None,
                },
                [
                    ("False", "UpdateFailed"),
                    ("True", "UpdateFailed"),
                    ("False", "UpdateFailed"),
                ],
            ),
            (
                Verdict::Stalled(Stall::RequestNotFound),
                [
                    ("False", "RequestNotFound"),
                    ("False", "RequestNotFound"),
                    ("True", "RequestNotFound"),
                ],
            ),
            (
                Verdict::Stalled(Stall::Rejected {
                    error: "AccessDeniedException".into(),
                    message: "no".into(),
                }),
                [
                    ("False", "AccessDeniedException"),
                    ("False", "AccessDeniedException"),
                    ("True", "AccessDeniedException"),
                ],
            ),
            (
                Verdict::Stalled(Stall::RetriesExhausted {
                    attempts: 3,
                    request_status: RequestStatus::UpdateFailed,
                    reason: None,
                }),
                [
                    ("False", "RetriesExhausted"),
                    ("False", "RetriesExhausted"),
                    ("True", "RetriesExhausted"),
                ],
            ),
            (
                Verdict::Retrying(throttled()),
                [
                    ("False", "ThrottlingException"),
                    ("True", "ThrottlingException"),
                    ("False", "ThrottlingException"),
                ],
            ),
            // Dry run and paused: none of the three (kstatus Current; Argo CD Suspended).
            (
                Verdict::DryRun {
                    action: Action::Approve,
                    request_status: RequestStatus::Pending,
                },
                [
                    ("False", "DryRun"),
                    ("False", "DryRun"),
                    ("False", "DryRun"),
                ],
            ),
            (
                Verdict::Paused("the decision is paused".into()),
                [
                    ("False", "Paused"),
                    ("False", "Paused"),
                    ("False", "Paused"),
                ],
            ),
        ];
        for (verdict, expected) in cases {
            let mut status = carry_over(None, 1);
            set_conditions(&mut status, &verdict, Action::Approve, 1, now());
            assert_eq!(states(&status), expected, "{verdict:?}");
            assert!(
                status
                    .conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(1))
            );
        }
    }

    #[test]
    fn an_unchanged_verdict_gives_an_identical_status_so_nothing_is_written() {
        let mut first = carry_over(None, 2);
        set_conditions(&mut first, &Verdict::AwaitingResult, Action::Deny, 2, now());
        let mut second = carry_over(Some(&first), 2);
        set_conditions(
            &mut second,
            &Verdict::AwaitingResult,
            Action::Deny,
            2,
            later(),
        );
        assert_eq!(first, second);
    }

    #[test]
    fn transition_time_moves_only_when_a_condition_flips() {
        let mut first = carry_over(None, 2);
        set_conditions(
            &mut first,
            &Verdict::AwaitingResult,
            Action::Approve,
            2,
            now(),
        );
        let mut second = carry_over(Some(&first), 2);
        let done = Verdict::Satisfied {
            applied_by_operator: true,
        };
        set_conditions(&mut second, &done, Action::Approve, 2, later());
        assert_eq!(get(&second, READY).last_transition_time, Time(later()));
        assert_eq!(
            get(&second, RECONCILING).last_transition_time,
            Time(later())
        );
        // Stalled was False before and after.
        assert_eq!(get(&second, STALLED).last_transition_time, Time(now()));
    }

    #[test]
    fn a_transient_error_does_not_unset_ready_for_the_same_generation() {
        let mut done = carry_over(None, 4);
        let satisfied = Verdict::Satisfied {
            applied_by_operator: true,
        };
        set_conditions(&mut done, &satisfied, Action::Approve, 4, now());
        let mut resync = carry_over(Some(&done), 4);
        set_conditions(
            &mut resync,
            &Verdict::Retrying(throttled()),
            Action::Approve,
            4,
            later(),
        );
        assert_eq!(get(&resync, READY), get(&done, READY));
        assert_eq!(get(&resync, RECONCILING).status, "True");
        // A new generation is not done until shown to be.
        let mut next = carry_over(Some(&done), 5);
        set_conditions(
            &mut next,
            &Verdict::Retrying(throttled()),
            Action::Approve,
            5,
            later(),
        );
        assert_eq!(get(&next, READY).status, "False");
    }

    #[test]
    fn a_new_generation_resets_attempts_and_rejection_but_keeps_what_was_applied() {
        let mut status = carry_over(None, 1);
        count_attempt(&mut status);
        record_applied(&mut status, Action::Verify, 1, Some("rid-1".into()));
        status.rejection = Some(RequestRejection {
            generation: 1,
            action: Action::Verify,
            error: "PreconditionNotMetException".into(),
            message: "m".into(),
        });
        let next = carry_over(Some(&status), 2);
        assert_eq!(next.attempts, None);
        assert_eq!(next.rejection, None);
        assert_eq!(next.applied_action, Some(Action::Verify));
        assert_eq!(next.applied_generation, Some(1));
        assert_eq!(next.observed_generation, Some(2));
    }

    #[test]
    fn a_request_not_found_clears_the_request_detail() {
        let mut status = SelfUpgradeDecisionStatus {
            request: RequestDetails {
                request_status: Some("PENDING".into()),
                user_name: Some("alice".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        record_remote(&mut status, None);
        assert_eq!(status.request.request_status, None);
        assert_eq!(status.request.user_name, None);
    }

    #[test]
    fn only_terminal_call_failures_are_remembered_as_rejections() {
        let pending = RequestDetail::new("r", RequestStatus::Pending);
        let mut status = carry_over(None, 1);
        record_intent(&mut status, Action::Approve, 1, &pending, now(), window());
        // Throttled: refused before QuickSight acted, so no intent remains and nothing is held
        // against the action.
        record_failed_call(&mut status, Action::Approve, 1, &throttled());
        assert_eq!((&status.intent, &status.rejection), (&None, &None));
        // A 5xx may have taken effect: the intent stays for the next reconcile to judge.
        record_intent(&mut status, Action::Approve, 1, &pending, now(), window());
        let failed = QuickSightError::from_service(
            "UpdateSelfUpgrade",
            "InternalFailureException",
            "oops",
            Some(500),
            None,
        );
        record_failed_call(&mut status, Action::Approve, 1, &failed);
        assert!(status.intent.is_some());
        assert_eq!(status.rejection, None);
        let denied = QuickSightError::from_service(
            "UpdateSelfUpgrade",
            "AccessDeniedException",
            "not allowed",
            Some(401),
            Some("rid-9".into()),
        );
        record_failed_call(&mut status, Action::Approve, 1, &denied);
        assert_eq!(status.last_aws_request_id.as_deref(), Some("rid-9"));
        assert_eq!(
            status.rejection.as_ref().map(|r| r.error.as_str()),
            Some("AccessDeniedException")
        );
    }
}
