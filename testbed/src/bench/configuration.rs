//! One configuration of the benchmark, end to end: the stand-ins and the operator as separate
//! processes, N decisions created and awaited, then an idle phase; its [`Figures`].

use super::BenchArgs;
use super::processes::{
    NAMESPACE, Process, cpu_and_peak_rss, difference, exe, live_heap, operator_requests, path_str,
    quicksight_calls, serve, sim_get,
};
use super::report::Figures;
use anyhow::{Context as _, bail};
use futures::StreamExt;
use kube::Api;
use kube::api::{ListParams, PostParams};
use selfupgrade_operator::api::{Action, SelfUpgradeDecision, SelfUpgradeDecisionSpec};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The annotation `kubectl apply` keeps the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The allocator the operator runs with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Allocator {
    /// The production binary's.
    Mimalloc,
    /// glibc's malloc with two arenas (`MALLOC_ARENA_MAX=2`), as operators often tune it.
    Glibc,
}

/// What one run measures.
#[derive(Clone, Debug)]
pub struct Configuration {
    pub label: String,
    pub decisions: usize,
    pub accounts: usize,
    /// The operator's --quicksight-rate (its burst is the same number of calls).
    pub rate: f64,
    pub operator_flags: Vec<String>,
    pub allocator: Allocator,
}

impl Configuration {
    pub fn new(label: impl Into<String>, decisions: usize, accounts: usize, rate: f64) -> Self {
        Self {
            label: label.into(),
            decisions,
            accounts,
            rate,
            operator_flags: Vec::new(),
            allocator: Allocator::Mimalloc,
        }
    }
}

/// The stand-ins of one run and the admin's view of them.
struct StandIns {
    apiserver: Process,
    _sim: Process,
    endpoint: String,
    client: kube::Client,
    operator_kubeconfig: std::path::PathBuf,
}

fn account(index: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + index as u64)
}

pub async fn run(config: &Configuration, args: &BenchArgs) -> anyhow::Result<Figures> {
    eprintln!(
        "bench: {}: {} decisions in {} accounts",
        config.label, config.decisions, config.accounts
    );
    let dir = tempfile::tempdir()?;
    let stand_ins = start_stand_ins(dir.path(), config).await?;
    let targets = targets(&stand_ins.endpoint, config.decisions)?;
    let api: Api<SelfUpgradeDecision> = Api::namespaced(stand_ins.client.clone(), "default");
    let apiserver_cpu_before = cpu_and_peak_rss(stand_ins.apiserver.id())?.0;

    // Startup: one decision exists before the operator starts; time until it is reconciled.
    api.create(&PostParams::default(), &decision(&targets, 0))
        .await?;
    let heap_file = dir.path().join("operator.heap");
    let started = Instant::now();
    let operator = start_operator(config, args, &stand_ins, &heap_file)?;
    let pid = operator.id();
    await_first_reconcile(&api, started).await?;
    let startup = started.elapsed();
    let heap_at_start = live_heap(&heap_file).await?;

    let t0 = Instant::now();
    create_all(&api, &targets).await?;
    let created = t0.elapsed();
    await_all_ready(&api, &stand_ins.endpoint, targets.len(), t0).await?;
    let wall = t0.elapsed();
    let (cpu, _) = cpu_and_peak_rss(pid)?;
    let apiserver_cpu = cpu_and_peak_rss(stand_ins.apiserver.id())?.0 - apiserver_cpu_before;
    let quicksight = quicksight_calls(&stand_ins.endpoint)?;
    let api_requests = operator_requests(&stand_ins.client).await?;

    eprintln!(
        "bench: {}: converged in {wall:?}; idle for {:?}",
        config.label, args.idle
    );
    tokio::time::sleep(args.idle).await;
    let idle_quicksight = quicksight_calls(&stand_ins.endpoint)?;
    let idle_api = operator_requests(&stand_ins.client).await?;
    let (_, peak_rss_kib) = cpu_and_peak_rss(pid)?;
    let heap_converged = live_heap(&heap_file).await?;
    // The operator drains and exits on SIGTERM; under a profiler, the profile is written then.
    operator.stop(Duration::from_secs(120)).await;

    let pages_per_account = (config.decisions.div_ceil(config.accounts) as u64)
        .div_ceil(100)
        .max(1);
    Ok(Figures {
        label: config.label.clone(),
        decisions: targets.len(),
        accounts: config.accounts,
        rate: config.rate,
        startup,
        created,
        wall,
        cpu,
        apiserver_cpu,
        peak_rss_kib,
        heap_per_decision: heap_converged.saturating_sub(heap_at_start) as f64
            / targets.len() as f64,
        floor_updates: targets.len() as u64,
        floor_pages: pages_per_account * config.accounts as u64,
        idle_quicksight: difference(&idle_quicksight, &quicksight).values().sum(),
        idle_api_requests: difference(&idle_api, &api_requests),
        quicksight,
        api_requests,
        idle: args.idle,
    })
}

async fn start_stand_ins(dir: &Path, config: &Configuration) -> anyhow::Result<StandIns> {
    let admin_kubeconfig = dir.join("admin.kubeconfig");
    let operator_kubeconfig = dir.join("operator.kubeconfig");
    let rbac = dir.join("rbac.yaml");
    std::fs::write(&rbac, crate::playground::BASE_RBAC)?;
    let service_account = format!("{NAMESPACE}/{NAMESPACE}={}", operator_kubeconfig.display());
    let history = (config.decisions * 4).max(100_000).to_string();
    let (apiserver, _) = serve(&[
        "apiserver",
        "--kubeconfig",
        path_str(&admin_kubeconfig)?,
        "--history-limit",
        &history,
        "--rbac",
        path_str(&rbac)?,
        "--service-account",
        &service_account,
    ])?;
    let per_account = config.decisions.div_ceil(config.accounts).to_string();
    let mut sim_args = vec![
        "sim",
        "--generate",
        &per_account,
        "--access-key",
        "AKIDBENCH:bench",
    ];
    let account_ids: Vec<String> = (0..config.accounts).map(account).collect();
    for id in &account_ids {
        sim_args.extend(["--account", id.as_str()]);
    }
    let (sim, endpoint) = serve(&sim_args)?;
    Ok(StandIns {
        apiserver,
        _sim: sim,
        endpoint,
        client: client_from(&admin_kubeconfig).await?,
        operator_kubeconfig,
    })
}

/// Every request the simulator generated, in creation order, as (account, request id).
fn targets(endpoint: &str, decisions: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut targets = Vec::new();
    for namespace in sim_get(endpoint, "/_sim/requests")?
        .as_array()
        .into_iter()
        .flatten()
    {
        let account = namespace["accountId"].as_str().unwrap_or_default();
        for request in namespace["requests"].as_array().into_iter().flatten() {
            let id = request["id"].as_str().unwrap_or_default();
            targets.push((account.to_string(), id.to_string()));
        }
    }
    targets.truncate(decisions);
    anyhow::ensure!(
        targets.len() == decisions,
        "the simulator generated {} requests for {decisions} decisions",
        targets.len()
    );
    Ok(targets)
}

fn decision(targets: &[(String, String)], index: usize) -> SelfUpgradeDecision {
    let (account, id) = &targets[index];
    let mut decision = SelfUpgradeDecision::new(
        &decision_name(index),
        SelfUpgradeDecisionSpec {
            aws_account_id: account.clone(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: id.clone(),
            action: Action::Approve,
            region: None,
            retry: None,
        },
    );
    // As `kubectl apply` and Argo CD (client-side apply) write them: the applied object itself
    // in an annotation.
    let applied = serde_json::to_string(&decision).unwrap_or_default();
    decision.metadata.annotations = Some([(LAST_APPLIED.to_string(), applied)].into());
    decision
}

fn start_operator(
    config: &Configuration,
    args: &BenchArgs,
    stand_ins: &StandIns,
    heap_file: &Path,
) -> anyhow::Result<Process> {
    let mut command = match args.profile_with.as_deref().map(str::split_whitespace) {
        Some(mut words) => {
            let mut command = Command::new(words.next().context("--profile-with is empty")?);
            command.args(words).arg(exe()?);
            command
        }
        None => Command::new(exe()?),
    };
    let endpoint = stand_ins.endpoint.as_str();
    command
        .args(["run", "--region", "us-east-1", "--allow-unbound-accounts"])
        .args([
            "--quicksight-endpoint",
            endpoint,
            "--sts-endpoint",
            endpoint,
        ])
        .args([
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--quicksight-rate", &config.rate.to_string()])
        .args([
            "--quicksight-burst",
            &(config.rate.ceil() as u64).to_string(),
        ])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(&config.operator_flags)
        .env("KUBECONFIG", &stand_ins.operator_kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .env(crate::allocator::HEAP_FILE_VARIABLE, heap_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if config.allocator == Allocator::Glibc {
        command
            .env(crate::allocator::ALLOCATOR_VARIABLE, "system")
            .env("MALLOC_ARENA_MAX", "2");
    }
    Ok(Process(command.spawn().context("starting the operator")?))
}

async fn await_first_reconcile(
    api: &Api<SelfUpgradeDecision>,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        let first = api.get(&decision_name(0)).await?;
        if first
            .status
            .is_some_and(|s| s.observed_generation.is_some())
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the operator did not reconcile within a minute");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn decision_name(index: usize) -> String {
    format!("d{index:06}")
}

/// Creates the decisions after the first, 64 at a time, as a GitOps sync would.
async fn create_all(
    api: &Api<SelfUpgradeDecision>,
    targets: &[(String, String)],
) -> anyhow::Result<()> {
    let creates = futures::stream::iter(1..targets.len())
        .map(|index| {
            let api = api.clone();
            let decision = decision(targets, index);
            async move { api.create(&PostParams::default(), &decision).await }
        })
        .buffer_unordered(64);
    futures::pin_mut!(creates);
    while let Some(created) = creates.next().await {
        created.context("creating decisions")?;
    }
    Ok(())
}

/// Waits until every decision is Ready. Listing 100,000 objects is the heaviest request there
/// is, so the cheap signal comes first: the simulator has answered one update per decision;
/// then the decisions are listed (in pages) until their outcomes are all written.
async fn await_all_ready(
    api: &Api<SelfUpgradeDecision>,
    endpoint: &str,
    decisions: usize,
    t0: Instant,
) -> anyhow::Result<()> {
    let deadline = Duration::from_secs(1800);
    loop {
        let updates = quicksight_calls(endpoint)?
            .get("UpdateSelfUpgrade")
            .copied()
            .unwrap_or(0);
        if updates >= decisions as u64 {
            break;
        }
        if t0.elapsed() > deadline {
            bail!("only {updates} of {decisions} updates after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let ready = count_ready(api).await?;
        if ready == decisions {
            return Ok(());
        }
        if t0.elapsed() > deadline {
            bail!("only {ready} of {decisions} decisions Ready after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count_ready(api: &Api<SelfUpgradeDecision>) -> anyhow::Result<usize> {
    let mut ready = 0;
    let mut params = ListParams::default().limit(5000);
    loop {
        let page = api.list(&params).await?;
        ready += page
            .items
            .iter()
            .filter(|d| {
                d.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(ready),
        }
    }
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
