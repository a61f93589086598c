//! Limits: the limited claim, queue limits, and giving old jobs their
//! limit key. The design is in [`crate::limit`].

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use super::Lock;
use super::claim::{Claim, read_claim};
use crate::queue::QueueName;

/// The first key of the limits' advisory locks (the second is
/// `hashtext(limit)`). Spelled in `jobq_claim_limited` (migrations 8 and
/// 11) too.
pub const LIMIT_LOCK_CLASS: i32 = 27250;

/// One kind as the limited claim sees it: its stored name, and its job's
/// limits (all `None` for a kind without limits, claimed this way only
/// because its queue has a limit).
#[derive(Debug, Clone)]
pub(crate) struct LimitedKind {
    /// The stored kind: the job's name or an alias.
    pub kind: String,
    /// The job's name, which names the limit; `None` when it has none.
    pub name: Option<&'static str>,
    pub partition: Option<&'static str>,
    pub concurrency: Option<i32>,
    pub rate: Option<i32>,
    pub window_ms: Option<i64>,
}

/// Claims up to `room` jobs of `kinds` in `queue` within their limits and
/// the queue's (see `jobq_claim_limited` in migrations 8 and 11, and
/// [`crate::limit`] for why it holds across workers). With `after_plain`
/// (the plain claim of the same round ran just before), it leaves the due
/// jobs' promotion and the next due time to that claim: the answer's
/// `promoted` is then 0 and its `next_due` `None`.
pub(crate) async fn claim_limited(
    conn: &mut PgConnection,
    queue: &str,
    kinds: &[LimitedKind],
    room: i64,
    worker_id: i64,
    claim_at: DateTime<Utc>,
    after_plain: bool,
) -> sqlx::Result<Claim> {
    let rows = sqlx::query(
        "SELECT * FROM jobq_claim_limited($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(queue)
    .bind(kinds.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>())
    .bind(kinds.iter().map(|k| k.name).collect::<Vec<_>>())
    .bind(kinds.iter().map(|k| k.partition).collect::<Vec<_>>())
    .bind(kinds.iter().map(|k| k.concurrency).collect::<Vec<_>>())
    .bind(kinds.iter().map(|k| k.rate).collect::<Vec<_>>())
    .bind(kinds.iter().map(|k| k.window_ms).collect::<Vec<_>>())
    .bind(i32::try_from(room).unwrap_or(i32::MAX))
    .bind(worker_id)
    .bind(claim_at)
    .bind(after_plain)
    .fetch_all(&mut *conn)
    .await?;
    #[allow(unused_mut)] // mutated with the `opentelemetry` feature only
    let mut claim = read_claim(&rows)?;
    #[cfg(feature = "opentelemetry")]
    trace_contexts(conn, &mut claim.jobs).await?;
    Ok(claim)
}

/// Fills in the trace contexts of jobs the limited claim took: its function
/// returns fixed columns, without them. One more statement per limited claim
/// that took jobs, with the `opentelemetry` feature only.
#[cfg(feature = "opentelemetry")]
async fn trace_contexts(
    conn: &mut PgConnection,
    jobs: &mut [super::claim::ClaimedJob],
) -> sqlx::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let found: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, trace_context::text FROM jobq_jobs
         WHERE id = ANY($1) AND trace_context IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    for (id, context) in found {
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            job.trace_context = Some(context);
        }
    }
    Ok(())
}

/// Gives the waiting jobs of `kinds` in `queues` that have no limit key
/// (they were enqueued by a build whose job had no limits yet) the key they
/// would have been enqueued with, so that the limited claim finds them, and
/// wakes the producers of the queues it changed. One statement, in a
/// transaction that holds [`Lock::LimitKeys`]: `None` when another process
/// holds it (it does the same work), else how many jobs got a key.
///
/// Each (queue, kind) pair is one range of `jobq_jobs_ready`, whose rows are
/// read to check their key: the statement visits every waiting job of a
/// limited kind once per pass. It runs off the claim path, one process at a
/// time, every [`LimitKeys`](crate::maintenance::limit_keys::LimitKeys)
/// interval.
pub(crate) async fn adopt_limit_keys(
    conn: &mut PgConnection,
    queues: &[String],
    kinds: &[LimitedKind],
) -> sqlx::Result<Option<u64>> {
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(Lock::LimitKeys.key())
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    let limited: Vec<&LimitedKind> = kinds.iter().filter(|k| k.name.is_some()).collect();
    let adopted: i64 = sqlx::query_scalar(concat!(
        "WITH adopted AS (
            UPDATE jobq_jobs AS j SET limit_key = ",
        limit_key_sql!("j.args", "k.name", "k.field"),
        " FROM unnest($1::text[]) AS q(queue)
            CROSS JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(kind, name, field)
            WHERE j.state = 'available' AND j.queue = q.queue AND j.kind = k.kind
              AND j.limit_key IS NULL
            RETURNING j.queue
        ),
        per_queue AS (
            SELECT queue, count(*) AS n, pg_notify('",
        insert_channel!(),
        "', queue) FROM adopted GROUP BY queue
        )
        SELECT coalesce(sum(n), 0)::int8 FROM per_queue"
    ))
    .bind(queues)
    .bind(limited.iter().map(|k| k.kind.as_str()).collect::<Vec<_>>())
    .bind(limited.iter().map(|k| k.name).collect::<Vec<_>>())
    .bind(limited.iter().map(|k| k.partition).collect::<Vec<_>>())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(u64::try_from(adopted).unwrap_or(0)))
}

/// How long past its window a start is kept by [`prune_limit_starts`]:
/// well beyond the minute the limited claim keeps it, since the starts are
/// stamped by the workers' clocks and this compares with the server's.
const STARTS_KEPT_PAST_WINDOW: &str = "10 minutes";

/// Deletes the rate limits' starts (`jobq_limit_starts`) of the jobs of
/// `kinds` with a rate that are older than their window by
/// [`STARTS_KEPT_PAST_WINDOW`]; returns how many. The limited claim deletes
/// a limit's old starts only when it claims under that limit, so those of
/// partitions that see no more jobs would stay for ever, one row per claim
/// that took jobs of them. The starts of limits this worker does not know
/// (another build's jobs, a queue's own rate) are left to those claims.
pub(crate) async fn prune_limit_starts(
    conn: &mut PgConnection,
    kinds: &[LimitedKind],
) -> sqlx::Result<u64> {
    let mut rated: Vec<(&str, i64)> = kinds
        .iter()
        .filter_map(|k| Some((k.name?, k.window_ms?)))
        .collect();
    rated.sort_unstable();
    rated.dedup();
    if rated.is_empty() {
        return Ok(0);
    }
    // A limit's key is its job's name, a space and the partition (see
    // `limit_key_sql!`).
    let deleted = sqlx::query(
        "DELETE FROM jobq_limit_starts AS s
        USING unnest($1::text[], $2::int8[]) AS k(name, window_ms)
        WHERE left(s.key, length(k.name) + 1) = k.name || ' '
          AND s.at < now() - k.window_ms * interval '1 millisecond' - $3::interval",
    )
    .bind(rated.iter().map(|(name, _)| *name).collect::<Vec<_>>())
    .bind(rated.iter().map(|(_, ms)| *ms).collect::<Vec<_>>())
    .bind(STARTS_KEPT_PAST_WINDOW)
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}

/// Sets (or, with all `None`, clears) a queue's limits, and wakes the
/// queue's producers so they claim under the new limits at once.
pub(crate) async fn set_queue_limit(
    conn: &mut PgConnection,
    queue: &QueueName,
    concurrency: Option<i32>,
    rate: Option<i32>,
    window_ms: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "WITH q AS (
            INSERT INTO jobq_queues (name, concurrency_limit, rate_limit, rate_window_ms)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE
                SET concurrency_limit = $2, rate_limit = $3, rate_window_ms = $4,
                    updated_at = now()
            RETURNING name
        )
        SELECT pg_notify('",
        insert_channel!(),
        "', name) FROM q"
    ))
    .bind(queue)
    .bind(concurrency)
    .bind(rate)
    .bind(window_ms)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limited_claim_locks_under_the_lock_class() {
        for sql in [
            include_str!("../../migrations/0008_limits.sql"),
            include_str!("../../migrations/0011_limited_claim_rounds.sql"),
        ] {
            assert!(sql.contains(&format!("pg_advisory_xact_lock({LIMIT_LOCK_CLASS}, ")));
        }
    }
}
