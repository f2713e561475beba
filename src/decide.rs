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
    /// Paused by the `quicksight.selfupgrade.io/paused` annotation (the message says on what:
    /// the decision, or its account's binding): no QuickSight call until it goes.
    Paused(String),
    /// `run --dry-run`: the call `action` was due, and was not sent; the request as seen.
    DryRun {
        action: Action,
        request_status: RequestStatus,
    },
}

/// Why a decision cannot progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Stall {
    /// The request was decided the other way (e.g. DENIED while the spec says APPROVE).
    AlreadyDecided { request_status: RequestStatus },
    /// The request is in a state this action cannot move (APPROVE on VERIFY_FAILED, VERIFY on
    /// UPDATE_FAILED); see the table in docs/semantics.md.
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
    /// An older decision decides the same request; this one makes no call. `winner` names it
    /// as this decision's namespace may know it: `SelfUpgradeDecision <name>` in the same
    /// namespace, `a SelfUpgradeDecision in another namespace` otherwise. `winner_object` is
    /// its (namespace, name), for the Event on it.
    Conflict {
        winner: String,
        winner_object: (String, String),
    },
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

/// How far apart the replicas' clocks may be. An intent's window is read by other replicas
/// against their own clocks; this much is added before they take it as closed. NTP keeps the
/// nodes of a cluster within milliseconds; see docs/reliability.md.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(2);

/// The window a write-ahead intent announces for its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallWindow {
    /// The call is sent by then or not at all: the pacer may hold it at most one call timeout.
    pub send_by: Duration,
    /// The call has been answered or abandoned by then (sent by `send_by`, given at most the
    /// call timeout), measured from the intent's writing.
    pub expires_after: Duration,
}

impl CallWindow {
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            send_by: call_timeout,
            expires_after: call_timeout.saturating_mul(2),
        }
    }

    /// Until when an intent written at `recorded` for this window may still have a call in
    /// flight, as its `expiresAt` says.
    pub fn expires_at(&self, recorded: Timestamp) -> Timestamp {
        let after = SignedDuration::try_from(self.expires_after).unwrap_or(SignedDuration::MAX);
        recorded.saturating_add(after).unwrap_or(recorded)
    }
}

/// How much longer a call announced by `intent` may still be in flight, whoever wrote it: until
/// its `expiresAt`, plus [`CLOCK_SKEW_MARGIN`]. Sending again before then could duplicate a call
/// that a crashed process or a second replica is making. Intents of older versions have no
/// `expiresAt`: theirs is `recordedAt` (stored to the second, so one second later) plus the
/// call timeout. The wait is never longer than a whole window, so that an intent from a clock
/// far ahead cannot hold a decision for long.
pub fn in_flight_for(
    intent: &UpdateIntent,
    now: Timestamp,
    window: CallWindow,
) -> Option<Duration> {
    let legacy_window = window.send_by + Duration::from_secs(1);
    let closes = match (&intent.expires_at, &intent.recorded_at) {
        (Some(expires), _) => expires.0,
        (None, Some(recorded)) => recorded
            .0
            .saturating_add(SignedDuration::try_from(legacy_window).ok()?)
            .ok()?,
        (None, None) => return None,
    }
    .saturating_add(SignedDuration::try_from(CLOCK_SKEW_MARGIN).ok()?)
    .ok()?;
    let left = Duration::try_from(now.duration_until(closes)).ok()?;
    let longest = window.expires_after.max(legacy_window) + CLOCK_SKEW_MARGIN;
    (!left.is_zero()).then_some(left.min(longest))
}

/// Whether the request changed since the intent was written: then the call took effect (the
/// operator crashed before recording the answer, or the answer was lost) and must not be sent
/// again.
pub fn seen_since(intent: &UpdateIntent, remote: &RequestDetail) -> bool {
    intent.request_status.as_deref() != Some(remote.request_status.as_str())
        || !same_time_as_stored(
            intent.last_update_attempt_time.as_ref().map(|t| t.0),
            remote.last_update_attempt_time,
        )
}

/// Whether `remote` is the time that was stored as `stored`, compared at the precision it was
/// stored in: microseconds, or whole seconds for an intent written by an older version (whose
/// times carry no fraction).
fn same_time_as_stored(stored: Option<Timestamp>, remote: Option<Timestamp>) -> bool {
    match (stored, remote) {
        (None, None) => true,
        (Some(stored), Some(remote)) if stored.subsec_nanosecond() == 0 => {
            stored.as_second() == remote.as_second()
        }
        (Some(stored), Some(remote)) => stored.as_microsecond() == remote.as_microsecond(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RequestRejection;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

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
                expires_at: None,
            }),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("time")
    }

    #[test]
    fn an_unsettled_intent_is_in_flight_until_its_window_and_the_skew_margin_have_passed() {
        let mut record = intent(Action::Approve, RequestStatus::Pending);
        let pending = remote(RequestStatus::Pending);
        let unsettled =
            unsettled_intent(Some(&record), Action::Approve, GENERATION, Some(&pending))
                .expect("unsettled")
                .clone();
        let window = CallWindow::new(Duration::from_secs(30));
        // No time at all: nothing to wait for.
        assert_eq!(in_flight_for(&unsettled, at(1_000), window), None);

        // Sent by 30 s after writing, answered or abandoned by 60 s, plus the margin.
        let mut timed = unsettled.clone();
        timed.expires_at = Some(MicroTime(window.expires_at(at(990))));
        assert_eq!(timed.expires_at, Some(MicroTime(at(1_050))));
        let margin = CLOCK_SKEW_MARGIN;
        assert_eq!(
            in_flight_for(&timed, at(1_000), window),
            Some(Duration::from_secs(50) + margin)
        );
        assert_eq!(in_flight_for(&timed, at(1_050), window), Some(margin));
        assert_eq!(
            in_flight_for(
                &timed,
                at(1_050) + SignedDuration::try_from(margin).expect("d"),
                window
            ),
            None
        );
        // A clock far behind the writer's waits one whole window at most.
        assert_eq!(
            in_flight_for(&timed, at(0), window),
            Some(Duration::from_secs(60) + margin)
        );

        // An older version's intent: recordedAt (whole seconds) plus the call timeout.
        let mut legacy = unsettled.clone();
        legacy.recorded_at = Some(Time(at(990)));
        assert_eq!(
            in_flight_for(&legacy, at(1_000), window),
            Some(Duration::from_secs(21) + margin)
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

    /// QuickSight reports milliseconds; a status read back from Kubernetes holds what was
    /// stored. An unchanged request must not look changed, or a call refused before its
    /// effect would never be sent again.
    #[test]
    fn an_attempt_time_is_compared_at_the_precision_it_was_stored_in() {
        let before = at(1_800_000_000) + SignedDuration::from_millis(250);
        let mut record = intent(Action::Deny, RequestStatus::VerifyFailed);
        let stored = record.intent.as_mut().expect("intent");
        stored.last_update_attempt_time = Some(MicroTime(before));
        // The stored form is what the API server gives back.
        let round_trip: UpdateIntent =
            serde_json::from_value(serde_json::to_value(&*stored).expect("json"))
                .expect("read back");
        *stored = round_trip;
        let mut unchanged = remote(RequestStatus::VerifyFailed);
        unchanged.last_update_attempt_time = Some(before);
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&unchanged), Some(&record)),
            send(Action::Deny),
            "unchanged to the millisecond: not seen, so sent"
        );
        let mut retried = unchanged.clone();
        retried.last_update_attempt_time = Some(before + SignedDuration::from_millis(1));
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&retried), Some(&record)),
            awaiting(),
            "a millisecond later: QuickSight saw the call"
        );

        // An older version stored whole seconds: compared to the second.
        let stored = record.intent.as_mut().expect("intent");
        stored.last_update_attempt_time = Some(MicroTime(at(1_800_000_000)));
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&unchanged), Some(&record)),
            send(Action::Deny)
        );
        unchanged.last_update_attempt_time = Some(at(1_800_000_001));
        assert_eq!(
            decide(Action::Deny, GENERATION, Some(&unchanged), Some(&record)),
            awaiting()
        );
    }

    /// A crash between the call and the status write leaves only the intent behind.
    #[test]
    fn an_intent_whose_request_changed_counts_as_applied_and_is_not_sent_again() {
        let record = intent(Action::Verify, RequestStatus::Pending);
        let mut after_call = remote(RequestStatus::VerifyFailed);
        after_call.last_update_attempt_time = Timestamp::from_second(1_800_000_000).ok();
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
