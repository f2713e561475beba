//! The custom resource types this operator serves.

mod decision;

pub use decision::{
    Action, DEFAULT_QUICKSIGHT_NAMESPACE, RequestRejection, RetryPolicy, SelfUpgradeDecision,
    SelfUpgradeDecisionSpec, SelfUpgradeDecisionStatus, UpdateIntent,
};
