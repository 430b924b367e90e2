//! A typed HTTP client for Flotilla's `/v1` API, for producers (enqueue, inspect, cancel),
//! workers (register, poll, heartbeat, complete, fail) and admins (queues, dead jobs,
//! workers). Request and response bodies are the [`flotilla_proto`] types, so the client
//! cannot drift from the server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flotilla_client::ClientError> {
//! use flotilla_client::{Client, NewJob};
//! let client = Client::new("http://127.0.0.1:7070", None)?;
//! let accepted = client
//!     .enqueue(&NewJob::new("default", "email.send", serde_json::json!({"to": "a@b"})))
//!     .await?;
//! println!("job {} is {}", accepted.id, accepted.state);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`]: [`Client`], its construction, timeouts and the request plumbing.
//! - [`api`]: one method per endpoint (producers, workers, admin, health).
//! - [`error`]: [`ClientError`], which keeps the server's stable error code.
//!
//! # Invariants
//! - Every call but [`Client::poll`] is bounded by the client's timeout (30 s by default);
//!   a poll's timeout is its `wait_ms` plus [`POLL_TIMEOUT_MARGIN`], so a long-poll is
//!   never cut short by the client.
//! - The bearer token is sent on every call and never appears in `Debug` output or errors.

pub mod api;
pub mod client;
pub mod error;

pub use client::{Client, DEFAULT_TIMEOUT, POLL_TIMEOUT_MARGIN};
pub use error::ClientError;
pub use flotilla_core::ErrorCode;
pub use flotilla_proto::{self as proto, Job, JobListQuery, NewJob};
