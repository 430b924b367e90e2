//! Bearer tokens and roles. With no tokens configured (loopback only) every caller is an
//! admin. Otherwise: no or unknown token → 401; a role that may not call the route → 403.
//! Tokens are compared in constant time and never logged.
//!
//! The caller (role and token name) goes into the request's extensions as [`Caller`]: the
//! producer routes use it to show a producer only the jobs enqueued under its name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use flotilla_core::ErrorCode;
use flotilla_server::{Credential, Role};

use crate::error::ApiError;

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<Credential>>,
}

/// Who is calling: the role of the token presented and its name (`None` without tokens,
/// where every caller is an admin).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) role: Role,
    pub(crate) name: Option<String>,
}

impl Caller {
    /// The tag marking the jobs a producer enqueued (`owner:<name>`); `None` for the
    /// other roles, which see every job.
    pub(crate) fn owner_tag(&self) -> Option<String> {
        match (&self.role, &self.name) {
            (Role::Producer, Some(name)) => Some(format!("{OWNER_TAG_PREFIX}{name}")),
            _ => None,
        }
    }
}

/// The prefix of the tag that records which producer enqueued a job.
pub(crate) const OWNER_TAG_PREFIX: &str = "owner:";

impl Auth {
    /// Authentication with these credentials; empty means none.
    pub fn new(tokens: Vec<Credential>) -> Self {
        Self {
            tokens: Arc::new(tokens),
        }
    }

    fn caller_of(&self, req: &Request) -> Result<Caller, ApiError> {
        if self.tokens.is_empty() {
            return Ok(Caller {
                role: Role::Admin,
                name: None,
            });
        }
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "missing bearer token (Authorization: Bearer <token>)",
                )
            })?;
        self.tokens
            .iter()
            .find(|c| constant_time_eq(c.secret.as_bytes(), presented.as_bytes()))
            .map(|c| Caller {
                role: c.role,
                name: Some(c.name.clone()),
            })
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown bearer token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The roles allowed on a group of routes.
#[derive(Clone, Copy)]
pub(crate) struct Allowed(pub(crate) &'static [Role]);

/// Middleware: refuses callers whose role is not in `allowed`.
pub(crate) async fn require(
    State((auth, allowed)): State<(Auth, Allowed)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = auth.caller_of(&req)?;
    let role = caller.role;
    req.extensions_mut().insert(caller);
    if role != Role::Admin && !allowed.0.contains(&role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("a {role:?} token may not call this route").to_lowercase(),
        ));
    }
    Ok(next.run(req).await)
}
