//! `selfupgrade-operator playground`: the embedded API server, the QuickSight simulator (seeded
//! with the requests `examples/` decides) and the operator, in one process. The operator runs
//! as its ServiceAccount under the RBAC `deploy/` ships, which the API server enforces, so that
//! every scenario played here (and every test built on the playground) also proves those
//! grants suffice.

use crate::apiserver::{ApiServerConfig, InitialCrds, RbacSettings, RunningApiServer};
use crate::quicksight::{self as qs_sim, FaultSettings, RunningSim, SeedFile, SimHandle, World};
use anyhow::Context as _;
use aws_sdk_quicksight::config::{Credentials, SharedCredentialsProvider};
use futures::FutureExt as _;
use selfupgrade_operator::bindings::Bindings;
use selfupgrade_operator::context::{Context, Timing};
use selfupgrade_operator::controller::{self, WatchScope};
use selfupgrade_operator::metrics::Metrics;
use selfupgrade_operator::mirror::MirrorSettings;
use selfupgrade_operator::notify::{Notifier, NotifySettings};
use selfupgrade_operator::quicksight::{PacingSettings, SdkQuickSight, SdkSettings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The requests the playground's simulator starts with: the ones `examples/` refers to.
const PLAYGROUND_SEED: &str = include_str!("../../examples/simulator/seed.yaml");
/// The region the playground's operator uses for decisions without one.
pub const PLAYGROUND_REGION: &str = "us-east-1";
/// The operator's ServiceAccount, as `deploy/` names it.
pub const OPERATOR_NAMESPACE: &str = "selfupgrade-operator";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "selfupgrade-operator";
/// Where the playground mirrors requests (`kubectl get selfupgraderequests`).
const MIRROR_NAMESPACE: &str = "default";
pub const BASE_RBAC: &str = include_str!("../../deploy/base/rbac.yaml");
const MIRROR_RBAC: &str = include_str!("../../deploy/overlays/mirror/mirror-role.yaml");
const NOTIFY_RBAC: &str = include_str!("../../deploy/overlays/notifications/notify-role.yaml");

#[derive(clap::Args, Debug, Clone)]
pub struct PlaygroundArgs {
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "playground.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Directory of CRD YAML files the API server serves (default: the operator's, built in).
    #[arg(long)]
    pub crd_dir: Option<PathBuf>,
    /// Start with nothing installed (no CRDs, no RBAC, no operator namespace), to install the
    /// product as in a cluster: `kubectl apply -k deploy/`. The operator starts once its CRDs
    /// are established and runs under the RBAC that installed.
    #[arg(long, conflicts_with = "crd_dir")]
    pub empty: bool,
    /// Port of the API server (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub apiserver_port: u16,
    /// Port of the QuickSight simulator (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub quicksight_port: u16,
}

/// The three parts of a playground, running.
pub struct Playground {
    pub apiserver: RunningApiServer,
    pub quicksight: RunningSim,
    /// The operator's metrics (what `/metrics` would serve).
    pub metrics: Arc<Metrics>,
    controller: tokio::task::JoinHandle<()>,
    stop_controller: tokio::sync::oneshot::Sender<()>,
}

/// How the playground's operator paces itself and how soon it looks again.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub timing: Timing,
    pub pacing: PacingSettings,
    pub listing_ttl: Duration,
    /// Mirror the simulator's accounts as `SelfUpgradeRequest`s in `default`, re-listed this
    /// often; `None`: no mirror.
    pub mirror_interval: Option<Duration>,
    /// Notify a webhook (`run --notify-url`), under the RBAC of `deploy/overlays/notifications`;
    /// `None`: no notifications.
    pub notify: Option<NotifySettings>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            timing: playground_timing(),
            pacing: PacingSettings {
                rate_per_second: 50.0,
                burst: 50,
                concurrency: 16,
                throttle_pause: Duration::from_millis(500),
                throttle_pause_cap: Duration::from_secs(10),
            },
            listing_ttl: Duration::from_secs(5),
            mirror_interval: None,
            notify: None,
        }
    }
}

/// Timings short enough to watch things happen.
pub fn playground_timing() -> Timing {
    Timing {
        awaiting_recheck: Duration::from_secs(2),
        failed_recheck: Duration::from_secs(10),
        not_found_recheck: Duration::from_secs(15),
        resync: Duration::from_secs(60),
        final_resync: Duration::from_secs(300),
        backoff_base: Duration::from_millis(500),
        backoff_cap: Duration::from_secs(10),
        retry: selfupgrade_operator::retry::RetrySettings {
            max_attempts: 5,
            backoff: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(30),
        },
        call_timeout: Duration::from_secs(10),
        account_status_interval: Duration::from_secs(5),
        approval_mode_interval: Duration::from_secs(5),
        policy_interval: Duration::from_secs(5),
        debounce: Duration::ZERO,
    }
}

impl Playground {
    /// Starts the API server and the simulator on loopback and the operator against both.
    pub async fn start(args: &PlaygroundArgs, seed: SimHandle) -> anyhow::Result<Self> {
        Self::start_tuned(args, seed, Tuning::default()).await
    }

    /// [`Playground::start`] with the operator tuned by `tuning`.
    pub async fn start_tuned(
        args: &PlaygroundArgs,
        seed: SimHandle,
        tuning: Tuning,
    ) -> anyhow::Result<Self> {
        let mut seed_accounts: Vec<String> = seed
            .requests()
            .into_keys()
            .map(|(account, _)| account)
            .collect();
        seed_accounts.dedup();
        let mirror_namespace = tuning.mirror_interval.map(|_| MIRROR_NAMESPACE);
        let rbac = operator_rbac(mirror_namespace, tuning.notify.is_some())?;
        let apiserver = RunningApiServer::start(apiserver_config(args, rbac)?)
            .await
            .context("starting the embedded API server")?;
        seed.add_access_key(OPERATOR_KEY.0, OPERATOR_KEY.1);
        seed.add_access_key(USER_KEY.0, USER_KEY.1);
        let quicksight = RunningSim::start(args.quicksight_port, seed)
            .await
            .context("starting the QuickSight simulator")?;
        let client = apiserver
            .service_account_client(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
            .await
            .context("connecting to the embedded API server as the operator")?;
        let installed = match args.empty {
            true => Some(apiserver.client().await?),
            false => None,
        };
        let metrics = Arc::new(Metrics::default());
        let operator = Operator {
            client,
            endpoint: quicksight.endpoint(),
            metrics: metrics.clone(),
            tuning,
            mirror_accounts: seed_accounts,
        };
        let (stop_controller, stopped) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            }
            .shared();
            if let Some(admin) = installed {
                tokio::select! {
                    _ = wait_until_installed(admin) => {}
                    _ = stopped.clone() => return,
                }
            }
            if let Err(error) = operator.run(stopped).await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "the playground's operator failed"
                );
            }
        });
        Ok(Self {
            apiserver,
            quicksight,
            metrics,
            controller,
            stop_controller,
        })
    }

    /// Stops the operator (finishing running reconciles), then the servers.
    pub async fn stop(self) {
        let _ = self.stop_controller.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.controller).await;
        self.quicksight.stop().await;
        self.apiserver.stop().await;
    }
}

/// The API server of the playground: with `deploy/`'s RBAC and the operator's namespace, or
/// (`--empty`) with nothing installed.
fn apiserver_config(args: &PlaygroundArgs, rbac: String) -> anyhow::Result<ApiServerConfig> {
    let crds = InitialCrds::from_flags(args.empty, args.crd_dir.clone());
    let (namespaces, manifests) = match args.empty {
        true => (vec!["default".to_string()], String::new()),
        false => (
            vec!["default".to_string(), OPERATOR_NAMESPACE.to_string()],
            rbac,
        ),
    };
    Ok(ApiServerConfig {
        port: args.apiserver_port,
        crds,
        namespaces,
        rbac: Some(RbacSettings {
            manifests,
            service_accounts: vec![(
                OPERATOR_NAMESPACE.to_string(),
                OPERATOR_SERVICE_ACCOUNT.to_string(),
            )],
        }),
        ..ApiServerConfig::default()
    })
}

/// The CRDs the operator watches, each of which must be established before it starts.
const OPERATOR_CRDS: [&str; 2] = [
    "selfupgradedecisions.quicksight.selfupgrade.io",
    "quicksightaccounts.quicksight.selfupgrade.io",
];

/// Returns once the operator's CRDs are established, as a Deployment's pod would find them
/// (a pod started earlier retries its watches until they are).
async fn wait_until_installed(admin: kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(admin);
    tracing::info!("waiting for the operator's CRDs: kubectl apply -k deploy/");
    loop {
        let mut established = 0;
        for name in OPERATOR_CRDS {
            let conditions = crds
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|crd| crd.status)
                .and_then(|status| status.conditions)
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                established += 1;
            }
        }
        if established == OPERATOR_CRDS.len() {
            tracing::info!("the operator's CRDs are established: starting the operator");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the playground's operator is built from.
struct Operator {
    client: kube::Client,
    endpoint: String,
    metrics: Arc<Metrics>,
    tuning: Tuning,
    mirror_accounts: Vec<String>,
}

impl Operator {
    /// The operator against the simulator, until `stopped`.
    async fn run(
        self,
        stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        let directory = selfupgrade_operator::quicksight::stack(
            Arc::new(simulator_client(&self.endpoint)),
            self.metrics.clone(),
            self.tuning.pacing,
            self.tuning.listing_ttl,
        )?;
        // The playground is single-tenant: decisions in any namespace may act on any account
        // (`--allow-unbound-accounts`); bind an account with a QuickSightAccount to see the
        // tenant guard at work.
        let rules = selfupgrade_operator::tenancy::OperatorRules::single_tenant(PLAYGROUND_REGION);
        let bindings = Bindings::watch(self.client.clone(), rules);
        let ctx = Context::new(
            self.client,
            directory,
            bindings,
            Some(PLAYGROUND_REGION.to_string()),
            self.tuning.timing,
        )
        .with_metrics(self.metrics.clone());
        let ctx = match self.tuning.notify {
            Some(settings) => ctx.with_notifier(Notifier::new(settings, self.metrics.clone())?),
            None => ctx,
        };
        let ctx = Arc::new(match self.tuning.mirror_interval {
            Some(interval) => ctx.with_mirror(MirrorSettings {
                namespace: MIRROR_NAMESPACE.to_string(),
                accounts: self.mirror_accounts,
                interval,
            }),
            None => ctx,
        });
        controller::run(ctx, WatchScope::AllNamespaces, 8, stopped).await;
        Ok(())
    }
}

/// The access key pair the playground's simulator issues to the operator (and to
/// [`simulator_client`]).
pub const OPERATOR_KEY: (&str, &str) = ("AKIDPLAYGROUND", "playground-secret");
/// The pair it issues for whoever tries the AWS CLI, boto3 or `requests` against it.
pub const USER_KEY: (&str, &str) = ("test", "test");

/// The SDK adapter pointed at the simulator, with the playground operator's access key.
pub fn simulator_client(endpoint: &str) -> SdkQuickSight {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(PLAYGROUND_REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            OPERATOR_KEY.0,
            OPERATOR_KEY.1,
            None,
            None,
            "playground",
        )))
        .build();
    SdkQuickSight::new(
        config,
        SdkSettings {
            endpoint_url: Some(endpoint.to_string()),
            sts_endpoint_url: Some(endpoint.to_string()),
            call_timeout: Duration::from_secs(10),
        },
    )
}

/// The RBAC `deploy/` ships for the operator: with the notifications' Role when it notifies,
/// and the mirror's Role (`deploy/overlays/mirror`) moved to the namespace the playground
/// mirrors into, when it mirrors.
fn operator_rbac(mirror_namespace: Option<&str>, notify: bool) -> anyhow::Result<String> {
    let mut manifests = BASE_RBAC.to_string();
    if notify {
        manifests.push_str("\n---\n");
        manifests.push_str(NOTIFY_RBAC);
    }
    let Some(namespace) = mirror_namespace else {
        return Ok(manifests);
    };
    for document in serde_yaml::Deserializer::from_str(MIRROR_RBAC) {
        let mut object = <serde_yaml::Value as serde::Deserialize>::deserialize(document)
            .context("parsing deploy/overlays/mirror/mirror-role.yaml")?;
        if let Some(metadata) = object
            .get_mut("metadata")
            .and_then(serde_yaml::Value::as_mapping_mut)
        {
            metadata.insert("namespace".into(), namespace.into());
        }
        manifests.push_str("\n---\n");
        manifests.push_str(&serde_yaml::to_string(&object)?);
    }
    Ok(manifests)
}

/// The simulator state the playground starts with.
pub fn playground_seed() -> anyhow::Result<SimHandle> {
    let mut world = World::default();
    SeedFile::parse(PLAYGROUND_SEED)
        .context("parsing the playground seed")?
        .apply(&mut world, qs_sim::epoch_millis());
    Ok(SimHandle::new(world, FaultSettings::default(), 1))
}

/// Runs the playground until Ctrl-C / SIGTERM.
pub async fn run(args: PlaygroundArgs) -> anyhow::Result<()> {
    let tuning = Tuning {
        // The mirror's grant is an overlay (`deploy/overlays/mirror`), not in `deploy/`.
        mirror_interval: (!args.empty).then_some(Duration::from_secs(5)),
        ..Tuning::default()
    };
    let playground = Playground::start_tuned(&args, playground_seed()?, tuning).await?;
    playground
        .apiserver
        .write_kubeconfig(&args.kubeconfig)
        .context("writing the playground kubeconfig")?;
    let kc = args.kubeconfig.display();
    let (operator, install, inbox) = match args.empty {
        true => (
            "starts once its CRDs are established, as ServiceAccount",
            "\n  kubectl apply -k deploy/\
             \n  kubectl wait --for condition=established crd --all",
            "",
        ),
        false => (
            "watching all namespaces, as ServiceAccount",
            "",
            "\n  kubectl get selfupgraderequests          # the inbox, mirrored from the simulator",
        ),
    };
    println!(
        "Playground running.\n\
         \n  Kubernetes API server   {api}  (kubeconfig: {kc})\
         \n  QuickSight simulator    {qs}  (admin: {qs}/_sim/requests)\
         \n  Operator                region {region}; {operator}\
         \n                          {OPERATOR_NAMESPACE}/{OPERATOR_SERVICE_ACCOUNT} under deploy/'s RBAC\n\
         \nIn another terminal:\n\
         \n  export KUBECONFIG={kc}{install}\
         \n  kubectl apply -f examples/\
         \n  kubectl get sud -w\
         \n  kubectl wait --for=condition=Ready sud/approve-alice\
         \n  kubectl describe sud/verify-carol\
         \n  kubectl patch sud verify-carol --type merge -p '{{\"spec\":{{\"action\":\"DENY\"}}}}'\
         \n  kubectl delete sud approve-alice{inbox}\n\
         \nThe simulator verifies SigV4; the AWS CLI, boto3 and `requests` sign with\
         \n  export AWS_ACCESS_KEY_ID={user_key} AWS_SECRET_ACCESS_KEY={user_secret} AWS_REGION={region}\n\
         \nCtrl-C stops everything.",
        api = playground.apiserver.url(),
        qs = playground.quicksight.endpoint(),
        region = PLAYGROUND_REGION,
        user_key = USER_KEY.0,
        user_secret = USER_KEY.1,
    );
    selfupgrade_operator::cli::shutdown_signal().await;
    println!("Stopping…");
    playground.stop().await;
    Ok(())
}
