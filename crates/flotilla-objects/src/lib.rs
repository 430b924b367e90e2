//! Flotilla's object storage: one streaming interface ([`Objects`]) over a local directory (the default) and
//! any S3-compatible service, built on the `object_store` crate.
//!
//! Uploads, renditions and static resources live under three prefixes (`uploads/`, `processed/`,
//! `resources/`), addressed by [`ObjectKey`]s that are validated when built, so no key can climb out of the
//! store or out of an asset's folder. The library knows nothing of queues or HTTP routes: the server calls it
//! for uploads and the `distribute` job handler for deliveries.
//!
//! # Layout
//! - [`key`]: `ObjectKey` validation and the layout constructors (`upload`, `processed`, `resource`).
//! - [`location`]: parsing `file://`, plain-path and `s3://…?endpoint=…` store URLs.
//! - `store`: `Objects` and `ObjectInfo`; `upload` and `download` hold the streaming write and read paths.
//! - [`hashing`]: SHA-256 of streams and files, off the async executor.
//! - `testing` (feature `test-support`): a moto S3 server for tests.
//!
//! # Invariants
//! - Bodies are streamed, never buffered whole: memory per upload is bounded by a few multipart parts.
//! - A write either completes or leaves nothing under its key (limit exceeded, body error, store error).
//! - Credentials come from the environment or [`OpenOptions`], never from URLs, and never appear in
//!   `Debug` output, descriptions or error messages.
//! - Every error has a stable [`ObjectsError::code`] and says whether a retry may help.

mod connector;
mod download;
mod error;
pub mod hashing;
pub mod key;
pub mod location;
mod options;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod upload;

pub use error::{BoxError, ObjectsError};
pub use key::ObjectKey;
pub use location::{Location, S3Location};
pub use options::{
    ACCESS_KEY_ID_VAR, CONNECT_TIMEOUT, DEFAULT_MAX_RETRIES, OpenOptions, PART_BYTES,
    PARTS_IN_FLIGHT, READ_TIMEOUT, S3Credentials, SECRET_ACCESS_KEY_VAR, SESSION_TOKEN_VAR,
};
pub use store::{ObjectInfo, Objects};
