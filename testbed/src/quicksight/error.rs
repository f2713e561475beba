//! QuickSight errors as the simulator puts them on the wire: the `x-amzn-ErrorType` header, a
//! JSON body `{"Message", "RequestId"}`, and the HTTP status the service model gives each.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::sigv4::Refusal;

/// What AWS answers for an access key it never issued (or a session token that is not its
/// key's).
pub const UNKNOWN_KEY: &str = "The security token included in the request is invalid.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// The exception name, e.g. `ThrottlingException`.
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl SimError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDeniedException", 401, message)
    }
    /// An access key no one issued, or a session used without its token.
    pub fn unrecognized_client(message: impl Into<String>) -> Self {
        Self::new("UnrecognizedClientException", 403, message)
    }
    pub fn expired_token(message: impl Into<String>) -> Self {
        Self::new("ExpiredTokenException", 403, message)
    }
    /// STS: the caller's key is unknown.
    pub fn invalid_client_token(message: impl Into<String>) -> Self {
        Self::new("InvalidClientTokenId", 403, message)
    }
    /// STS: the role does not trust the caller (or the external id is wrong).
    pub fn sts_access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDenied", 403, message)
    }
    /// STS: a query-protocol request that is missing a member or names no known action.
    pub fn sts_validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", 400, message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValueException", 400, message)
    }
    pub fn invalid_next_token() -> Self {
        Self::new(
            "InvalidNextTokenException",
            400,
            "The NextToken is not valid.",
        )
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new("PreconditionNotMetException", 400, message)
    }
    pub fn namespace_not_found(account: &str, namespace: &str) -> Self {
        Self::new(
            "ResourceNotFoundException",
            404,
            format!("Namespace {namespace} in account {account} was not found."),
        )
    }
    pub fn request_not_found(id: &str) -> Self {
        Self::new(
            "ResourceNotFoundException",
            404,
            format!("Self-upgrade request {id} was not found."),
        )
    }
    pub fn throttled(message: impl Into<String>) -> Self {
        Self::new("ThrottlingException", 429, message)
    }
    pub fn internal_failure() -> Self {
        Self::new(
            "InternalFailureException",
            500,
            "An internal failure occurred.",
        )
    }
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new("LimitExceededException", 409, message)
    }
    pub fn unavailable() -> Self {
        Self::new(
            "ResourceUnavailableException",
            503,
            "The resource is currently unavailable.",
        )
    }

    /// A refused SigV4 signature as a JSON-protocol service (QuickSight) words it.
    pub fn refused_signature(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => Self::new(
                "MissingAuthenticationTokenException",
                403,
                "Missing Authentication Token",
            ),
            Refusal::Incomplete(message) => Self::new("IncompleteSignatureException", 400, message),
            Refusal::UnknownKey => Self::unrecognized_client(UNKNOWN_KEY),
            Refusal::Mismatch(message) => Self::new("InvalidSignatureException", 403, message),
        }
    }

    /// A refused SigV4 signature as a query-protocol service (STS) words it.
    pub fn sts_refused_signature(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Missing => Self::new(
                "MissingAuthenticationToken",
                403,
                "Request is missing Authentication Token",
            ),
            Refusal::Incomplete(message) => Self::new("IncompleteSignature", 400, message),
            Refusal::UnknownKey => Self::invalid_client_token(UNKNOWN_KEY),
            Refusal::Mismatch(message) => Self::new("SignatureDoesNotMatch", 403, message),
        }
    }

    /// The wire response, tagged with the request id the caller will see.
    pub fn into_wire(self, request_id: &str) -> Response {
        let body = serde_json::json!({ "Message": self.message, "RequestId": request_id });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert("x-amzn-RequestId", value);
        }
        response
    }

    /// Picks an error by exception name, for the admin interface's forced failures.
    pub fn by_code(code: &str, message: String) -> Option<Self> {
        Some(match code {
            "AccessDeniedException" => Self::access_denied(message),
            "InvalidParameterValueException" => Self::invalid_parameter(message),
            "InvalidNextTokenException" => Self::invalid_next_token(),
            // Listed (400) by the service model for the self-upgrade configuration operations.
            "InvalidParameterException" => Self::new("InvalidParameterException", 400, message),
            "PreconditionNotMetException" => Self::precondition(message),
            "ResourceNotFoundException" => Self::new("ResourceNotFoundException", 404, message),
            "ThrottlingException" => Self::throttled(message),
            "InternalFailureException" => Self::internal_failure(),
            "LimitExceededException" => Self::limit_exceeded(message),
            "ResourceUnavailableException" => Self::unavailable(),
            _ => return None,
        })
    }
}
