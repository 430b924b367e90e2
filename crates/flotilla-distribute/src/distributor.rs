//! `Distributor`: named targets, shared HTTP clients, and one delivery attempt per call.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flotilla_objects::ObjectKey;
use serde::{Deserialize, Serialize};

use crate::address::GuardedResolver;
use crate::error::ErrorContext;
use crate::secrets::{ProcessEnv, SecretSource};
use crate::{DeliveryError, TargetConfig};

/// Connect timeout for every network target.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Fixed part of a transfer's time budget.
pub const TRANSFER_BASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Slowest throughput a transfer may have before it is abandoned, in bytes per second.
pub const MIN_THROUGHPUT_BYTES_PER_SEC: u64 = 256 * 1024;

/// The time budget of one transfer: [`TRANSFER_BASE_TIMEOUT`] plus the time to move `bytes` at
/// [`MIN_THROUGHPUT_BYTES_PER_SEC`]. A stalled peer therefore fails the attempt (retryably) instead of
/// holding a worker slot forever.
pub fn transfer_timeout(bytes: u64) -> Duration {
    TRANSFER_BASE_TIMEOUT + Duration::from_secs(bytes / MIN_THROUGHPUT_BYTES_PER_SEC)
}

/// One file to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The local file.
    pub file: PathBuf,
    /// Relative remote name (`renditions/720p.mp4`), validated like an object key.
    pub name: String,
    /// Expected size in bytes.
    pub size: u64,
    /// Expected SHA-256, hex.
    pub sha256: String,
}

/// Where a delivery landed and what was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The target's name.
    pub target: String,
    /// Where the file landed (path or URL), without credentials.
    pub location: String,
    /// Bytes sent.
    pub bytes: u64,
    /// What was verified: any of `"size"`, `"sha256"`, `"etag"`.
    pub verified: Vec<String>,
}

/// What one delivery attempt works with, shared by the per-protocol modules.
pub(crate) struct Attempt<'a> {
    pub(crate) errors: ErrorContext<'a>,
    pub(crate) target: &'a str,
    pub(crate) delivery: &'a Delivery,
    /// The validated remote name.
    pub(crate) name: ObjectKey,
    pub(crate) secrets: &'a dyn SecretSource,
}

impl Attempt<'_> {
    pub(crate) fn receipt(&self, location: String, verified: &[&str]) -> Receipt {
        Receipt {
            target: self.target.to_owned(),
            location,
            bytes: self.delivery.size,
            verified: verified.iter().map(|v| (*v).to_owned()).collect(),
        }
    }
}

/// Delivers files to named targets. Cheap to share (`Arc`); deliveries run concurrently.
pub struct Distributor {
    targets: BTreeMap<String, TargetConfig>,
    /// Resolves through [`GuardedResolver`]: for targets that may not reach private addresses.
    guarded_client: reqwest::Client,
    /// Plain resolver: for targets with `allow_private = true`.
    open_client: reqwest::Client,
    secrets: Arc<dyn SecretSource>,
}

impl Distributor {
    /// Validates every target (errors name the target and field); secrets come from the environment.
    pub fn new(targets: BTreeMap<String, TargetConfig>) -> Result<Self, DeliveryError> {
        Self::with_secrets(targets, Arc::new(ProcessEnv))
    }

    /// Like [`Distributor::new`], with secrets from `secrets` instead of the environment.
    pub fn with_secrets(
        targets: BTreeMap<String, TargetConfig>,
        secrets: Arc<dyn SecretSource>,
    ) -> Result<Self, DeliveryError> {
        for (name, target) in &targets {
            target.validate(name)?;
        }
        Ok(Self {
            targets,
            guarded_client: http_client(true)?,
            open_client: http_client(false)?,
            secrets,
        })
    }

    /// The configured target names.
    pub fn target_names(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    /// Makes one attempt to deliver `delivery` to `target`. The job system retries retryable errors.
    pub async fn deliver(
        &self,
        target: &str,
        delivery: &Delivery,
    ) -> Result<Receipt, DeliveryError> {
        let config = self
            .targets
            .get(target)
            .ok_or_else(|| DeliveryError::UnknownTarget {
                target: target.to_owned(),
            })?;
        let errors = ErrorContext { target };
        let name = check_delivery(errors, delivery).await?;
        let attempt = Attempt {
            errors,
            target,
            delivery,
            name,
            secrets: self.secrets.as_ref(),
        };
        let client = self.client_for(config.allow_private());
        let result = match config {
            TargetConfig::Dir(dir) => crate::dir::deliver(&attempt, dir).await,
            TargetConfig::S3(s3) => crate::s3::deliver(&attempt, s3, client).await,
            TargetConfig::Http(http) => crate::http::deliver(&attempt, http, client).await,
            TargetConfig::Ftp(ftp) => crate::ftp::deliver(&attempt, ftp).await,
        };
        log_outcome(target, &delivery.name, &result);
        result
    }

    fn client_for(&self, allow_private: bool) -> &reqwest::Client {
        if allow_private {
            &self.open_client
        } else {
            &self.guarded_client
        }
    }
}

impl fmt::Debug for Distributor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Distributor")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// Validates the name and checksum format, and that the source file has the announced size.
async fn check_delivery(
    errors: ErrorContext<'_>,
    delivery: &Delivery,
) -> Result<ObjectKey, DeliveryError> {
    let name = ObjectKey::parse(&delivery.name)
        .map_err(|e| errors.invalid_delivery(format!("name: {e}")))?;
    let sha_ok =
        delivery.sha256.len() == 64 && delivery.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha_ok {
        return Err(errors.invalid_delivery("sha256 must be 64 hex digits"));
    }
    let metadata = tokio::fs::metadata(&delivery.file)
        .await
        .map_err(|e| errors.io(format!("reading source {}", delivery.file.display()), e))?;
    if !metadata.is_file() {
        return Err(
            errors.invalid_delivery(format!("{} is not a regular file", delivery.file.display()))
        );
    }
    if metadata.len() != delivery.size {
        return Err(errors.mismatch(format!(
            "source file is {} bytes, the delivery says {}",
            metadata.len(),
            delivery.size
        )));
    }
    Ok(name)
}

fn http_client(guarded: bool) -> Result<reqwest::Client, DeliveryError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .user_agent(concat!("flotilla-distribute/", env!("CARGO_PKG_VERSION")));
    if guarded {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    builder.build().map_err(|e| DeliveryError::InvalidConfig {
        target: "*".into(),
        detail: format!("cannot build the HTTP client: {e}"),
    })
}

fn log_outcome(target: &str, name: &str, result: &Result<Receipt, DeliveryError>) {
    match result {
        Ok(receipt) => tracing::info!(
            target_name = target, name, location = %receipt.location, bytes = receipt.bytes,
            verified = ?receipt.verified, "delivered"
        ),
        Err(e) => tracing::warn!(
            target_name = target, name, code = e.code(), retryable = e.is_retryable(), error = %e,
            "delivery failed"
        ),
    }
}
