//! Exactly-once under crashes: the operator runs as its own process against the embedded API
//! server and the QuickSight simulator (each their own process, so they survive), and is
//! SIGKILLed at random moments and restarted. Every decision must still converge, with exactly
//! one successful update per request. `CHAOS_KILLS` and `CHAOS_REQUESTS_PER_ACCOUNT` make the
//! run bigger.

mod common;

use common::processes::*;
use kube::Api;
use rand::{Rng, SeedableRng};
use selfupgrade_operator::api::SelfUpgradeDecision;
use std::time::{Duration, Instant};

const ACCOUNTS: [&str; 2] = ["111122223333", "444455556666"];

/// Few reconciles at once, so that the work spans several of the operator's lives.
fn chaos_operator(kubeconfig: &std::path::Path, endpoint: &str) -> Process {
    operator(kubeconfig, endpoint, "AKIDCHAOS", &["--concurrency", "2"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_duplicates_an_update() {
    let kills = knob("CHAOS_KILLS", 12);
    let per_account = knob("CHAOS_REQUESTS_PER_ACCOUNT", 25);
    let seed: u64 = knob("CHAOS_SEED", 20261126) as u64;
    let generate = per_account.to_string();
    let servers = start_servers(&[
        // Slow calls, so that kills land while updates are in flight.
        "--latency-ms",
        "150",
        "--generate",
        &generate,
        "--account",
        ACCOUNTS[0],
        "--account",
        ACCOUNTS[1],
    ]);
    let (kubeconfig, endpoint) = (servers.kubeconfig.clone(), servers.endpoint.clone());

    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(&kubeconfig).await, "default");
    let names = decide_every_request(&api, &endpoint).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    // Updates each killed operator got done: kills that land mid-work show as partial runs.
    let mut per_run = Vec::new();
    let updates_so_far = || updates_applied(&endpoint);
    for _ in 0..kills {
        let before = updates_so_far();
        let running = chaos_operator(&kubeconfig, &endpoint);
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        drop(running); // SIGKILL
        per_run.push(updates_so_far() - before);
    }
    let before_final_run = updates_applied(&endpoint);
    let _final_run = chaos_operator(&kubeconfig, &endpoint);
    wait_until_all_applied(&api, &names).await;
    let converged = started.elapsed();

    let counters = admin_get(&endpoint, "/_sim/counters");
    let applied = updates_per_request(&endpoint);
    let updates = &counters["calls"]["UpdateSelfUpgrade"];
    println!(
        "chaos: {} decisions, {kills} SIGKILLs (seed {seed}), updates per killed run {per_run:?} ({before_final_run} in all), converged in {:.1}s; UpdateSelfUpgrade outcomes {updates}; ListSelfUpgrades outcomes {}",
        names.len(),
        converged.as_secs_f64(),
        counters["calls"]["ListSelfUpgrades"]
    );
    assert_eq!(applied.len(), names.len());
    assert!(
        applied.iter().all(|n| *n == 1),
        "every request updated exactly once: {applied:?}"
    );
    assert_eq!(updates["ok"].as_u64(), Some(names.len() as u64));
    assert!(
        updates.get("PreconditionNotMetException").is_none(),
        "no duplicate reached QuickSight: {updates}"
    );
}
