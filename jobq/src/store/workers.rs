//! Workers' rows (their leases) and the rescue of the jobs of workers that
//! lost theirs.

use sqlx::{Connection, PgConnection, PgPool};

use super::Lock;

/// What a worker's row says about it, and what it publishes with it.
pub(crate) struct WorkerRow<'a> {
    pub host: &'a str,
    pub pid: i32,
    pub queues: &'a [String],
    /// How many jobs of each of `queues` it runs at once, in their order.
    pub concurrency: &'a [i32],
    /// How long the worker may miss its heartbeat before it is taken for
    /// dead: rescuers judge it by this, not by their own lease.
    pub lease_ms: i64,
    /// The kinds it runs, a JSON array of [`PublishedKind`]s.
    pub kinds: &'a str,
    /// What its pruner keeps, a [`PublishedRetention`] as JSON; `None` for a
    /// process that prunes nothing.
    pub retention: Option<&'a str>,
}

/// A worker's retention as it publishes it (`jobq_workers.retention`,
/// migration 15): per finished state, how long jobs are kept, in
/// milliseconds; `None` for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PublishedRetention {
    pub completed_ms: Option<i64>,
    pub discarded_ms: Option<i64>,
    pub cancelled_ms: Option<i64>,
}

/// One job kind as a worker publishes it (`jobq_worker_kinds`, migration 7),
/// serialized into [`WorkerRow::kinds`].
#[derive(Debug, serde::Serialize)]
pub(crate) struct PublishedKind<'a> {
    pub kind: &'a str,
    pub aliases: &'a [&'a str],
    pub queue: &'a str,
    pub priority: i16,
    pub max_attempts: i32,
    pub timeout_ms: Option<i64>,
    pub cron: Option<&'a str>,
    pub tz: Option<&'a str>,
    pub source: String,
    /// Its job's limits (migration 12): null without.
    pub concurrency_limit: Option<i32>,
    pub rate_limit: Option<i32>,
    pub rate_window_ms: Option<i64>,
    pub partition: Option<&'a str>,
}

/// Inserts a worker's queues (`$3` names, `$5` concurrency) and kinds (`$6`,
/// JSON) for the worker whose id `w` (a CTE) returns, skipping rows it
/// published already.
macro_rules! publish {
    () => {
        "q AS (
            INSERT INTO jobq_worker_queues (worker_id, queue, concurrency)
            SELECT w.id, u.queue, u.concurrency
            FROM w, unnest($3::text[], $5::int[]) AS u(queue, concurrency)
            ON CONFLICT DO NOTHING
        ),
        k AS (
            INSERT INTO jobq_worker_kinds (worker_id, kind, aliases, queue, priority,
                                           max_attempts, timeout_ms, cron, tz, source,
                                           concurrency_limit, rate_limit, rate_window_ms,
                                           partition)
            SELECT w.id, k.kind, k.aliases, k.queue, k.priority, k.max_attempts,
                   k.timeout_ms, k.cron, k.tz, k.source, k.concurrency_limit, k.rate_limit,
                   k.rate_window_ms, k.partition
            FROM w, jsonb_to_recordset($6::jsonb) AS k(
                kind text, aliases text[], queue text, priority smallint, max_attempts int,
                timeout_ms bigint, cron text, tz text, source text, concurrency_limit int,
                rate_limit int, rate_window_ms bigint, partition text)
            ON CONFLICT DO NOTHING
        )"
    };
}

/// Records a live worker process, with the queues and kinds it runs (one
/// statement, one round trip); its id fences the jobs it claims. The
/// published rows go with the worker's row (`ON DELETE CASCADE`).
pub(crate) async fn register_worker(pool: &PgPool, me: &WorkerRow<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!(
        "WITH w AS (
            INSERT INTO jobq_workers (host, pid, queues, lease_ms, retention)
            VALUES ($1, $2, $3, $4, $7::jsonb)
            RETURNING id
        ), ",
        publish!(),
        " SELECT id FROM w"
    ))
    .bind(me.host)
    .bind(me.pid)
    .bind(me.queues)
    .bind(me.lease_ms)
    .bind(me.concurrency)
    .bind(me.kinds)
    .bind(me.retention)
    .fetch_one(pool)
    .await
}

/// Marks the worker alive. Returns false when its row is gone: a rescuer
/// took it for dead and took its running jobs back. The caller then drops
/// what it still holds of them and [`reregister_worker`]s.
pub(crate) async fn heartbeat(conn: &mut PgConnection, worker_id: i64) -> sqlx::Result<bool> {
    let beat = sqlx::query("UPDATE jobq_workers SET heartbeat_at = now() WHERE id = $1")
        .bind(worker_id)
        .execute(conn)
        .await?;
    Ok(beat.rows_affected() > 0)
}

/// Registers a worker taken for dead again, under the same id, and
/// publishes again what it runs (the rescue deleted it with the row). Its
/// old attempts' results are refused all the same: the rescue left their
/// jobs `available`, and a claim after this one counts a new attempt.
pub(crate) async fn reregister_worker(
    conn: &mut PgConnection,
    worker_id: i64,
    me: &WorkerRow<'_>,
) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "WITH w AS (
            INSERT INTO jobq_workers AS w (id, host, pid, queues, lease_ms, retention)
            OVERRIDING SYSTEM VALUE VALUES ($7, $1, $2, $3, $4, $8::jsonb)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
            RETURNING id
        ), ",
        publish!(),
        " SELECT id FROM w"
    ))
    .bind(me.host)
    .bind(me.pid)
    .bind(me.queues)
    .bind(me.lease_ms)
    .bind(me.concurrency)
    .bind(me.kinds)
    .bind(worker_id)
    .bind(me.retention)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a worker that stopped cleanly.
pub(crate) async fn deregister_worker(pool: &PgPool, worker_id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM jobq_workers WHERE id = $1")
        .bind(worker_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// What one rescue pass did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rescued {
    /// Worker rows removed for missing their heartbeat.
    pub workers: i64,
    /// Running jobs taken back from dead workers.
    pub jobs: i64,
    /// Those jobs per queue and kind: `(queue, kind, jobs)`.
    pub by_kind: Vec<(String, String, i64)>,
    /// The pass took back [`RESCUE_BATCH`] jobs, so more may wait: the next
    /// pass should come at once.
    pub more: bool,
}

/// How many attempts a job may lose with its worker (killed, cut off, taken
/// for dead) before it is discarded. A lost attempt does not count against
/// the job's own attempts, since the job may never have started (it waited
/// in the worker's buffer), but a job that keeps killing the worker that
/// runs it must still end.
///
/// Past two losses (`SUSPECT_LOST_ATTEMPTS`) a job runs alone in its worker, and
/// a loss counts only when the job had started: so the jobs that happened to
/// share a worker with a job that kills it are never discarded with it.
pub const MAX_LOST_ATTEMPTS: i32 = 5;

/// Losses after which a job is suspected of killing its worker: it then
/// runs alone (its worker starts no other job beside it), and says when it
/// starts, so that a loss counts against it only when it was running.
pub(crate) const SUSPECT_LOST_ATTEMPTS: i32 = 2;

/// The most jobs one rescue pass takes back: 200,000 took about 5 s in one
/// statement, so a pass over a million or more would outlive the service
/// connections' 30 s `statement_timeout`, roll back, and never finish.
pub(crate) const RESCUE_BATCH: i64 = 10_000;

/// Up to `$1` ([`RESCUE_BATCH`]) `running` jobs of workers without a row:
/// one pass over `jobq_jobs_running` with a key lookup in `jobq_workers`
/// per job.
pub const LOST_SQL: &str = "SELECT id FROM jobq_jobs
    WHERE state = 'running'
      AND NOT EXISTS (SELECT 1 FROM jobq_workers w WHERE w.id = attempted_by)
    LIMIT $1";

/// Takes back the jobs `$3` ([`LOST_SQL`]'s ids) that still run for a
/// worker without a row: `available` again at once, the attempt counted as
/// lost (`$1`: [`MAX_LOST_ATTEMPTS`], `$2`: [`SUSPECT_LOST_ATTEMPTS`]);
/// their queues are notified. Returns the count per queue and kind.
///
/// Each job is found through the primary key (or, when the ids are a good
/// part of the table, by one pass over it). `state` is compared as text so
/// that the planner cannot read `j` through the partial index
/// `jobq_jobs_running`: with statistics taken while few jobs ran (the table
/// analyzed at a quiet time, then a burst claimed), it estimated one running
/// job and scanned that whole index once per lost job. With 5,000 jobs
/// running that took 6 s and 1.8 million buffer reads, while its snapshot
/// held back the cleanup of every claim's dead rows.
pub const RESCUE_SQL: &str = concat!(
    "WITH lost AS (
        UPDATE jobq_jobs AS j SET
            state = CASE
                WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                WHEN j.lost_attempts + c.counts >= $1 THEN 'discarded'
                ELSE 'available' END::jobq_state,
            lost_attempts = j.lost_attempts + c.counts,
            finalized_at = CASE
                WHEN j.cancel_requested_at IS NOT NULL OR j.lost_attempts + c.counts >= $1
                THEN now() END,
            errors = jobq_push_error(j.errors, jsonb_build_object(
                'attempt', j.attempt, 'at', now(), 'kind', 'lost',
                'worker', j.attempted_by, 'started_at', j.attempted_at,
                'error', 'worker ' || j.attempted_by
                    || CASE WHEN c.counts = 1
                       THEN ' stopped heartbeating while running this attempt'
                       ELSE ' stopped heartbeating before this attempt started' END
                    || CASE WHEN j.cancel_requested_at IS NULL AND j.lost_attempts + c.counts >= $1
                       THEN '; discarded: ' || (j.lost_attempts + c.counts)
                            || ' attempts of this job were lost with their worker'
                       ELSE '' END))
        FROM (SELECT id, CASE WHEN lost_attempts < $2 OR started_attempt = attempt
                              THEN 1 ELSE 0 END AS counts
              FROM jobq_jobs
              WHERE id = ANY($3::bigint[]) AND state::text = 'running') AS c
        WHERE j.id = c.id AND j.state::text = 'running'
          AND NOT EXISTS (SELECT 1 FROM jobq_workers w WHERE w.id = j.attempted_by)
        RETURNING j.id, j.queue, j.kind, j.state, j.on_finish
    ),
    told AS (
        SELECT pg_notify('",
    insert_channel!(),
    "', q.queue) FROM (SELECT DISTINCT queue FROM lost) AS q
    )
    SELECT queue, kind,
           count(*) + 0 * (SELECT count(*) FROM told) + 0 * coalesce(",
    after_finish!("lost"),
    ", 0)
    FROM lost GROUP BY queue, kind"
);

/// When no other process is rescuing: removes workers whose heartbeat (or the
/// server's start, after a restart) is older than their lease (their own,
/// else `lease`), then takes back the `running` jobs of every worker that has
/// no row: `available` again at once, in their place in the queue, the
/// attempt counted as lost rather than used (`cancelled` when a cancel was
/// asked, `discarded` after [`MAX_LOST_ATTEMPTS`]), with an error entry;
/// their queues are notified. A suspect's attempt (see
/// [`SUSPECT_LOST_ATTEMPTS`]) counts only if it started. Returns `None` when
/// another process holds the rescue lock.
///
/// Statements in this order, in one transaction: the second, with a
/// snapshot of its own, finds the `running` jobs (up to [`RESCUE_BATCH`])
/// of the workers the first removed and of any other worker without a row;
/// when there are any, the third takes them back by id (see
/// [`RESCUE_SQL`]). Claims after the
/// removal find no row and take nothing (see [`CLAIM_SQL`](super::CLAIM_SQL)).
pub(crate) async fn rescue_expired(
    conn: &mut PgConnection,
    lease_ms: i64,
) -> sqlx::Result<Option<Rescued>> {
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(Lock::Rescue.key())
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    // After a server restart every worker gets a full lease to beat again:
    // the outage was not theirs.
    let workers = sqlx::query(
        "DELETE FROM jobq_workers
         WHERE greatest(heartbeat_at, pg_postmaster_start_time())
               < now() - coalesce(lease_ms, $1) * interval '1 millisecond'",
    )
    .bind(lease_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let lost: Vec<i64> = sqlx::query_scalar(LOST_SQL)
        .bind(RESCUE_BATCH)
        .fetch_all(&mut *tx)
        .await?;
    let by_kind: Vec<(String, String, i64)> = if lost.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(RESCUE_SQL)
            .bind(MAX_LOST_ATTEMPTS)
            .bind(SUSPECT_LOST_ATTEMPTS)
            .bind(&lost)
            .fetch_all(&mut *tx)
            .await?
    };
    tx.commit().await?;
    let jobs = by_kind.iter().map(|(_, _, n)| n).sum();
    Ok(Some(Rescued {
        workers: i64::try_from(workers).unwrap_or(i64::MAX),
        jobs,
        by_kind,
        // Counted as taken, not as found: jobs found but no longer lost
        // when taken must not make passes follow each other at once.
        more: jobs >= RESCUE_BATCH,
    }))
}
