//! `QuickSightAccount` (cluster-scoped): a cluster admin's binding of one AWS account to the
//! Kubernetes namespaces that may hold decisions for it, and the IAM role to act with.
//!
//! Only cluster admins can create cluster-scoped objects, so namespace owners cannot grant
//! themselves an account: without a binding that admits its namespace, a decision makes no AWS
//! call at all (unless the operator runs with `--allow-unbound-accounts`).

use super::{ApprovalModeStatus, SelfUpgradeSettings};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which AWS account may be decided on from which namespaces, and with which credentials.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "quicksight.selfupgrade.io",
    version = "v1alpha1",
    kind = "QuickSightAccount",
    plural = "quicksightaccounts",
    shortname = "qsa",
    doc = "Binds an AWS account to the namespaces whose SelfUpgradeDecisions may act on it.",
    status = "QuickSightAccountStatus",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.accountId"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleArn"}"#,
    printcolumn = r#"{"name":"Decisions","type":"integer","jsonPath":".status.boundDecisions"}"#,
    printcolumn = r#"{"name":"Approval","type":"string","jsonPath":".status.approvalModes[*].observedMode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.roleArn) || self.roleArn.contains(':iam::' + self.accountId + ':role/')").message("roleArn must be a role in accountId"))]
pub struct QuickSightAccountSpec {
    /// The AWS account (12 digits).
    #[schemars(length(min = 12, max = 12), regex(pattern = r"^[0-9]{12}$"))]
    pub account_id: String,

    /// An IAM role in that account to assume (STS AssumeRole) for every call into it. Unset:
    /// the operator's own credentials are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
    )]
    pub role_arn: Option<String>,

    /// The external id the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224))]
    pub external_id: Option<String>,

    /// The STS session name's prefix (CloudTrail shows `<prefix>-<namespace>`, the Kubernetes
    /// namespace whose decision acted); defaults to `sud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^[\w+=,.@-]*$"))]
    pub session_name: Option<String>,

    /// Region for decisions that do not name one (before the operator's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// The regions decisions may call. Unset: `region` only (the operator's region when that
    /// is unset too). A decision naming another region is `Stalled` NotAuthorized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 32), regex(pattern = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))
    )]
    pub regions: Vec<String>,

    /// QuickSight namespaces decisions may act in. Unset: all of them.
    // Items as the service model's `Namespace`; at most 64 of them is our choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(max = 64), regex(pattern = r"^[a-zA-Z0-9._-]*$"))
    )]
    pub quicksight_namespaces: Option<Vec<String>>,

    /// Kubernetes namespaces, by name, that may hold decisions for this account.
    // Items are namespace names (DNS-1123 labels); at most 256 of them is our choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,

    /// Kubernetes namespaces, by label, that may hold decisions for this account (in addition
    /// to `namespaces`). `{}` admits every namespace; unset admits none beyond `namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "bounded_label_selector")]
    pub namespace_selector: Option<LabelSelector>,

    /// The self-upgrade approval mode of the account's QuickSight namespaces (those of
    /// `quicksightNamespaces`, or `default` when that is unset): read on a cadence and reported
    /// (`Observe`), or also set back when it differs (`Enforce`). Unset: the operator neither
    /// reads nor writes it (and needs no IAM permission for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_upgrade: Option<SelfUpgradeSettings>,
}

/// What the operator found of the binding.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuickSightAccountStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Decisions this binding admits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_decisions: Option<i64>,
    /// With `spec.selfUpgrade`: the approval mode of each QuickSight namespace as last read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["quicksightNamespace"]))]
    pub approval_modes: Vec<ApprovalModeStatus>,
    /// `Ready`: the credentials for the account resolve (the role could be assumed) and, with
    /// `spec.selfUpgrade`, every QuickSight namespace has the declared approval mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The schema of a `LabelSelector` (as k8s-openapi's), with bounds it lacks: apimachinery's
/// for keys and values (a qualified name: at most 253 + 1 + 63 characters; a label value: 63),
/// and ours for the counts (64 labels, 16 expressions of 64 values), more than any binding
/// needs.
fn bounded_label_selector(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A label query over namespaces (matchLabels and matchExpressions are ANDed).",
        "type": "object",
        "nullable": true,
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {"type": "string", "maxLength": 63}
                        }
                    }
                }
            }
        }
    })
}
