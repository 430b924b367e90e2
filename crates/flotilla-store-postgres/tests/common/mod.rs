//! The test harness shared by this crate's test binaries: a fresh schema per case, two
//! independent stores on it, and a guard that drops the schema.
//!
//! Each case gets a fresh schema, `t_<unix seconds>_<pid>_<counter>_<random>`, in the
//! database at `FLOTILLA_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`),
//! migrated once, and two independent stores on it (`store` and `other`, separate pools of
//! 4 connections each) as two servers would have. The guard drops the schema when the
//! case ends; schemas left behind by killed runs are dropped by the next run once they are
//! an hour old.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flotilla_core::ManualClock;
use flotilla_store_postgres::{PgOptions, PgStore};
use flotilla_store_tests::Harness;
use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Schemas of earlier runs older than this are dropped.
const STALE_AFTER_SECS: u64 = 3600;

pub fn url() -> String {
    std::env::var("FLOTILLA_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A schema name unique to this case.
pub fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "t_{}_{}_{}_{:08x}",
        unix_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

pub async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {} (FLOTILLA_TEST_PG): {e}", url()));
    tokio::spawn(conn);
    client
}

/// Drops test schemas that earlier, killed runs left behind.
async fn drop_stale_schemas(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%\\_%\\_%\\_%'",
            &[],
        )
        .await
        .expect("list schemas");
    let cutoff = unix_secs().saturating_sub(STALE_AFTER_SECS);
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .split('_')
            .nth(1)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// Drops its schema when dropped.
pub struct SchemaGuard {
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = std::mem::take(&mut self.schema);
        // Drop runs inside the test's runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url(), NoTls).await.ok()?;
                let conn = tokio::spawn(conn);
                let done = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .ok();
                drop(client);
                let _ = conn.await;
                done
            })
        });
        let _ = dropped.join();
    }
}

pub fn options(schema: &str, migrate: bool) -> PgOptions {
    PgOptions {
        pool_size: 4,
        schema: Some(schema.to_owned()),
        migrate,
        ..PgOptions::default()
    }
}

pub async fn harness() -> Harness {
    let admin = admin_client().await;
    static CLEANED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    CLEANED.call_once(|| first = true);
    if first {
        drop_stale_schemas(&admin).await;
    }
    let schema = fresh_schema();
    let guard = SchemaGuard {
        schema: schema.clone(),
    };
    let store = PgStore::connect(&url(), options(&schema, true))
        .await
        .expect("connect and migrate");
    let other = PgStore::connect(&url(), options(&schema, false))
        .await
        .expect("connect a second store");
    Harness {
        store: Arc::new(store),
        other: Arc::new(other),
        clock: ManualClock::at_epoch(),
        guard: Box::new(guard),
    }
}
