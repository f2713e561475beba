//! `SelfUpgradeDecision` (quicksight.selfupgrade.io/v1alpha1): an admin's action on one QuickSight
//! self-upgrade request, and what the operator observed and did about it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// QuickSight's own default namespace; most accounts only have this one.
pub const DEFAULT_QUICKSIGHT_NAMESPACE: &str = "default";

fn default_quicksight_namespace() -> String {
    DEFAULT_QUICKSIGHT_NAMESPACE.to_string()
}

/// The admin's decision on one self-upgrade request.
///
/// The request's identity (account, QuickSight namespace, request id) is immutable: a decision is
/// about exactly one request for its whole life. The action may change; that is how an admin moves
/// from VERIFY to DENY, and each change bumps `metadata.generation`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "quicksight.selfupgrade.io",
    version = "v1alpha1",
    kind = "SelfUpgradeDecision",
    plural = "selfupgradedecisions",
    shortname = "sud",
    namespaced,
    doc = "An admin's APPROVE, DENY or VERIFY for one QuickSight self-upgrade request.",
    status = "SelfUpgradeDecisionStatus",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Request","type":"string","jsonPath":".spec.upgradeRequestId"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.requestStatus"}"#,
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.userName"}"#,
    printcolumn = r#"{"name":"Requested","type":"string","jsonPath":".status.requestedRole"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Approval","type":"string","jsonPath":".status.accountApprovalMode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradeDecisionSpec {
    /// The AWS account that owns the QuickSight subscription (12 digits).
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("awsAccountId is immutable"))]
    pub aws_account_id: String,

    /// The QuickSight namespace the request was made in.
    #[serde(default = "default_quicksight_namespace")]
    #[schemars(length(max = 64), regex(pattern = r"^[a-zA-Z0-9._-]*$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("quicksightNamespace is immutable"))]
    pub quicksight_namespace: String,

    /// The id of the self-upgrade request, as `ListSelfUpgrades` shows it.
    // The service model gives `UpgradeRequestId` no limit; 1024 is ours (ids are UUIDs, and
    // the mirror must still take an odd one QuickSight lists).
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("upgradeRequestId is immutable"))]
    pub upgrade_request_id: String,

    /// What the admin decides: APPROVE, DENY, or VERIFY (IAM Identity Center / AD accounts).
    pub action: Action,

    /// The AWS region to call; defaults to the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// How often the action is sent again after QuickSight reports it failed (UPDATE_FAILED after
    /// APPROVE, VERIFY_FAILED after VERIFY); unset fields take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Retries of an action QuickSight reported as failed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Calls per generation, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, doubling per retry (e.g. `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub backoff: Option<String>,
    /// Longest delay between retries (e.g. `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub backoff_cap: Option<String>,
}

/// The action `UpdateSelfUpgrade` performs on a request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Approve,
    Deny,
    Verify,
}

impl Action {
    /// The wire name QuickSight uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "APPROVE",
            Action::Deny => "DENY",
            Action::Verify => "VERIFY",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator observed of the request, what it sent, and the kstatus conditions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradeDecisionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The request as QuickSight showed it last.
    #[serde(flatten)]
    pub request: super::RequestDetails,

    /// The action this operator last sent successfully ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_action: Option<Action>,
    /// ... and the generation it was sent for. Together they make the call idempotent: the
    /// operator never sends the same action twice for one generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// An `UpdateSelfUpgrade` this operator is about to send or sent without recording its
    /// answer: written before every call, so that after a crash the operator can tell from the
    /// request whether the call took effect instead of sending it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<UpdateIntent>,
    /// QuickSight's request id of the last call that answered, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_aws_request_id: Option<String>,
    /// `UpdateSelfUpgrade` calls made for `observedGeneration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    /// QuickSight refused the action with an error that retrying cannot fix; no further call is
    /// made for this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<RequestRejection>,

    /// The `SelfUpgradeRequest` (`namespace/name`) that mirrors this decision's request, when
    /// the operator runs with `--mirror-requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrored_as: Option<String>,

    /// The approval mode of the account's QuickSight namespace, when a `QuickSightAccount`
    /// observes it (`spec.selfUpgrade`). `AUTO_APPROVAL`: QuickSight approves every request
    /// itself, so this decision's review does not hold anything back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_approval_mode: Option<super::ApprovalMode>,

    /// kstatus conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The write-ahead record of one `UpdateSelfUpgrade`: the action, for which generation, and the
/// request as it was just before the call. A request that no longer looks like that has seen
/// the call.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateIntent {
    pub action: Action,
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_status: Option<String>,
    /// The request's `LastUpdateAttemptTime` before the call, to the microsecond (QuickSight
    /// reports milliseconds; a `Time` would keep whole seconds and make an unchanged request
    /// look changed). Intents written by older versions hold whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_attempt_time: Option<MicroTime>,
    /// When the intent was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<Time>,
    /// By when the announced call has been answered or abandoned: its writer sends it only
    /// within its send window and gives it the call timeout. Until then (plus a margin for
    /// clock skew between replicas) nobody sends the action again. Older versions wrote no
    /// such time; their intents last `recordedAt` plus the call timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<MicroTime>,
}

/// A terminal error QuickSight answered to `UpdateSelfUpgrade`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRejection {
    /// The generation whose action was refused.
    pub generation: i64,
    pub action: Action,
    /// The exception name, e.g. `PreconditionNotMetException`.
    pub error: String,
    pub message: String,
}
