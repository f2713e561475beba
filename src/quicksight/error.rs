//! QuickSight errors, classified by what the reconciler should do about them.

/// Whether retrying the same call later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The account's request rate is too high (429): try again later, and slow the whole
    /// account down, not just this caller.
    Throttled,
    /// Server faults, timeouts and connection failures: try again with backoff.
    Retryable,
    /// The request itself is wrong or not allowed: retrying the same call cannot succeed.
    Terminal,
    /// The call was never sent: its send window closed while it waited for the pacer. Try
    /// again later; it certainly had no effect.
    NotSent,
    /// The service refused the caller's credentials or signature (an unknown or expired key,
    /// a wrong secret, a clock too far off) before acting: no effect, and nothing the decision
    /// got wrong. Try again with backoff; it succeeds once the credentials or clock are fixed.
    Unauthenticated,
}

/// The exceptions AWS answers a request whose credentials or signature it refuses, before
/// the operation runs (JSON protocols' names; STS's query-protocol names for AssumeRole).
const UNAUTHENTICATED: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// A failed QuickSight call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed with {code}: {message}")]
pub struct QuickSightError {
    /// `ListSelfUpgrades` or `UpdateSelfUpgrade`.
    pub operation: &'static str,
    /// The exception name (`ThrottlingException`, ...) or, for failures without a service
    /// answer, a name for the failure (`TimeoutError`, `DispatchFailure`, ...).
    pub code: String,
    pub message: String,
    pub aws_request_id: Option<String>,
    pub class: ErrorClass,
}

impl QuickSightError {
    /// Classifies a service error by its exception name. Unknown names are treated as
    /// retryable only when the HTTP status says the server failed (5xx) or throttled (429).
    pub fn from_service(
        operation: &'static str,
        code: &str,
        message: &str,
        http_status: Option<u16>,
        aws_request_id: Option<String>,
    ) -> Self {
        let class = match code {
            "ThrottlingException" => ErrorClass::Throttled,
            code if UNAUTHENTICATED.contains(&code) => ErrorClass::Unauthenticated,
            "InternalFailureException" | "ResourceUnavailableException" => ErrorClass::Retryable,
            "AccessDeniedException"
            | "InvalidParameterValueException"
            | "InvalidParameterException"
            | "PreconditionNotMetException"
            | "ResourceNotFoundException"
            | "LimitExceededException"
            | "InvalidNextTokenException" => ErrorClass::Terminal,
            _ => match http_status {
                Some(429) => ErrorClass::Throttled,
                Some(500..=599) => ErrorClass::Retryable,
                _ => ErrorClass::Terminal,
            },
        };
        Self {
            operation,
            code: code.to_string(),
            message: message.to_string(),
            aws_request_id,
            class,
        }
    }

    /// A failure that never reached the service or got no answer (timeout, connection refused).
    pub fn transport(operation: &'static str, code: &str, message: String) -> Self {
        Self {
            operation,
            code: code.to_string(),
            message,
            aws_request_id: None,
            class: ErrorClass::Retryable,
        }
    }

    /// A call abandoned before it was sent (see [`ErrorClass::NotSent`]).
    pub fn not_sent(operation: &'static str, message: String) -> Self {
        Self {
            operation,
            code: "SendWindowClosed".to_string(),
            message,
            aws_request_id: None,
            class: ErrorClass::NotSent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class != ErrorClass::Terminal
    }

    pub fn is_throttling(&self) -> bool {
        self.class == ErrorClass::Throttled
    }

    /// Whether the call certainly changed nothing in QuickSight: it was throttled or its
    /// signature refused (QuickSight refuses those before acting), or it was never sent. Other
    /// failures (a 5xx, a timeout, a dropped connection) may have taken effect before the
    /// answer was lost.
    pub fn took_no_effect(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Throttled | ErrorClass::NotSent | ErrorClass::Unauthenticated
        )
    }

    /// A refusal that may only mean the request moved on between the operator's read and its
    /// call (an admin acted in the console, QuickSight dropped the request): worth a fresh read
    /// before it is taken as final.
    pub fn may_be_a_stale_read(&self) -> bool {
        matches!(
            self.code.as_str(),
            "PreconditionNotMetException" | "ResourceNotFoundException"
        )
    }

    /// `InvalidNextTokenException` while paging means the listing changed under us; the caller
    /// restarts from the first page instead of giving up.
    pub fn is_invalid_next_token(&self) -> bool {
        self.code == "InvalidNextTokenException"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_exceptions_map_to_the_documented_classes() {
        let cases = [
            ("ThrottlingException", 429, ErrorClass::Throttled),
            ("SomeFutureThrottlingException", 429, ErrorClass::Throttled),
            ("InternalFailureException", 500, ErrorClass::Retryable),
            ("ResourceUnavailableException", 503, ErrorClass::Retryable),
            ("AccessDeniedException", 401, ErrorClass::Terminal),
            ("InvalidParameterValueException", 400, ErrorClass::Terminal),
            ("PreconditionNotMetException", 400, ErrorClass::Terminal),
            ("ResourceNotFoundException", 404, ErrorClass::Terminal),
            ("LimitExceededException", 409, ErrorClass::Terminal),
            ("InvalidNextTokenException", 400, ErrorClass::Terminal),
            (
                "InvalidSignatureException",
                403,
                ErrorClass::Unauthenticated,
            ),
            (
                "UnrecognizedClientException",
                403,
                ErrorClass::Unauthenticated,
            ),
            ("ExpiredTokenException", 403, ErrorClass::Unauthenticated),
            ("SomeFutureException", 503, ErrorClass::Retryable),
            ("SomeFutureException", 400, ErrorClass::Terminal),
        ];
        for (code, status, class) in cases {
            let error =
                QuickSightError::from_service("UpdateSelfUpgrade", code, "m", Some(status), None);
            assert_eq!(error.class, class, "{code} ({status})");
        }
    }

    #[test]
    fn transport_failures_are_retryable() {
        assert!(
            QuickSightError::transport("ListSelfUpgrades", "TimeoutError", "slow".into())
                .is_retryable()
        );
    }
}
