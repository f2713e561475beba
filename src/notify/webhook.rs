//! The webhook: one POST of a JSON document, and what counts as delivered.

use std::time::Duration;

/// Longest wait for one POST, connection included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's address. It usually carries the credential (Slack's and Teams' incoming
/// webhooks do, in the path), so it is never shown: not in logs, not in errors, not in `Debug`.
#[derive(Clone)]
pub struct WebhookUrl(reqwest::Url);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

/// Why a URL was refused (without the URL).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum UrlError {
    #[error("the notification URL is not an absolute URL")]
    NotAUrl,
    #[error("the notification URL must be http:// or https://, not {0}://")]
    Scheme(String),
}

impl WebhookUrl {
    /// Parses `text` (surrounding whitespace, such as a Secret file's newline, ignored).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = reqwest::Url::parse(text.trim()).map_err(|_| UrlError::NotAUrl)?;
        match url.scheme() {
            "http" | "https" => Ok(Self(url)),
            other => Err(UrlError::Scheme(other.to_string())),
        }
    }
}

/// Why a POST did not count as delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the webhook answered {0}")]
    Status(u16),
    #[error("the webhook could not be reached: {0}")]
    Transport(String),
}

/// A client for one webhook.
pub struct Webhook {
    client: reqwest::Client,
    url: WebhookUrl,
}

impl Webhook {
    /// Redirects are not followed: a webhook that moved answers 3xx, which is a failure to
    /// fix, and following one would turn the POST into a GET elsewhere.
    pub fn new(url: WebhookUrl) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("selfupgrade-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, url })
    }

    /// POSTs `body`; any 2xx answer is a delivery.
    pub async fn post(&self, body: &serde_json::Value) -> Result<(), DeliveryError> {
        let answer = self
            .client
            .post(self.url.0.clone())
            .json(body)
            .send()
            .await
            .map_err(|error| DeliveryError::Transport(without_url(error)))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(DeliveryError::Status(status.as_u16())),
        }
    }
}

/// The error and its causes, without the URL reqwest puts in its message.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_urls_are_taken_and_none_is_ever_shown() {
        let url = WebhookUrl::parse(" https://hooks.example.com/services/T0/B0/secret\n")
            .expect("an https URL");
        assert!(!format!("{url:?}").contains("secret"));
        assert_eq!(
            WebhookUrl::parse("hooks.example.com").err(),
            Some(UrlError::NotAUrl)
        );
        let refused = WebhookUrl::parse("file:///etc/secret").expect_err("refused");
        assert!(!refused.to_string().contains("secret"), "{refused}");
    }

    #[tokio::test]
    async fn a_webhook_that_cannot_be_reached_is_reported_without_its_url() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook/secret-token"))
            .expect("a URL");
        let error = Webhook::new(url)
            .expect("a client")
            .post(&serde_json::json!({}))
            .await
            .expect_err("nothing listens");
        let text = error.to_string();
        assert!(matches!(error, DeliveryError::Transport(_)), "{text}");
        assert!(
            !text.contains("secret-token") && !text.contains("/hook"),
            "{text}"
        );
    }
}
