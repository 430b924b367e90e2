//! Bearer tokens and roles. With no tokens configured (loopback only) every caller is an
//! admin. Otherwise: no or unknown token → 401; a role that may not call the route → 403.
//! Tokens are compared in constant time and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use flotilla_core::ErrorCode;
use flotilla_server::Role;

use crate::error::ApiError;

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<(String, Role)>>,
}

impl Auth {
    /// Authentication with these `(secret, role)` pairs; empty means none.
    pub fn new(tokens: Vec<(String, Role)>) -> Self {
        Self {
            tokens: Arc::new(tokens),
        }
    }

    fn role_of(&self, req: &Request) -> Result<Role, ApiError> {
        if self.tokens.is_empty() {
            return Ok(Role::Admin);
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
            .find(|(secret, _)| constant_time_eq(secret.as_bytes(), presented.as_bytes()))
            .map(|(_, role)| *role)
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
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let role = auth.role_of(&req)?;
    if role != Role::Admin && !allowed.0.contains(&role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("a {role:?} token may not call this route").to_lowercase(),
        ));
    }
    Ok(next.run(req).await)
}
