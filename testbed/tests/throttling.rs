//! Throttle-aware pacing end to end: thousands of decisions created at once against a simulator
//! that throttles each account above a rate. The operator is configured slightly faster than the
//! simulator allows, as happens when a quota is lower than assumed, so that throttling does happen
//! and the account-wide pause is what keeps it from becoming a storm.
//!
//! `THROTTLING_DECISIONS` (default 5000) sizes the run.

mod common;

use common::{is, new_decision, start_tuned_playground};
use futures::StreamExt;
use kube::Api;
use kube::api::{ListParams, PostParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_operator::quicksight::PacingSettings;
use selfupgrade_testbed::playground::Tuning;
use selfupgrade_testbed::quicksight::{FaultSettings, SimHandle, World, generate_requests};
use std::time::{Duration, Instant};

const ACCOUNTS: [&str; 5] = [
    "100000000001",
    "100000000002",
    "100000000003",
    "100000000004",
    "100000000005",
];
/// Calls per second per account the simulator accepts.
const QUOTA: f64 = 16.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_decisions_converge_without_a_throttling_storm() {
    let total: usize = std::env::var("THROTTLING_DECISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    let per_account = total.div_ceil(ACCOUNTS.len());
    let mut world = World::default();
    let mut ids = Vec::new();
    for (index, account) in ACCOUNTS.iter().enumerate() {
        let requests = generate_requests(per_account, index as u64 + 1, 1_764_115_200_000);
        ids.extend(requests.iter().map(|r| (account.to_string(), r.id.clone())));
        world.ensure_namespace(account, "default").requests = requests;
    }
    let faults = FaultSettings {
        rate_limit: Some(QUOTA),
        ..FaultSettings::default()
    };
    let handle = SimHandle::new(world, faults, 11);
    let tuning = Tuning {
        pacing: PacingSettings {
            rate_per_second: QUOTA * 1.25,
            burst: QUOTA as u32,
            concurrency: 32,
            throttle_pause: PAUSE,
            throttle_pause_cap: PAUSE_CAP,
        },
        listing_ttl: Duration::from_secs(30),
        ..Tuning::default()
    };
    let started = Instant::now();
    let playground = start_tuned_playground(handle.clone(), tuning).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(
        playground.apiserver.client().await.expect("client"),
        "default",
    );
    // Created at once, as when a pull request with thousands of decisions is synced.
    futures::stream::iter(ids.iter().enumerate())
        .for_each_concurrent(16, |(index, (account, id))| {
            let api = api.clone();
            async move {
                let decision = new_decision(&format!("d{index:05}"), account, id, Action::Approve);
                api.create(&PostParams::default(), &decision)
                    .await
                    .expect("created");
            }
        })
        .await;
    let created = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(600);
    // Listing thousands of objects is costly for the in-process API server: wait on the
    // simulator's counters first, then check the decisions.
    while handle.counters().count("UpdateSelfUpgrade", "ok") < ids.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "not all updated after 10 minutes: {:?}",
            handle.counters()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop {
        let decisions = api.list(&ListParams::default()).await.expect("list");
        let ready = decisions
            .items
            .iter()
            .filter(|d| is(d, "Ready", "True", "Applied"))
            .count();
        if ready == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready}/{} Ready after 10 minutes; counters: {:?}",
            ids.len(),
            handle.counters()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let converged = started.elapsed();

    let counters = handle.counters();
    let updates = counters.count("UpdateSelfUpgrade", "ok");
    let pages = counters.count("ListSelfUpgrades", "ok");
    let throttled = counters.count("UpdateSelfUpgrade", "ThrottlingException")
        + counters.count("ListSelfUpgrades", "ThrottlingException");
    let calls = counters.total("UpdateSelfUpgrade") + counters.total("ListSelfUpgrades");
    println!(
        "{} decisions in {} accounts (quota {QUOTA}/s each, operator paced at {}/s): \
         created in {:.1}s, all Ready after {:.1}s; {updates} successful updates, \
         {pages} listing pages, {throttled} throttled of {calls} calls ({:.2}%)",
        ids.len(),
        ACCOUNTS.len(),
        QUOTA * 1.25,
        created.as_secs_f64(),
        converged.as_secs_f64(),
        100.0 * throttled as f64 / calls as f64,
    );
    assert_eq!(updates as usize, ids.len(), "one update per decision");
    // The share of throttled calls depends on scheduling and is only printed above. What the
    // pacer promises does not: once throttled, the account makes no call until its pause is
    // over.
    let checked = assert_throttled_accounts_pause(&handle.call_log(), PAUSE, PAUSE_CAP);
    assert!(checked > 0, "the run never throttled, so it proved nothing");
    println!("{checked} throttled answers that began a pause were each followed by a quiet pause");
    playground.stop().await;
}

/// The account-wide pause after throttling, and its cap (see the tuning above).
const PAUSE: Duration = Duration::from_millis(500);
const PAUSE_CAP: Duration = Duration::from_secs(8);
/// Calls already admitted when the throttled answer arrived may still reach the simulator just
/// after it; past this they cannot have been admitted before the pause.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(250);

/// For every throttled answer that began a pause (no earlier one of its account within the
/// pause cap, so no pause was running), checks that the account sent nothing from
/// `IN_FLIGHT_GRACE` after it until the pause was over. Returns how many were checked.
fn assert_throttled_accounts_pause(
    log: &[selfupgrade_testbed::quicksight::LoggedCall],
    pause: Duration,
    cap: Duration,
) -> usize {
    let mut last_throttled: std::collections::HashMap<&str, Instant> = Default::default();
    let mut checked = 0;
    for (index, call) in log.iter().enumerate() {
        if call.outcome != "ThrottlingException" {
            continue;
        }
        let began_a_pause = last_throttled
            .insert(&call.account, call.at)
            .is_none_or(|previous| call.at.duration_since(previous) > cap + pause);
        if !began_a_pause {
            continue;
        }
        let quiet_from = call.at + IN_FLIGHT_GRACE;
        let quiet_until = call.at + pause;
        let during_pause: Vec<_> = log[index + 1..]
            .iter()
            .take_while(|later| later.at < quiet_until)
            .filter(|later| later.account == call.account && later.at >= quiet_from)
            .collect();
        assert!(
            during_pause.is_empty(),
            "account {} called during its pause after a throttled answer: {during_pause:?}",
            call.account
        );
        checked += 1;
    }
    checked
}
