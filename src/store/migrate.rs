//! Schema migrations, embedded in the binary and applied in order at start.
//!
//! Each migration exists once per backend (`migrations/sqlite`, `migrations/postgres`) under
//! the same version number; `schema_migrations` records which ran. A migration runs in one
//! transaction, so a crash half-way leaves the previous version intact.

use sqlx::Row;

use super::{Backend, Store};

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("../../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("../../migrations/sqlite/0002_xmpp.sql"),
        postgres: include_str!("../../migrations/postgres/0002_xmpp.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("../../migrations/sqlite/0003_chat.sql"),
        postgres: include_str!("../../migrations/postgres/0003_chat.sql"),
    },
];

/// Applies every migration newer than the database's version.
pub async fn migrate(store: &Store) -> anyhow::Result<()> {
    let pool = store.pool();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newest) = applied.iter().max() {
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if *newest > known {
            anyhow::bail!(
                "the database has schema version {newest}, newer than this binary knows ({known}); \
                 refusing to run an older Switchboard against it"
            );
        }
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let sql = match store.backend() {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(crate::clock::unix_now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, "applied schema migration");
    }
    Ok(())
}
