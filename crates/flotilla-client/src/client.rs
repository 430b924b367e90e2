//! [`Client`]: the base URL, the token, timeouts, and one function that sends a request and
//! reads its answer.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ClientError;
use crate::error::api_error;

/// The timeout of every call but a poll.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than its `wait_ms` a poll may take before the client gives up.
pub const POLL_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// A client of one Flotilla server. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client of the server at `base_url` (e.g. `http://127.0.0.1:7070`), sending
    /// `Authorization: Bearer <token>` on every call when `token` is given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidBaseUrl {
            url: base_url.into(),
            reason: reason.into(),
        };
        let base = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("give scheme, host, port and at most a path prefix"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Client {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the timeout of every call but a poll (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs, so this cannot fail.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to `segments` with the token and the default timeout.
    pub(crate) fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let req = self
            .http
            .request(method, self.url(segments))
            .timeout(self.timeout);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends `req` and decodes a success body as `T`; an error status becomes
    /// [`ClientError::Api`].
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let (path, body) = self.send_raw(req).await?;
        // A 204 has no body: read it as JSON null, which `()` accepts.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|error| ClientError::Decode { path, error })
    }

    /// Sends `req` with `body` as JSON; see [`Client::send`].
    pub(crate) async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(req.json(body)).await
    }

    async fn send_raw(&self, req: RequestBuilder) -> Result<(String, Vec<u8>), ClientError> {
        let resp = req.send().await.map_err(ClientError::Transport)?;
        let status = resp.status();
        let path = resp.url().path().to_string();
        let body = resp.bytes().await.map_err(ClientError::Transport)?;
        if status.is_success() {
            Ok((path, body.to_vec()))
        } else {
            Err(api_error(status.as_u16(), &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let client = Client::new("http://127.0.0.1:7070", None).unwrap();
        assert_eq!(
            client.url(&["v1", "jobs:batch"]).as_str(),
            "http://127.0.0.1:7070/v1/jobs:batch"
        );
        let client = Client::new("https://example.invalid/flotilla/", None).unwrap();
        assert_eq!(
            client.url(&["v1", "workers", "a b/c", "status"]).as_str(),
            "https://example.invalid/flotilla/v1/workers/a%20b%2Fc/status"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["", "127.0.0.1:7070", "ftp://host", "http://host/?q=1"] {
            let err = Client::new(url, None).unwrap_err();
            assert!(matches!(err, ClientError::InvalidBaseUrl { .. }), "{url}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let client = Client::new("http://h", Some("s3cret".into())).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
