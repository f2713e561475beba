//! Every action reaches QuickSight once, tried from outside: the operator, the embedded API
//! server and the simulator run as separate processes, statuses make real round trips through
//! the API server, and the counts come from the simulator. The situations are the ones a
//! production operator meets: calls queued behind a low quota on two replicas that both believe
//! they lead, an admin deciding in the console while the operator's call is on its way, answers
//! lost after the effect, and calls refused before it.

mod common;

use common::processes::*;
use common::{is, new_decision, wait_for};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use selfupgrade_operator::api::{
    Action, POLICY_LABEL, RetryPolicy, SelfUpgradeDecision, SelfUpgradePolicy,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "111122223333";

fn request_path(id: &str, what: &str) -> String {
    format!("/_sim/requests/{ACCOUNT}/default/{id}/{what}")
}

/// The simulator's view of one request.
fn sim_request(endpoint: &str, id: &str) -> Value {
    admin_get(endpoint, "/_sim/requests")
        .as_array()
        .expect("namespaces")
        .iter()
        .flat_map(|ns| ns["requests"].as_array().cloned().unwrap_or_default())
        .find(|r| r["id"] == id)
        .expect("request known to the simulator")
}

fn update_outcomes(endpoint: &str) -> Value {
    admin_get(endpoint, "/_sim/counters")["calls"]["UpdateSelfUpgrade"].clone()
}

fn with_retry(mut decision: SelfUpgradeDecision, max_attempts: u32) -> SelfUpgradeDecision {
    decision.spec.retry = Some(RetryPolicy {
        max_attempts: Some(max_attempts),
        backoff: Some("1s".into()),
        backoff_cap: Some("1s".into()),
    });
    decision
}

async fn create(api: &Api<SelfUpgradeDecision>, decision: &SelfUpgradeDecision) {
    api.create(&PostParams::default(), decision)
        .await
        .expect("created");
}

fn stalled_with(decision: &SelfUpgradeDecision, reason: &str) -> bool {
    is(decision, "Stalled", "True", reason)
}

/// Two replicas without leader election and a quota so low that calls queue in the pacer for
/// longer than the call timeout: a queued call must never go out after the window its intent
/// announced, or the other replica sends the same action too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_at_a_low_quota_send_every_action_once() {
    let low_quota = [
        "--concurrency",
        "64",
        "--quicksight-rate",
        "2",
        "--quicksight-burst",
        "1",
    ];
    two_replicas_settle_with_one_effect_each(40, &[], &low_quota).await;
}

/// The same with QuickSight throttling each account above one call a second while the replicas
/// are paced at four: the account pause grows to its cap (4 s), longer than a call's send
/// window (the 3 s call timeout), so queued updates are abandoned unsent and sent later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_throttled_to_the_pause_cap_send_every_action_once() {
    let throttled = [
        "--concurrency",
        "64",
        "--quicksight-rate",
        "4",
        "--quicksight-burst",
        "4",
        "--throttle-pause",
        "1s",
        "--throttle-pause-cap",
        "4s",
    ];
    two_replicas_settle_with_one_effect_each(24, &["--rate-limit", "1"], &throttled).await;
}

/// `count` decisions (every third a VERIFY for a user outside the group, allowed one attempt:
/// a second call would show as a second effect), two operators with `operator_flags` against a
/// simulator with `sim_flags`: every request ends updated exactly once.
async fn two_replicas_settle_with_one_effect_each(
    count: usize,
    sim_flags: &[&str],
    operator_flags: &[&str],
) {
    let mut sim_args = vec!["--account", ACCOUNT];
    sim_args.extend_from_slice(sim_flags);
    let servers = start_servers(&sim_args);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let mut names = Vec::new();
    for index in 0..count {
        let id = format!("split-{index:02}");
        let (in_group, action) = match index % 3 {
            0 => (false, Action::Verify),
            1 => (true, Action::Approve),
            _ => (true, Action::Deny),
        };
        add_pending_request(&endpoint, ACCOUNT, pending_request(&id, in_group));
        let name = format!("d-{index:02}");
        create(
            &api,
            &with_retry(new_decision(&name, ACCOUNT, &id, action), 1),
        )
        .await;
        names.push((name, action));
    }
    let started = Instant::now();
    let _first = operator(&kubeconfig, &endpoint, "AKIDREPLICA1", operator_flags);
    let _second = operator(&kubeconfig, &endpoint, "AKIDREPLICA2", operator_flags);
    for (name, action) in &names {
        wait_for(&api, name, 300, |d| match action {
            Action::Verify => stalled_with(d, "RetriesExhausted"),
            _ => is(d, "Ready", "True", "Applied") || is(d, "Ready", "True", "AlreadyApplied"),
        })
        .await;
    }
    let counters = admin_get(&endpoint, "/_sim/counters");
    let outcomes = &counters["calls"]["UpdateSelfUpgrade"];
    println!(
        "two replicas ({}): {} decisions settled in {:.1}s; UpdateSelfUpgrade outcomes {outcomes}; ListSelfUpgrades outcomes {}",
        operator_flags.join(" "),
        names.len(),
        started.elapsed().as_secs_f64(),
        counters["calls"]["ListSelfUpgrades"]
    );
    let effects = updates_per_request(&endpoint);
    assert_eq!(effects.len(), names.len());
    assert!(
        effects.iter().all(|n| *n == 1),
        "every request updated exactly once: {effects:?}"
    );
    assert!(
        outcomes.get("PreconditionNotMetException").is_none(),
        "no duplicate reached QuickSight: {outcomes}"
    );
}

/// The operator's call is held on its way; meanwhile an admin decides the request in the
/// console; the call is then refused. The decision must report what QuickSight shows now, at
/// once, not the stale read it acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_because_the_console_decided_first_reports_the_request_as_it_is() {
    let servers = start_servers(&["--account", ACCOUNT]);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    // APPROVE meets a console approval (the admin agreed); DENY meets one too (they did not).
    for (id, action) in [
        ("race-approve", Action::Approve),
        ("race-deny", Action::Deny),
    ] {
        add_pending_request(&endpoint, ACCOUNT, pending_request(id, true));
        admin_send(&endpoint, "POST", &request_path(id, "hold"), json!({}));
        create(&api, &new_decision(id, ACCOUNT, id, action)).await;
    }
    // Long re-check intervals, so that only the refusal itself can bring the truth in.
    let _operator = operator(
        &kubeconfig,
        &endpoint,
        "AKIDRACE",
        &["--resync", "1h", "--final-resync", "1h"],
    );
    for id in ["race-approve", "race-deny"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while admin_get(&endpoint, &request_path(id, "hold"))["heldCalls"] == 0 {
            assert!(
                Instant::now() < deadline,
                "the operator never called for {id}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin_send(
            &endpoint,
            "POST",
            &request_path(id, "status"),
            json!({"status": "APPROVED"}),
        );
        admin_send(&endpoint, "DELETE", &request_path(id, "hold"), json!({}));
    }
    let released = Instant::now();
    let approved = wait_for(&api, "race-approve", 15, |d| {
        is(d, "Ready", "True", "AlreadyApplied")
    })
    .await;
    let denied = wait_for(&api, "race-deny", 15, |d| stalled_with(d, "AlreadyDecided")).await;
    println!(
        "console race: both decisions told the truth {:.1}s after the refused calls",
        released.elapsed().as_secs_f64()
    );
    for decision in [&approved, &denied] {
        let status = decision.status.as_ref().expect("status");
        assert_eq!(status.request.request_status.as_deref(), Some("APPROVED"));
        assert_eq!(status.rejection, None, "not held against the action");
        assert_eq!(status.attempts, None, "QuickSight never acted on the call");
    }
    let outcomes = update_outcomes(&endpoint);
    assert_eq!(outcomes["PreconditionNotMetException"], 2, "{outcomes}");
    assert!(outcomes.get("ok").is_none(), "{outcomes}");
}

/// A fifth of all updates take effect and then lose their answer (a 500, a dropped connection,
/// or an answer later than the operator waits). Each must still take effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_whose_answers_are_lost_take_effect_once() {
    let servers = start_servers(&[
        "--generate",
        "30",
        "--account",
        ACCOUNT,
        "--account",
        "444455556666",
        "--lost-answer-fraction",
        "0.2",
        // Longer than the operator's --call-timeout (3 s in these tests).
        "--slow-answer-ms",
        "5000",
        "--seed",
        "13",
    ]);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let names = decide_every_request(&api, &endpoint).await;
    let started = Instant::now();
    let _operator = operator(&kubeconfig, &endpoint, "AKIDLOST", &[]);
    wait_until_all_applied(&api, &names).await;
    let counters = admin_get(&endpoint, "/_sim/counters");
    println!(
        "lost answers: {} decisions Ready in {:.1}s; answers lost {}; UpdateSelfUpgrade outcomes {}",
        names.len(),
        started.elapsed().as_secs_f64(),
        counters["lostAnswers"],
        counters["calls"]["UpdateSelfUpgrade"]
    );
    let lost: u64 = counters["lostAnswers"]
        .as_object()
        .expect("by way")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert!(lost > 0, "no answer was lost, so the run proved nothing");
    let effects = updates_per_request(&endpoint);
    assert!(
        effects.iter().all(|n| *n == 1),
        "every request updated exactly once: {effects:?}"
    );
    assert!(
        counters["calls"]["UpdateSelfUpgrade"]
            .get("PreconditionNotMetException")
            .is_none(),
        "no duplicate reached QuickSight: {counters}"
    );
}

/// VERIFYs of users outside the group, allowed four attempts; the second call of each is
/// refused with a 500 before QuickSight acts. Only the four calls QuickSight saw count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_attempts_quicksight_saw_are_counted() {
    let servers = start_servers(&["--account", ACCOUNT]);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let ids: Vec<String> = (0..10).map(|i| format!("attempts-{i:02}")).collect();
    for id in &ids {
        add_pending_request(&endpoint, ACCOUNT, pending_request(id, false));
        admin_send(
            &endpoint,
            "POST",
            &request_path(id, "update-faults"),
            json!({"faults": ["none", "internalFailureBeforeEffect"]}),
        );
        create(
            &api,
            &with_retry(new_decision(id, ACCOUNT, id, Action::Verify), 4),
        )
        .await;
    }
    let _operator = operator(&kubeconfig, &endpoint, "AKIDATTEMPTS", &[]);
    for id in &ids {
        let decision = wait_for(&api, id, 120, |d| stalled_with(d, "RetriesExhausted")).await;
        let status = decision.status.as_ref().expect("status");
        assert_eq!(status.attempts, Some(4), "{id}: {status:?}");
        assert_eq!(sim_request(&endpoint, id)["updatesApplied"], 4, "{id}");
    }
    let outcomes = update_outcomes(&endpoint);
    assert_eq!(outcomes["ok"], 40, "{outcomes}");
    assert_eq!(outcomes["InternalFailureException"], 10, "{outcomes}");
}

/// A DENY sent to a VERIFY_FAILED request whose attempt time has milliseconds, refused once
/// with a 500 before its effect: the stored intent must not make the unchanged request look
/// changed, so the DENY is sent again and the request ends DENIED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_refused_before_its_effect_is_sent_again() {
    let servers = start_servers(&["--account", ACCOUNT]);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let ids: Vec<String> = (0..5).map(|i| format!("deny-{i}")).collect();
    for id in &ids {
        add_pending_request(&endpoint, ACCOUNT, pending_request(id, false));
        create(
            &api,
            &with_retry(new_decision(id, ACCOUNT, id, Action::Verify), 1),
        )
        .await;
    }
    let _operator = operator(&kubeconfig, &endpoint, "AKIDDENY", &[]);
    for id in &ids {
        wait_for(&api, id, 60, |d| stalled_with(d, "RetriesExhausted")).await;
        let attempted = sim_request(&endpoint, id)["lastUpdateAttemptMs"]
            .as_i64()
            .expect("attempt time");
        println!("{id}: VERIFY_FAILED at {attempted} ms");
        admin_send(
            &endpoint,
            "POST",
            &request_path(id, "update-faults"),
            json!({"faults": ["internalFailureBeforeEffect"]}),
        );
        let deny = json!({"spec": {"action": "DENY"}});
        api.patch(id, &PatchParams::default(), &Patch::Merge(&deny))
            .await
            .expect("patched");
    }
    for id in &ids {
        let decision = wait_for(&api, id, 60, |d| is(d, "Ready", "True", "Applied")).await;
        let status = decision.status.as_ref().expect("status");
        assert_eq!(
            status.request.request_status.as_deref(),
            Some("DENIED"),
            "{id}"
        );
        assert_eq!(status.attempts, Some(1), "{id}: one DENY QuickSight saw");
        assert_eq!(sim_request(&endpoint, id)["updatesApplied"], 2, "{id}");
    }
    let outcomes = update_outcomes(&endpoint);
    assert_eq!(outcomes["InternalFailureException"], 5, "{outcomes}");
}

/// The API server process is killed mid-run and started again over its state directory, on the
/// same port: every object survives, resourceVersions continue, the operator's watches resume
/// (through 410 Gone and a new list) and every decision converges with one update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restarted_over_its_state_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let state = dir.path().join("state");
    let apiserver_args = |port: &str| {
        [
            "apiserver",
            "--port",
            port,
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
        ]
        .map(str::to_string)
    };
    let args = apiserver_args("0");
    let (apiserver, url) = serve(&args.each_ref().map(String::as_str));
    let port = url.rsplit(':').next().expect("port").to_string();
    let (_sim, endpoint) = serve(&[
        "sim",
        "--port",
        "0",
        "--latency-ms",
        "100",
        "--generate",
        "20",
        "--account",
        ACCOUNT,
        "--account",
        "444455556666",
    ]);
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let names = decide_every_request(&api, &endpoint).await;
    let mut running = operator(
        &kubeconfig,
        &endpoint,
        "AKIDRESTART",
        // Reconciles fail while the server is down; the test is about what survives, so their
        // backoff is kept short.
        &["--concurrency", "2", "--backoff-cap", "5s"],
    );
    // Kill it once the operator is well into the work, however long its start took.
    let deadline = Instant::now() + Duration::from_secs(60);
    while updates_applied(&endpoint) < 5 {
        assert!(Instant::now() < deadline, "the operator never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = updates_applied(&endpoint);
    drop(apiserver); // SIGKILL
    tokio::time::sleep(Duration::from_millis(500)).await;
    let args = apiserver_args(&port);
    let (_restarted, again) = serve(&args.each_ref().map(String::as_str));
    assert_eq!(again, url, "the same server, to its clients");
    wait_until_all_applied(&api, &names).await;
    assert!(
        running.0.try_wait().expect("status").is_none(),
        "the operator rode out the restart without exiting"
    );
    println!(
        "API server restart: killed after {before} of {} updates; all Ready after the restart; UpdateSelfUpgrade outcomes {}",
        names.len(),
        update_outcomes(&endpoint)
    );
    assert!(before < names.len() as u64, "the kill landed mid-run");
    let effects = updates_per_request(&endpoint);
    assert!(
        effects.iter().all(|n| *n == 1),
        "every request updated exactly once: {effects:?}"
    );
    assert!(
        update_outcomes(&endpoint)
            .get("PreconditionNotMetException")
            .is_none()
    );
}

/// An Enforce policy's operator SIGKILLed while it creates decisions: the one started after it
/// finds the decisions already created under the names they have from their requests, creates
/// the rest, and every request is updated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_operator_is_killed_mid_way_creates_every_decision_once() {
    const REQUESTS: usize = 20;
    let servers = start_servers(&[]);
    for index in 0..REQUESTS {
        add_pending_request(
            &servers.endpoint,
            ACCOUNT,
            pending_request(&format!("p-{index:02}"), false),
        );
    }
    let client = client(&servers.kubeconfig).await;
    let policy: SelfUpgradePolicy = serde_yaml::from_str(&format!(
        "apiVersion: quicksight.selfupgrade.io/v1alpha1
kind: SelfUpgradePolicy
metadata: {{name: everyone}}
spec:
  awsAccountId: \"{ACCOUNT}\"
  mode: Enforce
  maxDecisionsPerHour: 1000
  rules: [{{name: everyone, action: APPROVE}}]"
    ))
    .expect("policy");
    Api::<SelfUpgradePolicy>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy created");
    // Slow answers, so that the creations take seconds and the kill lands among them.
    common::apiserver_command(&client, "PUT", "faults", json!({"latencyMs": 150})).await;
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let created = |decisions: &Api<SelfUpgradeDecision>| {
        let decisions = decisions.clone();
        async move {
            let by_policy = ListParams::default().labels(&format!("{POLICY_LABEL}=everyone"));
            decisions.list(&by_policy).await.expect("list").items
        }
    };
    let first = operator(
        &servers.kubeconfig,
        &servers.endpoint,
        "AKIDPOLICY1",
        &["--policy-interval", "1s"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while created(&decisions).await.len() < 3 {
        assert!(Instant::now() < deadline, "the operator never got going");
    }
    drop(first); // SIGKILL
    let at_kill = created(&decisions).await.len();
    assert!(at_kill < REQUESTS, "the kill landed mid-way: {at_kill}");
    common::apiserver_command(&client, "PUT", "faults", json!({"latencyMs": 0})).await;
    let _second = operator(
        &servers.kubeconfig,
        &servers.endpoint,
        "AKIDPOLICY2",
        &["--policy-interval", "1s"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let names: Vec<String> = loop {
        let all = created(&decisions).await;
        assert!(
            all.len() <= REQUESTS,
            "a request decided twice: {}",
            all.len()
        );
        if all.len() == REQUESTS {
            break all.iter().map(|d| d.name_any()).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {REQUESTS} created",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    wait_until_all_applied(&decisions, &names).await;
    let all = decisions.list(&ListParams::default()).await.expect("list");
    assert_eq!(all.items.len(), REQUESTS, "one decision per request");
    let effects = updates_per_request(&servers.endpoint);
    assert!(
        effects.iter().all(|n| *n == 1),
        "every request updated exactly once: {effects:?}"
    );
    println!("policy: killed after {at_kill} of {REQUESTS} decisions were created");
}
