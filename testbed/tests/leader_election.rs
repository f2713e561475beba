//! Two replicas with `--leader-elect` against the embedded API server and the simulator, each
//! its own process: only the Lease holder calls QuickSight; when it is SIGKILLed the other takes
//! over within the lease duration, with no duplicate update; a leader that cannot renew its Lease
//! stops acting before the Lease expires; SIGTERM releases the Lease.

mod common;

use common::apiserver_command;
use common::processes::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use selfupgrade_operator::api::SelfUpgradeDecision;
use std::time::{Duration, Instant};

const LEASE_SECONDS: u64 = 4;

fn replica(kubeconfig: &std::path::Path, endpoint: &str, identity: &str) -> Process {
    let duration = format!("{LEASE_SECONDS}s");
    operator(
        kubeconfig,
        endpoint,
        &access_key(identity),
        &[
            "--leader-elect",
            "--identity",
            identity,
            "--lease-namespace",
            "default",
            "--lease-duration",
            &duration,
            "--lease-grace",
            "1s",
            "--concurrency",
            "2",
        ],
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("selfupgrade-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn wait_for_holder(leases: &Api<Lease>, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(holder) = holder(leases).await.filter(|h| wanted(h)) {
            return holder;
        }
        assert!(Instant::now() < deadline, "no such lease holder after 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both servers, the simulator holding 30 requests in one account and answering in 100 ms.
fn thirty_requests() -> Servers {
    start_servers(&[
        "--latency-ms",
        "100",
        "--generate",
        "30",
        "--account",
        "111122223333",
    ])
}

/// Each replica signs with its own key, so the simulator tells who called.
fn access_key(identity: &str) -> String {
    format!("AKID{}", identity.to_uppercase().replace('-', ""))
}

fn calls_by_key(endpoint: &str, key: &str) -> u64 {
    admin_get(endpoint, "/_sim/counters")["accessKeys"][key]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_calls_and_a_killed_leader_is_replaced_within_the_lease() {
    let servers = thirty_requests();
    let (kubeconfig, endpoint) = (servers.kubeconfig.as_path(), servers.endpoint.as_str());
    let client = client(kubeconfig).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    let mut replicas = vec![
        ("op-a", Some(replica(kubeconfig, endpoint, "op-a"))),
        ("op-b", Some(replica(kubeconfig, endpoint, "op-b"))),
    ];
    let leader = wait_for_holder(&leases, |_| true).await;
    let standby = if leader == "op-a" { "op-b" } else { "op-a" };

    let names = decide_every_request(&api, endpoint).await;
    // Let the leader get part of the work done, then kill it.
    while updates_applied(endpoint) < 10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        calls_by_key(endpoint, &access_key(standby)),
        0,
        "the standby made no QuickSight call while the other led"
    );
    let killed_at = Instant::now();
    for (identity, process) in &mut replicas {
        if *identity == leader {
            drop(process.take()); // SIGKILL: no chance to release the lease
        }
    }
    let updates_by_killed_leader = updates_applied(endpoint);
    wait_for_holder(&leases, |h| h == standby).await;
    let handover = killed_at.elapsed();

    wait_until_all_applied(&api, &names).await;
    let applied = updates_per_request(endpoint);
    println!(
        "leader election: {leader} killed after {updates_by_killed_leader} updates; {standby} \
         took over {:.1}s later (lease {LEASE_SECONDS}s); updates per request {applied:?}",
        handover.as_secs_f64()
    );
    // How long the handover takes (the lease, plus up to a second of jitter that keeps
    // candidates from colliding) depends on how busy the machine is: it is printed above, not
    // asserted. That the standby takes over at all is (`wait_for_holder` gives up after 30 s).
    assert!(
        applied.iter().all(|n| *n == 1),
        "every request updated exactly once: {applied:?}"
    );
    assert!(
        calls_by_key(endpoint, &access_key(standby)) > 0,
        "the new leader did the rest"
    );

    // SIGTERM: the leader drains, releases the lease and exits 0.
    let (_, survivor) = replicas
        .iter_mut()
        .find(|(identity, _)| *identity == standby)
        .expect("standby");
    let mut survivor = survivor.take().expect("running");
    let pid = survivor.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let exit = tokio::task::spawn_blocking(move || survivor.0.wait())
        .await
        .expect("joined")
        .expect("exited");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(holder(&leases).await, None, "the lease was released");
}

/// kube-lease-manager keeps reporting "leader" while its renewals fail. The operator acts only
/// while it sees its own renewal on the Lease, so a leader cut off from its Lease stops before
/// the Lease expires (when a standby could take it), and no replica calls QuickSight until one
/// holds a renewed Lease again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_its_lease_stops_acting_before_it_expires() {
    let servers = thirty_requests();
    let (kubeconfig, endpoint) = (servers.kubeconfig.as_path(), servers.endpoint.as_str());
    let client = client(kubeconfig).await;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let _a = replica(kubeconfig, endpoint, "op-a");
    let _b = replica(kubeconfig, endpoint, "op-b");
    let leader = wait_for_holder(&leases, |_| true).await;

    // The Lease's storage stops answering: the leader cannot renew, nobody can take over.
    apiserver_command(
        &client,
        "PUT",
        "faults",
        serde_json::json!({"unavailableResources": ["leases"]}),
    )
    .await;
    // Once the leader's last renewal has expired, decisions arrive.
    tokio::time::sleep(Duration::from_secs(LEASE_SECONDS)).await;
    let names = decide_every_request(&api, endpoint).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_while_cut_off: u64 = ["op-a", "op-b"]
        .iter()
        .map(|identity| calls_by_key(endpoint, &access_key(identity)))
        .sum();

    // The Lease answers again: a replica renews or takes it, and the work is done once.
    apiserver_command(&client, "PUT", "faults", serde_json::json!({})).await;
    let restored = Instant::now();
    wait_until_all_applied(&api, &names).await;
    let applied = updates_per_request(endpoint);
    println!(
        "lease cut off: {leader} led; QuickSight calls in the 3s after its lease ({LEASE_SECONDS}s) \
         would have expired: {calls_while_cut_off}; Lease restored, {} decisions Ready {:.1}s \
         later (held by {:?}); updates per request {applied:?}",
        names.len(),
        restored.elapsed().as_secs_f64(),
        holder(&leases).await
    );
    assert_eq!(
        calls_while_cut_off, 0,
        "a leader that could not renew its lease kept calling QuickSight"
    );
    assert!(
        applied.iter().all(|n| *n == 1),
        "every request updated exactly once: {applied:?}"
    );
}

/// The safety net under leadership: two replicas that both act (a split brain, or leader
/// election left off by mistake) still never send an action twice, because each call is preceded
/// by an intent written only over the version the reconcile read, and an intent whose call may be
/// in flight is waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_active_replicas_without_a_lease_still_never_duplicate_an_update() {
    let servers = thirty_requests();
    let (kubeconfig, endpoint) = (servers.kubeconfig.as_path(), servers.endpoint.as_str());
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client(kubeconfig).await, "default");
    let names = decide_every_request(&api, endpoint).await;
    let _a = operator(kubeconfig, endpoint, "AKIDSPLITA", &["--concurrency", "4"]);
    let _b = operator(kubeconfig, endpoint, "AKIDSPLITB", &["--concurrency", "4"]);
    wait_until_all_applied(&api, &names).await;
    let applied = updates_per_request(endpoint);
    let counters = admin_get(endpoint, "/_sim/counters");
    println!(
        "split brain: calls by replica {}, UpdateSelfUpgrade outcomes {}",
        counters["accessKeys"], counters["calls"]["UpdateSelfUpgrade"]
    );
    assert!(
        applied.iter().all(|n| *n == 1),
        "every request updated exactly once: {applied:?}"
    );
    assert_eq!(
        counters["calls"]["UpdateSelfUpgrade"],
        serde_json::json!({"ok": names.len()}),
        "no second call reached QuickSight"
    );
}
