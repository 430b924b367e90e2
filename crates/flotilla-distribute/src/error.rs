//! `DeliveryError`: why a delivery failed, with a stable code and whether the job system should retry.
//!
//! Messages name the target and what went wrong; they never contain secret values (remote text is scrubbed
//! before it is quoted) or URL credentials.

use std::net::IpAddr;

/// A boxed source error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No target has this name.
    #[error("unknown delivery target {target:?}")]
    UnknownTarget {
        /// The name asked for.
        target: String,
    },
    /// The target's host resolves to a loopback/private/link-local address and the target does not set
    /// `allow_private = true`.
    #[error(
        "target {target}: {host} resolves to {address}, a private address (set allow_private = true to permit it)"
    )]
    PrivateAddress {
        /// The target.
        target: String,
        /// The host name in the configuration.
        host: String,
        /// The offending address.
        address: IpAddr,
    },
    /// The remote side refused the file (HTTP 4xx, FTP 5xx, S3 access denied): retrying will not help.
    #[error("target {target} rejected the delivery: {detail}")]
    Rejected {
        /// The target.
        target: String,
        /// Status and a short, scrubbed excerpt of the answer.
        detail: String,
    },
    /// The remote side could not be reached or failed temporarily (network, timeout, HTTP 5xx/408/429).
    #[error("target {target} unavailable: {detail}")]
    Unavailable {
        /// The target.
        target: String,
        /// What failed.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// What landed (or what was read) does not match the delivery's size or SHA-256.
    #[error("target {target}: integrity check failed: {detail}")]
    IntegrityMismatch {
        /// The target.
        target: String,
        /// Expected and found values.
        detail: String,
    },
    /// The target's configuration is wrong.
    #[error("target {target}: invalid configuration: {detail}")]
    InvalidConfig {
        /// The target.
        target: String,
        /// Which field and why.
        detail: String,
    },
    /// The delivery request itself is wrong (bad name or checksum format).
    #[error("target {target}: invalid delivery: {detail}")]
    InvalidDelivery {
        /// The target.
        target: String,
        /// What is wrong.
        detail: String,
    },
    /// A secret reference could not be resolved.
    #[error("target {target}: secret {variable} is not set")]
    MissingSecret {
        /// The target.
        target: String,
        /// The variable name (never its value).
        variable: String,
    },
    /// A local file operation failed (reading the source, writing a directory target).
    #[error("target {target}: i/o error: {detail}: {source}")]
    Io {
        /// The target.
        target: String,
        /// What was being done.
        detail: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DeliveryError {
    /// The stable, snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownTarget { .. } => "unknown_target",
            Self::PrivateAddress { .. } => "private_address",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::IntegrityMismatch { .. } => "integrity_mismatch",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::InvalidDelivery { .. } => "invalid_delivery",
            Self::MissingSecret { .. } => "missing_secret",
            Self::Io { .. } => "io",
        }
    }

    /// Whether another attempt later may succeed; only `unavailable` is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Builds errors for one target without repeating its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorContext<'a> {
    pub(crate) target: &'a str,
}

impl ErrorContext<'_> {
    pub(crate) fn rejected(&self, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::Rejected {
            target: self.target.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unavailable(
        &self,
        detail: impl Into<String>,
        source: Option<BoxError>,
    ) -> DeliveryError {
        DeliveryError::Unavailable {
            target: self.target.to_owned(),
            detail: detail.into(),
            source,
        }
    }

    pub(crate) fn mismatch(&self, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::IntegrityMismatch {
            target: self.target.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_config(&self, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::InvalidConfig {
            target: self.target.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_delivery(&self, detail: impl Into<String>) -> DeliveryError {
        DeliveryError::InvalidDelivery {
            target: self.target.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn missing_secret(&self, variable: &str) -> DeliveryError {
        DeliveryError::MissingSecret {
            target: self.target.to_owned(),
            variable: variable.to_owned(),
        }
    }

    pub(crate) fn io(&self, detail: impl Into<String>, source: std::io::Error) -> DeliveryError {
        DeliveryError::Io {
            target: self.target.to_owned(),
            detail: detail.into(),
            source,
        }
    }

    pub(crate) fn private(&self, refused: &crate::address::PrivateAddressRefused) -> DeliveryError {
        DeliveryError::PrivateAddress {
            target: self.target.to_owned(),
            host: refused.host.clone(),
            address: refused.address,
        }
    }
}
