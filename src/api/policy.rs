//! `SelfUpgradePolicy` (quicksight.selfupgrade.io/v1alpha1): ordered rules, reviewed in Git,
//! that say what to decide for an account's routine self-upgrade requests. In `DryRun` (the
//! default) the status shows what each rule would decide; in `Enforce` the operator creates a
//! `SelfUpgradeDecision` for each match, owned by the policy, at most
//! `maxDecisionsPerHour` an hour.

use super::{Action, DEFAULT_QUICKSIGHT_NAMESPACE, RetryPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels every decision a policy creates: the policy's name (as a label value) ...
pub const POLICY_LABEL: &str = "quicksight.selfupgrade.io/policy";
/// ... and the rule that matched.
pub const RULE_LABEL: &str = "quicksight.selfupgrade.io/policy-rule";
/// Held on a policy that created decisions, so that when it is deleted the operator first
/// removes the decisions that have not acted and keeps (releases) those that have.
pub const POLICY_FINALIZER: &str = "quicksight.selfupgrade.io/policy-decisions";

/// The brake when `spec.maxDecisionsPerHour` is not set: modest, so that a rule broader than
/// meant decides a handful of requests before anyone notices, not a whole account.
pub const DEFAULT_MAX_DECISIONS_PER_HOUR: u32 = 10;

fn default_max_decisions_per_hour() -> u32 {
    DEFAULT_MAX_DECISIONS_PER_HOUR
}

fn default_quicksight_namespace() -> String {
    DEFAULT_QUICKSIGHT_NAMESPACE.to_string()
}

/// Rules for the PENDING self-upgrade requests of one account and QuickSight namespace; the
/// first rule that matches a request decides it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "quicksight.selfupgrade.io",
    version = "v1alpha1",
    kind = "SelfUpgradePolicy",
    plural = "selfupgradepolicies",
    shortname = "sup",
    namespaced,
    doc = "Ordered rules that say what to decide for routine QuickSight self-upgrade requests.",
    status = "SelfUpgradePolicyStatus",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.awsAccountId"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.quicksightNamespace"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Matched","type":"integer","jsonPath":".status.matched"}"#,
    printcolumn = r#"{"name":"Created","type":"integer","jsonPath":".status.createdLastHour"}"#,
    printcolumn = r#"{"name":"Held","type":"integer","jsonPath":".status.heldBack"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradePolicySpec {
    /// The AWS account whose requests the rules decide (12 digits).
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("awsAccountId is immutable"))]
    pub aws_account_id: String,

    /// The QuickSight namespace of those requests.
    #[serde(default = "default_quicksight_namespace")]
    #[schemars(length(max = 64), regex(pattern = r"^[a-zA-Z0-9._-]*$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("quicksightNamespace is immutable"))]
    pub quicksight_namespace: String,

    /// The AWS region to call; as for decisions, defaults to the binding's, then the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// In order; the first rule whose every condition holds decides a request.
    #[schemars(length(min = 1, max = 50))]
    pub rules: Vec<PolicyRule>,

    /// `DryRun` (the default) only reports what the rules would decide; `Enforce` creates the
    /// decisions.
    #[serde(default)]
    pub mode: PolicyMode,

    /// The safety brake: at most this many decisions created in any hour; further matches are
    /// held back (and counted in the status) until the hour has room again.
    #[serde(default = "default_max_decisions_per_hour")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_decisions_per_hour: u32,

    /// Labels every created decision carries besides the policy's own two.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    /// Keys and values as the API server takes them (`IsQualifiedName`, `IsValidLabelValue`);
    /// keys are checked when the policy is evaluated, values here too.
    #[schemars(extend(
        "maxProperties" = 16,
        "additionalProperties" = {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        }
    ))]
    pub decision_labels: BTreeMap<String, String>,

    /// The created decisions' `spec.retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// Whether a policy acts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyMode {
    /// Reports what the rules would decide; creates nothing.
    #[default]
    DryRun,
    /// Creates a decision for every match (within the brake).
    Enforce,
}

/// One rule: conditions (all must hold; none at all matches every request) and the action.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Names the rule in the status, metrics and (later) the decisions it makes.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What to decide for a request the rule matches.
    pub action: Action,
    /// The request asks for one of these roles (e.g. `READER_PRO`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 32)))]
    pub requested_roles: Vec<String>,
    /// The user has one of these roles now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 32)))]
    pub original_roles: Vec<String>,
    /// The user name matches one of these globs (`*` any run of characters, `?` one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 256)))]
    pub user_names: Vec<String>,
    /// The request note matches this regular expression (unanchored; Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub note_matches: Option<String>,
    /// The request is older than this (e.g. `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"))]
    pub older_than: Option<String>,
    /// The request is younger than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), regex(pattern = r"^[0-9]{1,6}(s|m|h|d)$"))]
    pub younger_than: Option<String>,
}

/// What the policy would decide, as last evaluated.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// PENDING requests without a decision that a rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
    /// Decisions the policy created in the last hour: what the brake counts (Enforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_last_hour: Option<i64>,
    /// Matches the brake holds back until the hour has room (Enforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<i64>,
    /// Matches by rule, in rule order (rules that match nothing included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["rule"]))]
    pub rules: Vec<RuleCount>,
    /// The first matches (at most 20), oldest request first: what a review reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_decide: Vec<PolicyMatch>,
    /// When the rules were last evaluated against the account's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated: Option<Time>,
    /// kstatus conditions: Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// How many requests one rule matches.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleCount {
    pub rule: String,
    pub matched: i64,
}

/// One request a rule matches, and what it would decide.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMatch {
    pub upgrade_request_id: String,
    pub rule: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_role: Option<String>,
}
