//! The operator's command line: `run` (the controller), `crd` (prints the CRDs), `requests`
//! (the inbox). The stand-ins' commands live in the test bed's binary, which reuses these.

use crate::api::{QuickSightAccount, SelfUpgradeDecision, SelfUpgradePolicy, SelfUpgradeRequest};
use crate::bindings::Bindings;
use crate::context::{Context, Timing};
use crate::controller::{self, WatchScope};
use crate::leader::{self, LeaseSettings, Shutdown};
use crate::metrics::Metrics;
use crate::quicksight::{AwsEndpoints, PacingSettings};
use crate::tenancy::OperatorRules;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "selfupgrade-operator", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub logging: Logging,
    #[command(subcommand)]
    pub command: Command,
}

/// The logging flags every command takes (the test bed's binary too).
#[derive(Args, Debug, Clone)]
pub struct Logging {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
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
    /// The request inbox: list an account's self-upgrade requests, or turn them into decisions.
    Requests(Box<crate::inbox_command::RequestsArgs>),
}

/// The runtime the operator's commands run on: one thread. The operator waits on QuickSight's
/// pace and the API server, and does little work per wake-up; on a multi-threaded runtime most
/// of its CPU went to handing those wake-ups between threads (parking, stealing) and mimalloc
/// kept a heap per thread. At 10,000 decisions in 10 accounts, paced at 50 calls per second,
/// one thread took 690 µs of CPU per decision instead of 986 µs, and 89 MiB of peak RSS instead
/// of 129 MiB, converging as fast (BENCHMARKS.md). Blocking work still goes to tokio's blocking
/// pool, which this runtime has too.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs one of the operator's commands (logging already set up).
pub async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(run) => run_controller(*run).await,
        Command::Crd(crd) => print_crds(&crd),
        Command::Requests(args) => crate::inbox_command::run(*args).await,
    }
}

impl Logging {
    /// Logs go to stderr, so that stdout stays clean for `crd` and the servers' address lines.
    pub fn init(&self) -> anyhow::Result<()> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(from_env) => EnvFilter::try_new(from_env)?,
            Err(_) => EnvFilter::try_new(&self.log_level)?,
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory (as committed in `crds/`) instead of
    /// printing them all.
    #[arg(long)]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub aws: AwsEndpoints,
    /// Let decisions act on accounts that no QuickSightAccount binds, with the operator's own
    /// credentials, from any namespace (single-tenant clusters). Bound accounts stay bound.
    #[arg(long)]
    pub allow_unbound_accounts: bool,
    /// Do everything but the calls that change QuickSight (UpdateSelfUpgrade,
    /// UpdateSelfUpgradeConfiguration): each decision's status says what it would send.
    #[arg(long)]
    pub dry_run: bool,
    /// The regions decisions of accounts no QuickSightAccount binds may call (with
    /// --allow-unbound-accounts), comma-separated. Default: the operator's region only.
    #[arg(long, value_delimiter = ',', value_parser = aws_region)]
    pub allowed_regions: Vec<String>,
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
    #[arg(long, default_value = "5m", value_parser = interval)]
    pub mirror_interval: Duration,
    /// The webhook to notify of new PENDING requests, exhausted retries and approval-mode
    /// drift: a Slack or Teams incoming webhook, or any URL that takes a JSON POST. Give it as
    /// SELFUPGRADE_NOTIFY_URL from a Secret, or with --notify-url-file: a flag's value shows in
    /// the pod spec. Never logged.
    #[arg(long, env = "SELFUPGRADE_NOTIFY_URL", hide_env_values = true, value_parser = secret_text)]
    pub notify_url: Option<SecretText>,
    /// A file that holds the webhook URL (a mounted Secret's key), read at start.
    #[arg(long)]
    pub notify_url_file: Option<std::path::PathBuf>,
    /// How often the accounts are listed for new requests to notify of.
    #[arg(long, default_value = "1m", value_parser = interval)]
    pub notify_interval: Duration,
    /// The ConfigMap, in the Lease's namespace, that records what was notified (so that a
    /// restart or a new leader does not notify it again).
    #[arg(long, default_value = "selfupgrade-operator-notified")]
    pub notify_record: String,
    /// An account to notify of with the operator's own credentials besides the bound ones
    /// (repeatable; for accounts without a QuickSightAccount under --allow-unbound-accounts).
    #[arg(long = "notify-account")]
    pub notify_accounts: Vec<String>,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub health_addr: std::net::SocketAddr,
    /// Address of Prometheus' /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// How often QuickSightAccount statuses (bound decisions, credentials) are refreshed.
    #[arg(long, default_value = "1m", value_parser = interval)]
    pub account_status_interval: Duration,
    /// How often the approval mode of the QuickSight namespaces a QuickSightAccount declares
    /// one for (`spec.selfUpgrade`) is read (and, with `Enforce`, set back).
    #[arg(long, default_value = "5m", value_parser = interval)]
    pub approval_mode_interval: Duration,
    /// How often every SelfUpgradePolicy is evaluated again against its account's requests
    /// (besides when it changes).
    #[arg(long, default_value = "1m", value_parser = interval)]
    pub policy_interval: Duration,
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

/// A region name of some AWS partition (which one is checked against the operator's region
/// when a decision uses it).
fn aws_region(text: &str) -> Result<String, String> {
    match crate::regions::partition_of(text) {
        Some(_) => Ok(text.to_string()),
        None => Err(format!("{text:?} is not an AWS region")),
    }
}

/// A value that must not be shown (the webhook URL carries its credential): `Debug` hides it,
/// and it is checked after parsing, so that not even clap's error message echoes it.
#[derive(Clone)]
pub struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn secret_text(text: &str) -> Result<SecretText, std::convert::Infallible> {
    Ok(SecretText(text.to_string()))
}

/// A period for a task that runs on a cadence: a duration, and not zero (which would make the
/// task spin, and makes tokio's `interval` panic).
fn interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(period) if period.is_zero() => Err("an interval must be longer than zero".to_string()),
        Ok(period) => Ok(period),
        Err(error) => Err(error.to_string()),
    }
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
            approval_mode_interval: self.approval_mode_interval,
            policy_interval: self.policy_interval,
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

    /// The operator's own namespace: the Lease's and the notification record's.
    fn operator_namespace(&self, client: &kube::Client) -> String {
        self.lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    }

    /// The notification settings, if a webhook URL is given (`--notify-url`, its environment
    /// variable, or `--notify-url-file`). No error shows the URL.
    pub fn notify_settings(
        &self,
        client: &kube::Client,
    ) -> anyhow::Result<Option<crate::notify::NotifySettings>> {
        let text = match (&self.notify_url, &self.notify_url_file) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => anyhow::bail!(
                "give the notification URL once: --notify-url (SELFUPGRADE_NOTIFY_URL) or --notify-url-file"
            ),
            (Some(SecretText(text)), None) => text.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading --notify-url-file {}", path.display()))?,
        };
        Ok(Some(crate::notify::NotifySettings {
            url: crate::notify::WebhookUrl::parse(&text)?,
            record: (self.operator_namespace(client), self.notify_record.clone()),
            interval: self.notify_interval,
            accounts: self.notify_accounts.clone(),
        }))
    }

    /// The Lease to hold with `--leader-elect`.
    pub fn lease_settings(&self, client: &kube::Client) -> LeaseSettings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "selfupgrade-operator".into());
            format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
        });
        LeaseSettings {
            name: self.lease_name.clone(),
            namespace: self.operator_namespace(client),
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

/// The operator's CustomResourceDefinitions, generated from its Rust types: (file name in
/// `crds/`, definition).
pub fn crds() -> [(&'static str, CustomResourceDefinition); 4] {
    [
        ("selfupgradedecision.yaml", SelfUpgradeDecision::crd()),
        ("quicksightaccount.yaml", QuickSightAccount::crd()),
        ("selfupgraderequest.yaml", SelfUpgradeRequest::crd()),
        ("selfupgradepolicy.yaml", SelfUpgradePolicy::crd()),
    ]
}

/// The CRDs as committed in `crds/`: (file name, YAML).
pub fn crd_files() -> anyhow::Result<Vec<(&'static str, String)>> {
    crds()
        .into_iter()
        .map(|(name, crd)| Ok((name, serde_yaml::to_string(&crd)?)))
        .collect()
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

/// The context `run` reconciles with: the Kubernetes client, the QuickSight stack, the bindings,
/// and the mirror when asked for.
async fn controller_context(args: &RunArgs, metrics: Arc<Metrics>) -> anyhow::Result<Context> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let (quicksight, default_region) = args.aws.connect(args.call_timeout).await;
    if default_region.is_none() {
        tracing::warn!("no default region: decisions without spec.region will be Stalled");
    }
    let (pacing, ttl) = (args.pacing(), args.listing_ttl);
    let directory = crate::quicksight::stack(Arc::new(quicksight), metrics.clone(), pacing, ttl)
        .context("--quicksight-* flags")?;
    if args.allow_unbound_accounts {
        tracing::warn!(
            "--allow-unbound-accounts: decisions in any namespace may act on accounts no QuickSightAccount binds"
        );
    }
    let rules = OperatorRules {
        allow_unbound_accounts: args.allow_unbound_accounts,
        unbound_regions: match args.allowed_regions.is_empty() {
            true => default_region.iter().cloned().collect(),
            false => args.allowed_regions.clone(),
        },
        default_region: default_region.clone(),
    };
    let bindings = Bindings::watch(client.clone(), rules);
    if args.dry_run {
        tracing::warn!(
            "--dry-run: NO UpdateSelfUpgrade or UpdateSelfUpgradeConfiguration call will be made; statuses say what would be sent"
        );
    }
    let notify = args.notify_settings(&client)?;
    let ctx = Context::new(client, directory, bindings, default_region, args.timing())
        .with_metrics(metrics.clone())
        .with_dry_run(args.dry_run);
    let ctx = match notify {
        Some(settings) => {
            let notifier = crate::notify::Notifier::new(settings, metrics)
                .context("setting up the notification webhook's HTTP client")?;
            tracing::info!(
                "notifications on: new requests, exhausted retries and drifts are POSTed to the webhook"
            );
            ctx.with_notifier(notifier)
        }
        None => ctx,
    };
    Ok(match args.mirror_requests {
        true => ctx.with_mirror(crate::mirror::MirrorSettings {
            namespace: args.mirror_namespace.clone(),
            accounts: args.mirror_accounts.clone(),
            interval: args.mirror_interval,
        }),
        false => ctx,
    })
}

/// `run`: the controller, until SIGTERM or Ctrl-C.
pub async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(controller_context(&args, metrics.clone()).await?);
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

    /// docs/configuration.md names every flag `run` takes, so that it stays the reference.
    #[test]
    fn every_flag_of_run_is_in_the_configuration_reference() {
        use clap::CommandFactory;
        let reference = include_str!("../docs/configuration.md");
        let command = Cli::command();
        let run = command.find_subcommand("run").expect("run");
        let missing: Vec<String> = run
            .get_arguments()
            .filter_map(|arg| arg.get_long())
            .filter(|long| *long != "help")
            .map(|long| format!("--{long}"))
            .filter(|flag| !reference.contains(&format!("`{flag}")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/configuration.md: {missing:?}"
        );
    }

    #[test]
    fn an_interval_of_zero_is_refused() {
        for flag in [
            "--account-status-interval",
            "--approval-mode-interval",
            "--mirror-interval",
            "--policy-interval",
        ] {
            let parsed = Cli::try_parse_from(["selfupgrade-operator", "run", flag, "0s"]);
            let error = parsed.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("longer than zero"), "{flag}: {error}");
        }
        assert_eq!(
            run_args(&["--approval-mode-interval", "30s"])
                .timing()
                .approval_mode_interval,
            Duration::from_secs(30)
        );
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
