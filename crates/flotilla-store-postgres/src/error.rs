//! Errors inside the crate, and how they become [`StoreError`]s.
//!
//! Operations return [`PgError`], which keeps the database error whole so that the retry
//! loop can tell a deadlock or serialization failure (retried) from the rest; at the
//! [`flotilla_store::Store`] boundary it becomes a [`StoreError`]:
//! - connection failures, pool timeouts, an unreachable or restarting server, and retries
//!   exhausted → [`StoreError::Unavailable`] (worth retrying);
//! - a session setting of the connection string that the server refuses (an unknown
//!   name, a bad value) → [`StoreError::Invalid`] with `invalid_argument`;
//! - a value PostgreSQL cannot hold (a NUL character, a time out of its range) →
//!   [`StoreError::Invalid`] with `invalid_argument`;
//! - anything else → [`StoreError::Internal`].

use flotilla_store::StoreError;
use tokio_postgres::error::SqlState;

/// What can go wrong inside an operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// The database answered with an error, or the connection failed.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A domain answer (not found, invalid, lease mismatch...), passed through as is.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A row could not be turned into a domain value.
    #[error("cannot read a row: {0}")]
    Decode(String),
}

impl From<flotilla_core::Error> for PgError {
    fn from(e: flotilla_core::Error) -> Self {
        Self::Store(StoreError::Invalid(e))
    }
}

impl PgError {
    /// Whether the whole operation may simply run again: its transaction was rolled back
    /// because of a deadlock or a serialization failure.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
            ),
            _ => false,
        }
    }
}

/// Errors whose SQLSTATE class says the server or the connection is in trouble.
fn unavailable_state(code: &SqlState) -> bool {
    let c = code.code();
    // 08: connection exception; 53: insufficient resources; 57P: operator intervention
    // (shutdown, crash recovery, cannot connect now); 58: system error (I/O); 40: a
    // transaction rollback that outlived our retries; 55P03: lock not available.
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("57P")
        || c.starts_with("58")
        || c.starts_with("40")
        || c == "55P03"
}

/// A session setting the server does not know, or refuses the value of.
fn refused_setting(code: &SqlState) -> bool {
    *code == SqlState::UNDEFINED_OBJECT
        || *code == SqlState::INVALID_PARAMETER_VALUE
        || *code == SqlState::CANT_CHANGE_RUNTIME_PARAM
}

/// Values PostgreSQL refuses to store: NUL characters, times out of its range.
fn unstorable_value(code: &SqlState) -> bool {
    *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        || *code == SqlState::UNTRANSLATABLE_CHARACTER
        || *code == SqlState::DATETIME_FIELD_OVERFLOW
        || *code == SqlState::DATETIME_VALUE_OUT_OF_RANGE
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Store(e) => e,
            PgError::Pool(deadpool_postgres::PoolError::Backend(e)) => match e.code() {
                // A new connection's session settings (from the URL) were refused.
                Some(code) if refused_setting(code) => {
                    StoreError::Invalid(flotilla_core::Error::InvalidArgument {
                        field: "postgres",
                        reason: format!("a connection setting was refused: {}", describe(&e)),
                    })
                }
                _ => StoreError::Unavailable(format!("no database connection: {}", describe(&e))),
            },
            PgError::Pool(e) => StoreError::Unavailable(format!("no database connection: {e}")),
            PgError::Decode(msg) => StoreError::Internal(msg),
            PgError::Db(e) => match e.code() {
                Some(code) if unavailable_state(code) => StoreError::Unavailable(describe(&e)),
                Some(code) if unstorable_value(code) => {
                    StoreError::Invalid(flotilla_core::Error::InvalidArgument {
                        field: "value",
                        reason: describe(&e),
                    })
                }
                Some(_) => StoreError::Internal(describe(&e)),
                None if connection_trouble(&e) => StoreError::Unavailable(describe(&e)),
                // A parameter or column conversion: a bug of ours.
                None => StoreError::Internal(describe(&e)),
            },
        }
    }
}

/// A client-side error of the connection itself: closed, I/O, connect, TLS, timeout,
/// authentication (tokio-postgres tells its kinds apart only in their text).
fn connection_trouble(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let text = e.to_string();
    [
        "error communicating",
        "error connecting",
        "timeout",
        "connection closed",
        "error performing TLS",
        "authentication",
        "unexpected message",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

/// The database's own message when there is one (tokio-postgres' Display says only "db
/// error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    }
}

/// Refuses a text value PostgreSQL cannot store (it has no NUL character in `text`).
pub(crate) fn storable(field: &'static str, value: &str) -> Result<(), PgError> {
    if value.contains('\0') {
        return Err(flotilla_core::Error::InvalidArgument {
            field,
            reason: "must not contain a NUL character".into(),
        }
        .into());
    }
    Ok(())
}
