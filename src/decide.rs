//! The decision: given what the spec asks, what QuickSight shows and what this operator already
//! did, what happens next. Pure: no I/O, no clock of its own (times are handed in); every case
//! is in the tests below.

use crate::api::{Action, SelfUpgradeDecisionStatus, UpdateIntent};
use crate::quicksight::{QuickSightError, RequestDetail, RequestStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// What the reconciler does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Call `UpdateSelfUpgrade` once with this action.
    Send(Action),
    /// Make no call; report this.
    Report(Verdict),
}

/// What the status reports about a decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// QuickSight shows the outcome the action asks for.
    Satisfied {
        /// True when this operator's call made it so; false when it already was.
        applied_by_operator: bool,
    },
    /// The action was sent for this generation but QuickSight still shows the request unchanged.
    AwaitingResult,
    /// The action was sent for this generation and QuickSight reports that it failed
    /// (`UPDATE_FAILED` after APPROVE, `VERIFY_FAILED` after VERIFY).
    ActionFailed {
        request_status: RequestStatus,
        reason: Option<String>,
        /// When the retry policy sends the action again (set by the reconciler).
        next_retry: Option<std::time::Duration>,
    },
    /// No progress is possible without a change of spec (or of the world outside the cluster).
    Stalled(Stall),
    /// A call failed in a way that retrying later can fix.
    Retrying(QuickSightError),
}

/// Why a decision cannot progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Stall {
    /// The request was decided the other way (e.g. DENIED while the spec says APPROVE).
    AlreadyDecided { request_status: RequestStatus },
    /// The request is in a state this action cannot move (APPROVE on VERIFY_FAILED, VERIFY on
    /// UPDATE_FAILED); see the README's semantics table.
    ActionNotApplicable {
        action: Action,
        request_status: RequestStatus,
    },
    /// The account has no request with this id in this QuickSight namespace.
    RequestNotFound,
    /// QuickSight refused the call with a terminal error (exception name and message).
    Rejected { error: String, message: String },
    /// QuickSight reported a request status this operator does not know; acting on it could do
    /// the wrong thing, so it waits for a newer operator or a human.
    UnrecognizedRequestStatus(String),
    /// The spec cannot be acted on as written (the message says which field).
    InvalidSpec(String),
    /// An older decision (`namespace/name`) decides the same request; this one makes no call.
    Conflict { winner: String },
    /// No `QuickSightAccount` binding admits this decision (the message says what is missing);
    /// no AWS call is made.
    NotAuthorized(String),
    /// The action failed on every attempt the retry policy allows.
    RetriesExhausted {
        attempts: i64,
        request_status: RequestStatus,
        reason: Option<String>,
    },
}

impl Stall {
    /// The condition reason, a stable CamelCase word tools can match on.
    pub fn reason(&self) -> &str {
        match self {
            Stall::AlreadyDecided { .. } => "AlreadyDecided",
            Stall::ActionNotApplicable { .. } => "ActionNotApplicable",
            Stall::RequestNotFound => "RequestNotFound",
            Stall::Rejected { error, .. } => error,
            Stall::UnrecognizedRequestStatus(_) => "UnrecognizedRequestStatus",
            Stall::InvalidSpec(_) => "InvalidSpec",
            Stall::Conflict { .. } => "Conflict",
            Stall::NotAuthorized(_) => "NotAuthorized",
            Stall::RetriesExhausted { .. } => "RetriesExhausted",
        }
    }
}

/// Decides what to do for `action` at `generation`, given the request as QuickSight shows it
/// (`None`: not found) and the status this operator wrote before.
pub fn decide(
    action: Action,
    generation: i64,
    remote: Option<&RequestDetail>,
    status: Option<&SelfUpgradeDecisionStatus>,
) -> Plan {
    use RequestStatus::*;

    let Some(remote) = remote else {
        return Plan::Report(Verdict::Stalled(Stall::RequestNotFound));
    };
    let applied = status.is_some_and(|s| {
        (s.applied_action == Some(action) && s.applied_generation == Some(generation))
            || intent_for(Some(s), action, generation)
                .is_some_and(|intent| seen_since(intent, remote))
    });
    let stall = |stall| Plan::Report(Verdict::Stalled(stall));

    match (action, &remote.request_status) {
        (_, Unrecognized(value)) => return stall(Stall::UnrecognizedRequestStatus(value.clone())),
        (Action::Approve | Action::Verify, Approved) | (Action::Deny, Denied) => {
            return Plan::Report(Verdict::Satisfied {
                applied_by_operator: applied,
            });
        }
        (Action::Approve | Action::Verify, Denied) | (Action::Deny, Approved) => {
            return stall(Stall::AlreadyDecided {
                request_status: remote.request_status.clone(),
            });
        }
        (Action::Approve, VerifyFailed) | (Action::Verify, UpdateFailed) => {
            return stall(Stall::ActionNotApplicable {
                action,
                request_status: remote.request_status.clone(),
            });
        }
        _ => {}
    }

    // From here the request is open to this action: PENDING, or a failed state it may leave.
    if let Some(rejection) = status
        .and_then(|s| s.rejection.as_ref())
        .filter(|r| r.generation == generation && r.action == action)
    {
        return stall(Stall::Rejected {
            error: rejection.error.clone(),
            message: rejection.message.clone(),
        });
    }
    if !applied {
        return Plan::Send(action);
    }
    match (action, &remote.request_status) {
        (Action::Approve, UpdateFailed) | (Action::Verify, VerifyFailed) => {
            Plan::Report(Verdict::ActionFailed {
                request_status: remote.request_status.clone(),
                reason: remote.last_update_failure_reason.clone(),
                next_retry: None,
            })
        }
        // PENDING after our call, or DENY not yet reflected: the listing lags the update.
        _ => Plan::Report(Verdict::AwaitingResult),
    }
}

/// The recorded intent, if it is for `action` at `generation`; an intent for another action or
/// generation says nothing about this one.
pub fn intent_for(
    status: Option<&SelfUpgradeDecisionStatus>,
    action: Action,
    generation: i64,
) -> Option<&UpdateIntent> {
    status?
        .intent
        .as_ref()
        .filter(|intent| intent.action == action && intent.generation == generation)
}

/// The intent for `action` at `generation` that the request does not show yet, if any: its
/// call may have been made, may be in flight, or may never have happened.
pub fn unsettled_intent<'a>(
    status: Option<&'a SelfUpgradeDecisionStatus>,
    action: Action,
    generation: i64,
    remote: Option<&RequestDetail>,
) -> Option<&'a UpdateIntent> {
    intent_for(status, action, generation)
        .filter(|intent| !remote.is_some_and(|r| seen_since(intent, r)))
}

/// How much longer a call announced by `intent` may still be in flight: until `window` (the
/// call timeout) has passed since the intent was written, whoever wrote it. Sending again
/// before then could duplicate a call that a crashed process or a second replica is making.
pub fn in_flight_for(intent: &UpdateIntent, now: Timestamp, window: Duration) -> Option<Duration> {
    let recorded = intent.recorded_at.as_ref()?.0;
    let elapsed = now.duration_since(recorded);
    let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    (elapsed < window)
        .then(|| Duration::try_from(window - elapsed.max(SignedDuration::ZERO)).ok())
        .flatten()
}

/// Whether the request changed since the intent was written: then the call took effect (the
/// operator crashed before recording the answer) and must not be sent again.
pub fn seen_since(intent: &UpdateIntent, remote: &RequestDetail) -> bool {
    intent.request_status.as_deref() != Some(remote.request_status.as_str())
        || intent.last_update_attempt_time.as_ref().map(|t| t.0) != remote.last_update_attempt_time
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RequestRejection;

    const GENERATION: i64 = 3;

    fn remote(status: RequestStatus) -> RequestDetail {
        RequestDetail {
            upgrade_request_id: "req-1".into(),
            user_name: Some("alice".into()),
            original_role: Some("READER".into()),
            requested_role: Some("AUTHOR".into()),
            request_note: None,
            creation_time: None,
            request_status: status,
            last_update_attempt_time: None,
            last_update_failure_reason: Some("group membership missing".into()),
        }
    }

    fn applied(action: Action, generation: i64) -> SelfUpgradeDecisionStatus {
        SelfUpgradeDecisionStatus {
            applied_action: Some(action),
            applied_generation: Some(generation),
            ..Default::default()
        }
    }

    fn send(action: Action) -> Plan {
        Plan::Send(action)
    }
    fn satisfied(by_us: bool) -> Plan {
        Plan::Report(Verdict::Satisfied {
            applied_by_operator: by_us,
        })
    }
    fn decided(status: RequestStatus) -> Plan {
        Plan::Report(Verdict::Stalled(Stall::AlreadyDecided {
            request_status: status,
        }))
    }
    fn not_applicable(action: Action, status: RequestStatus) -> Plan {
        Plan::Report(Verdict::Stalled(Stall::ActionNotApplicable {
            action,
            request_status: status,
        }))
    }
    fn failed(status: RequestStatus) -> Plan {
        Plan::Report(Verdict::ActionFailed {
            request_status: status,
            reason: Some("group membership missing".into()),
            next_retry: None,
        })
    }
    fn awaiting() -> Plan {
        Plan::Report(Verdict::AwaitingResult)
    }

    /// Every action × every remote status × (not applied, applied for this generation).
    #[test]
    fn decision_table() {
        use Action::*;
        use RequestStatus::*;
        #[rustfmt::skip]
        let table: Vec<(Action, RequestStatus, Plan, Plan)> = vec![
            //        remote         not applied                        applied this generation
            (Approve, Pending,       send(Approve),                     awaiting()),
            (Approve, Approved,      satisfied(false),                  satisfied(true)),
            (Approve, Denied,        decided(Denied),                   decided(Denied)),
            (Approve, UpdateFailed,  send(Approve),                     failed(UpdateFailed)),
            (Approve, VerifyFailed,  not_applicable(Approve, VerifyFailed), not_applicable(Approve, VerifyFailed)),
            (Deny,    Pending,       send(Deny),                        awaiting()),
            (Deny,    Approved,      decided(Approved),                 decided(Approved)),
            (Deny,    Denied,        satisfied(false),                  satisfied(true)),
            (Deny,    UpdateFailed,  send(Deny),                        awaiting()),
            (Deny,    VerifyFailed,  send(Deny),                        awaiting()),
            (Verify,  Pending,       send(Verify),                      awaiting()),
            (Verify,  Approved,      satisfied(false),                  satisfied(true)),
            (Verify,  Denied,        decided(Denied),                   decided(Denied)),
            (Verify,  UpdateFailed,  not_applicable(Verify, UpdateFailed), not_applicable(Verify, UpdateFailed)),
            (Verify,  VerifyFailed,  send(Verify),                      failed(VerifyFailed)),
        ];
        for (action, status, not_applied, applied_now) in table {
            let detail = remote(status.clone());
            assert_eq!(
                decide(action, GENERATION, Some(&detail), None),
                not_applied,
                "{action} on {status}, nothing applied yet"
            );
            let record = applied(action, GENERATION);
            assert_eq!(
                decide(action, GENERATION, Some(&detail), Some(&record)),
                applied_now,
                "{action} on {status}, applied for this generation"
            );
        }
    }

    #[test]
    fn an_action_applied_for_an_older_generation_or_another_action_is_sent_again() {
        let detail = remote(RequestStatus::Pending);
        let older = applied(Action::Verify, GENERATION - 1);
        assert_eq!(
            decide(Action::Verify, GENERATION, Some(&detail), Some(&older)),
            send(Action::Verify)
        );
        let other_action = applied(Action::Verify, GENERATION);
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&detail), Some(&other_action)),
            send(Action::Deny)
        );
    }

    #[test]
    fn a_request_missing_from_the_listing_stalls_whatever_was_applied() {
        for action in [Action::Approve, Action::Deny, Action::Verify] {
            let expected = Plan::Report(Verdict::Stalled(Stall::RequestNotFound));
            assert_eq!(decide(action, GENERATION, None, None), expected);
            let record = applied(action, GENERATION);
            assert_eq!(decide(action, GENERATION, None, Some(&record)), expected);
        }
    }

    #[test]
    fn a_rejection_for_this_generation_is_not_sent_again_but_a_new_generation_is() {
        let status = SelfUpgradeDecisionStatus {
            rejection: Some(RequestRejection {
                generation: GENERATION,
                action: Action::Approve,
                error: "AccessDeniedException".into(),
                message: "not allowed".into(),
            }),
            ..Default::default()
        };
        let detail = remote(RequestStatus::Pending);
        assert_eq!(
            decide(Action::Approve, GENERATION, Some(&detail), Some(&status)),
            Plan::Report(Verdict::Stalled(Stall::Rejected {
                error: "AccessDeniedException".into(),
                message: "not allowed".into(),
            }))
        );
        assert_eq!(
            decide(
                Action::Approve,
                GENERATION + 1,
                Some(&detail),
                Some(&status)
            ),
            send(Action::Approve)
        );
        // The remote outcome wins over an old rejection: someone approved it meanwhile.
        let approved = remote(RequestStatus::Approved);
        assert_eq!(
            decide(Action::Approve, GENERATION, Some(&approved), Some(&status)),
            satisfied(false)
        );
    }

    #[test]
    fn an_unrecognized_remote_status_is_never_acted_on() {
        let detail = remote(RequestStatus::Unrecognized("ON_HOLD".into()));
        for action in [Action::Approve, Action::Deny, Action::Verify] {
            assert_eq!(
                decide(action, GENERATION, Some(&detail), None),
                Plan::Report(Verdict::Stalled(Stall::UnrecognizedRequestStatus(
                    "ON_HOLD".into()
                )))
            );
        }
    }

    fn intent(action: Action, status: RequestStatus) -> SelfUpgradeDecisionStatus {
        SelfUpgradeDecisionStatus {
            intent: Some(UpdateIntent {
                action,
                generation: GENERATION,
                request_status: Some(status.as_str().to_string()),
                last_update_attempt_time: None,
                recorded_at: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_unsettled_intent_is_in_flight_until_the_call_timeout_has_passed() {
        let mut record = intent(Action::Approve, RequestStatus::Pending);
        let pending = remote(RequestStatus::Pending);
        let unsettled =
            unsettled_intent(Some(&record), Action::Approve, GENERATION, Some(&pending))
                .expect("unsettled")
                .clone();
        // Written by an older version: no time, so nothing to wait for.
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(
            in_flight_for(&unsettled, now, Duration::from_secs(30)),
            None
        );

        let written = Timestamp::from_second(990).expect("time");
        let mut timed = unsettled.clone();
        timed.recorded_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            written,
        ));
        assert_eq!(
            in_flight_for(&timed, now, Duration::from_secs(30)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(in_flight_for(&timed, now, Duration::from_secs(10)), None);
        // A clock behind the writer's still waits the whole window, not more.
        let earlier = Timestamp::from_second(980).expect("time");
        assert_eq!(
            in_flight_for(&timed, earlier, Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );

        // Settled intents (the request changed) and other actions or generations are not.
        let approved = remote(RequestStatus::Approved);
        assert!(
            unsettled_intent(Some(&record), Action::Approve, GENERATION, Some(&approved)).is_none()
        );
        assert!(
            unsettled_intent(Some(&record), Action::Deny, GENERATION, Some(&pending)).is_none()
        );
        assert!(
            unsettled_intent(
                Some(&record),
                Action::Approve,
                GENERATION + 1,
                Some(&pending)
            )
            .is_none()
        );
        record.intent = None;
        assert!(
            unsettled_intent(Some(&record), Action::Approve, GENERATION, Some(&pending)).is_none()
        );
    }

    /// A crash between the call and the status write leaves only the intent behind.
    #[test]
    fn an_intent_whose_request_changed_counts_as_applied_and_is_not_sent_again() {
        let record = intent(Action::Verify, RequestStatus::Pending);
        let mut after_call = remote(RequestStatus::VerifyFailed);
        after_call.last_update_attempt_time =
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).ok();
        assert_eq!(
            decide(Action::Verify, GENERATION, Some(&after_call), Some(&record)),
            failed(RequestStatus::VerifyFailed)
        );
        let mut approved = remote(RequestStatus::UpdateFailed);
        approved.last_update_attempt_time = after_call.last_update_attempt_time;
        assert_eq!(
            decide(
                Action::Approve,
                GENERATION,
                Some(&approved),
                Some(&intent(Action::Approve, RequestStatus::UpdateFailed))
            ),
            failed(RequestStatus::UpdateFailed),
            "same status, newer attempt time: the retry happened"
        );
    }

    #[test]
    fn an_intent_whose_request_is_unchanged_is_sent() {
        let record = intent(Action::Verify, RequestStatus::Pending);
        let unchanged = remote(RequestStatus::Pending);
        assert_eq!(
            decide(Action::Verify, GENERATION, Some(&unchanged), Some(&record)),
            send(Action::Verify)
        );
        // An intent for another generation or action says nothing about this one.
        let changed = remote(RequestStatus::VerifyFailed);
        assert_eq!(
            decide(
                Action::Verify,
                GENERATION + 1,
                Some(&changed),
                Some(&record)
            ),
            send(Action::Verify)
        );
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&changed), Some(&record)),
            send(Action::Deny)
        );
    }

    /// The reconciler relies on this: after a successful call it decides again with the answer
    /// and expects a report, never a second call.
    #[test]
    fn an_action_applied_for_this_generation_is_never_sent_again() {
        let statuses = [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::UpdateFailed,
            RequestStatus::VerifyFailed,
            RequestStatus::Unrecognized("X".into()),
        ];
        for action in [Action::Approve, Action::Deny, Action::Verify] {
            for status in &statuses {
                let record = applied(action, GENERATION);
                let plan = decide(
                    action,
                    GENERATION,
                    Some(&remote(status.clone())),
                    Some(&record),
                );
                assert!(
                    !matches!(plan, Plan::Send(_)),
                    "{action} on {status}: {plan:?}"
                );
            }
        }
    }
}
