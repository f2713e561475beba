//! The account-level approval mode of QuickSight self-upgrades (`SelfUpgradeStatus` of
//! `Describe`/`UpdateSelfUpgradeConfiguration`), as a binding declares it and as the operator
//! finds it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who approves the self-upgrade requests of a QuickSight namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalMode {
    /// Every request waits for an admin (with this operator: for a SelfUpgradeDecision).
    AdminApproval,
    /// QuickSight approves every request itself, within minutes: decisions are not needed.
    AutoApproval,
}

impl ApprovalMode {
    /// The wire name QuickSight uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::AdminApproval => "ADMIN_APPROVAL",
            ApprovalMode::AutoApproval => "AUTO_APPROVAL",
        }
    }

    /// The mode for a wire name; `None` for a name this operator does not know.
    pub fn parse(wire: &str) -> Option<Self> {
        match wire {
            "ADMIN_APPROVAL" => Some(ApprovalMode::AdminApproval),
            "AUTO_APPROVAL" => Some(ApprovalMode::AutoApproval),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApprovalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator does about a namespace whose mode differs from the declared one.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enforcement {
    /// Report the drift (condition, Event, metric); change nothing.
    #[default]
    Observe,
    /// Report it and set the declared mode back (`UpdateSelfUpgradeConfiguration`).
    Enforce,
}

/// The approval mode a binding holds its QuickSight namespaces to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelfUpgradeSettings {
    /// The mode every QuickSight namespace of the binding should have.
    pub mode: ApprovalMode,
    /// `Observe` (default) reports a different mode; `Enforce` also sets it back.
    #[serde(default)]
    pub enforcement: Enforcement,
}

/// The approval mode of one QuickSight namespace, as the operator last read it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalModeStatus {
    pub quicksight_namespace: String,
    /// What `DescribeSelfUpgradeConfiguration` answered; unset when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_mode: Option<ApprovalMode>,
    /// When the mode was last read (successfully or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// Why the mode could not be read, or could not be set back (the QuickSight error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the operator last set the declared mode back (`Enforce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<Time>,
}
