//! A self-upgrade request as QuickSight lists it (`SelfUpgradeRequestDetail`), in the one shape
//! the decision's status, the mirrored request's status and the inbox's JSON share (each
//! flattens it), made from the port's model by the one conversion below.

use crate::quicksight::RequestDetail;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestDetails {
    /// The request's status in QuickSight: PENDING, APPROVED, DENIED, UPDATE_FAILED, VERIFY_FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_status: Option<String>,
    /// Why QuickSight's last update of the request failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_failure_reason: Option<String>,
    /// The QuickSight user who asked for the upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The user's role before the upgrade (e.g. READER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_role: Option<String>,
    /// The role the user asked for (e.g. AUTHOR_PRO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_role: Option<String>,
    /// The user's note with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_note: Option<String>,
    /// When the user made the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// When QuickSight last tried to update the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_attempt_time: Option<Time>,
}

impl From<&RequestDetail> for RequestDetails {
    fn from(detail: &RequestDetail) -> Self {
        Self {
            request_status: Some(detail.request_status.as_str().to_string()),
            last_update_failure_reason: detail.last_update_failure_reason.clone(),
            user_name: detail.user_name.clone(),
            original_role: detail.original_role.clone(),
            requested_role: detail.requested_role.clone(),
            request_note: detail.request_note.clone(),
            creation_time: detail.creation_time.map(whole_second),
            last_update_attempt_time: detail.last_update_attempt_time.map(whole_second),
        }
    }
}

/// A `Time` as Kubernetes keeps it (`Time` serializes whole seconds), so that a status read back
/// compares equal to one built from the same request and no write is made for nothing new.
pub fn whole_second(time: Timestamp) -> Time {
    Time(Timestamp::from_second(time.as_second()).unwrap_or(time))
}
