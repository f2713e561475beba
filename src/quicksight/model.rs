//! QuickSight's view of a self-upgrade request, independent of the SDK's types.

use k8s_openapi::jiff::Timestamp;

/// Where a request lives: QuickSight requests are addressed per account, region and namespace;
/// and who calls: the credentials the account's binding names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub account_id: String,
    pub region: String,
    pub namespace: String,
    pub credentials: Credentials,
}

/// Whose credentials sign the calls into an account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Credentials {
    /// The operator's own (the pod's identity: IRSA, EKS Pod Identity, environment).
    #[default]
    Operator,
    /// A role in the account, assumed with STS over the operator's own credentials.
    AssumeRole(AssumeRole),
}

/// The STS `AssumeRole` parameters of a binding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssumeRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.account_id, self.region, self.namespace)
    }
}

/// `SelfUpgradeRequestStatus`. Values QuickSight may add later are kept verbatim, so the
/// operator can report them without guessing what they mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    UpdateFailed,
    VerifyFailed,
    Unrecognized(String),
}

impl RequestStatus {
    pub fn from_wire(value: &str) -> Self {
        match value {
            "PENDING" => Self::Pending,
            "APPROVED" => Self::Approved,
            "DENIED" => Self::Denied,
            "UPDATE_FAILED" => Self::UpdateFailed,
            "VERIFY_FAILED" => Self::VerifyFailed,
            other => Self::Unrecognized(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::UpdateFailed => "UPDATE_FAILED",
            Self::VerifyFailed => "VERIFY_FAILED",
            Self::Unrecognized(other) => other,
        }
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SelfUpgradeRequestDetail`.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestDetail {
    pub upgrade_request_id: String,
    pub user_name: Option<String>,
    pub original_role: Option<String>,
    pub requested_role: Option<String>,
    pub request_note: Option<String>,
    pub creation_time: Option<Timestamp>,
    pub request_status: RequestStatus,
    pub last_update_attempt_time: Option<Timestamp>,
    pub last_update_failure_reason: Option<String>,
}

impl RequestDetail {
    /// A request known only by its id and status.
    pub fn new(upgrade_request_id: impl Into<String>, request_status: RequestStatus) -> Self {
        Self {
            upgrade_request_id: upgrade_request_id.into(),
            user_name: None,
            original_role: None,
            requested_role: None,
            request_note: None,
            creation_time: None,
            request_status,
            last_update_attempt_time: None,
            last_update_failure_reason: None,
        }
    }
}

/// What `UpdateSelfUpgrade` answered.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateResult {
    pub detail: RequestDetail,
    pub aws_request_id: Option<String>,
}

/// Epoch values at or above this are milliseconds: as seconds they would lie beyond the year
/// 5000, as milliseconds they are after March 1973, before any QuickSight request existed.
const MILLISECONDS_THRESHOLD: i64 = 100_000_000_000;

/// Converts QuickSight's `CreationTime` / `lastUpdateAttemptTime`, whose unit the service model
/// does not document, to a timestamp. Both seconds and milliseconds are accepted; 0 (what the
/// SDK reports for an absent member) and out-of-range values give `None`.
pub fn timestamp_from_epoch(value: i64) -> Option<Timestamp> {
    if value <= 0 {
        return None;
    }
    if value >= MILLISECONDS_THRESHOLD {
        Timestamp::from_millisecond(value).ok()
    } else {
        Timestamp::from_second(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_and_milliseconds_give_the_same_instant() {
        let seconds = timestamp_from_epoch(1_764_115_200).expect("seconds");
        let millis = timestamp_from_epoch(1_764_115_200_000).expect("milliseconds");
        assert_eq!(seconds, millis);
        assert_eq!(seconds.to_string(), "2025-11-26T00:00:00Z");
    }

    #[test]
    fn epoch_keeps_sub_second_precision_of_milliseconds() {
        let t = timestamp_from_epoch(1_764_115_200_123).expect("milliseconds");
        assert_eq!(t.as_millisecond(), 1_764_115_200_123);
    }

    #[test]
    fn absent_or_absurd_epochs_are_none() {
        assert_eq!(timestamp_from_epoch(0), None);
        assert_eq!(timestamp_from_epoch(-5), None);
        assert_eq!(timestamp_from_epoch(i64::MAX), None);
    }

    #[test]
    fn request_status_round_trips_and_keeps_unknown_values() {
        for wire in [
            "PENDING",
            "APPROVED",
            "DENIED",
            "UPDATE_FAILED",
            "VERIFY_FAILED",
            "ON_HOLD",
        ] {
            assert_eq!(RequestStatus::from_wire(wire).as_str(), wire);
        }
        assert_eq!(
            RequestStatus::from_wire("ON_HOLD"),
            RequestStatus::Unrecognized("ON_HOLD".into())
        );
    }
}
