//! Shared test fixtures: an in-process simulator and the real SDK client pointed at it.
#![allow(dead_code)] // each test crate uses a different part of the fixtures

pub mod processes;
pub mod webhook;

use aws_sdk_quicksight::config::{Credentials, SharedCredentialsProvider};
use selfupgrade_operator::quicksight::{SdkQuickSight, SdkSettings};
use selfupgrade_testbed::quicksight::{FaultSettings, RunningSim, SimHandle, SimRequest, World};
use std::time::Duration;

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "AKIDTESTFIXTURE";
/// The secret of [`ACCESS_KEY`]: the simulator verifies signatures with it.
pub const SECRET: &str = "test-secret";

/// A simulator state that has issued the fixture key ([`ACCESS_KEY`], [`SECRET`]).
pub fn sim_handle(world: World, faults: FaultSettings, seed: u64) -> SimHandle {
    let handle = SimHandle::new(world, faults, seed);
    handle.add_access_key(ACCESS_KEY, SECRET);
    handle
}

/// A send window that does not close during a test (see `SelfUpgradeApi::update`).
pub fn soon() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(60)
}

pub fn request(id: &str) -> SimRequest {
    SimRequest {
        note: Some("needs dashboards".into()),
        ..SimRequest::pending(id, &format!("{id}@example.com"), 1_764_115_200_000)
    }
}

/// A simulator on a free loopback port with `requests` in ACCOUNT's default namespace.
pub async fn start_sim(requests: Vec<SimRequest>) -> RunningSim {
    let mut world = World::default();
    world.ensure_namespace(ACCOUNT, "default").requests = requests;
    world.ensure_namespace(OTHER_ACCOUNT, "default");
    let handle = sim_handle(world, FaultSettings::default(), 7);
    RunningSim::start(0, handle)
        .await
        .expect("simulator starts")
}

/// The fixture key's credentials.
pub fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, SECRET, None, None, "tests",
        )))
        .build()
}

/// The production adapter, pointed at the simulator.
pub fn quicksight(sim: &RunningSim) -> SdkQuickSight {
    SdkQuickSight::new(
        sdk_config(),
        SdkSettings {
            endpoint_url: Some(sim.endpoint()),
            sts_endpoint_url: Some(sim.endpoint()),
            call_timeout: Duration::from_secs(10),
        },
    )
}

/// A raw SDK client pointed at the simulator.
pub fn sdk_client(sim: &RunningSim) -> aws_sdk_quicksight::Client {
    let config = aws_sdk_quicksight::config::Builder::from(&sdk_config())
        .endpoint_url(sim.endpoint())
        .build();
    aws_sdk_quicksight::Client::from_conf(config)
}

/// The operator's context over `client` and the simulator, unbound accounts allowed, with the
/// playground's timings: for tests that run reconciles or the controller themselves.
pub fn operator_context(
    client: kube::Client,
    sim: &RunningSim,
) -> std::sync::Arc<selfupgrade_operator::context::Context> {
    use selfupgrade_operator::bindings::Bindings;
    use selfupgrade_operator::quicksight::RequestDirectory;
    std::sync::Arc::new(selfupgrade_operator::context::Context::new(
        client.clone(),
        RequestDirectory::new(std::sync::Arc::new(quicksight(sim)), Duration::from_secs(5)),
        Bindings::watch(
            client,
            selfupgrade_operator::tenancy::OperatorRules::single_tenant(REGION),
        ),
        Some(REGION.into()),
        selfupgrade_testbed::playground::playground_timing(),
    ))
}

use kube::Api;
use selfupgrade_operator::api::{Action, SelfUpgradeDecision, SelfUpgradeDecisionSpec};
use selfupgrade_testbed::playground::{Playground, PlaygroundArgs, Tuning};

/// A playground (API server + simulator + controller) on free ports, with `handle` as the
/// simulator's state.
pub async fn start_playground(handle: selfupgrade_testbed::quicksight::SimHandle) -> Playground {
    start_tuned_playground(handle, Tuning::default()).await
}

/// [`start_playground`] with the operator tuned by `tuning`.
pub async fn start_tuned_playground(
    handle: selfupgrade_testbed::quicksight::SimHandle,
    tuning: Tuning,
) -> Playground {
    let args = PlaygroundArgs {
        kubeconfig: "unused.kubeconfig".into(),
        crd_dir: None,
        empty: false,
        apiserver_port: 0,
        quicksight_port: 0,
    };
    Playground::start_tuned(&args, handle, tuning)
        .await
        .expect("playground starts")
}

pub fn new_decision(
    name: &str,
    account: &str,
    request_id: &str,
    action: Action,
) -> SelfUpgradeDecision {
    SelfUpgradeDecision::new(
        name,
        SelfUpgradeDecisionSpec {
            aws_account_id: account.into(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: request_id.into(),
            action,
            region: None,
            retry: None,
        },
    )
}

/// Polls `name` until `done` holds, or fails after `seconds`.
pub async fn wait_for(
    api: &Api<SelfUpgradeDecision>,
    name: &str,
    seconds: u64,
    done: impl Fn(&SelfUpgradeDecision) -> bool,
) -> SelfUpgradeDecision {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(Some(decision)) = api.get_opt(name).await {
            if done(&decision) {
                return decision;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{name} did not converge in {seconds}s: {:#?}",
                    decision.status
                );
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("{name} not found after {seconds}s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the object `name` of `api` until `done` holds, or fails after 30 s showing it.
pub async fn wait_for_object<K>(api: &Api<K>, name: &str, done: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let object = api.get(name).await.expect("get");
        if done(&object) {
            return object;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not get there in 30s: {object:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until the object `name` of `api` no longer exists, or fails after 30 s showing it.
pub async fn wait_until_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Some(object) = api.get_opt(name).await.expect("get") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still there after 30s: {object:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of condition `type_` ("True"/"False"), with its reason.
pub fn condition(decision: &SelfUpgradeDecision, type_: &str) -> Option<(String, String)> {
    decision
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The condition as a pair of string slices, for assertions.
pub fn is(decision: &SelfUpgradeDecision, type_: &str, status: &str, reason: &str) -> bool {
    condition(decision, type_).is_some_and(|(s, r)| s == status && r == reason)
        && decision.status.as_ref().and_then(|s| s.observed_generation)
            == decision.metadata.generation
}

/// Sends one command to the embedded API server's `/_apiserver/` interface (faults, dropped
/// watches, compaction) with the client's credentials.
pub async fn apiserver_command(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: serde_json::Value,
) {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("/_apiserver/{path}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    client
        .request_text(request)
        .await
        .expect("command accepted");
}
