//! The test bed's command line: the stand-ins (`sim`, `apiserver`), the `playground` and the
//! `bench`mark, beside the operator's own commands, which it runs through the operator crate's
//! [`selfupgrade_operator::cli::execute`] — so tests that kill and restart processes run the
//! operator's code from one binary.

use crate::apiserver::{ApiServerConfig, InitialCrds, RbacSettings, RunningApiServer};
use crate::quicksight::{
    self as qs_sim, EpochUnit, FaultSettings, RunningSim, SeedFile, SimHandle, World,
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use selfupgrade_operator::cli::{Logging, shutdown_signal};

#[derive(Parser, Debug)]
#[command(name = "selfupgrade-testbed", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub logging: Logging,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Operator(selfupgrade_operator::cli::Command),
    /// Run the QuickSight self-upgrade simulator (for tests and local trials).
    Sim(SimArgs),
    /// Run an embedded Kubernetes API server, the QuickSight simulator and the operator together.
    Playground(crate::playground::PlaygroundArgs),
    /// Run only the embedded Kubernetes API server (for tests and local trials).
    Apiserver(ApiserverArgs),
    /// The end-to-end benchmark (build with --release): prints a table, optionally writes it.
    Bench(crate::bench::BenchArgs),
}

/// Runs one command (logging already set up).
pub async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Operator(command) => selfupgrade_operator::cli::execute(command).await,
        Command::Sim(sim) => run_simulator(sim).await,
        Command::Playground(args) => crate::playground::run(args).await,
        Command::Apiserver(args) => run_apiserver(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
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
    /// In AUTO_APPROVAL, how long after a request is made (or the mode switched on) the
    /// simulator approves it by itself (QuickSight: within about ten minutes).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub auto_approval_delay: std::time::Duration,
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
            auto_approval_delay_ms: i64::try_from(self.auto_approval_delay.as_millis())
                .unwrap_or(i64::MAX),
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
    /// Directory of CRD YAML files installed at start (default: the operator's CRDs, built in).
    #[arg(long)]
    pub crd_dir: Option<std::path::PathBuf>,
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
    #[arg(long = "max-requests-inflight", default_value_t = crate::apiserver::DEFAULT_MAX_REQUESTS_IN_FLIGHT)]
    pub max_requests_in_flight: usize,
    /// Mutating requests in flight past which service accounts get 429 (0: no limit).
    #[arg(long = "max-mutating-requests-inflight", default_value_t = crate::apiserver::DEFAULT_MAX_MUTATING_REQUESTS_IN_FLIGHT)]
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
    let server = RunningApiServer::start(ApiServerConfig {
        port: args.port,
        crds: InitialCrds::from_flags(args.empty, args.crd_dir),
        history_limit: args.history_limit,
        state_dir: args.state_dir,
        max_requests_in_flight: args.max_requests_in_flight,
        max_mutating_requests_in_flight: args.max_mutating_requests_in_flight,
        rbac: match &args.rbac {
            None => None,
            Some(path) => Some(RbacSettings {
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
