//! How a store is opened: S3 credentials (never logged) and the HTTP client used for S3.

use std::fmt;
use std::time::Duration;

/// Environment variable holding the S3 access key id.
pub const ACCESS_KEY_ID_VAR: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable holding the S3 secret access key.
pub const SECRET_ACCESS_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
/// Environment variable holding an optional S3 session token.
pub const SESSION_TOKEN_VAR: &str = "AWS_SESSION_TOKEN";

/// Connect timeout of the default S3 HTTP client.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a response on the default S3 HTTP client.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of one multipart part (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploaded at once per `put_stream`; with [`PART_BYTES`] this bounds memory per upload to ~24 MiB.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Retries of one failed S3 request inside `object_store` (the job system retries whole operations).
pub const DEFAULT_MAX_RETRIES: usize = 2;

/// S3 credentials. `Debug` shows the key id only.
#[derive(Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
}

impl S3Credentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; `None` when either of the
    /// first two is missing or empty.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds credentials from any name → value lookup (used with secret stores and in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |name| lookup(name).filter(|value: &String| !value.is_empty());
        Some(Self {
            access_key_id: non_empty(ACCESS_KEY_ID_VAR)?,
            secret_access_key: non_empty(SECRET_ACCESS_KEY_VAR)?,
            session_token: non_empty(SESSION_TOKEN_VAR),
        })
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Options for [`crate::Objects::open_with`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Credentials for S3; `None` reads them from the environment at open time.
    pub credentials: Option<S3Credentials>,
    /// HTTP client for S3 requests; `None` builds one with [`CONNECT_TIMEOUT`] and [`READ_TIMEOUT`].
    /// Pass a client with a guarded DNS resolver to control which addresses S3 requests may reach.
    pub http_client: Option<reqwest::Client>,
    /// Retries of one failed S3 request inside the store client.
    pub max_retries: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            credentials: None,
            http_client: None,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}
