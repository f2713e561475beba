//! A real Prometheus server (Debian's `prometheus` package, as `.ci/run` installs it) scrapes
//! the playground's operator on loopback; after decisions converge, the series the alerts of
//! deploy/prometheus/rules.yaml use are in its query API with the labels the rules select on.

mod common;

use common::processes::{Process, admin_get};
use common::*;
use kube::Api;
use kube::api::PostParams;
use selfupgrade_operator::api::{Action, SelfUpgradeDecision};
use selfupgrade_operator::notify::{NotifySettings, WebhookUrl};
use selfupgrade_testbed::playground::{OPERATOR_NAMESPACE, Tuning};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A free loopback port (another process may take it before Prometheus does; rare enough).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts Prometheus scraping `target` every second; `None` when it is not installed (and not
/// required).
fn prometheus(dir: &std::path::Path, target: &str) -> Option<(Process, String)> {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: selfupgrade-operator\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
    )
    .expect("config");
    let address = format!("127.0.0.1:{}", free_port());
    let spawned = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some((Process::new(child), format!("http://{address}"))),
        Err(error) => {
            assert!(
                std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "prometheus is required (REQUIRE_PROMTOOL=1) but does not run: {error}"
            );
            eprintln!("skipped: prometheus is not available ({error})");
            None
        }
    }
}

/// Whether Prometheus answers its readiness endpoint with 200.
fn is_ready(prometheus: &str) -> bool {
    use std::io::{Read, Write};
    let address = prometheus.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET /-/ready HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// The series `query` returns, as their label sets, waiting up to 60 s for some.
async fn series(prometheus: &str, query: &str) -> Vec<serde_json::Value> {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let path = format!("/api/v1/query?query={encoded}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if is_ready(prometheus) {
            let answer = admin_get(prometheus, &path);
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !result.is_empty() {
                return result.into_iter().map(|s| s["metric"].clone()).collect();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no series for {query}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_series_the_alerts_use() {
    let handle = sim_handle(
        {
            let mut world = selfupgrade_testbed::quicksight::World::default();
            world.ensure_namespace(ACCOUNT, "default").requests = vec![request("req-1")];
            world
        },
        Default::default(),
        7,
    );
    // Notifying, so that the notification alert's series exist too.
    let (received, url_file) = common::webhook::start_receiver(0).await;
    let url = std::fs::read_to_string(url_file.path()).expect("the URL");
    let tuning = Tuning {
        notify: Some(NotifySettings {
            url: WebhookUrl::parse(&url).expect("a URL"),
            record: (
                OPERATOR_NAMESPACE.into(),
                "selfupgrade-operator-notified".into(),
            ),
            interval: Duration::from_secs(1),
            accounts: vec![ACCOUNT.into()],
        }),
        ..Tuning::default()
    };
    let playground = start_tuned_playground(handle, tuning).await;
    // The operator's /metrics, served as `run --metrics-addr` serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = listener.local_addr().expect("address").to_string();
    let router = selfupgrade_operator::metrics::router(playground.metrics.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_prometheus, prometheus_url)) = prometheus(dir.path(), &target) else {
        return;
    };
    // The request is notified while it waits; deciding it before the first scan would leave
    // nothing to notify.
    received
        .until("NewRequest", 1, Duration::from_secs(60))
        .await;
    let client = playground.apiserver.client().await.expect("client");
    let decisions: Api<SelfUpgradeDecision> = Api::namespaced(client, "default");
    decisions
        .create(
            &PostParams::default(),
            &new_decision("approve", ACCOUNT, "req-1", Action::Approve),
        )
        .await
        .expect("created");
    wait_for(&decisions, "approve", 30, |d| {
        is(d, "Ready", "True", "Applied")
    })
    .await;

    let up = series(&prometheus_url, "up{job=\"selfupgrade-operator\"} == 1").await;
    assert_eq!(up.len(), 1, "{up:?}");
    let ready = series(
        &prometheus_url,
        "selfupgrade_decisions_by_condition{condition=\"Ready\",status=\"True\"}",
    )
    .await;
    assert_eq!(ready[0]["reason"], "Applied", "{ready:?}");
    let calls = series(
        &prometheus_url,
        "selfupgrade_quicksight_calls_total{operation=\"UpdateSelfUpgrade\"}",
    )
    .await;
    assert_eq!(calls[0]["outcome"], "ok", "{calls:?}");
    let reconciles = series(&prometheus_url, "selfupgrade_reconciles_total").await;
    assert!(
        reconciles.iter().any(|s| s["result"] == "satisfied"),
        "{reconciles:?}"
    );
    assert!(
        !series(&prometheus_url, "selfupgrade_leader == 1")
            .await
            .is_empty()
    );
    let sent = series(&prometheus_url, "selfupgrade_notifications_sent_total").await;
    assert_eq!(sent[0]["kind"], "NewRequest", "{sent:?}");
    series(
        &prometheus_url,
        "selfupgrade_notification_failures_total == 0",
    )
    .await;
    playground.stop().await;
}
