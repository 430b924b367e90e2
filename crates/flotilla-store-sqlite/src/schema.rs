//! Opening connections: settings, the single-owner lock, and versioned migrations.
//!
//! Migrations are the files in `migrations/`, applied in order inside one transaction at
//! open; `PRAGMA user_version` records how many have run.

use std::fs::{File, OpenOptions};
use std::path::Path;

use flotilla_store::{StoreError, StoreResult};
use rusqlite::Connection;

use crate::sql_err;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_runs.sql"),
];

/// Takes the advisory lock that makes this process the file's only store.
pub(crate) fn lock_file(path: &Path) -> StoreResult<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open {}: {e}",
                Path::new(&lock_path).display()
            ))
        })?;
    file.try_lock().map_err(|_| {
        StoreError::Unavailable(format!(
            "{} is in use by another Flotilla process (one process owns a SQLite store at a time)",
            path.display()
        ))
    })?;
    Ok(file)
}

/// The write connection: WAL, fsync at every commit, migrations applied.
pub(crate) fn open_writer(path: &Path, durability: crate::Durability) -> StoreResult<Connection> {
    // Owned by the writer thread alone, so SQLite's own mutexes are not needed.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sql_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4096;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(sql_err)?;
    let synchronous = match durability {
        crate::Durability::Strict | crate::Durability::Full => "FULL",
        crate::Durability::Relaxed => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    // The query planner stability guarantee: a cached statement keeps its plan whatever
    // values are bound. Without it, bound values that the planner looked at (compared
    // against partial-index conditions) expire the claim and promotion statements on every
    // call, and re-preparing them was a tenth of the writer's time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(sql_err)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// A read connection.
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -8192;")
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let applied: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_err)?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {applied}, newer than this Flotilla ({}); upgrade Flotilla",
            MIGRATIONS.len()
        )));
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(sql_err)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Internal(format!("migration {} failed: {e}", i + 1)))?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))
        .map_err(sql_err)?;
    tx.commit().map_err(sql_err)
}
