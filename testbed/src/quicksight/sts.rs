//! STS `AssumeRole` on the wire, as the real service speaks it: the AWS query protocol (a form
//! body `Action=AssumeRole&Version=2011-06-15&...` posted to `/`) answered in XML, errors in an
//! `ErrorResponse` document. aws-config's `AssumeRoleProvider` uses it unmodified through an
//! endpoint override.

use super::error::SimError;
use super::iam::{AssumeRoleInput, Caller, IssuedCredentials};
use super::wire::Raw;
use super::{SimHandle, epoch_millis};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::collections::HashMap;

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// STS's signing name, the service in a SigV4 credential scope.
const SERVICE: &str = "sts";

pub fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/", post(query_action))
        .with_state(handle)
}

async fn query_action(State(handle): State<SimHandle>, raw: Raw) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(raw.body()).into_owned().collect();
    let request_id = handle.next_request_id();
    let caller = handle
        .verify(&raw, SERVICE)
        .map_err(SimError::sts_refused_signature);
    let result = match (caller, form.get("Action").map(String::as_str)) {
        (Err(refused), _) => Err(refused),
        (Ok(caller), Some("AssumeRole")) => assume_role(&handle, &caller, &form),
        (Ok(_), Some(other)) => Err(SimError::sts_validation(format!(
            "Could not find operation {other} for version 2011-06-15"
        ))),
        (Ok(_), None) => Err(SimError::sts_validation("Action is required")),
    };
    handle.count("AssumeRole", "sts", &result);
    match result {
        Ok(issued) => xml(
            axum::http::StatusCode::OK,
            &request_id,
            assume_role_response(&issued, &request_id),
        ),
        Err(error) => xml(
            error.status,
            &request_id,
            error_response(&error, &request_id),
        ),
    }
}

fn assume_role(
    handle: &SimHandle,
    caller: &Caller,
    form: &HashMap<String, String>,
) -> Result<IssuedCredentials, SimError> {
    let required = |member: &str| {
        form.get(member)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SimError::sts_validation(format!("{member} is required")))
    };
    let role_arn = required("RoleArn")?;
    let session_name = required("RoleSessionName")?;
    let session_ok = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if !session_ok {
        return Err(SimError::sts_validation(format!(
            "RoleSessionName must match [\\w+=,.@-]{{2,64}}, got {session_name:?}"
        )));
    }
    let input = AssumeRoleInput {
        role_arn,
        session_name,
        external_id: form.get("ExternalId").map(String::as_str),
    };
    handle.assume_role(caller, &input, epoch_millis() / 1000)
}

fn assume_role_response(issued: &IssuedCredentials, request_id: &str) -> String {
    let expiration = k8s_openapi::jiff::Timestamp::from_second(issued.expires_at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    format!(
        "<AssumeRoleResponse xmlns=\"{NAMESPACE}\"><AssumeRoleResult>\
         <AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>\
         <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
         <SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
         </AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\
         </AssumeRoleResponse>",
        escape(&issued.assumed_role_id),
        escape(&issued.assumed_role_arn),
        escape(&issued.access_key_id),
        escape(&issued.secret_access_key),
        escape(&issued.session_token),
        expiration,
        escape(request_id),
    )
}

fn error_response(error: &SimError, request_id: &str) -> String {
    let type_ = if error.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{type_}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        error.code,
        escape(&error.message),
        escape(request_id),
    )
}

fn xml(status: axum::http::StatusCode, request_id: &str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    response
}

/// XML text escaping: five characters, not worth an XML writer crate for two fixed documents.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_follow_the_query_protocol() {
        let error = SimError::sts_access_denied("User: <x> is not authorized");
        let xml = error_response(&error, "req-1");
        assert!(xml.contains("<Code>AccessDenied</Code>"), "{xml}");
        assert!(xml.contains("<Type>Sender</Type>"), "{xml}");
        assert!(xml.contains("User: &lt;x&gt; is not authorized"), "{xml}");
    }
}
