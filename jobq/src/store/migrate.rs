//! jobq's own schema history, kept in `jobq_migrations` so it never mixes with
//! the application's sqlx migrations (`_sqlx_migrations`).
//!
//! The SQL comes from `jobq/migrations`, a symlink to the workspace's
//! top-level `migrations/`, which stays the one source: `cargo package`
//! follows the symlink and ships the files inside the `jobq` crate, so the
//! `include_str!`s below resolve the same in the workspace and in the
//! published crate. A new file must also be listed in `MIGRATIONS`; a test
//! checks that none is missing.

use sqlx::PgPool;

use crate::error::{Error, Result};

/// One of jobq's schema migrations, as [`migrations`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// Its version, from 1, in the order they apply.
    pub version: i64,
    /// Its file name, `0001_jobs.sql`.
    pub name: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// Every migration this jobq ships, oldest first.
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

/// The table that records the migrations applied, apart from sqlx's.
const HISTORY_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS jobq_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// The SQL of the migrations after version `after` (0: all), for a
/// migration tool of your own: each migration's file, then the row that
/// records it in `jobq_migrations`, so that [`migrate`] and
/// [`migration_status`] know it was applied. Apply it in one transaction.
pub fn migration_script(after: i64) -> String {
    let mut out = format!("-- jobq schema migrations after version {after}\n");
    out.push_str(HISTORY_TABLE_SQL);
    out.push_str(";\n");
    for m in MIGRATIONS.iter().filter(|m| m.version > after) {
        out.push_str(&format!("\n-- {}\n", m.name));
        out.push_str(m.sql.trim_end());
        out.push_str(&format!(
            "\nINSERT INTO jobq_migrations (version, name) VALUES ({}, '{}');\n",
            m.version, m.name
        ));
    }
    out
}

/// Which of jobq's migrations a database has: [`migration_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The versions applied, oldest first (empty: no jobq schema yet).
    pub applied: Vec<i64>,
    /// The migrations this jobq ships that the database lacks.
    pub pending: Vec<&'static Migration>,
    /// The newest version this jobq knows.
    pub known: i64,
}

impl MigrationStatus {
    /// Whether the database holds a version newer than this jobq knows: a
    /// newer jobq migrated it.
    pub fn too_new(&self) -> bool {
        self.applied.iter().any(|v| *v > self.known)
    }
}

/// Which migrations `pool`'s database has applied and which it lacks.
/// Reads only; a database without jobq's schema has none applied.
pub async fn migration_status(pool: &PgPool) -> Result<MigrationStatus> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('jobq_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if exists {
        sqlx::query_scalar("SELECT version FROM jobq_migrations ORDER BY version")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    Ok(MigrationStatus {
        pending: MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .collect(),
        applied,
        known: MIGRATIONS.last().map_or(0, |m| m.version),
    })
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_jobs.sql",
        sql: include_str!("../../migrations/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        name: "0002_scheduling.sql",
        sql: include_str!("../../migrations/0002_scheduling.sql"),
    },
    Migration {
        version: 3,
        name: "0003_retention.sql",
        sql: include_str!("../../migrations/0003_retention.sql"),
    },
    Migration {
        version: 4,
        name: "0004_unique_windows.sql",
        sql: include_str!("../../migrations/0004_unique_windows.sql"),
    },
    Migration {
        version: 5,
        name: "0005_hardening.sql",
        sql: include_str!("../../migrations/0005_hardening.sql"),
    },
    Migration {
        version: 6,
        name: "0006_results.sql",
        sql: include_str!("../../migrations/0006_results.sql"),
    },
    Migration {
        version: 7,
        name: "0007_published_kinds.sql",
        sql: include_str!("../../migrations/0007_published_kinds.sql"),
    },
    Migration {
        version: 8,
        name: "0008_limits.sql",
        sql: include_str!("../../migrations/0008_limits.sql"),
    },
    Migration {
        version: 9,
        name: "0009_trace_context.sql",
        sql: include_str!("../../migrations/0009_trace_context.sql"),
    },
    Migration {
        version: 10,
        name: "0010_admin_indexes.sql",
        sql: include_str!("../../migrations/0010_admin_indexes.sql"),
    },
    Migration {
        version: 11,
        name: "0011_limited_claim_rounds.sql",
        sql: include_str!("../../migrations/0011_limited_claim_rounds.sql"),
    },
    Migration {
        version: 12,
        name: "0012_published_limits.sql",
        sql: include_str!("../../migrations/0012_published_limits.sql"),
    },
    Migration {
        version: 13,
        name: "0013_dependencies.sql",
        sql: include_str!("../../migrations/0013_dependencies.sql"),
    },
    Migration {
        version: 14,
        name: "0014_shared_metrics_sample.sql",
        sql: include_str!("../../migrations/0014_shared_metrics_sample.sql"),
    },
    Migration {
        version: 15,
        name: "0015_published_retention.sql",
        sql: include_str!("../../migrations/0015_published_retention.sql"),
    },
    Migration {
        version: 16,
        name: "0016_limited_claim_head_first.sql",
        sql: include_str!("../../migrations/0016_limited_claim_head_first.sql"),
    },
    Migration {
        version: 17,
        name: "0017_limited_waiting_index.sql",
        sql: include_str!("../../migrations/0017_limited_waiting_index.sql"),
    },
    Migration {
        version: 18,
        name: "0018_next_due_first_entry.sql",
        sql: include_str!("../../migrations/0018_next_due_first_entry.sql"),
    },
];

/// Key of the advisory lock that serializes migrations across processes.
const MIGRATE_LOCK: i64 = 0x6a6f_6271_6d69_6772; // "jobqmigr"

/// Applies every jobq migration the database lacks, in one transaction, under
/// a transaction-level advisory lock so two processes migrating at once apply
/// each migration once. Running it again is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    // Quietly: on every run after the first, PostgreSQL would log a NOTICE
    // that the table already exists.
    sqlx::raw_sql("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(HISTORY_TABLE_SQL).execute(&mut *tx).await?;
    sqlx::raw_sql("RESET client_min_messages")
        .execute(&mut *tx)
        .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM jobq_migrations")
        .fetch_all(&mut *tx)
        .await?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&found) = applied.iter().max().filter(|v| **v > known) {
        return Err(Error::SchemaTooNew { found, known });
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| Error::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        sqlx::query("INSERT INTO jobq_migrations (version, name) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied jobq migration");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// A file in `migrations/` that is not listed would never be applied,
    /// and one listed out of order would be applied in the wrong order.
    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed, "migrations/ and MIGRATIONS differ");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{} is out of sequence", m.name);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} does not start with its version",
                m.name
            );
        }
    }
}
