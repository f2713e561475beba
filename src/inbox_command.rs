//! `selfupgrade-operator requests list|decide|mode|evaluate`: the inbox against QuickSight (or the
//! simulator), with the same credentials and endpoint options as `run`.

use crate::api::{Action, ApprovalMode, SelfUpgradeDecision, SelfUpgradePolicy};
use crate::inbox::{self, InboxEntry, InboxListing};
use crate::quicksight::{
    AssumeRole, AwsEndpoints, Credentials, RequestDetail, Scope, SdkQuickSight, SelfUpgradeApi,
    list_requests,
};
use crate::tenancy::DEFAULT_SESSION_NAME;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub command: RequestsCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RequestsCommand {
    /// List an account's self-upgrade requests.
    List(ListArgs),
    /// Print SelfUpgradeDecision YAML for requests, ready to commit for a pull request.
    Decide(DecideArgs),
    /// Print the QuickSight namespace's self-upgrade approval mode (ADMIN_APPROVAL or
    /// AUTO_APPROVAL); fails when it cannot be read.
    Mode(ModeArgs),
    /// Evaluate a SelfUpgradePolicy manifest against the live requests, without a cluster:
    /// what its rules would decide (every PENDING request counts: the CLI cannot see which
    /// ones a SelfUpgradeDecision already decides).
    Evaluate(EvaluateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// The SelfUpgradePolicy manifest (YAML or JSON); its account and QuickSight namespace are
    /// the ones listed, its region the default for `--region`.
    #[arg(long)]
    pub policy: PathBuf,
    #[command(flatten)]
    pub access: Access,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug, Clone)]
pub struct ModeArgs {
    #[command(flatten)]
    pub connection: Connection,
}

/// Where the requests are and who asks.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The AWS account (12 digits).
    #[arg(long)]
    pub account: String,
    /// The QuickSight namespace.
    #[arg(long, default_value = "default")]
    pub quicksight_namespace: String,
    #[command(flatten)]
    pub access: Access,
}

/// How the account is reached: endpoints and region, the role to assume, the call timeout.
#[derive(Args, Debug, Clone)]
pub struct Access {
    #[command(flatten)]
    pub aws: AwsEndpoints,
    /// A role in the account to assume (as a QuickSightAccount's roleArn).
    #[arg(long)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    #[arg(long, requires = "role_arn")]
    pub external_id: Option<String>,
    /// Time limit for one call.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub call_timeout: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Yaml,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only requests with this status (PENDING, APPROVED, DENIED, UPDATE_FAILED, VERIFY_FAILED).
    #[arg(long)]
    pub status: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug, Clone)]
pub struct DecideArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Request ids to decide.
    #[arg(
        required_unless_present = "all_pending",
        conflicts_with = "all_pending"
    )]
    pub ids: Vec<String>,
    /// Decide every PENDING request instead of naming them.
    #[arg(long)]
    pub all_pending: bool,
    #[arg(long, value_parser = parse_action)]
    pub action: Action,
    /// Kubernetes namespace of the generated decisions (unset: kubectl's current namespace).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Write one file per decision (`<name>.yaml`) here instead of printing them.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

fn parse_action(value: &str) -> Result<Action, String> {
    match value.to_ascii_uppercase().as_str() {
        "APPROVE" => Ok(Action::Approve),
        "DENY" => Ok(Action::Deny),
        "VERIFY" => Ok(Action::Verify),
        other => Err(format!("expected APPROVE, DENY or VERIFY, got {other:?}")),
    }
}

pub async fn run(args: RequestsArgs) -> anyhow::Result<()> {
    match args.command {
        RequestsCommand::List(list) => list_command(list).await?,
        RequestsCommand::Evaluate(args) => evaluate(args).await?,
        RequestsCommand::Mode(args) => {
            let account = connect(&args.connection).await?;
            let mode = approval_mode(&account).await;
            let line = inbox::mode_line(&mode);
            mode.map_err(|error| {
                anyhow::anyhow!("reading the approval mode of {}: {error}", account.scope)
            })?;
            println!("{line}");
        }
        RequestsCommand::Decide(decide) => {
            let requests = fetch(&connect(&decide.connection).await?).await?;
            let chosen = inbox::select(&requests, &decide.ids, decide.all_pending)
                .map_err(anyhow::Error::msg)?;
            let connection = &decide.connection;
            let out_dir = decide.out_dir.as_deref();
            let taken_by = |name: &str| out_dir.and_then(|dir| request_id_in(dir, name));
            let names = inbox::decision_names(decide.action, &chosen, &taken_by)
                .map_err(anyhow::Error::msg)?;
            let mut documents = Vec::new();
            for (name, request) in names.iter().zip(chosen) {
                let decision = inbox::decision_for(
                    name,
                    request,
                    &connection.account,
                    &connection.quicksight_namespace,
                    decide.action,
                    decide.namespace.as_deref(),
                );
                documents.push((
                    decision.metadata.name.clone().unwrap_or_default(),
                    serde_yaml::to_string(&decision)?,
                ));
            }
            match &decide.out_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    for (name, yaml) in &documents {
                        let path = dir.join(format!("{name}.yaml"));
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    eprintln!("wrote {} decisions to {}", documents.len(), dir.display());
                }
                None => {
                    let text: Vec<&str> = documents.iter().map(|(_, yaml)| yaml.as_str()).collect();
                    std::io::stdout().write_all(text.join("---\n").as_bytes())?;
                }
            }
        }
    }
    Ok(())
}

/// The request id of the decision in `<dir>/<name>.yaml`, if that file exists; a file that is
/// not such a decision counts as taken by it, so that it is never overwritten.
fn request_id_in(dir: &Path, name: &str) -> Option<String> {
    let path = dir.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).ok()?;
    Some(
        serde_yaml::from_str::<SelfUpgradeDecision>(&text)
            .map(|decision| decision.spec.upgrade_request_id)
            .unwrap_or_else(|_| format!("(another document in {})", path.display())),
    )
}

/// `requests list`: the namespace's approval mode and its requests.
async fn list_command(list: ListArgs) -> anyhow::Result<()> {
    let account = connect(&list.connection).await?;
    let (requests, mode) = futures::join!(fetch(&account), approval_mode(&account));
    let requests = requests?;
    let shown: Vec<&RequestDetail> =
        inbox::with_status(&requests, list.status.as_deref()).collect();
    let listing = || InboxListing {
        aws_account_id: account.scope.account_id.clone(),
        quicksight_namespace: account.scope.namespace.clone(),
        approval_mode: mode.as_ref().ok().copied(),
        approval_mode_error: mode.as_ref().err().cloned(),
        requests: shown.iter().map(|r| InboxEntry::from(*r)).collect(),
    };
    let text = match list.output {
        Format::Table => format!(
            "{}\n{}",
            inbox::mode_line(&mode),
            inbox::table(&shown, k8s_openapi::jiff::Timestamp::now())
        ),
        Format::Json => serde_json::to_string_pretty(&listing())? + "\n",
        Format::Yaml => serde_yaml::to_string(&listing())?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// `requests evaluate`: the policy file's rules against the live listing.
async fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let path = &args.policy;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let policy: SelfUpgradePolicy = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a SelfUpgradePolicy", path.display()))?;
    let compiled = crate::policy::compile(&policy.spec)
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    let mut access = args.access.clone();
    access.aws.region = access.aws.region.or(policy.spec.region.clone());
    let connection = Connection {
        account: policy.spec.aws_account_id.clone(),
        quicksight_namespace: policy.spec.quicksight_namespace.clone(),
        access,
    };
    let requests = fetch(&connect(&connection).await?).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let evaluation = crate::policy::evaluate(&compiled, &requests, |_| false, now);
    let summary = EvaluationSummary {
        matched: evaluation.matches.len(),
        rules: evaluation.counts,
        would_decide: evaluation.matches,
    };
    let text = match args.output {
        Format::Table => {
            let counts: Vec<String> = summary
                .rules
                .iter()
                .map(|c| format!("{} {}", c.rule, c.matched))
                .collect();
            format!(
                "{} of {} requests would be decided (by rule: {})\n{}",
                summary.matched,
                requests.len(),
                counts.join(", "),
                inbox::policy_table(&summary.would_decide)
            )
        }
        Format::Json => serde_json::to_string_pretty(&summary)? + "\n",
        Format::Yaml => serde_yaml::to_string(&summary)?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// What `requests evaluate -o json|yaml` prints: the policy status's findings, every match
/// listed.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EvaluationSummary {
    matched: usize,
    rules: Vec<crate::api::RuleCount>,
    would_decide: Vec<crate::api::PolicyMatch>,
}

/// The account and QuickSight namespace a command works on, and the client to reach them.
struct Account {
    quicksight: SdkQuickSight,
    scope: Scope,
}

async fn connect(connection: &Connection) -> anyhow::Result<Account> {
    if connection.account.len() != 12 || !connection.account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account must be 12 digits, got {:?}", connection.account);
    }
    let access = &connection.access;
    let (quicksight, region) = access.aws.connect(access.call_timeout).await;
    let region = region.context("no region: pass --region or set AWS_REGION")?;
    let scope = Scope {
        account_id: connection.account.clone(),
        region,
        namespace: connection.quicksight_namespace.clone(),
        credentials: match &access.role_arn {
            None => Credentials::Operator,
            Some(role_arn) => Credentials::AssumeRole(AssumeRole {
                role_arn: role_arn.clone(),
                external_id: access.external_id.clone(),
                session_name: DEFAULT_SESSION_NAME.to_string(),
            }),
        },
    };
    Ok(Account { quicksight, scope })
}

/// The namespace's approval mode, or why it cannot be read (`requests list` prints either).
async fn approval_mode(account: &Account) -> Result<ApprovalMode, String> {
    account
        .quicksight
        .approval_mode(&account.scope)
        .await
        .map_err(|error| error.to_string())
}

/// Every request of the account's QuickSight namespace, page by page (progress on stderr once
/// it takes more than a moment).
async fn fetch(account: &Account) -> anyhow::Result<Vec<RequestDetail>> {
    let started = Instant::now();
    let progress = |listed: usize| {
        if started.elapsed() > Duration::from_secs(1) {
            eprint!("\rlisted {listed} requests…");
        }
    };
    let scope = &account.scope;
    let requests = list_requests(&account.quicksight, scope, progress)
        .await
        .with_context(|| format!("listing the self-upgrade requests of {scope}"))?;
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!();
    }
    Ok(requests)
}
