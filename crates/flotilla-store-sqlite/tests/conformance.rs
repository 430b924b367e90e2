//! The shared Store conformance suite, run against SQLite: a fresh database file in its own
//! temporary directory per case, WAL on, exactly as in production; once with full
//! durability (calls go through the writer thread) and once with relaxed durability (calls
//! that find the writer idle run on the caller's thread).

use std::sync::Arc;

use flotilla_core::ManualClock;
use flotilla_store::Store;
use flotilla_store_sqlite::{Durability, SqliteOptions, SqliteStore};
use flotilla_store_tests::Harness;

fn harness_with(durability: Durability) -> Harness {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("flotilla.db"), options).expect("open store");
    let store: Arc<dyn Store> = Arc::new(store);
    Harness {
        other: store.clone(),
        store,
        clock: ManualClock::at_epoch(),
        guard: Box::new(dir),
    }
}

async fn harness() -> Harness {
    harness_with(Durability::Full)
}

flotilla_store_tests::store_conformance!(crate::harness);

mod relaxed {
    async fn harness() -> flotilla_store_tests::Harness {
        super::harness_with(flotilla_store_sqlite::Durability::Relaxed)
    }

    flotilla_store_tests::store_conformance!(crate::relaxed::harness);
}
