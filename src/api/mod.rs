//! The custom resource types this operator serves.

mod account;
mod decision;
mod request;
mod request_detail;

pub use account::{QuickSightAccount, QuickSightAccountSpec, QuickSightAccountStatus};
pub use decision::{
    Action, DEFAULT_QUICKSIGHT_NAMESPACE, RequestRejection, RetryPolicy, SelfUpgradeDecision,
    SelfUpgradeDecisionSpec, SelfUpgradeDecisionStatus, UpdateIntent,
};
pub use request::{SelfUpgradeRequest, SelfUpgradeRequestSpec, SelfUpgradeRequestStatus};
pub use request_detail::{RequestDetails, whole_second};
