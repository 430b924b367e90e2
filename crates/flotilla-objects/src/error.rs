//! `ObjectsError`: every failure of the object store, with a stable code and whether a retry may help.

use std::error::Error as StdError;

/// A boxed error kept as the source, so callers can walk the chain (e.g. to find a refused address).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong talking to the object store. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectsError {
    /// No object under this key.
    #[error("object {key} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The body grew past the caller's limit; nothing was stored.
    #[error("object {key} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The key that was being written.
        key: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The key breaks a rule of [`crate::ObjectKey`].
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key, escaped and shortened for display.
        key: String,
        /// The rule that failed.
        reason: &'static str,
    },
    /// The store URL or options are wrong; fix the configuration.
    #[error("invalid object store configuration: {0}")]
    InvalidConfig(String),
    /// The service refused the request (4xx other than 404: credentials, permissions, bad request).
    #[error("object store refused {operation} on {key}: {source}")]
    Rejected {
        /// What was being done (`put`, `get`, …).
        operation: &'static str,
        /// The key concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The service could not be reached or failed (network error, timeout, 5xx, 429); a retry may succeed.
    #[error("object store unavailable during {operation} on {key}: {source}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// The key concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// A local file or directory operation failed.
    #[error("i/o error during {operation} on {key}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The key or path concerned.
        key: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl ObjectsError {
    /// The stable, snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidKey { .. } => "invalid_key",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::Io { .. } => "io",
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    pub(crate) fn io(operation: &'static str, key: &str, source: std::io::Error) -> Self {
        Self::Io {
            operation,
            key: key.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Which backend produced an `object_store` error; decides how unclassified errors are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    Local,
    S3,
}

/// Maps an `object_store` error onto [`ObjectsError`]: HTTP status first, then transport errors, then the
/// backend's default (local → `io`, S3 → `unavailable`).
pub(crate) fn classify(
    error: object_store::Error,
    backend: BackendKind,
    operation: &'static str,
    key: &str,
) -> ObjectsError {
    let key_owned = key.to_owned();
    match error {
        object_store::Error::NotFound { .. } => return ObjectsError::NotFound { key: key_owned },
        object_store::Error::InvalidPath { .. } => {
            return ObjectsError::InvalidKey {
                key: key_owned,
                reason: "refused by the store",
            };
        }
        _ => {}
    }
    let rejected = match http_status(&error) {
        Some(status) => !is_transient_status(status),
        None => matches!(
            error,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotSupported { .. }
                // The backend lacks the operation: retrying cannot help.
                | object_store::Error::NotImplemented
                | object_store::Error::UnknownConfigurationKey { .. }
        ),
    };
    let source: BoxError = Box::new(error);
    if rejected {
        ObjectsError::Rejected {
            operation,
            key: key_owned,
            source,
        }
    } else if backend == BackendKind::Local || has_io_error_without_http(&*source) {
        ObjectsError::Io {
            operation,
            key: key_owned,
            source,
        }
    } else {
        ObjectsError::Unavailable {
            operation,
            key: key_owned,
            source,
        }
    }
}

/// Whether an HTTP status means "try again later".
pub(crate) fn is_transient_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// The HTTP status behind an error. `object_store` keeps its retry error private and maps only
/// 401/403/404/409/412 to variants, so the remaining statuses are read from its stable message
/// ("Server returned non-2xx status code: 400 Bad Request").
fn http_status(error: &object_store::Error) -> Option<u16> {
    const MARKER: &str = "status code: ";
    chain(error).find_map(|e| {
        let text = e.to_string();
        let start = text.find(MARKER)? + MARKER.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// A local file error (disk full, permission) reported by a remote backend while reading the source.
fn has_io_error_without_http(error: &(dyn StdError + 'static)) -> bool {
    let mut saw_io = false;
    for e in chain(error) {
        if e.is::<object_store::client::HttpError>() || e.is::<reqwest::Error>() {
            return false;
        }
        saw_io |= e.is::<std::io::Error>();
    }
    saw_io
}

/// The error and its sources, outermost first.
pub(crate) fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e| (*e).source())
}
