//! `selfupgrade-operator requests list|decide`: the inbox against QuickSight (or the
//! simulator), with the same credentials and endpoint options as `run`.

use crate::api::{Action, SelfUpgradeDecision};
use crate::inbox::{self, InboxEntry};
use crate::quicksight::{
    AssumeRole, AwsEndpoints, Credentials, RequestDetail, Scope, list_requests,
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
        RequestsCommand::List(list) => {
            let requests = fetch(&list.connection).await?;
            let shown: Vec<&RequestDetail> =
                inbox::with_status(&requests, list.status.as_deref()).collect();
            let text = match list.output {
                Format::Table => inbox::table(&shown, k8s_openapi::jiff::Timestamp::now()),
                Format::Json => {
                    let entries: Vec<InboxEntry> =
                        shown.iter().map(|r| InboxEntry::from(*r)).collect();
                    serde_json::to_string_pretty(&entries)? + "\n"
                }
                Format::Yaml => {
                    let entries: Vec<InboxEntry> =
                        shown.iter().map(|r| InboxEntry::from(*r)).collect();
                    serde_yaml::to_string(&entries)?
                }
            };
            std::io::stdout().write_all(text.as_bytes())?;
        }
        RequestsCommand::Decide(decide) => {
            let requests = fetch(&decide.connection).await?;
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

/// Every request of the account's QuickSight namespace, page by page (progress on stderr once
/// it takes more than a moment).
async fn fetch(connection: &Connection) -> anyhow::Result<Vec<RequestDetail>> {
    if connection.account.len() != 12 || !connection.account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account must be 12 digits, got {:?}", connection.account);
    }
    let (quicksight, region) = connection.aws.connect(connection.call_timeout).await;
    let region = region.context("no region: pass --region or set AWS_REGION")?;
    let scope = Scope {
        account_id: connection.account.clone(),
        region,
        namespace: connection.quicksight_namespace.clone(),
        credentials: match &connection.role_arn {
            None => Credentials::Operator,
            Some(role_arn) => Credentials::AssumeRole(AssumeRole {
                role_arn: role_arn.clone(),
                external_id: connection.external_id.clone(),
                session_name: DEFAULT_SESSION_NAME.to_string(),
            }),
        },
    };
    let started = Instant::now();
    let progress = |listed: usize| {
        if started.elapsed() > Duration::from_secs(1) {
            eprint!("\rlisted {listed} requests…");
        }
    };
    let requests = list_requests(&quicksight, &scope, progress)
        .await
        .with_context(|| format!("listing the self-upgrade requests of {scope}"))?;
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!();
    }
    Ok(requests)
}
