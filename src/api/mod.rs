//! The custom resource types this operator serves.

mod account;
mod approval_mode;
mod decision;
mod policy;
mod request;
mod request_detail;

pub use account::{QuickSightAccount, QuickSightAccountSpec, QuickSightAccountStatus};
pub use approval_mode::{ApprovalMode, ApprovalModeStatus, Enforcement, SelfUpgradeSettings};
pub use decision::{
    Action, DEFAULT_QUICKSIGHT_NAMESPACE, RequestRejection, RetryPolicy, SelfUpgradeDecision,
    SelfUpgradeDecisionSpec, SelfUpgradeDecisionStatus, UpdateIntent,
};
pub use policy::{
    DEFAULT_MAX_DECISIONS_PER_HOUR, POLICY_FINALIZER, POLICY_LABEL, PolicyMatch, PolicyMode,
    PolicyRule, RULE_LABEL, RuleCount, SelfUpgradePolicy, SelfUpgradePolicySpec,
    SelfUpgradePolicyStatus,
};
pub use request::{SelfUpgradeRequest, SelfUpgradeRequestSpec, SelfUpgradeRequestStatus};
pub use request_detail::{RequestDetails, whole_second};
