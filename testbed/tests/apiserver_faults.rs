//! The operator recovers, without a restart of its own and without a duplicate call, from what
//! real API servers do: slow answers, 409 on status writes, watches dropped mid-stream, history
//! compacted under a resuming watch (410 Gone), and an API server restart with its state kept.
//! The faults are commanded through the embedded API server's `/_apiserver/` interface.

mod common;

use common::*;
use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_testbed::quicksight::{FaultSettings, World, generate_requests};
use std::time::{Duration, Instant};

async fn create(api: &Api<SelfUpgradeDecision>, ids: &[String], range: std::ops::Range<usize>) {
    for index in range {
        let decision = new_decision(
            &format!("d{index:02}"),
            ACCOUNT,
            &ids[index],
            Action::Approve,
        );
        api.create(&PostParams::default(), &decision)
            .await
            .expect("created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_a_misbehaving_api_server_without_duplicate_calls() {
    let mut world = World::default();
    let requests = generate_requests(40, 9, 1_764_115_200_000);
    let ids: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
    world.ensure_namespace(ACCOUNT, "default").requests = requests;
    let faults = FaultSettings {
        latency_ms: 50,
        ..FaultSettings::default()
    };
    let handle = sim_handle(world, faults, 4);
    let mut playground = start_playground(handle.clone()).await;
    let client = playground.apiserver.client().await.expect("client");
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();

    // Slow answers, and the next ten status writes refused as conflicts.
    apiserver_command(
        &client,
        "PUT",
        "faults",
        serde_json::json!({"latencyMs": 100, "conflictStatusWrites": 10}),
    )
    .await;
    create(&api, &ids, 0..20).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Watches dropped mid-stream, then the history they would resume from compacted away.
    apiserver_command(&client, "POST", "drop-watches", serde_json::json!({})).await;
    apiserver_command(&client, "POST", "compact", serde_json::json!({})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A restart: every connection ends; the objects stay.
    playground
        .apiserver
        .restart(Duration::from_millis(500))
        .await
        .expect("restarted");
    // Decisions created after the restart are seen by the recovered watch.
    let client = playground.apiserver.client().await.expect("client");
    let api: Api<SelfUpgradeDecision> = Api::namespaced(client.clone(), "default");
    create(&api, &ids, 20..40).await;
    wait_for(&api, "d39", 60, |d| d.status.is_some()).await;
    let left = client
        .request_text(
            http::Request::get("/_apiserver/faults")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("faults");
    assert!(
        left.contains(r#""conflictStatusWrites":0"#),
        "all ten status writes were refused and retried: {left}"
    );
    apiserver_command(&client, "PUT", "faults", serde_json::json!({})).await;

    for index in 0..40 {
        wait_for(&api, &format!("d{index:02}"), 120, |d| {
            is(d, "Ready", "True", "Applied")
        })
        .await;
    }
    let counters = handle.counters();
    println!(
        "API server faults: 40 decisions Ready {:.1}s after the first fault; UpdateSelfUpgrade {:?}",
        started.elapsed().as_secs_f64(),
        counters.calls.get("UpdateSelfUpgrade")
    );
    assert_eq!(counters.count("UpdateSelfUpgrade", "ok"), 40);
    assert_eq!(
        counters.total("UpdateSelfUpgrade"),
        40,
        "no duplicate or refused update: {counters:?}"
    );
    let settled = handle
        .requests()
        .into_values()
        .flatten()
        .all(|r| r.updates_applied == 1);
    assert!(settled, "every request updated exactly once");
    playground.stop().await;
}
