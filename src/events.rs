//! Kubernetes Events for a decision's transitions: one Event when the outcome changes, none per
//! reconcile. Which transition deserves an Event is pure ([`transition_event`]); publishing is
//! the reconciler's, through kube-runtime's `Recorder`.

use crate::api::SelfUpgradeDecisionStatus;
use crate::decide::Verdict;
use crate::status::READY;
use kube::runtime::events::{Event, EventType};

/// The Event for the change from `previous` to `next` (written for `verdict`), if the outcome
/// changed: the verdict is an outcome (applied, decided elsewhere, failed, stalled), not a step
/// (awaiting the result) or a transient error being retried, and the Ready condition's reason
/// or message differs from before.
pub fn transition_event(
    previous: Option<&SelfUpgradeDecisionStatus>,
    next: &SelfUpgradeDecisionStatus,
    verdict: &Verdict,
) -> Option<Event> {
    if matches!(verdict, Verdict::AwaitingResult | Verdict::Retrying(_)) {
        return None;
    }
    let ready = |status: &SelfUpgradeDecisionStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (state, reason, message) = ready(next)?;
    if previous.and_then(ready) == Some((state.clone(), reason.clone(), message.clone())) {
        return None;
    }
    let (type_, action) = match (state.as_str(), reason.as_str()) {
        ("True", "Applied") => (EventType::Normal, "UpdateSelfUpgrade"),
        ("True", _) => (EventType::Normal, "Observe"),
        _ => (EventType::Warning, "Observe"),
    };
    Some(Event {
        type_,
        reason,
        note: Some(message),
        action: action.to_string(),
        secondary: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::Stall;
    use crate::quicksight::QuickSightError;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    fn status(ready: &str, reason: &str, message: &str) -> SelfUpgradeDecisionStatus {
        SelfUpgradeDecisionStatus {
            conditions: vec![Condition {
                type_: READY.to_string(),
                status: ready.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_get_one_event_and_repeats_none() {
        let waiting = status("False", "AwaitingResult", "APPROVE was sent");
        let applied = status("True", "Applied", "QuickSight shows the request APPROVED");
        let satisfied = Verdict::Satisfied {
            applied_by_operator: true,
        };
        let event = transition_event(Some(&waiting), &applied, &satisfied).expect("an event");
        assert_eq!(
            (event.type_, event.reason.as_str(), event.action.as_str()),
            (EventType::Normal, "Applied", "UpdateSelfUpgrade")
        );
        assert!(transition_event(Some(&applied), &applied, &satisfied).is_none());
    }

    #[test]
    fn steps_and_retried_errors_get_no_event() {
        let pending = status("False", "AwaitingResult", "APPROVE was sent");
        assert!(transition_event(None, &pending, &Verdict::AwaitingResult).is_none());
        let throttled = status("False", "ThrottlingException", "Rate exceeded");
        let retrying = Verdict::Retrying(QuickSightError::transport(
            "UpdateSelfUpgrade",
            "ThrottlingException",
            "Rate exceeded".into(),
        ));
        assert!(transition_event(Some(&pending), &throttled, &retrying).is_none());
    }

    #[test]
    fn decisions_made_elsewhere_and_failures_are_warnings_or_notes() {
        let cases = [
            ("True", "AlreadyApplied", EventType::Normal),
            ("False", "AlreadyDecided", EventType::Warning),
            ("False", "UpdateFailed", EventType::Warning),
            ("False", "VerifyFailed", EventType::Warning),
            ("False", "RetriesExhausted", EventType::Warning),
            ("False", "RequestNotFound", EventType::Warning),
            ("False", "Conflict", EventType::Warning),
            ("False", "NotAuthorized", EventType::Warning),
            ("False", "AccessDeniedException", EventType::Warning),
        ];
        // The verdict only tells outcomes from steps; the status carries the reason.
        let outcome = Verdict::Stalled(Stall::RequestNotFound);
        for (ready, reason, type_) in cases {
            let event =
                transition_event(None, &status(ready, reason, "m"), &outcome).expect(reason);
            assert_eq!((event.type_, event.reason.as_str()), (type_, reason));
        }
    }

    #[test]
    fn a_second_failure_with_a_new_message_is_a_new_event() {
        let first = status("False", "UpdateFailed", "attempt 1 failed");
        let second = status("False", "UpdateFailed", "attempt 2 failed");
        let failed = Verdict::ActionFailed {
            request_status: crate::quicksight::RequestStatus::UpdateFailed,
            reason: None,
            next_retry: None,
        };
        assert!(transition_event(Some(&first), &second, &failed).is_some());
    }
}
