//! Server sessions: which one a connection talks to, and ending one.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A server session, known by its process id and start time (a pid alone
/// may be reused by a later session).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backend {
    pub pid: i32,
    pub started: DateTime<Utc>,
}

/// The session `conn` talks to.
pub(crate) async fn backend(conn: &mut PgConnection) -> sqlx::Result<Backend> {
    let (pid, started): (i32, DateTime<Utc>) = sqlx::query_as(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .fetch_one(conn)
    .await?;
    Ok(Backend { pid, started })
}

/// Ends the server session `backend` if it still runs, and waits up to
/// `wait` for it to be gone: an open transaction of it is rolled back, and a
/// statement it is still running never commits. Returns whether it was
/// still there.
pub(crate) async fn terminate(
    conn: &mut PgConnection,
    backend: Backend,
    wait: std::time::Duration,
) -> sqlx::Result<bool> {
    let ended: Option<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, $3) FROM pg_stat_activity
         WHERE pid = $1 AND backend_start = $2",
    )
    .bind(backend.pid)
    .bind(backend.started)
    .bind(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    .fetch_optional(conn)
    .await?;
    Ok(ended.is_some())
}

/// Whether the server session `backend` still runs.
pub(crate) async fn backend_exists(
    conn: &mut PgConnection,
    backend: Backend,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2)",
    )
    .bind(backend.pid)
    .bind(backend.started)
    .fetch_one(conn)
    .await
}
