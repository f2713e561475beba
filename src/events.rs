//! Kubernetes Events for a decision's transitions: one Event when the outcome changes, none per
//! reconcile. Which transition deserves an Event is pure ([`transition_event`]); publishing is
//! [`EventPublisher`]'s.

use crate::api::SelfUpgradeDecisionStatus;
use crate::status::READY;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};

/// Creates one `events.k8s.io/v1` Event per call.
///
/// Not kube-runtime's `Recorder`: to fold repeats into a series it keeps every Event of the last
/// six minutes in memory and walks that whole cache on every publish. With 10,000 decisions
/// converging in a minute that was 10,000 cached Events and a sixth of the operator's CPU (see
/// BENCHMARKS.md). Our Events are one per transition ([`transition_event`]), so a repeat within
/// six minutes is rare and a series would buy little; without one, the operator also needs no
/// `patch` on Events.
pub struct EventPublisher {
    client: kube::Client,
    /// `reportingController` and `reportingInstance`, as the Recorder would set them.
    controller: String,
}

impl EventPublisher {
    pub fn new(client: kube::Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
        }
    }

    /// Creates the Event in the namespace of `regarding` (`default` for cluster-scoped objects);
    /// whether it was created. Events are for people: a failure is logged, never fatal to what
    /// it reports on. The created Event is not read back: nothing uses it.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> bool {
        match self.create(event, regarding).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, reason = %event.reason, "could not publish an Event");
                false
            }
        }
    }

    async fn create(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let body = kube_event(event, regarding, &self.controller, now);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let request = kube::core::Request::new(api.resource_url())
            .create(
                &PostParams::default(),
                serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?,
            )
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await.map(drop)
    }
}

/// kube-apiserver refuses an `events.k8s.io/v1` Event whose note is longer than 1024 bytes
/// (`NoteLengthLimit`, `k8s.io/kubernetes/pkg/apis/core/validation/events.go`); QuickSight's
/// messages, which a note quotes, have no such bound.
pub const NOTE_LIMIT: usize = 1024;

/// `note` cut to [`NOTE_LIMIT`] bytes on a character boundary, marked with `…` when cut.
fn within_note_limit(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_string();
    }
    let ellipsis = '…';
    let mut end = NOTE_LIMIT - ellipsis.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &note[..end])
}

/// The Event object, named `<object>.<nanoseconds as hex>` as kube-runtime and client-go name
/// theirs, so that two Events of one object never collide.
fn kube_event(
    event: &Event,
    regarding: &ObjectReference,
    controller: &str,
    now: Timestamp,
) -> KubeEvent {
    KubeEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.as_deref().map(within_note_limit),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or(controller),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(controller.to_string()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        ..Default::default()
    }
}

/// What an outcome announces when its Ready condition changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// A step (awaiting the result) or a transient error being retried: no Event.
    Nothing,
    /// The request shows what the action asks, after this operator's call.
    Applied,
    /// The request shows what the action asks without a call (decided elsewhere).
    Observed,
    /// A failure or a stall.
    Warning,
}

/// The Event for the change from `previous` to `next`, if the outcome announces one and the
/// Ready condition's reason or message differs from before.
pub fn transition_event(
    previous: Option<&SelfUpgradeDecisionStatus>,
    next: &SelfUpgradeDecisionStatus,
    announce: Announce,
) -> Option<Event> {
    let (type_, action) = match announce {
        Announce::Nothing => return None,
        Announce::Applied => (EventType::Normal, "UpdateSelfUpgrade"),
        Announce::Observed => (EventType::Normal, "Observe"),
        Announce::Warning => (EventType::Warning, "Observe"),
    };
    let ready = |status: &SelfUpgradeDecisionStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (state, reason, message) = ready(next)?;
    if previous.and_then(ready) == Some((state, reason.clone(), message.clone())) {
        return None;
    }
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
    fn the_event_object_names_its_object_reporter_and_outcome() {
        let regarding = ObjectReference {
            api_version: Some("quicksight.selfupgrade.io/v1alpha1".into()),
            kind: Some("SelfUpgradeDecision".into()),
            namespace: Some("team-a".into()),
            name: Some("approve-alice".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "UpdateFailed".into(),
            note: Some("attempt 1 failed".into()),
            action: "Observe".into(),
            secondary: None,
        };
        let at = Timestamp::from_second(1_700_000_000).expect("a valid time");
        let object = kube_event(&event, &regarding, "selfupgrade-operator", at);
        assert_eq!(object.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            object.metadata.name,
            Some(format!("approve-alice.{:x}", at.as_nanosecond()))
        );
        assert_eq!(object.regarding.as_ref(), Some(&regarding));
        assert_eq!(
            (object.type_.as_deref(), object.reason.as_deref()),
            (Some("Warning"), Some("UpdateFailed"))
        );
        assert_eq!(object.note.as_deref(), Some("attempt 1 failed"));
        assert_eq!(
            object.reporting_controller.as_deref(),
            Some("selfupgrade-operator")
        );
        assert_eq!(object.event_time, Some(MicroTime(at)));
    }

    #[test]
    fn outcomes_get_one_event_and_repeats_none() {
        let waiting = status("False", "AwaitingResult", "APPROVE was sent");
        let applied = status("True", "Applied", "QuickSight shows the request APPROVED");
        let event =
            transition_event(Some(&waiting), &applied, Announce::Applied).expect("an event");
        assert_eq!(
            (event.type_, event.reason.as_str(), event.action.as_str()),
            (EventType::Normal, "Applied", "UpdateSelfUpgrade")
        );
        assert!(transition_event(Some(&applied), &applied, Announce::Applied).is_none());
    }

    #[test]
    fn steps_and_retried_errors_get_no_event() {
        let pending = status("False", "AwaitingResult", "APPROVE was sent");
        assert!(transition_event(None, &pending, Announce::Nothing).is_none());
        let throttled = status("False", "ThrottlingException", "Rate exceeded");
        assert!(transition_event(Some(&pending), &throttled, Announce::Nothing).is_none());
    }

    #[test]
    fn notes_are_cut_to_the_api_servers_limit_on_a_character_boundary() {
        let just_fits = "a".repeat(NOTE_LIMIT);
        assert_eq!(within_note_limit(&just_fits), just_fits);
        for long in ["b".repeat(NOTE_LIMIT + 1), "é".repeat(NOTE_LIMIT)] {
            let cut = within_note_limit(&long);
            assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
            assert!(cut.ends_with('…'));
            assert!(long.starts_with(cut.trim_end_matches('…')));
        }
    }

    #[test]
    fn decisions_made_elsewhere_and_failures_are_warnings_or_notes() {
        let cases = [
            (
                "True",
                "AlreadyApplied",
                Announce::Observed,
                EventType::Normal,
            ),
            (
                "False",
                "AlreadyDecided",
                Announce::Warning,
                EventType::Warning,
            ),
            (
                "False",
                "UpdateFailed",
                Announce::Warning,
                EventType::Warning,
            ),
            (
                "False",
                "RetriesExhausted",
                Announce::Warning,
                EventType::Warning,
            ),
        ];
        // The type follows what the outcome announces; the reason is the Ready condition's.
        for (ready, reason, announce, type_) in cases {
            let event =
                transition_event(None, &status(ready, reason, "m"), announce).expect(reason);
            assert_eq!((event.type_, event.reason.as_str()), (type_, reason));
        }
    }

    #[test]
    fn a_second_failure_with_a_new_message_is_a_new_event() {
        let first = status("False", "UpdateFailed", "attempt 1 failed");
        let second = status("False", "UpdateFailed", "attempt 2 failed");
        assert!(transition_event(Some(&first), &second, Announce::Warning).is_some());
    }
}
