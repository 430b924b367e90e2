//! The conformance suite of the `Store` trait, written once and run against every backend.
//!
//! A backend's test crate instantiates it with one line:
//!
//! ```ignore
//! flotilla_store_tests::store_conformance!(crate::harness);
//! ```
//!
//! where `harness` is an `async fn() -> Harness` that opens a fresh, isolated store. The
//! macro generates one `#[tokio::test]` per case, so each case is listed by name and cases
//! run in parallel. Every time-dependent case drives a [`ManualClock`]; none sleeps.
//!
//! # Layout
//! One module per area; each public `async fn(Harness)` in them is a case, and every case is
//! listed in [`store_conformance!`].

use std::any::Any;
use std::sync::Arc;

use flotilla_core::ManualClock;
use flotilla_store::Store;

/// A fresh store for one test case.
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// A second handle on the same database, as a second server would have one. Backends
    /// owned by one process (SQLite) hand out the same store again.
    pub other: Arc<dyn Store>,
    /// The test's clock; pass `clock.now()` as every `now`.
    pub clock: ManualClock,
    /// Keeps the store's resources (temporary directory, schema) alive for the test.
    pub guard: Box<dyn Any + Send + Sync>,
}
