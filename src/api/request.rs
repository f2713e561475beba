//! `SelfUpgradeRequest`: a read-only mirror of one QuickSight self-upgrade request
//! (`run --mirror-requests`), so that `kubectl get selfupgraderequests -w` and Argo CD show the
//! inbox live. Written by the operator only; people decide with `SelfUpgradeDecision`s.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which request this object mirrors.
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq,
)]
#[kube(
    group = "quicksight.selfupgrade.io",
    version = "v1alpha1",
    kind = "SelfUpgradeRequest",
    plural = "selfupgraderequests",
    shortname = "sur",
    namespaced,
    doc = "A QuickSight self-upgrade request, mirrored read-only by the operator.",
    status = "SelfUpgradeRequestStatus",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".spec.awsAccountId"}"#,
    printcolumn = r#"{"name":"Request","type":"string","jsonPath":".spec.upgradeRequestId"}"#,
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.userName"}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".status.originalRole"}"#,
    printcolumn = r#"{"name":"To","type":"string","jsonPath":".status.requestedRole"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.requestStatus"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".status.decision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".status.creationTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradeRequestSpec {
    #[schemars(length(min = 12, max = 12))]
    pub aws_account_id: String,
    #[schemars(length(max = 64))]
    pub quicksight_namespace: String,
    #[schemars(length(max = 1024))]
    pub upgrade_request_id: String,
}

/// The request as QuickSight last listed it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradeRequestStatus {
    #[serde(flatten)]
    pub request: super::RequestDetails,
    /// The `SelfUpgradeDecision` (`namespace/name`) that decides this request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}
