//! Property tests: the decision never calls where it must not, whatever the inputs; the status
//! writer is stable; the simulator's parsing survives arbitrary input.

use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use selfupgrade_operator::api::{
    Action, RequestRejection, SelfUpgradeDecisionStatus, UpdateIntent,
};
use selfupgrade_operator::decide::{Plan, decide};
use selfupgrade_operator::quicksight::{RequestDetail, RequestStatus};
use selfupgrade_operator::status;
use selfupgrade_testbed::quicksight::{SimRequest, World};

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Approve),
        Just(Action::Deny),
        Just(Action::Verify)
    ]
}

fn request_status() -> impl Strategy<Value = RequestStatus> {
    prop_oneof![
        Just(RequestStatus::Pending),
        Just(RequestStatus::Approved),
        Just(RequestStatus::Denied),
        Just(RequestStatus::UpdateFailed),
        Just(RequestStatus::VerifyFailed),
        "[A-Z_]{1,12}".prop_map(|s| RequestStatus::from_wire(&s)),
    ]
}

fn remote(status: RequestStatus, attempt: Option<i64>) -> RequestDetail {
    RequestDetail {
        upgrade_request_id: "r".into(),
        user_name: None,
        original_role: None,
        requested_role: None,
        request_note: None,
        creation_time: None,
        request_status: status,
        last_update_attempt_time: attempt.and_then(|s| Timestamp::from_second(s).ok()),
        last_update_failure_reason: None,
    }
}

prop_compose! {
    fn prior_status()(
        applied in proptest::option::of((action(), 0i64..4)),
        intent in proptest::option::of((action(), 0i64..4, request_status(), proptest::option::of(1_700_000_000i64..1_800_000_000))),
        rejection in proptest::option::of((action(), 0i64..4)),
    ) -> SelfUpgradeDecisionStatus {
        SelfUpgradeDecisionStatus {
            applied_action: applied.map(|a| a.0),
            applied_generation: applied.map(|a| a.1),
            intent: intent.map(|(action, generation, status, time)| UpdateIntent {
                action,
                generation,
                request_status: Some(status.as_str().to_string()),
                last_update_attempt_time: time
                    .and_then(|s| Timestamp::from_second(s).ok())
                    .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime),
                recorded_at: None,
                expires_at: None,
            }),
            rejection: rejection.map(|(action, generation)| RequestRejection {
                generation,
                action,
                error: "AccessDeniedException".into(),
                message: "no".into(),
            }),
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn decide_never_calls_where_it_must_not(
        action in action(),
        generation in 0i64..4,
        status in request_status(),
        attempt in proptest::option::of(1_700_000_000i64..1_800_000_000),
        prior in proptest::option::of(prior_status()),
        found in any::<bool>(),
    ) {
        let detail = remote(status.clone(), attempt);
        let plan = decide(action, generation, found.then_some(&detail), prior.as_ref());
        if let Plan::Send(sent) = plan {
            prop_assert_eq!(sent, action, "only the spec's action is ever sent");
            prop_assert!(found, "nothing is sent for a request that is not listed");
            prop_assert!(
                matches!(status, RequestStatus::Pending | RequestStatus::UpdateFailed | RequestStatus::VerifyFailed),
                "never sent to a decided or unknown request: {:?}", status
            );
            let applied_here = prior.as_ref().is_some_and(|p| {
                p.applied_action == Some(action) && p.applied_generation == Some(generation)
            });
            prop_assert!(!applied_here, "never sent twice for one generation");
            let rejected_here = prior.as_ref().and_then(|p| p.rejection.as_ref())
                .is_some_and(|r| r.action == action && r.generation == generation);
            prop_assert!(!rejected_here, "never sent again after a terminal rejection");
        }
    }

    #[test]
    fn the_status_writer_is_stable_for_an_unchanged_verdict(
        action in action(),
        generation in 0i64..4,
        status in request_status(),
        prior in proptest::option::of(prior_status()),
        later in 0i64..100_000,
    ) {
        let detail = remote(status, None);
        let verdict = match decide(action, generation, Some(&detail), prior.as_ref()) {
            Plan::Report(verdict) => verdict,
            Plan::Send(_) => selfupgrade_operator::decide::Verdict::AwaitingResult,
        };
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let mut first = status::carry_over(prior.as_ref(), generation);
        status::record_remote(&mut first, Some(&detail));
        status::set_conditions(&mut first, &verdict, action, generation, now);
        let mut second = status::carry_over(Some(&first), generation);
        status::record_remote(&mut second, Some(&detail));
        let then = Timestamp::from_second(1_800_000_000 + later).expect("time");
        status::set_conditions(&mut second, &verdict, action, generation, then);
        prop_assert_eq!(first, second, "no write for nothing new");
    }

    /// The intent protocol's window against pacer waits and clock skew: a call written at
    /// `written`, held by the pacer for at most its send window, then given at most the call
    /// timeout, has finished by the time any reader whose clock is off by up to the margin
    /// takes the window as closed.
    #[test]
    fn no_reader_takes_the_window_as_closed_while_its_call_may_still_be_out(
        timeout_ms in 1u64..120_000,
        pacer_wait in 0.0f64..=1.0,
        call_duration in 0.0f64..=1.0,
        reader_offset_ms in -2_000i64..=2_000,
        read_after_ms in 0u64..500_000,
    ) {
        use selfupgrade_operator::decide::{CallWindow, in_flight_for};
        use k8s_openapi::jiff::SignedDuration;
        let timeout = std::time::Duration::from_millis(timeout_ms);
        let window = CallWindow::new(timeout);
        let written = Timestamp::from_second(1_800_000_000).expect("time");
        let intent = UpdateIntent {
            action: Action::Approve,
            generation: 1,
            request_status: Some("PENDING".into()),
            last_update_attempt_time: None,
            recorded_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(written)),
            expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                window.expires_at(written),
            )),
        };
        // Sent within the send window (the pacer gives up after it), done within the timeout.
        let sent = window.send_by.mul_f64(pacer_wait);
        let done = sent + timeout.mul_f64(call_duration);
        let read_at = std::time::Duration::from_millis(read_after_ms);
        let reader_clock = written
            + SignedDuration::try_from(read_at).expect("small")
            + SignedDuration::from_millis(reader_offset_ms);
        if in_flight_for(&intent, reader_clock, window).is_none() {
            prop_assert!(
                read_at >= done,
                "a reader at {read_at:?} (clock off by {reader_offset_ms} ms) may send while the call ends at {done:?}"
            );
        }
    }

    #[test]
    fn the_simulator_survives_arbitrary_actions_ids_and_tokens(
        action in ".{0,20}",
        id in ".{0,20}",
        token in proptest::option::of(".{0,40}"),
        max_results in proptest::option::of(any::<i64>()),
    ) {
        let mut world = World::default();
        world.ensure_namespace("111122223333", "default").requests = vec![SimRequest::pending("r", "u", 1)];
        // Errors are fine; panics are not.
        let _ = world.update("111122223333", "default", &id, &action, 1);
        let _ = world.list("111122223333", "default", token.as_deref(), max_results);
    }
}
