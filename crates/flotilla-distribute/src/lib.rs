//! Flotilla's delivery library: copies a finished local file to a named target — a directory, an
//! S3-compatible bucket, an HTTP endpoint or an FTP server — and verifies what landed.
//!
//! The built-in `distribute` job handler calls [`Distributor::deliver`] once per attempt; the job system owns
//! retries (long exponential backoff is the queue's policy), so every [`DeliveryError`] says whether another
//! attempt may help. The library knows nothing of queues or HTTP routes.
//!
//! # Layout
//! - [`config`]: `TargetConfig` (TOML/JSON, tagged by `type`, unknown fields refused) and its validation.
//! - [`secrets`]: `env:VAR` references, resolved at delivery time from a [`SecretSource`].
//! - [`address`]: the private-address policy and the guarded DNS resolver.
//! - `distributor`: `Distributor`, `Delivery`, `Receipt`; `dir`, `s3`, `http`, `ftp`: one module per target.
//!
//! # Invariants
//! - Files are streamed, never loaded whole; each target writes to a temporary name and renames into place
//!   where the protocol allows (directory, FTP), or relies on the store's atomic put (S3).
//! - A target may not reach loopback, private, link-local, unique-local, unspecified or metadata addresses
//!   unless it sets `allow_private = true`; the address checked is the address connected to.
//! - Secret values never appear in `Debug` output, error messages or logs; text quoted from a remote
//!   server is scrubbed of them.

pub mod address;
pub mod config;
mod dir;
mod distributor;
mod error;
mod ftp;
mod http;
mod s3;
pub mod secrets;

pub use config::{
    DirTarget, FtpTarget, HeaderValueConfig, HttpMethod, HttpTarget, S3Target, TargetConfig,
};
pub use distributor::{
    CONNECT_TIMEOUT, Delivery, Distributor, MIN_THROUGHPUT_BYTES_PER_SEC, READ_TIMEOUT, Receipt,
    TRANSFER_BASE_TIMEOUT, transfer_timeout,
};
pub use error::{BoxError, DeliveryError};
pub use http::{CHECKSUM_HEADER, NAME_HEADER};
pub use secrets::{ProcessEnv, SecretRef, SecretSource, StaticSecrets};
