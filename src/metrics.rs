//! Prometheus metrics (OpenMetrics text on `/metrics`): what the controller did, what it asked
//! QuickSight and how that went, and where the decisions stand. `docs/operations.md` is the
//! reference, with alert examples.

use crate::api::SelfUpgradeDecision;
use crate::quicksight::QuickSightError;
use kube::core::DeserializeGuard;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub operation: String,
    /// `ok`, or the exception name (`ThrottlingException`, `TimeoutError`, …).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestStatusLabels {
    pub request_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub condition: String,
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApprovalModeLabels {
    pub account: String,
    pub quicksight_namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestoreLabels {
    pub account: String,
    pub quicksight_namespace: String,
    /// `ok`, or the exception name QuickSight refused with.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyRuleLabels {
    pub namespace: String,
    pub policy: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

/// Every metric the operator exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub quicksight_calls: Family<CallLabels, Counter>,
    pub quicksight_call_duration: Family<OperationLabels, Histogram>,
    pub decisions_by_request_status: Family<RequestStatusLabels, Gauge>,
    pub decisions_by_condition: Family<ConditionLabels, Gauge>,
    pub retry_queue_depth: Gauge,
    pub leader: Gauge,
    pub approval_mode_drift: Family<ApprovalModeLabels, Gauge>,
    pub approval_mode_restores: Family<RestoreLabels, Counter>,
    pub policy_matches: Family<PolicyRuleLabels, Gauge>,
    pub policy_decisions_created: Family<PolicyRuleLabels, Counter>,
    pub policy_held_back: Family<PolicyLabels, Gauge>,
    pub listing_scopes: Family<RegionLabels, Gauge>,
    pub oldest_pending_request_age: Family<ApprovalModeLabels, Gauge>,
    notifications_sent: Family<KindLabels, Counter>,
    pub notification_failures: Counter,
    pub notifications_dropped: Counter,
    pub notification_queue_depth: Gauge,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~41 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("selfupgrade");
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_duration: latency_histogram(),
            quicksight_calls: Family::default(),
            quicksight_call_duration: Family::new_with_constructor(latency_histogram),
            decisions_by_request_status: Family::default(),
            decisions_by_condition: Family::default(),
            retry_queue_depth: Gauge::default(),
            leader: Gauge::default(),
            approval_mode_drift: Family::default(),
            approval_mode_restores: Family::default(),
            policy_matches: Family::default(),
            policy_decisions_created: Family::default(),
            policy_held_back: Family::default(),
            listing_scopes: Family::default(),
            oldest_pending_request_age: Family::default(),
            notifications_sent: Family::default(),
            notification_failures: Counter::default(),
            notifications_dropped: Counter::default(),
            notification_queue_depth: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles by result (the verdict: satisfied, awaiting, action_failed, stalled, retrying; or error)",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, QuickSight calls and status writes included",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "quicksight_calls",
            "QuickSight calls by operation and outcome (ok, or the exception name)",
            metrics.quicksight_calls.clone(),
        );
        registry.register(
            "quicksight_call_duration_seconds",
            "QuickSight call latency by operation",
            metrics.quicksight_call_duration.clone(),
        );
        registry.register(
            "decisions_by_request_status",
            "SelfUpgradeDecisions by the request status QuickSight last showed (none: not seen yet)",
            metrics.decisions_by_request_status.clone(),
        );
        registry.register(
            "decisions_by_condition",
            "SelfUpgradeDecisions by condition type, status and reason",
            metrics.decisions_by_condition.clone(),
        );
        registry.register(
            "retry_queue_depth",
            "Decisions waiting out a backoff after a retryable error",
            metrics.retry_queue_depth.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controller (holds the Lease, or runs without election)",
            metrics.leader.clone(),
        );
        registry.register(
            "approval_mode_drift",
            "1 while a QuickSight namespace's approval mode differs from its QuickSightAccount's spec.selfUpgrade.mode",
            metrics.approval_mode_drift.clone(),
        );
        registry.register(
            "approval_mode_restores",
            "UpdateSelfUpgradeConfiguration calls that set a drifted approval mode back (Enforce), by outcome",
            metrics.approval_mode_restores.clone(),
        );
        registry.register(
            "policy_matches",
            "PENDING requests without a decision that a SelfUpgradePolicy's rule matches (dry run: what it would decide)",
            metrics.policy_matches.clone(),
        );
        registry.register(
            "policy_decisions_created",
            "SelfUpgradeDecisions an Enforce SelfUpgradePolicy created, by rule",
            metrics.policy_decisions_created.clone(),
        );
        registry.register(
            "policy_held_back",
            "Matches of an Enforce SelfUpgradePolicy its brake (maxDecisionsPerHour) holds back",
            metrics.policy_held_back.clone(),
        );
        registry.register(
            "listing_scopes",
            "Scopes (account, QuickSight namespace, role) whose listing the operator keeps, by region: only admitted regions appear, and idle scopes go",
            metrics.listing_scopes.clone(),
        );
        registry.register(
            "oldest_pending_request_age_seconds",
            "How long the oldest PENDING request of a mirrored account and QuickSight namespace has waited (0: none waits); --mirror-requests only",
            metrics.oldest_pending_request_age.clone(),
        );
        registry.register(
            "notifications_sent",
            "Notifications a webhook accepted (--notify-url), by kind: NewRequest, RetriesExhausted, ApprovalModeDrift",
            metrics.notifications_sent.clone(),
        );
        registry.register(
            "notification_failures",
            "POSTs of a notification the webhook refused or did not answer (each is retried with backoff)",
            metrics.notification_failures.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications dropped because the queue was full (offered again by the next scan or reconcile)",
            metrics.notifications_dropped.clone(),
        );
        registry.register(
            "notification_queue_depth",
            "Notifications waiting to be sent",
            metrics.notification_queue_depth.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The Prometheus text format (0.0.4), for scrapers that do not ask for OpenMetrics
    /// (`curl`, `promtool check metrics`).
    pub fn encode_text(&self) -> String {
        text_format(&self.encode())
    }

    /// The counter of notifications of `kind` delivered.
    pub fn notifications_sent(&self, kind: &str) -> Counter {
        self.notifications_sent
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .clone()
    }

    fn observe_reconcile(&self, result: &str, started: Instant) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        self.reconcile_duration
            .observe(started.elapsed().as_secs_f64());
    }

    pub(crate) fn observe_call<T>(
        &self,
        operation: &str,
        started: Instant,
        result: &Result<T, QuickSightError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            // Abandoned before it left: not a call QuickSight saw.
            Err(error) if error.class == crate::quicksight::ErrorClass::NotSent => return,
            Err(error) => error.code.clone(),
        };
        self.quicksight_calls
            .get_or_create(&CallLabels {
                operation: operation.to_string(),
                outcome,
            })
            .inc();
        self.quicksight_call_duration
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Recounts the decision gauges from the controller's store.
    /// Sets `listing_scopes` to `by_region` (regions no scope is kept for any more are dropped).
    pub fn count_listing_scopes(&self, by_region: HashMap<String, i64>) {
        self.listing_scopes.clear();
        for (region, count) in by_region {
            self.listing_scopes
                .get_or_create(&RegionLabels { region })
                .set(count);
        }
    }

    pub fn count_decisions(&self, decisions: &[Arc<DeserializeGuard<SelfUpgradeDecision>>]) {
        let mut by_status: HashMap<String, i64> = HashMap::new();
        let mut by_condition: HashMap<ConditionLabels, i64> = HashMap::new();
        for decision in decisions.iter().filter_map(|d| d.0.as_ref().ok()) {
            let status = decision.status.as_ref();
            let request_status = status
                .and_then(|s| s.request.request_status.clone())
                .unwrap_or_else(|| "none".to_string());
            *by_status.entry(request_status).or_default() += 1;
            for condition in status.map(|s| s.conditions.as_slice()).unwrap_or_default() {
                let labels = ConditionLabels {
                    condition: condition.type_.clone(),
                    status: condition.status.clone(),
                    reason: condition.reason.clone(),
                };
                *by_condition.entry(labels).or_default() += 1;
            }
        }
        // Label sets that no decision has any more must read 0, not their last value.
        self.decisions_by_request_status.clear();
        for (request_status, count) in by_status {
            self.decisions_by_request_status
                .get_or_create(&RequestStatusLabels { request_status })
                .set(count);
        }
        self.decisions_by_condition.clear();
        for (labels, count) in by_condition {
            self.decisions_by_condition
                .get_or_create(&labels)
                .set(count);
        }
    }
}

/// The OpenMetrics exposition rewritten in the Prometheus text format 0.0.4. prometheus_client
/// encodes OpenMetrics only, and the two differ in three places for the metric types used here:
/// a counter family is named with its `_total` suffix, and there is no `# UNIT` line and no
/// `# EOF`. Samples are the same.
fn text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (family, tail) = rest.split_once(' ')?;
            counters
                .contains(family)
                .then(|| format!("{prefix}{family}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

/// `/metrics`: OpenMetrics for scrapers that ask for it (Prometheus does), the text format
/// 0.0.4 otherwise.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let metrics = metrics.clone();
            async move {
                let accept = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let (content_type, body) = match accept.contains("application/openmetrics-text") {
                    true => (
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        metrics.encode(),
                    ),
                    false => (
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.encode_text(),
                    ),
                };
                ([(axum::http::header::CONTENT_TYPE, content_type)], body)
            }
        }),
    )
}

/// Times one reconcile on every way out of it: dropped without a [`result`](Self::result) (a
/// reconcile that returned an error), it is recorded as `error`, with its real duration.
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    started: Instant,
    result: &'static str,
}

impl ReconcileTimer {
    pub fn start(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            started: Instant::now(),
            result: "error",
        }
    }

    /// The `result` label the reconcile ends with.
    pub fn result(&mut self, result: &'static str) {
        self.result = result;
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics.observe_reconcile(self.result, self.started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// `/metrics` asked with `accept`: its content type and body.
    async fn scrape(metrics: Arc<Metrics>, accept: Option<&str>) -> (String, String) {
        let mut request = axum::http::Request::get("/metrics");
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let request = request.body(axum::body::Body::empty()).expect("request");
        let response = router(metrics).oneshot(request).await.expect("answer");
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (content_type, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn prometheus_gets_openmetrics_and_everyone_else_the_text_format() {
        let metrics = Arc::new(Metrics::default());
        metrics.leader.set(1);
        metrics
            .reconciles
            .get_or_create(&ResultLabels {
                result: "satisfied".into(),
            })
            .inc();
        // Prometheus' own Accept header.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (content_type, body) = scrape(metrics.clone(), Some(prometheus)).await;
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(
            body.contains("# TYPE selfupgrade_reconciles counter"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
        let (content_type, body) = scrape(metrics, None).await;
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        assert!(
            body.contains("# TYPE selfupgrade_reconciles_total counter"),
            "{body}"
        );
        assert!(
            body.contains("# HELP selfupgrade_reconciles_total Reconciles"),
            "{body}"
        );
        assert!(
            body.contains("selfupgrade_reconciles_total{result=\"satisfied\"} 1"),
            "{body}"
        );
        assert!(body.contains("selfupgrade_leader 1"));
        assert!(
            !body.contains("# EOF") && !body.contains("# UNIT"),
            "{body}"
        );
    }

    /// A reconcile that ends in an error (its timer dropped without a result) is counted as
    /// `error` with the time it took, not as an instant.
    #[test]
    fn a_reconcile_that_fails_is_timed_as_an_error() {
        let metrics = Arc::new(Metrics::default());
        {
            let _timer = ReconcileTimer::start(metrics.clone());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let text = metrics.encode();
        assert!(
            text.contains("selfupgrade_reconciles_total{result=\"error\"} 1"),
            "{text}"
        );
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("selfupgrade_reconcile_duration_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .expect("a duration sum");
        assert!(sum >= 0.02, "recorded {sum} s");
    }

    #[test]
    fn the_exposition_names_every_metric_with_its_type() {
        let metrics = Metrics::default();
        metrics.observe_reconcile("satisfied", Instant::now());
        metrics.observe_call(
            "ListSelfUpgrades",
            Instant::now(),
            &Ok::<(), QuickSightError>(()),
        );
        metrics.leader.set(1);
        // Families without a series yet (the decision gauges before the first count) print
        // nothing; testbed/tests/end_to_end.rs reads them after a run.
        let text = metrics.encode();
        for line in [
            "# TYPE selfupgrade_reconciles counter",
            "selfupgrade_reconciles_total{result=\"satisfied\"} 1",
            "# TYPE selfupgrade_reconcile_duration_seconds histogram",
            "# TYPE selfupgrade_quicksight_calls counter",
            "selfupgrade_quicksight_calls_total{operation=\"ListSelfUpgrades\",outcome=\"ok\"} 1",
            "# TYPE selfupgrade_quicksight_call_duration_seconds histogram",
            "# TYPE selfupgrade_retry_queue_depth gauge",
            "selfupgrade_leader 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
