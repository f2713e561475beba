//! The command line: `run` (the controller), `crd` (prints the CRD), `sim` (the QuickSight
//! simulator).

use crate::api::{QuickSightAccount, SelfUpgradeDecision, SelfUpgradeRequest};
use crate::bindings::Bindings;
use crate::controller::{self, WatchScope};
use crate::leader::{self, LeaseSettings, Shutdown};
use crate::metrics::{Measured, Metrics};
use crate::quicksight::{Paced, PacingSettings, RequestDirectory, SdkQuickSight, SdkSettings};
use crate::reconcile::{Context, Timing};
use crate::sim::quicksight::{
    self as qs_sim, EpochUnit, FaultSettings, RunningSim, SeedFile, SimHandle, World,
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use kube::CustomResourceExt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "selfupgrade-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (SelfUpgradeDecision, QuickSightAccount,
    /// SelfUpgradeRequest) as YAML.
    Crd(CrdArgs),
    /// Run the QuickSight self-upgrade simulator (for tests and local trials).
    Sim(SimArgs),
    /// Run an embedded Kubernetes API server, the QuickSight simulator and the operator together.
    Playground(crate::playground::PlaygroundArgs),
    /// Run only the embedded Kubernetes API server (for tests and local trials).
    Apiserver(ApiserverArgs),
    /// The request inbox: list an account's self-upgrade requests, or turn them into decisions.
    Requests(crate::inbox_command::RequestsArgs),
    /// The end-to-end benchmark (build with --release): prints a table, optionally writes it.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory (as committed in `crds/`) instead of
    /// printing them all.
    #[arg(long)]
    pub out_dir: Option<std::path::PathBuf>,
}

/// Where to reach AWS: shared by `run` and `requests`.
#[derive(Args, Debug, Clone, Default)]
pub struct AwsEndpoints {
    /// AWS region (for `run`: of decisions without spec.region); else the AWS profile's.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// QuickSight endpoint override (e.g. the simulator's address).
    #[arg(long, env = "AWS_ENDPOINT_URL_QUICKSIGHT")]
    pub quicksight_endpoint: Option<String>,
    /// STS endpoint override for assuming roles (e.g. the simulator's address).
    #[arg(long, env = "AWS_ENDPOINT_URL_STS")]
    pub sts_endpoint: Option<String>,
}

impl AwsEndpoints {
    /// The QuickSight client these flags and the AWS configuration (environment, profile, pod
    /// identity) describe, and the region: the flag's, else the configuration's.
    pub async fn connect(&self, call_timeout: Duration) -> (SdkQuickSight, Option<String>) {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let region = self
            .region
            .clone()
            .or_else(|| aws.region().map(|r| r.to_string()));
        let quicksight = SdkQuickSight::new(
            aws,
            SdkSettings {
                endpoint_url: self.quicksight_endpoint.clone(),
                sts_endpoint_url: self.sts_endpoint.clone(),
                call_timeout,
            },
        );
        (quicksight, region)
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub aws: AwsEndpoints,
    /// Let decisions act on accounts that no QuickSightAccount binds, with the operator's own
    /// credentials, from any namespace (single-tenant clusters). Bound accounts stay bound.
    #[arg(long)]
    pub allow_unbound_accounts: bool,
    /// Mirror the requests of every bound account (and --mirror-account) as read-only
    /// SelfUpgradeRequest objects in --mirror-namespace.
    #[arg(long)]
    pub mirror_requests: bool,
    /// Namespace of the mirrored SelfUpgradeRequests (default: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "selfupgrade-operator")]
    pub mirror_namespace: String,
    /// An account to mirror with the operator's own credentials (repeatable; for accounts
    /// without a QuickSightAccount under --allow-unbound-accounts).
    #[arg(long = "mirror-account")]
    pub mirror_accounts: Vec<String>,
    /// How often the mirror re-lists the accounts.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub mirror_interval: Duration,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_addr: std::net::SocketAddr,
    /// Address of Prometheus' /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// How often QuickSightAccount statuses (bound decisions, credentials) are refreshed.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub account_status_interval: Duration,
    /// Watch only this Kubernetes namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// How long one account's listing of requests is reused.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub listing_ttl: Duration,
    /// Re-check delay after an action was sent but QuickSight does not show it yet.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub awaiting_recheck: Duration,
    /// Re-check delay for a request that ended UPDATE_FAILED / VERIFY_FAILED.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub failed_recheck: Duration,
    /// Re-check delay for a request id QuickSight does not list.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub not_found_recheck: Duration,
    /// Re-check interval for stalled decisions that may yet move (rejected, retries exhausted).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Re-check interval for decisions whose request is decided for good (APPROVED, DENIED),
    /// to notice changes made outside the cluster.
    #[arg(long, default_value = "10h", value_parser = humantime::parse_duration)]
    pub final_resync: Duration,
    /// First retry delay after a retryable error (doubles per failure).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub backoff_base: Duration,
    /// Longest retry delay after retryable errors.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub backoff_cap: Duration,
    /// Calls per generation for an action QuickSight reports as failed (UPDATE_FAILED /
    /// VERIFY_FAILED), the first included; `spec.retry.maxAttempts` overrides it.
    #[arg(long, default_value_t = 10)]
    pub retry_max_attempts: u32,
    /// Delay before re-sending a failed action, doubling per retry (`spec.retry.backoff`).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub retry_backoff: Duration,
    /// Longest delay between retries of a failed action (`spec.retry.backoffCap`).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub retry_backoff_cap: Duration,
    /// Time limit for one QuickSight call.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Wait this long after a decision changes before reconciling it, so that several edits in
    /// quick succession cost one reconcile (status writes never trigger one).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Sustained QuickSight calls per second per account and region.
    #[arg(long, default_value_t = 5.0)]
    pub quicksight_rate: f64,
    /// QuickSight calls an idle account may make at once before --quicksight-rate applies.
    #[arg(long, default_value_t = 10)]
    pub quicksight_burst: u32,
    /// QuickSight calls in flight across all accounts.
    #[arg(long, default_value_t = 16)]
    pub quicksight_concurrency: usize,
    /// Pause of a whole account's calls after QuickSight throttles one (doubles while it goes on).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub throttle_pause: Duration,
    /// Longest pause of an account after throttling.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub throttle_pause_cap: Duration,
    /// Run the controller only while holding a Lease, so that several replicas can run.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the Lease (coordination.k8s.io/v1).
    #[arg(long, default_value = "selfupgrade-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, or the kubeconfig context's).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease (default: the pod name, else host name plus a random
    /// suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// A leader that does not renew its Lease for this long is replaced (whole seconds).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// The leader renews this long before its Lease would expire (whole seconds).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_grace: Duration,
    /// After SIGTERM, how long running reconciles may take to finish before the process exits
    /// anyway (a reconcile cut short is safe: its intent is already recorded).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

impl RunArgs {
    pub fn timing(&self) -> Timing {
        Timing {
            awaiting_recheck: self.awaiting_recheck,
            failed_recheck: self.failed_recheck,
            not_found_recheck: self.not_found_recheck,
            resync: self.resync,
            final_resync: self.final_resync,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            retry: crate::retry::RetrySettings {
                max_attempts: self.retry_max_attempts.max(1),
                backoff: self.retry_backoff,
                backoff_cap: self.retry_backoff_cap,
            },
            call_timeout: self.call_timeout,
            account_status_interval: self.account_status_interval,
            debounce: self.debounce,
        }
    }

    pub fn pacing(&self) -> PacingSettings {
        PacingSettings {
            rate_per_second: self.quicksight_rate,
            burst: self.quicksight_burst,
            concurrency: self.quicksight_concurrency,
            throttle_pause: self.throttle_pause,
            throttle_pause_cap: self.throttle_pause_cap,
        }
    }

    /// The Lease to hold with `--leader-elect`.
    pub fn lease_settings(&self, client: &kube::Client) -> LeaseSettings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "selfupgrade-operator".into());
            format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
        });
        LeaseSettings {
            name: self.lease_name.clone(),
            namespace: self
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            identity,
            duration_seconds: self.lease_duration.as_secs(),
            grace_seconds: self.lease_grace.as_secs(),
        }
    }

    pub fn watch_scope(&self) -> WatchScope {
        match &self.namespace {
            Some(ns) => WatchScope::Namespace(ns.clone()),
            None => WatchScope::AllNamespaces,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0: any free port). The bound address is the first line on stdout.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed file (YAML or JSON) with accounts and requests.
    #[arg(long)]
    pub seed_file: Option<std::path::PathBuf>,
    /// Generate this many PENDING requests in each --account.
    #[arg(long, default_value_t = 0)]
    pub generate: usize,
    /// Account to create (repeatable); `--generate` fills each.
    #[arg(long = "account")]
    pub accounts: Vec<String>,
    /// QuickSight namespace of the --account accounts.
    #[arg(long, default_value = "default")]
    pub quicksight_namespace: String,
    /// Seed for generated requests and random faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fraction of calls answered ThrottlingException.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_fraction: f64,
    /// Fraction of calls answered InternalFailureException.
    #[arg(long, default_value_t = 0.0)]
    pub internal_failure_fraction: f64,
    /// Calls per second above which calls are throttled.
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Latency added to every call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction of UpdateSelfUpgrade calls that take effect and then lose their answer (a 500,
    /// a dropped connection, or an answer later than --slow-answer-ms).
    #[arg(long, default_value_t = 0.0)]
    pub lost_answer_fraction: f64,
    /// How late a slow lost answer comes, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub slow_answer_ms: u64,
    /// Unit of CreationTime / lastUpdateAttemptTime on the wire.
    #[arg(long, value_enum, default_value_t = EpochUnit::Milliseconds)]
    pub epoch_unit: EpochUnit,
    /// An access key pair the simulator issues, `ID:SECRET` (repeatable): calls must be
    /// SigV4-signed with one of them (or with credentials its STS handed out).
    #[arg(long = "access-key", default_values = ["test:test"], value_parser = access_key_pair)]
    pub access_keys: Vec<(String, String)>,
    /// A region SigV4 credential scopes may name (repeatable): the regional endpoints this
    /// simulator stands for.
    #[arg(long = "region", default_values = [qs_sim::DEFAULT_REGION])]
    pub regions: Vec<String>,
}

/// Parses `ID:SECRET`.
fn access_key_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok((id.to_string(), secret.to_string()))
        }
        _ => Err(format!("expected ACCESS_KEY_ID:SECRET, got {text:?}")),
    }
}

impl SimArgs {
    /// Builds the simulator's state from the flags.
    pub fn handle(&self) -> anyhow::Result<SimHandle> {
        for fraction in [
            self.throttle_fraction,
            self.internal_failure_fraction,
            self.lost_answer_fraction,
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&fraction),
                "fault fractions must lie in 0..=1, got {fraction}"
            );
        }
        let now = qs_sim::epoch_millis();
        let mut world = World {
            epoch_unit: self.epoch_unit,
            ..World::default()
        };
        if let Some(path) = &self.seed_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seed file {}", path.display()))?;
            SeedFile::parse(&text)
                .with_context(|| format!("parsing seed file {}", path.display()))?
                .apply(&mut world, now);
        }
        for (index, account) in self.accounts.iter().enumerate() {
            anyhow::ensure!(
                account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
                "--account must be 12 digits, got {account:?}"
            );
            let requests =
                qs_sim::generate_requests(self.generate, self.seed.wrapping_add(index as u64), now);
            world
                .ensure_namespace(account, &self.quicksight_namespace)
                .requests
                .extend(requests);
        }
        let faults = FaultSettings {
            throttle_fraction: self.throttle_fraction,
            internal_failure_fraction: self.internal_failure_fraction,
            rate_limit: self.rate_limit,
            latency_ms: self.latency_ms,
            forced: Default::default(),
            lost_answer_fraction: self.lost_answer_fraction,
            slow_answer_ms: self.slow_answer_ms,
        };
        let handle = SimHandle::new(world, faults, self.seed);
        for (id, secret) in &self.access_keys {
            handle.add_access_key(id, secret);
        }
        handle.set_regions(self.regions.clone());
        Ok(handle)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ApiserverArgs {
    /// Port on 127.0.0.1 (0: any free port). The server's URL is the first line on stdout.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Directory of CRD YAML files installed at start.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/crds"))]
    pub crd_dir: std::path::PathBuf,
    /// Install no CRDs at start: they are served once a client creates them (`kubectl apply`).
    #[arg(long, conflicts_with = "crd_dir")]
    pub empty: bool,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "apiserver.kubeconfig")]
    pub kubeconfig: std::path::PathBuf,
    /// Changes kept for watches from older resourceVersions (older ones get 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    pub history_limit: usize,
    /// Keep the objects, certificate and token here, so that the server started again with the
    /// same --port and --state-dir is the same cluster to its clients.
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Enforce the RBAC objects (Roles, ClusterRoles, bindings) of this YAML file for
    /// --service-account tokens.
    #[arg(long)]
    pub rbac: Option<std::path::PathBuf>,
    /// `NAMESPACE/NAME=KUBECONFIG`: issue a token for this ServiceAccount and write a kubeconfig
    /// that uses it (repeatable; needs --rbac).
    #[arg(long = "service-account", requires = "rbac", value_parser = parse_service_account)]
    pub service_accounts: Vec<(String, String, std::path::PathBuf)>,
    /// Non-mutating requests in flight past which service accounts get 429 (0: no limit), as
    /// kube-apiserver's flag of the same name.
    #[arg(long = "max-requests-inflight", default_value_t = crate::sim::apiserver::DEFAULT_MAX_REQUESTS_IN_FLIGHT)]
    pub max_requests_in_flight: usize,
    /// Mutating requests in flight past which service accounts get 429 (0: no limit).
    #[arg(long = "max-mutating-requests-inflight", default_value_t = crate::sim::apiserver::DEFAULT_MAX_MUTATING_REQUESTS_IN_FLIGHT)]
    pub max_mutating_requests_in_flight: usize,
}

fn parse_service_account(value: &str) -> Result<(String, String, std::path::PathBuf), String> {
    let (account, path) = value
        .split_once('=')
        .ok_or("expected NAMESPACE/NAME=KUBECONFIG")?;
    let (namespace, name) = account
        .split_once('/')
        .ok_or("expected NAMESPACE/NAME=KUBECONFIG")?;
    Ok((namespace.to_string(), name.to_string(), path.into()))
}

/// `apiserver`: serves until Ctrl-C / SIGTERM.
pub async fn run_apiserver(args: ApiserverArgs) -> anyhow::Result<()> {
    let server =
        crate::sim::apiserver::RunningApiServer::start(crate::sim::apiserver::ApiServerConfig {
            port: args.port,
            crd_dir: (!args.empty).then_some(args.crd_dir),
            history_limit: args.history_limit,
            state_dir: args.state_dir,
            max_requests_in_flight: args.max_requests_in_flight,
            max_mutating_requests_in_flight: args.max_mutating_requests_in_flight,
            rbac: match &args.rbac {
                None => None,
                Some(path) => Some(crate::sim::apiserver::RbacSettings {
                    manifests: std::fs::read_to_string(path)
                        .with_context(|| format!("reading --rbac {}", path.display()))?,
                    service_accounts: args
                        .service_accounts
                        .iter()
                        .map(|(namespace, name, _)| (namespace.clone(), name.clone()))
                        .collect(),
                }),
            },
            ..Default::default()
        })
        .await?;
    server.write_kubeconfig(&args.kubeconfig)?;
    for (namespace, name, path) in &args.service_accounts {
        let yaml = server
            .service_account_kubeconfig_yaml(namespace, name)
            .context("a --service-account without a token")?;
        std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", server.url());
    tracing::info!(url = %server.url(), kubeconfig = %args.kubeconfig.display(), "embedded API server listening");
    shutdown_signal().await;
    server.stop().await;
    Ok(())
}

/// The CRDs as committed in `crds/`: (file name, YAML).
pub fn crd_files() -> anyhow::Result<Vec<(&'static str, String)>> {
    Ok(vec![
        (
            "selfupgradedecision.yaml",
            serde_yaml::to_string(&SelfUpgradeDecision::crd())?,
        ),
        (
            "quicksightaccount.yaml",
            serde_yaml::to_string(&QuickSightAccount::crd())?,
        ),
        (
            "selfupgraderequest.yaml",
            serde_yaml::to_string(&SelfUpgradeRequest::crd())?,
        ),
    ])
}

/// `crd`: every CRD on stdout (YAML documents), or one file each in `--out-dir`.
pub fn print_crds(args: &CrdArgs) -> anyhow::Result<()> {
    let files = crd_files()?;
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --out-dir {}", dir.display()))?;
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let documents: Vec<String> = files.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", documents.join("---\n"));
        }
    }
    Ok(())
}

/// `run`: the controller, until SIGTERM or Ctrl-C.
pub async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let (quicksight, default_region) = args.aws.connect(args.call_timeout).await;
    if default_region.is_none() {
        tracing::warn!("no default region: decisions without spec.region will be Stalled");
    }
    let metrics = Arc::new(Metrics::default());
    let measured = Measured::new(Arc::new(quicksight), metrics.clone());
    let paced = Paced::new(Arc::new(measured), args.pacing()).context("--quicksight-* flags")?;
    let directory = RequestDirectory::new(Arc::new(paced), args.listing_ttl);
    if args.allow_unbound_accounts {
        tracing::warn!(
            "--allow-unbound-accounts: decisions in any namespace may act on accounts no QuickSightAccount binds"
        );
    }
    let bindings = Bindings::watch(client.clone(), args.allow_unbound_accounts);
    let mut ctx = Context::new(client, directory, bindings, default_region, args.timing())
        .with_metrics(metrics.clone());
    if args.mirror_requests {
        ctx = ctx.with_mirror(crate::mirror::MirrorSettings {
            namespace: args.mirror_namespace.clone(),
            accounts: args.mirror_accounts.clone(),
            interval: args.mirror_interval,
        });
    }
    let ctx = Arc::new(ctx);
    let readiness = crate::health::Readiness::default();
    let health = crate::health::start(args.health_addr, crate::health::router(readiness.clone()))
        .await
        .with_context(|| format!("serving the probes on --health-addr {}", args.health_addr))?;
    let metrics_server = crate::health::start(args.metrics_addr, crate::metrics::router(metrics))
        .await
        .with_context(|| format!("serving /metrics on --metrics-addr {}", args.metrics_addr))?;
    let synced = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.bindings.wait_until_ready().await;
            readiness.set_ready();
        })
    };
    let shutdown: Shutdown = shutdown_signal().boxed().shared();
    let work = async {
        if args.leader_elect {
            let lease = args.lease_settings(&ctx.client);
            leader::run_when_leading(
                ctx,
                args.watch_scope(),
                args.concurrency,
                lease,
                shutdown.clone(),
            )
            .await?;
        } else {
            controller::run(ctx, args.watch_scope(), args.concurrency, shutdown.clone()).await;
        }
        anyhow::Ok(())
    };
    let drain_deadline = async {
        shutdown.clone().await;
        tokio::time::sleep(args.drain_timeout).await;
    };
    let result = tokio::select! {
        result = work => result,
        () = drain_deadline => {
            tracing::warn!(
                timeout = ?args.drain_timeout,
                "reconciles still running after --drain-timeout; exiting without them"
            );
            Ok(())
        }
    };
    health.abort();
    metrics_server.abort();
    synced.abort();
    result
}

/// `sim`: serves until Ctrl-C / SIGTERM. The first line on stdout is the bound address.
pub async fn run_simulator(args: SimArgs) -> anyhow::Result<()> {
    let handle = args.handle()?;
    let mut running = RunningSim::start(args.port, handle)
        .await
        .context("binding the simulator's port")?;
    println!("{}", running.endpoint());
    tracing::info!(endpoint = %running.endpoint(), "QuickSight simulator listening; admin interface under /_sim/");
    tokio::select! {
        _ = shutdown_signal() => running.stop().await,
        _ = running.wait() => anyhow::bail!("the simulator's server stopped unexpectedly"),
    }
    Ok(())
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["selfupgrade-operator", "run"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn debounce_is_off_unless_asked_for() {
        assert_eq!(run_args(&[]).timing().debounce, Duration::ZERO);
        assert_eq!(
            run_args(&["--debounce", "2s"]).timing().debounce,
            Duration::from_secs(2)
        );
    }
}
