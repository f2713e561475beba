//! The simulator's HTTP handling under arbitrary input, for coverage-guided fuzzing
//! (`fuzz/`, cargo-fuzz) and for replaying the fuzz corpus in `cargo test`.
//!
//! An input is raw bytes read as a loose HTTP request: the first line is `METHOD TARGET`, then
//! header lines up to an empty line, then the body. An input without an `Authorization` header
//! is SigV4-signed here with a key the simulator issued, so that the fuzzer reaches the
//! operations behind the signature check (no input could guess an HMAC); one with its own
//! header exercises the verifier. Whatever the bytes, the simulator must answer
//! without panicking, never with a server error (no fault is configured), and every error it
//! answers on a QuickSight operation's path carries `x-amzn-ErrorType`, as the SDKs need to
//! classify it.

use super::{SimHandle, World, generate_requests, wire};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

/// The outcome of one input that breaks a rule, described for the fuzzer's crash report.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation(pub String);

/// Runs one input through the simulator's QuickSight routes. `Ok` also for inputs that are not
/// an HTTP request at all (the server's HTTP layer would refuse those before routing).
pub fn exercise(runtime: &tokio::runtime::Runtime, input: &[u8]) -> Result<(), Violation> {
    let Some(request) = request_from(input) else {
        return Ok(());
    };
    let path = request.uri().path().to_string();
    let mut world = World::default();
    world.ensure_namespace("111122223333", "default").requests =
        generate_requests(3, 1, 1_764_115_200_000);
    let handle = SimHandle::new(world, Default::default(), 1);
    handle.add_access_key(FUZZ_KEY.0, FUZZ_KEY.1);
    let response = runtime
        .block_on(wire::router(handle).oneshot(request))
        .map_err(|never| Violation(format!("the router failed: {never:?}")))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(Violation(format!("{path}: answered {status}")));
    }
    let operation_path = path.starts_with("/accounts/");
    let routed = status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED;
    if operation_path && routed && !status.is_success() {
        let error_type = response.headers().get("x-amzn-ErrorType");
        if error_type.is_none() {
            return Err(Violation(format!(
                "{path}: {status} without x-amzn-ErrorType"
            )));
        }
    }
    Ok(())
}

/// The key pair inputs are signed with.
const FUZZ_KEY: (&str, &str) = ("AKIDFUZZ", "fuzz-secret");

fn request_from(input: &[u8]) -> Option<Request<Body>> {
    let text = String::from_utf8_lossy(input);
    let (head, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head.to_string(), body.as_bytes().to_vec()),
        None => (text.to_string(), Vec::new()),
    };
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut headers = vec![("host".to_string(), "sim.invalid".to_string())];
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_lowercase(), value.trim().to_string()));
    }
    if !headers.iter().any(|(name, _)| name == "authorization") {
        headers.extend(signature_headers(method, target, &headers, &body)?);
    }
    let mut builder = Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).ok()
}

/// The headers a SigV4 signature with [`FUZZ_KEY`] adds; `None` for a request the signer
/// cannot read (then no HTTP client could have sent it either).
fn signature_headers(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<(String, String)>> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new(FUZZ_KEY.0, FUZZ_KEY.1, None, None, "fuzz").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(super::DEFAULT_REGION)
        .name("quicksight")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let url = format!("http://sim.invalid{target}");
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let request = SignableRequest::new(method, url, pairs, SignableBody::Bytes(body)).ok()?;
    let (instructions, _) = sign(request, &params).ok()?.into_parts();
    Some(
        instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn well_formed_calls_pass_the_signature_and_reach_the_operation() {
        let runtime = runtime();
        let list =
            "GET /accounts/111122223333/namespaces/default/self-upgrade-requests?max-results=2";
        let request = request_from(list.as_bytes()).expect("a request");
        let mut world = World::default();
        world.ensure_namespace("111122223333", "default");
        let handle = SimHandle::new(world, Default::default(), 1);
        handle.add_access_key(FUZZ_KEY.0, FUZZ_KEY.1);
        let response = runtime
            .block_on(wire::router(handle).oneshot(request))
            .expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(exercise(&runtime, list.as_bytes()), Ok(()));
    }

    const FORGED: &str = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20261126/us-east-1/quicksight/aws4_request, SignedHeaders=host, Signature=00";

    #[test]
    fn malformed_calls_are_client_errors_with_an_error_type() {
        let runtime = runtime();
        let inputs = [
            "POST /accounts/111122223333/namespaces/default/update-self-upgrade-request\n\n{not json"
                .to_string(),
            "GET /accounts/1/namespaces/default/self-upgrade-requests?max-results=x".to_string(),
            "GET /accounts/111122223333/namespaces/default/self-upgrade-requests?next-token=%FF%00"
                .to_string(),
            format!(
                "GET /accounts/111122223333/namespaces/default/self-upgrade-requests\n{FORGED}"
            ),
            "\u{0}\u{1}garbage".to_string(),
        ];
        for input in inputs {
            assert_eq!(exercise(&runtime, input.as_bytes()), Ok(()), "{input}");
        }
    }
}
