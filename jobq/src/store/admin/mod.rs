//! The queries behind [`crate::admin`] (the command line, the dashboard)
//! and [`crate::stats`]: `mod.rs` the queue overview and warnings, `jobs`
//! filters, lists and counts, `actions` bulk actions, `published` what live
//! workers publish, `limits` the limits and their use.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::admin::{QueueOverview, Warning};
use crate::job::JobState;

/// The finished rows, as two predicates the planner can each serve with an
/// index: `jobq_jobs_prunable`'s (repeated word for word from migration 3)
/// or `jobq_jobs_finished_held`'s (a finished job whose key holds, other
/// than a cron tick's: migration 10). Together they are every finished row,
/// so ANDed with a finished state the clause changes no result, and lets
/// the planner read that state through the two indexes (a `BitmapOr`, each
/// side narrowed by `finalized_at` when the query bounds it) instead of the
/// whole table.
macro_rules! finished_rows {
    () => {
        concat!("(", prunable_rows!(), " OR ", finished_held!(), ")")
    };
}

mod actions;
mod jobs;
mod limits;
mod published;

pub(crate) use actions::*;
pub(crate) use jobs::*;
pub(crate) use limits::*;
pub(crate) use published::*;

use crate::admin::UNKNOWN_KIND_CAP;

/// One row of [`stats`]: a queue, a state, how many jobs, and the oldest
/// due time among the claimable ones.
pub(crate) struct StatRow {
    pub queue: String,
    /// `None` for a paused queue that holds no job.
    pub state: Option<JobState>,
    pub count: i64,
    pub oldest_due: Option<DateTime<Utc>>,
    pub paused: bool,
    pub now: DateTime<Utc>,
}

/// Counts jobs per queue and state, with paused queues that hold no job.
pub(crate) async fn stats(pool: &PgPool) -> sqlx::Result<Vec<StatRow>> {
    let rows = sqlx::query(
        "WITH counts AS (
            SELECT queue, state, count(*) AS n,
                   min(scheduled_at) FILTER (
                       WHERE state IN ('available', 'scheduled', 'retryable')
                         AND scheduled_at <= now()) AS oldest_due
            FROM jobq_jobs GROUP BY queue, state
        )
        SELECT coalesce(c.queue, q.name) AS queue, c.state, coalesce(c.n, 0) AS n,
               c.oldest_due, (q.paused_at IS NOT NULL) AS paused, now() AS now
        FROM counts c FULL JOIN jobq_queues q ON q.name = c.queue
        ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StatRow {
                queue: r.try_get("queue")?,
                state: r.try_get("state")?,
                count: r.try_get("n")?,
                oldest_due: r.try_get("oldest_due")?,
                paused: r.try_get::<Option<bool>, _>("paused")?.unwrap_or(false),
                now: r.try_get("now")?,
            })
        })
        .collect()
}

/// The database's clock.
pub(crate) async fn admin_now(conn: &mut PgConnection) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT now()").fetch_one(conn).await
}

/// Per queue: the unfinished jobs by state, the discarded and cancelled ones
/// not pruned yet, the lag, and the finished ones of the last hour; with
/// paused queues.
///
/// Each part reads through an index, so the statement reads the unfinished
/// jobs, the discarded and cancelled ones, and the jobs finished in the last
/// hour, never the completed history: `available` through `jobq_jobs_ready`
/// (index only), `scheduled` and `retryable` through `jobq_jobs_due`,
/// `running` through `jobq_jobs_running`, `pending` through
/// `jobq_jobs_pending` (by queue), discarded and cancelled through
/// `jobq_jobs_failed` (index only, by queue and state), the last hour's
/// finished jobs through [`finished_rows!`]' two indexes by `finalized_at`.
/// Over 10 million jobs, 300,000 of them failed (busy machine): 3.9 s before
/// `jobq_jobs_failed`, see `jobq-bench dashboard` for today's figure.
pub(crate) async fn queue_overview(conn: &mut PgConnection) -> sqlx::Result<Vec<QueueOverview>> {
    let rows = sqlx::query(concat!(
        "WITH available AS (
            SELECT queue, count(*) AS n, min(scheduled_at) AS oldest FROM jobq_jobs
            WHERE state = 'available' GROUP BY queue
        ),
        parts AS (
            SELECT queue, 'available' AS part, n FROM available
          UNION ALL
            SELECT queue, 'lag_ms', (extract(epoch FROM now() - oldest) * 1000)::bigint
            FROM available
          UNION ALL
            SELECT queue, state::text, count(*) FROM jobq_jobs
            WHERE state IN ('scheduled', 'retryable') GROUP BY queue, state
          UNION ALL
            SELECT queue, 'running', count(*) FROM jobq_jobs
            WHERE state = 'running' GROUP BY queue
          UNION ALL
            SELECT queue, 'pending', count(*) FROM jobq_jobs
            WHERE state = 'pending' AND deps_left IS NOT NULL GROUP BY queue
          UNION ALL
            SELECT queue, state::text, count(*) FROM jobq_jobs
            WHERE state IN ('discarded', 'cancelled') GROUP BY queue, state
          UNION ALL
            SELECT queue, 'due_ms', (extract(epoch FROM now() - min(scheduled_at)) * 1000)::bigint
            FROM jobq_jobs
            WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= now() GROUP BY queue
          UNION ALL
            SELECT queue,
                   CASE WHEN state = 'completed' THEN 'completed' ELSE 'failed' END
                   || CASE WHEN finalized_at > now() - interval '1 minute' THEN '_m' ELSE '_h' END,
                   count(*)
            FROM jobq_jobs
            WHERE state IN ('completed', 'discarded') AND finalized_at > now() - interval '1 hour'
              AND ",
        finished_rows!(),
        " GROUP BY 1, 2
          UNION ALL
            SELECT queue,
                   CASE WHEN attempted_at > now() - interval '1 minute' THEN 'failed_m' ELSE 'failed_h' END,
                   count(*)
            FROM jobq_jobs
            WHERE state = 'retryable' AND attempted_at > now() - interval '1 hour'
            GROUP BY 1, 2
          UNION ALL
            SELECT name, 'paused', 1 FROM jobq_queues WHERE paused_at IS NOT NULL
        )
        SELECT queue, part, sum(n)::bigint AS n FROM parts GROUP BY 1, 2 ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<QueueOverview> = Vec::new();
    for r in rows {
        let queue: String = r.try_get("queue")?;
        let part: String = r.try_get("part")?;
        let n: i64 = r.try_get("n")?;
        if out.last().is_none_or(|q| q.queue != queue) {
            out.push(QueueOverview {
                queue,
                ..QueueOverview::default()
            });
        }
        let q = out.last_mut().expect("pushed above");
        let ms = |n: i64| Duration::from_millis(u64::try_from(n).unwrap_or(0));
        match part.as_str() {
            "pending" => q.pending = n,
            "available" => q.available = n,
            "scheduled" => q.scheduled = n,
            "retryable" => q.retryable = n,
            "running" => q.running = n,
            "discarded" => q.discarded = n,
            "cancelled" => q.cancelled = n,
            "lag_ms" | "due_ms" => q.lag = Some(q.lag.map_or(ms(n), |l| l.max(ms(n)))),
            "completed_m" => {
                q.completed_last_minute += n;
                q.completed_last_hour += n;
            }
            "completed_h" => q.completed_last_hour += n,
            "failed_m" => {
                q.failed_last_minute += n;
                q.failed_last_hour += n;
            }
            "failed_h" => q.failed_last_hour += n,
            "paused" => q.paused = true,
            _ => {}
        }
    }
    Ok(out)
}

/// A queue that live workers run.
pub(crate) struct ServedQueue {
    pub queue: String,
    /// Live workers running it.
    pub workers: i64,
    /// Their concurrency on it, together.
    pub concurrency: i64,
}

/// The queues live workers run (those within their lease), from their rows
/// and what they published.
pub(crate) async fn served_queues(conn: &mut PgConnection) -> sqlx::Result<Vec<ServedQueue>> {
    let rows = sqlx::query(concat!(
        "SELECT q.queue, count(*) AS workers, coalesce(sum(p.concurrency), 0)::bigint AS concurrency
         FROM jobq_workers w
         CROSS JOIN LATERAL unnest(w.queues) AS q(queue)
         LEFT JOIN jobq_worker_queues p ON p.worker_id = w.id AND p.queue = q.queue
         WHERE ",
        live_worker!(),
        " GROUP BY q.queue ORDER BY q.queue"
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ServedQueue {
                queue: r.try_get("queue")?,
                workers: r.try_get("workers")?,
                concurrency: r.try_get("concurrency")?,
            })
        })
        .collect()
}

/// How many workers are live (within their lease).
pub(crate) async fn live_workers(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!(
        "SELECT count(*) FROM jobq_workers w WHERE ",
        live_worker!()
    ))
    .fetch_one(conn)
    .await
}

/// Kinds of `available` jobs, per queue, that no live worker running the
/// queue knows (by name or alias), in queues some live worker runs (a queue
/// nobody runs is a warning of its own). Finds the distinct (queue, kind)
/// pairs with a skip scan of `jobq_jobs_ready` (one index probe per pair,
/// whatever the number of jobs), then counts each pair's jobs up to
/// [`UNKNOWN_KIND_CAP`](crate::admin) + 1.
pub(crate) async fn unknown_kinds(conn: &mut PgConnection) -> sqlx::Result<Vec<Warning>> {
    let rows = sqlx::query(concat!(
        "WITH RECURSIVE pairs AS (
            (SELECT queue, kind FROM jobq_jobs WHERE state = 'available'
             ORDER BY queue, kind LIMIT 1)
          UNION ALL
            SELECT n.queue, n.kind FROM pairs p CROSS JOIN LATERAL (
                SELECT queue, kind FROM jobq_jobs
                WHERE state = 'available' AND (queue, kind) > (p.queue, p.kind)
                ORDER BY queue, kind LIMIT 1) AS n
        ),
        live AS (SELECT w.id, w.queues FROM jobq_workers w WHERE ",
        live_worker!(),
        ")
        SELECT p.queue, p.kind,
               (SELECT count(*) FROM (SELECT 1 FROM jobq_jobs j
                                      WHERE j.state = 'available' AND j.queue = p.queue
                                        AND j.kind = p.kind LIMIT $1) AS c) AS waiting
        FROM pairs p
        WHERE EXISTS (SELECT 1 FROM live WHERE p.queue = ANY(live.queues))
          AND NOT EXISTS (
            SELECT 1 FROM live JOIN jobq_worker_kinds k ON k.worker_id = live.id
            WHERE p.queue = ANY(live.queues) AND (k.kind = p.kind OR p.kind = ANY(k.aliases)))
          -- Workers of a jobq version that published nothing know nothing
          -- we can see: no warning about their queues.
          AND NOT EXISTS (
            SELECT 1 FROM live
            WHERE p.queue = ANY(live.queues)
              AND NOT EXISTS (SELECT 1 FROM jobq_worker_kinds k WHERE k.worker_id = live.id))
        ORDER BY waiting DESC, p.queue, p.kind"
    ))
    .bind(UNKNOWN_KIND_CAP + 1)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Warning::UnknownKind {
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
                waiting: r.try_get("waiting")?,
            })
        })
        .collect()
}

/// Cron jobs that a live worker knows but whose queue no live worker runs.
pub(crate) async fn cron_not_served(conn: &mut PgConnection) -> sqlx::Result<Vec<Warning>> {
    let rows = sqlx::query(concat!(
        "WITH live AS (SELECT w.id, w.queues FROM jobq_workers w WHERE ",
        live_worker!(),
        ")
        SELECT DISTINCT k.kind, k.queue
        FROM live JOIN jobq_worker_kinds k ON k.worker_id = live.id
        WHERE k.cron IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM live l WHERE k.queue = ANY(l.queues))
        ORDER BY 1, 2"
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Warning::CronNotServed {
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
            })
        })
        .collect()
}
