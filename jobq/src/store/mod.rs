//! Every SQL statement jobq runs, each named for what it does. Nothing outside
//! this module speaks SQL, so a second backend would implement this seam.

mod migrate;

pub use migrate::migrate;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

/// The channel an insert notifies, with the queue's name as payload. Postgres
/// delivers it on commit, and folds identical notifications of one
/// transaction into one.
pub(crate) const INSERT_CHANNEL: &str = "jobq_insert";

/// A job about to be inserted.
pub(crate) struct NewJob {
    pub kind: &'static str,
    pub queue: String,
    pub args: String,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: Option<DateTime<Utc>>,
}

/// Inserts one job and notifies its queue, in one round trip.
pub(crate) async fn insert_one(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "WITH ins AS (
            INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts, scheduled_at, state)
            VALUES ($1, $2, $3::jsonb, $4, $5, coalesce($6, now()),
                    CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available' END::jobq_state)
            RETURNING id, queue
        )
        SELECT ins.id FROM ins, LATERAL (SELECT pg_notify('jobq_insert', ins.queue)) AS n",
    )
    .bind(job.kind)
    .bind(&job.queue)
    .bind(&job.args)
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(job.run_at)
    .fetch_one(conn)
    .await
}

/// Inserts many jobs with one statement (arrays, unnested) and notifies each
/// queue once. Returns the ids in input order.
pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> sqlx::Result<Vec<i64>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let args: Vec<&str> = jobs.iter().map(|j| j.args.as_str()).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
    let row = sqlx::query(
        "WITH ins AS (
            INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts, scheduled_at, state)
            SELECT t.kind, t.queue, t.args::jsonb, t.priority, t.max_attempts,
                   coalesce(t.run_at, now()),
                   CASE WHEN t.run_at > now() THEN 'scheduled' ELSE 'available' END::jobq_state
            FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::int[],
                        $6::timestamptz[]) WITH ORDINALITY
                 AS t(kind, queue, args, priority, max_attempts, run_at, ord)
            ORDER BY t.ord
            RETURNING id, queue
        ),
        notified AS (
            SELECT pg_notify('jobq_insert', q.queue) FROM (SELECT DISTINCT queue FROM ins) AS q
        )
        SELECT array_agg(ins.id ORDER BY ins.id) AS ids,
               (SELECT count(*) FROM notified) AS queues
        FROM ins",
    )
    .bind(kinds)
    .bind(queues)
    .bind(args)
    .bind(priorities)
    .bind(attempts)
    .bind(run_at)
    .fetch_one(conn)
    .await?;
    row.try_get("ids")
}

/// A job claimed for one attempt.
#[derive(Debug)]
pub(crate) struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub args: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub scheduled_at: DateTime<Utc>,
}

/// Claims up to `limit` due jobs of `queue` whose kind this worker knows, in
/// (priority, scheduled_at, id) order, skipping rows other workers hold.
pub(crate) async fn claim_batch(
    pool: &PgPool,
    queue: &str,
    kinds: &[String],
    limit: i64,
    worker_id: i64,
) -> sqlx::Result<Vec<ClaimedJob>> {
    let rows = sqlx::query(
        "WITH c AS (
            SELECT id FROM jobq_jobs
            WHERE state IN ('available', 'scheduled', 'retryable')
              AND queue = $1
              AND scheduled_at <= now()
              AND kind = ANY($2)
            ORDER BY priority, scheduled_at, id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        )
        UPDATE jobq_jobs AS j
        SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), attempted_by = $4
        FROM c
        WHERE j.id = c.id
        RETURNING j.id, j.kind, j.args::text AS args, j.attempt, j.max_attempts, j.priority,
                  j.scheduled_at",
    )
    .bind(queue)
    .bind(kinds)
    .bind(limit)
    .bind(worker_id)
    .fetch_all(pool)
    .await?;
    let mut jobs = rows
        .into_iter()
        .map(|r| {
            Ok(ClaimedJob {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                args: r.try_get("args")?,
                attempt: r.try_get("attempt")?,
                max_attempts: r.try_get("max_attempts")?,
                priority: r.try_get("priority")?,
                scheduled_at: r.try_get("scheduled_at")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
    Ok(jobs)
}

/// The state one attempt leaves its job in.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub id: i64,
    pub attempt: i32,
    /// `completed`, `retryable`, `discarded` or `available` (interrupted).
    pub state: &'static str,
    /// For `retryable`: how long until the next attempt.
    pub delay_ms: i64,
    /// For a failure: its message, appended to the job's `errors`.
    pub error: Option<String>,
    /// For a failure: `error`, `panic`, `timeout`, `decode`, `shutdown`.
    pub error_kind: Option<&'static str>,
    /// The attempt does not count (the worker interrupted it).
    pub requeue: bool,
}

/// Records many attempts' results in one statement. A result is written only
/// while its job is still `running` the same attempt for this worker, so a
/// worker whose job was rescued cannot overwrite the newer attempt. Returns
/// how many were written.
pub(crate) async fn finish_many(
    pool: &PgPool,
    worker_id: i64,
    batch: &[Finish],
) -> sqlx::Result<u64> {
    let ids: Vec<i64> = batch.iter().map(|f| f.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|f| f.attempt).collect();
    let states: Vec<&str> = batch.iter().map(|f| f.state).collect();
    let delays: Vec<i64> = batch.iter().map(|f| f.delay_ms).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|f| f.error.as_deref()).collect();
    let kinds: Vec<Option<&str>> = batch.iter().map(|f| f.error_kind).collect();
    let requeue: Vec<bool> = batch.iter().map(|f| f.requeue).collect();
    let done = sqlx::query(
        "UPDATE jobq_jobs AS j SET
            state = c.state::jobq_state,
            attempt = CASE WHEN c.requeue THEN j.attempt - 1 ELSE j.attempt END,
            scheduled_at = CASE
                WHEN c.state = 'retryable' THEN now() + c.delay_ms * interval '1 millisecond'
                WHEN c.requeue THEN now()
                ELSE j.scheduled_at END,
            finalized_at = CASE WHEN c.state IN ('completed', 'discarded', 'cancelled')
                THEN now() END,
            errors = CASE WHEN c.error IS NULL THEN j.errors
                ELSE j.errors || jsonb_build_array(jsonb_build_object(
                    'attempt', j.attempt, 'at', now(), 'kind', c.kind, 'error', c.error))
                END
        FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                    $7::bool[]) AS c(id, attempt, state, delay_ms, error, kind, requeue)
        WHERE j.id = c.id AND j.attempt = c.attempt AND j.state = 'running'
          AND j.attempted_by = $8",
    )
    .bind(ids)
    .bind(attempts)
    .bind(states)
    .bind(delays)
    .bind(errors)
    .bind(kinds)
    .bind(requeue)
    .bind(worker_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records a live worker process; its id fences the jobs it claims.
pub(crate) async fn register_worker(
    pool: &PgPool,
    host: &str,
    pid: i32,
    queues: &[String],
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(host)
    .bind(pid)
    .bind(queues)
    .fetch_one(pool)
    .await
}

/// Marks the worker alive. Returns false when its row is gone.
pub(crate) async fn heartbeat(pool: &PgPool, worker_id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE jobq_workers SET heartbeat_at = now() WHERE id = $1")
        .bind(worker_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes a worker that stopped cleanly.
pub(crate) async fn deregister_worker(pool: &PgPool, worker_id: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM jobq_workers WHERE id = $1")
        .bind(worker_id)
        .execute(pool)
        .await?;
    Ok(())
}
