//! Versioned migrations, embedded in the binary.
//!
//! `migrations/NNNN_name.sql` are applied in order, each in its own transaction, and
//! recorded in `flotilla_migrations` (version, name, applied time) in the same transaction.
//! Every such transaction first takes `pg_advisory_xact_lock` on a key derived from the
//! schema name, then re-reads what is applied: servers starting together queue on the lock
//! and the later ones find the work done, so each migration runs exactly once. A database
//! whose schema is newer than this binary is refused.

use deadpool_postgres::GenericClient;
use flotilla_store::StoreError;

use crate::error::PgError;
use crate::row::get;

/// The migrations: version, name, SQL.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "runs", include_str!("../migrations/0002_runs.sql")),
];

/// The advisory-lock key of migrations in `schema`: FNV-1a of a fixed prefix and the
/// schema name, so it is the same in every build and on every server.
pub(crate) fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "flotilla-migrations:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// Double-quotes an identifier (the schema name is checked to be plain already).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies every pending migration through `client`; returns the versions this call
/// applied (empty when another server had applied them).
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Object,
    schema: Option<&str>,
) -> Result<Vec<u32>, PgError> {
    let key = lock_key(schema.unwrap_or("public"));
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.query("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await?;
        if let Some(schema) = schema {
            let schema = quote_ident(schema);
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}"
            ))
            .await?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS flotilla_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM flotilla_migrations",
                &[],
            )
            .await?;
        let current: i32 = get(&row, 0)?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            return Err(StoreError::Internal(format!(
                "the database has schema version {current}, newer than this Flotilla ({known}); upgrade Flotilla"
            ))
            .into());
        }
        if current >= version {
            tx.commit().await?;
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Internal(format!("migration {version} ({name}) failed: {e:?}"))
        })?;
        tx.execute(
            "INSERT INTO flotilla_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        tx.commit().await?;
        applied.push(u32::try_from(version).unwrap_or(0));
    }
    Ok(applied)
}

/// The highest migration applied, 0 when none.
pub(crate) async fn version<C: GenericClient>(c: &C) -> Result<u32, PgError> {
    let row = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM flotilla_migrations",
            &[],
        )
        .await?;
    Ok(u32::try_from(get::<i32>(&row, 0)?).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_are_stable_and_per_schema() {
        assert_eq!(super::lock_key("public"), super::lock_key("public"));
        assert_ne!(super::lock_key("a"), super::lock_key("b"));
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0 as usize, i + 1);
        }
    }
}
