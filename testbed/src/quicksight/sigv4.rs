//! SigV4 verification, as an AWS endpoint does it: rebuild the canonical request from what
//! arrived (the headers the client says it signed, the path and query as sent, the body's
//! hash), derive the signing key from the secret the simulator issued for the access key, and
//! compare signatures. The signing maths (key derivation, HMAC) is the SDK's own `aws-sigv4`;
//! the canonical request is built here because a verifier must follow the client's
//! `SignedHeaders`, which a signer chooses for itself.
//!
//! Rules and messages follow AWS's "Signature Version 4 signing process" and the errors real
//! endpoints answer (`IncompleteSignature`, `SignatureDoesNotMatch` / `InvalidSignatureException`,
//! `Signature expired: … is now earlier than … (… - 5 min.)`).

use axum::http::HeaderMap;
use k8s_openapi::jiff::{Span, Timestamp, civil::DateTime, tz::TimeZone};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::time::SystemTime;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far `X-Amz-Date` may be from the endpoint's clock.
const MAX_SKEW_MINUTES: i64 = 5;

/// RFC 3986 unreserved characters stay as they are; everything else is `%XX` (SigV4's
/// `UriEncode`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same for a path, whose `/` separators stay.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// A request as it arrived.
pub struct Incoming<'a> {
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What the endpoint serves: its signing name and the regions it answers for.
pub struct Endpoint<'a> {
    pub service: &'a str,
    pub regions: &'a [String],
}

/// Why a request's signature is refused; each protocol words it in its own error type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No SigV4 `Authorization` header at all.
    Missing,
    /// An `Authorization` header that lacks a part SigV4 requires.
    Incomplete(String),
    /// An access key the endpoint never issued.
    UnknownKey,
    /// A well-formed signature that does not verify (wrong secret, scope, date or content).
    Mismatch(String),
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// Verifies `request`; `secret_of` gives the secret of an access key the endpoint issued.
/// Returns the access key that signed.
pub fn verify(
    request: &Incoming<'_>,
    endpoint: &Endpoint<'_>,
    now: SystemTime,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<String, Refusal> {
    let auth = parse_authorization(request.headers)?;
    let amz_date = header(request.headers, "x-amz-date").ok_or_else(|| {
        Refusal::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        )
    })?;
    let secret = secret_of(auth.access_key).ok_or(Refusal::UnknownKey)?;
    let signed_at = parse_amz_date(&amz_date)?;
    check_skew(&amz_date, signed_at, now)?;
    check_scope(&auth, &amz_date, endpoint)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request(request, auth.signed_headers).as_bytes())
    );
    let key =
        aws_sigv4::sign::v4::generate_signing_key(&secret, signed_at, auth.region, auth.service);
    let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    if expected != auth.signature {
        return Err(Refusal::Mismatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .into(),
        ));
    }
    Ok(auth.access_key.to_string())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn parse_authorization(headers: &HeaderMap) -> Result<Authorization<'_>, Refusal> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::Missing)?;
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(Refusal::Missing)?;
    let part = |name: &str| {
        rest.split(',')
            .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| {
                Refusal::Incomplete(format!(
                    "Authorization header requires '{name}' parameter. Authorization={value}"
                ))
            })
    };
    let credential = part("Credential")?;
    let signed_headers = part("SignedHeaders")?;
    let signature = part("Signature")?;
    let pieces: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = pieces[..] else {
        return Err(Refusal::Incomplete(format!(
            "Credential should have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err(Refusal::Mismatch(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        terminator,
        signed_headers,
        signature,
    })
}

fn parse_amz_date(amz_date: &str) -> Result<SystemTime, Refusal> {
    DateTime::strptime("%Y%m%dT%H%M%SZ", amz_date)
        .and_then(|at| at.to_zoned(TimeZone::UTC))
        .map(|at| SystemTime::from(at.timestamp()))
        .map_err(|_| {
            Refusal::Incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See \
                 http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })
}

fn check_skew(amz_date: &str, signed_at: SystemTime, now: SystemTime) -> Result<(), Refusal> {
    let (Ok(signed_at), Ok(now)) = (Timestamp::try_from(signed_at), Timestamp::try_from(now))
    else {
        return Err(Refusal::Mismatch("Signature date out of range.".into()));
    };
    let skew = Span::new().minutes(MAX_SKEW_MINUTES);
    let basic = |t: Timestamp| t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let (Ok(earliest), Ok(latest)) = (now.checked_sub(skew), now.checked_add(skew)) else {
        return Err(Refusal::Mismatch("Signature date out of range.".into()));
    };
    if signed_at < earliest {
        return Err(Refusal::Mismatch(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            basic(earliest),
            basic(now)
        )));
    }
    if signed_at > latest {
        return Err(Refusal::Mismatch(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            basic(latest),
            basic(now)
        )));
    }
    Ok(())
}

fn check_scope(
    auth: &Authorization<'_>,
    amz_date: &str,
    endpoint: &Endpoint<'_>,
) -> Result<(), Refusal> {
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(Refusal::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            &amz_date[..amz_date.len().min(8)]
        )));
    }
    if !endpoint.regions.iter().any(|r| r == auth.region) {
        return Err(Refusal::Mismatch(
            "Credential should be scoped to a valid region.".into(),
        ));
    }
    if auth.service != endpoint.service {
        return Err(Refusal::Mismatch(format!(
            "Credential should be scoped to correct service: '{}'.",
            endpoint.service
        )));
    }
    if auth.terminator != "aws4_request" {
        return Err(Refusal::Mismatch(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            auth.terminator
        )));
    }
    Ok(())
}

/// The canonical request of SigV4: method, path, query, the signed headers, and the body's hash.
fn canonical_request(request: &Incoming<'_>, signed_headers: &str) -> String {
    let headers: String = signed_headers
        .split(';')
        .map(|name| {
            let value = header(request.headers, name).unwrap_or_default();
            format!("{name}:{}\n", collapse_spaces(&value))
        })
        .collect();
    format!(
        "{}\n{}\n{}\n{headers}\n{signed_headers}\n{}",
        request.method,
        canonical_path(request.path),
        canonical_query(request.query.unwrap_or_default()),
        sha256_hex(request.body)
    )
}

/// Services other than S3 sign the path encoded once more than it was sent.
fn canonical_path(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    utf8_percent_encode(path, UNRESERVED_AND_SLASH).to_string()
}

/// Parameters decoded, re-encoded as SigV4 encodes them, and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let encode = |part: &str| {
        let decoded = percent_decode_str(part).decode_utf8_lossy();
        utf8_percent_encode(&decoded, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(name), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value trimmed, with runs of spaces made one.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4::SigningParams;
    use aws_smithy_runtime_api::client::identity::Identity;
    use std::time::Duration;

    const REGIONS: &[&str] = &["us-east-1"];

    fn regions() -> Vec<String> {
        REGIONS.iter().map(|r| r.to_string()).collect()
    }

    /// Signs a request as the SDK does, with `secret`, for `region`/`service`, at `at`.
    fn signed(secret: &str, region: &str, service: &str, at: SystemTime) -> HeaderMap {
        let identity: Identity =
            aws_credential_types::Credentials::new("AKIDTEST", secret, None, None, "test").into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .expect("params");
        let request = SignableRequest::new(
            "POST",
            "http://127.0.0.1:8600/accounts/1/namespaces/default/update-self-upgrade-request?a=b%2Fc",
            [("host", "127.0.0.1:8600"), ("content-type", "application/json")].into_iter(),
            SignableBody::Bytes(b"{}"),
        )
        .expect("signable");
        let (instructions, _) = sign(request, &params.into()).expect("signs").into_parts();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8600".parse().expect("header"));
        headers.insert("content-type", "application/json".parse().expect("header"));
        for (name, value) in instructions.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    fn check(headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<String, Refusal> {
        let request = Incoming {
            method: "POST",
            path: "/accounts/1/namespaces/default/update-self-upgrade-request",
            query: Some("a=b%2Fc"),
            headers,
            body,
        };
        let regions = regions();
        let endpoint = Endpoint {
            service: "quicksight",
            regions: &regions,
        };
        verify(&request, &endpoint, now, |key| {
            (key == "AKIDTEST").then(|| "right-secret".to_string())
        })
    }

    fn is_mismatch(result: Result<String, Refusal>, words: &str) -> bool {
        matches!(result, Err(Refusal::Mismatch(m)) if m.contains(words))
    }

    #[test]
    fn the_sdks_signature_verifies_and_each_wrong_part_is_refused() {
        let now = SystemTime::now();
        let good = signed("right-secret", "us-east-1", "quicksight", now);
        assert_eq!(check(&good, b"{}", now), Ok("AKIDTEST".to_string()));
        let wrong_secret = signed("wrong-secret", "us-east-1", "quicksight", now);
        assert!(is_mismatch(
            check(&wrong_secret, b"{}", now),
            "does not match"
        ));
        let wrong_region = signed("right-secret", "eu-west-1", "quicksight", now);
        assert!(is_mismatch(
            check(&wrong_region, b"{}", now),
            "valid region"
        ));
        let wrong_service = signed("right-secret", "us-east-1", "s3", now);
        assert!(is_mismatch(
            check(&wrong_service, b"{}", now),
            "correct service"
        ));
        assert!(is_mismatch(
            check(&good, b"{\"x\":1}", now),
            "does not match"
        ));
    }

    #[test]
    fn a_date_more_than_five_minutes_off_is_refused_either_way() {
        let now = SystemTime::now();
        let just_in = signed(
            "right-secret",
            "us-east-1",
            "quicksight",
            now - Duration::from_secs(290),
        );
        assert!(check(&just_in, b"{}", now).is_ok());
        let stale = signed(
            "right-secret",
            "us-east-1",
            "quicksight",
            now - Duration::from_secs(310),
        );
        assert!(is_mismatch(check(&stale, b"{}", now), "Signature expired"));
        let ahead = signed(
            "right-secret",
            "us-east-1",
            "quicksight",
            now + Duration::from_secs(310),
        );
        assert!(is_mismatch(check(&ahead, b"{}", now), "not yet current"));
    }

    #[test]
    fn unknown_keys_and_missing_parts_are_told_apart() {
        let now = SystemTime::now();
        let mut headers = signed("right-secret", "us-east-1", "quicksight", now);
        assert_eq!(check(&HeaderMap::new(), b"{}", now), Err(Refusal::Missing));
        let auth = headers["authorization"]
            .to_str()
            .expect("ascii")
            .to_string();
        let stranger = auth.replace("AKIDTEST", "AKIDSTRANGER");
        headers.insert("authorization", stranger.parse().expect("header"));
        assert_eq!(check(&headers, b"{}", now), Err(Refusal::UnknownKey));
        let unsigned_part = auth
            .split(", Signature=")
            .next()
            .unwrap_or_default()
            .to_string();
        headers.insert("authorization", unsigned_part.parse().expect("header"));
        assert!(
            matches!(check(&headers, b"{}", now), Err(Refusal::Incomplete(m)) if m.contains("'Signature'"))
        );
    }

    #[test]
    fn the_canonical_query_is_sorted_and_encoded_once() {
        assert_eq!(canonical_query("b=2&a=x%2By&a=%20"), "a=%20&a=x%2By&b=2");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_path("/a b/%2F"), "/a%20b/%252F");
    }
}
