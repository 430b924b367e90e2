//! [`ClientError`]: what a call can fail with, keeping the server's stable error code.

use flotilla_core::ErrorCode;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status. `code` is the stable code of the body
    /// (`job_not_found`, `lease_mismatch`, ...); for a body that is not Flotilla's error
    /// shape (a proxy's page, say) it is derived from the status.
    #[error("{code} ({status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// The server's human message.
        message: String,
    },
    /// The server could not be reached or did not answer in time (connect, reset, timeout).
    /// The message holds the whole chain of causes ("… tcp connect error: Connection
    /// refused"), so the error has no `source()` of its own: a reporter that prints the
    /// chain (`{:#}` of anyhow) would otherwise print each cause twice.
    #[error("transport: {}", causes(.0))]
    Transport(reqwest::Error),
    /// The server answered success with a body this client cannot read.
    #[error("cannot decode the answer of {path}: {error}")]
    Decode {
        /// The request path.
        path: String,
        /// What did not parse.
        error: serde_json::Error,
    },
    /// The base URL given to [`Client::new`](crate::Client::new) is not usable.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

/// `error` and its sources, joined by ": ".
fn causes(error: &dyn std::error::Error) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

impl ClientError {
    /// The server's stable error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for [`ClientError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the error carries `code`, e.g. `err.is(ErrorCode::LeaseMismatch)`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code() == Some(code.as_str())
    }

    /// Whether the same call may succeed later: transport errors, 5xx answers (including
    /// `unavailable`, 503), and 408 / 429. Other 4xx answers and decode errors are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api { status, .. } => *status >= 500 || matches!(*status, 408 | 429),
            Self::Decode { .. } | Self::InvalidBaseUrl { .. } => false,
        }
    }
}

/// The error of an answer with status `status` and body `body`.
pub(crate) fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Ok(err) = serde_json::from_slice::<flotilla_proto::ErrorBody>(body) {
        return ClientError::Api {
            status,
            code: err.error.code,
            message: err.error.message,
        };
    }
    // `/readyz` answers 503 with a health body; anything else is some other server's page.
    let message = match serde_json::from_slice::<flotilla_proto::HealthResponse>(body) {
        Ok(health) => health.status,
        Err(_) => tail(&String::from_utf8_lossy(body), 512),
    };
    ClientError::Api {
        status,
        code: code_for_status(status).into(),
        message,
    }
}

/// The code a bare status stands for, mirroring the server's table.
fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "malformed_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => ErrorCode::PayloadTooLarge.as_str(),
        502..=504 => ErrorCode::Unavailable.as_str(),
        s if s >= 500 => ErrorCode::Internal.as_str(),
        _ => "http_error",
    }
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_the_servers_code() {
        let body = br#"{"error":{"code":"lease_mismatch","message":"stale token 3"}}"#;
        let err = api_error(409, body);
        assert_eq!(err.code(), Some("lease_mismatch"));
        assert!(err.is(ErrorCode::LeaseMismatch));
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "lease_mismatch (409): stale token 3");
    }

    #[test]
    fn foreign_bodies_get_a_code_from_the_status() {
        let err = api_error(502, b"<html>bad gateway</html>");
        assert_eq!(err.code(), Some("unavailable"));
        assert!(err.is_retryable());
        let err = api_error(503, br#"{"status":"store unavailable"}"#);
        assert_eq!(err.to_string(), "unavailable (503): store unavailable");
        let err = api_error(401, b"");
        assert_eq!(err.code(), Some("unauthorized"));
        assert!(!err.is_retryable());
        assert!(api_error(429, b"").is_retryable());
        assert!(api_error(500, b"").is_retryable());
    }

    #[test]
    fn long_foreign_bodies_keep_their_tail() {
        let body = "é".repeat(600);
        let ClientError::Api { message, .. } = api_error(500, body.as_bytes()) else {
            panic!("not an API error");
        };
        assert!(message.len() <= 512 + "…".len());
        assert!(message.ends_with('é'));
    }
}
