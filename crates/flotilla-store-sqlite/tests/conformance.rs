//! The shared Store conformance suite, run against SQLite: a fresh database file in its own
//! temporary directory per case, WAL on, exactly as in production.

use std::sync::Arc;

use flotilla_core::ManualClock;
use flotilla_store::Store;
use flotilla_store_sqlite::{SqliteOptions, SqliteStore};
use flotilla_store_tests::Harness;

async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("flotilla.db"), SqliteOptions::default())
        .expect("open store");
    let store: Arc<dyn Store> = Arc::new(store);
    Harness {
        other: store.clone(),
        store,
        clock: ManualClock::at_epoch(),
        guard: Box::new(dir),
    }
}

flotilla_store_tests::store_conformance!(crate::harness);
