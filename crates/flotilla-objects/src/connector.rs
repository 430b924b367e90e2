//! Hands `object_store` an HTTP client built by the caller (timeouts, guarded DNS resolver).

use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpConnector};

/// An [`HttpConnector`] that always returns the same `reqwest` client.
#[derive(Debug)]
pub(crate) struct FixedClient(pub(crate) reqwest::Client);

impl HttpConnector for FixedClient {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.0.clone()))
    }
}
