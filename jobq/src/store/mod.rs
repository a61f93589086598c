//! Every SQL statement jobq runs, each named for what it does. Nothing outside
//! this module speaks SQL, so a second backend would implement this seam.

/// The SQL expression by which an enqueue notifies the queue named by `$q`
/// (an SQL expression) only if a producer sleeps on it: it tries the queue's
/// wake lock shared, for the rest of the transaction, and notifies when it
/// cannot get it (see [`take_wake_lock`]). The first key is
/// [`WAKE_LOCK_CLASS`].
macro_rules! notify_if_asleep {
    ($q:literal) => {
        concat!(
            "CASE WHEN NOT pg_try_advisory_xact_lock_shared(27249, hashtext(",
            $q,
            ")) THEN pg_notify('jobq_insert', ",
            $q,
            ")::text END"
        )
    };
}

/// The SQL expression for how long, in milliseconds (float8), until the next
/// future job of the queue `$1` is due; null when there is none.
macro_rules! next_due_sql {
    () => {
        "SELECT (extract(epoch FROM min(scheduled_at) - now()) * 1000)::float8
         FROM jobq_jobs
         WHERE queue = $1 AND state IN ('scheduled', 'retryable') AND scheduled_at > now()"
    };
}

mod migrate;
mod prune;
mod schedule;

pub use migrate::migrate;
pub(crate) use prune::*;
pub(crate) use schedule::*;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool, Row};

/// The channel an insert notifies, with the queue's name as payload. Postgres
/// delivers it on commit, and folds identical notifications of one
/// transaction into one. Enqueues notify only queues a producer sleeps on:
/// see [`take_wake_lock`].
pub(crate) const INSERT_CHANNEL: &str = "jobq_insert";

/// The channel for requests to running workers, as JSON: `{"cancel": id}`.
pub(crate) const CONTROL_CHANNEL: &str = "jobq_control";

/// A job about to be inserted.
pub(crate) struct NewJob {
    pub kind: &'static str,
    pub queue: String,
    pub args: String,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: Option<DateTime<Utc>>,
}

/// Inserts one job and notifies its queue if a producer sleeps on it, in one
/// round trip.
pub(crate) async fn insert_one(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<i64> {
    sqlx::query_scalar(concat!(
        "INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts, scheduled_at, state)
        VALUES ($1, $2, $3::jsonb, $4, $5, coalesce($6, now()),
                CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available' END::jobq_state)
        RETURNING id, ",
        notify_if_asleep!("queue")
    ))
    .bind(job.kind)
    .bind(&job.queue)
    .bind(&job.args)
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(job.run_at)
    .fetch_one(conn)
    .await
}

/// Jobs of one kind, queue, priority and attempt budget, due now: what
/// `enqueue_many` inserts.
pub(crate) struct NewBatch<'a> {
    pub kind: &'static str,
    pub queue: &'a str,
    pub priority: i16,
    pub max_attempts: i32,
    /// Each job's arguments, as JSON.
    pub args: Vec<String>,
}

/// Inserts a batch with one statement over the array of its arguments, and
/// notifies the queue once if a producer sleeps on it. Returns the ids in
/// input order: `unnest` yields the array in order, and each row takes the
/// next id as it is inserted.
pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    batch: &NewBatch<'_>,
) -> sqlx::Result<Vec<i64>> {
    if batch.args.is_empty() {
        return Ok(Vec::new());
    }
    let row = sqlx::query(concat!(
        "WITH ins AS (
            INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts)
            SELECT $1, $2, a::jsonb, $3, $4 FROM unnest($5::text[]) AS a
            RETURNING id
        )
        SELECT array_agg(id ORDER BY id) AS ids, ",
        notify_if_asleep!("$2"),
        " FROM ins"
    ))
    .bind(batch.kind)
    .bind(batch.queue)
    .bind(batch.priority)
    .bind(batch.max_attempts)
    .bind(&batch.args)
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
    /// Claims of this job so far, this one included: with the worker's id,
    /// it fences this attempt's result.
    pub attempt: i32,
    /// Of those claims, the ones lost with a worker: they do not count
    /// against `max_attempts`.
    pub lost_attempts: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub scheduled_at: DateTime<Utc>,
}

impl ClaimedJob {
    /// This attempt's number as the job sees it: lost attempts do not count.
    pub(crate) fn counted_attempt(&self) -> i32 {
        self.attempt - self.lost_attempts
    }
}

/// The claim: `$1` queue, `$2` kinds, `$3` limit, `$4` worker id, `$5` the
/// claim's stamp (`attempted_at`).
///
/// - Only `available` rows are read, per kind this worker runs, through
///   `jobq_jobs_ready` (queue, kind, priority, scheduled_at, id): rows of
///   other kinds and rows waiting for a future time are never visited, so
///   they cost a claim nothing however many there are. Each kind gives at
///   most `$3` rows, and the best `$3` of those are taken; the others stay
///   locked until the statement ends, which only makes a concurrent claim
///   skip them once. The claiming worker's claim was then full, so it
///   claims again at once.
/// - The same statement makes up to 1,000 due `scheduled` and `retryable`
///   jobs of the queue `available` (`promoted`), for the next claim: a row
///   cannot be changed twice by one statement.
/// - Nothing is claimed unless the worker's row exists: a claim that comes
///   after a rescuer removed it takes nothing, and says so (`alive` is
///   false), so a worker taken for dead cannot claim under its old identity.
///   (A claim that commits while the row is being removed is rescued like
///   the jobs the worker held before: by this pass or the next. The row is
///   not locked: that would cost every claim a write and order nothing
///   better, since the worker runs what it claimed either way until it
///   learns it lost its lease.)
/// - Nothing is claimed while the queue is paused.
/// - The statement always returns one row at least: with no job claimed, a
///   row of nulls that still carries `promoted`, `alive` and
///   `next_due_ms`, how long until the queue's next future job is due
///   (null when there is none), so a producer about to sleep knows how long
///   without another round trip.
///
/// Reachable from `__private` so that the benchmark times this very
/// statement.
pub const CLAIM_SQL: &str = concat!(
    "WITH promoted AS (
            UPDATE jobq_jobs SET state = 'available'
            WHERE id IN (
                SELECT id FROM jobq_jobs
                WHERE state IN ('scheduled', 'retryable') AND queue = $1 AND scheduled_at <= now()
                ORDER BY scheduled_at
                LIMIT 1000
                FOR UPDATE SKIP LOCKED)
            RETURNING 1
        ),
        me AS (
            SELECT id FROM jobq_workers WHERE id = $4
        ),
        c AS (
            SELECT x.id
            FROM unnest($2::text[]) AS k(kind)
            CROSS JOIN LATERAL (
                SELECT id, priority, scheduled_at FROM jobq_jobs
                WHERE state = 'available' AND queue = $1 AND kind = k.kind
                ORDER BY priority, scheduled_at, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ) AS x
            WHERE EXISTS (SELECT 1 FROM me)
              AND NOT EXISTS (
                  SELECT 1 FROM jobq_queues q WHERE q.name = $1 AND q.paused_at IS NOT NULL)
            ORDER BY x.priority, x.scheduled_at, x.id
            LIMIT $3
        ),
        claimed AS (
            UPDATE jobq_jobs AS j
            SET state = 'running', attempt = j.attempt + 1, attempted_at = $5, attempted_by = $4
            FROM c
            WHERE j.id = c.id
            RETURNING j.id, j.kind, j.args::text AS args, j.attempt, j.lost_attempts,
                      j.max_attempts, j.priority, j.scheduled_at
        )
        SELECT claimed.*, p.n AS promoted, EXISTS (SELECT 1 FROM me) AS alive, (",
    next_due_sql!(),
    ") AS next_due_ms
        FROM (SELECT count(*) AS n FROM promoted) AS p LEFT JOIN claimed ON true"
);

fn millis_to_duration(ms: f64) -> std::time::Duration {
    // Capped: a job due in year 9999 is about 2.5e11 s away.
    std::time::Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(1e12))
}

/// What one claim took, and when the queue's next future job is due.
#[derive(Debug)]
pub(crate) struct Claim {
    /// In (priority, scheduled_at, id) order.
    pub jobs: Vec<ClaimedJob>,
    /// How many due jobs the claim made `available` for the next claim.
    pub promoted: i64,
    /// Whether the worker's row exists; when it does not, nothing was
    /// claimed: a rescuer took the worker for dead.
    pub alive: bool,
    /// How long from the claim until the next job not yet due is, measured
    /// on the server's clock; `None` when no job waits for a future time.
    pub next_due: Option<std::time::Duration>,
}

/// Claims up to `limit` due jobs of `queue` whose kind this worker knows, in
/// (priority, scheduled_at, id) order, skipping rows other workers hold, and
/// makes due future jobs available (see [`CLAIM_SQL`]).
pub(crate) async fn claim_batch(
    conn: &mut PgConnection,
    queue: &str,
    kinds: &[String],
    limit: i64,
    worker_id: i64,
    claim_at: DateTime<Utc>,
) -> sqlx::Result<Claim> {
    let rows = sqlx::query(CLAIM_SQL)
        .bind(queue)
        .bind(kinds)
        .bind(limit)
        .bind(worker_id)
        .bind(claim_at)
        .fetch_all(conn)
        .await?;
    let first = rows
        .first()
        .ok_or_else(|| sqlx::Error::Protocol("the claim returned no row".into()))?;
    let promoted: i64 = first.try_get("promoted")?;
    let alive: bool = first.try_get("alive")?;
    let next_due_ms: Option<f64> = first.try_get("next_due_ms")?;
    let mut jobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(id) = r.try_get::<Option<i64>, _>("id")? else {
            continue; // the row of nulls: nothing claimed
        };
        jobs.push(ClaimedJob {
            id,
            kind: r.try_get("kind")?,
            args: r.try_get("args")?,
            attempt: r.try_get("attempt")?,
            lost_attempts: r.try_get("lost_attempts")?,
            max_attempts: r.try_get("max_attempts")?,
            priority: r.try_get("priority")?,
            scheduled_at: r.try_get("scheduled_at")?,
        });
    }
    jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
    Ok(Claim {
        jobs,
        promoted,
        alive,
        next_due: next_due_ms.map(millis_to_duration),
    })
}

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

/// Puts back the jobs of claims whose answer never reached this worker (the
/// connection failed mid-claim, perhaps after the claim committed): none of
/// them was started. Each claim is known by its `claim_at` stamp. The caller
/// first makes sure the session that ran the claims is gone
/// ([`terminate`]): a claim still running there could otherwise commit
/// after this statement looked for its jobs.
pub(crate) async fn release_lost_claims(
    conn: &mut PgConnection,
    worker_id: i64,
    queue: &str,
    claims: &[DateTime<Utc>],
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'available', attempt = attempt - 1, started_attempt = NULL
         WHERE state = 'running' AND attempted_by = $1 AND queue = $2
           AND attempted_at = ANY($3)",
    )
    .bind(worker_id)
    .bind(queue)
    .bind(claims)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The state one attempt leaves its job in.
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub id: i64,
    pub attempt: i32,
    /// `completed`, `retryable`, `discarded`, `cancelled`, `scheduled`
    /// (snoozed) or `available` (interrupted).
    pub state: &'static str,
    /// For `retryable` and `scheduled`: how long until the next attempt.
    pub delay_ms: i64,
    /// For a failure: its message, appended to the job's `errors`.
    pub error: Option<String>,
    /// For a failure: `error`, `panic`, `timeout`, `decode`, `discard`,
    /// `cancelled`, `shutdown`.
    pub error_kind: Option<&'static str>,
    /// The attempt does not count (interrupted or snoozed).
    pub requeue: bool,
}

/// Records many attempts' results in one statement. A result is written only
/// while its job is still `running` the same attempt for this worker, so a
/// worker whose job was rescued cannot overwrite the newer attempt. A job
/// whose cancellation was requested while it ran ends `cancelled` unless it
/// completed. Returns how many were written.
pub(crate) async fn finish_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[Finish],
) -> sqlx::Result<u64> {
    // Most results are plain completions: they take a lighter statement.
    let (completed, others): (Vec<&Finish>, Vec<&Finish>) =
        batch.iter().partition(|f| f.state == "completed");
    let mut written = 0;
    if !completed.is_empty() {
        written += complete_many(&mut *conn, worker_id, &completed).await?;
    }
    if !others.is_empty() {
        written += settle_many(conn, worker_id, &others).await?;
    }
    Ok(written)
}

/// Marks attempts completed, with the same fencing as [`finish_many`].
async fn complete_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let ids: Vec<i64> = batch.iter().map(|f| f.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|f| f.attempt).collect();
    let done = sqlx::query(
        "UPDATE jobq_jobs AS j SET state = 'completed', finalized_at = now()
        FROM (SELECT * FROM unnest($1::bigint[], $2::int[]) AS u(id, attempt) ORDER BY id) AS c
        WHERE j.id = c.id AND j.attempt = c.attempt AND j.state = 'running'
          AND j.attempted_by = $3",
    )
    .bind(ids)
    .bind(attempts)
    .bind(worker_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records failures, snoozes, cancellations and returned jobs.
async fn settle_many(
    conn: &mut PgConnection,
    worker_id: i64,
    batch: &[&Finish],
) -> sqlx::Result<u64> {
    let ids: Vec<i64> = batch.iter().map(|f| f.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|f| f.attempt).collect();
    let states: Vec<&str> = batch.iter().map(|f| f.state).collect();
    let delays: Vec<i64> = batch.iter().map(|f| f.delay_ms).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|f| f.error.as_deref()).collect();
    let kinds: Vec<Option<&str>> = batch.iter().map(|f| f.error_kind).collect();
    let requeue: Vec<bool> = batch.iter().map(|f| f.requeue).collect();
    let done = sqlx::query(
        // The CASE repeated below: a job whose cancellation was requested while it ran
        // ends `cancelled` unless it completed.
        "UPDATE jobq_jobs AS j SET
            state = CASE WHEN c.state <> 'completed' AND j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE c.state END::jobq_state,
            attempt = CASE WHEN c.requeue AND CASE WHEN c.state <> 'completed' AND j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE c.state END <> 'cancelled' THEN j.attempt - 1
                ELSE j.attempt END,
            -- The next claim counts this attempt again: it has not started.
            started_attempt = CASE WHEN c.requeue THEN NULL ELSE j.started_attempt END,
            scheduled_at = CASE
                WHEN CASE WHEN c.state <> 'completed' AND j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE c.state END IN ('retryable', 'scheduled')
                    THEN now() + c.delay_ms * interval '1 millisecond'
                ELSE j.scheduled_at END,
            finalized_at = CASE WHEN CASE WHEN c.state <> 'completed' AND j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE c.state END IN ('completed', 'discarded', 'cancelled')
                THEN now() END,
            errors = CASE WHEN c.error IS NULL THEN j.errors
                ELSE jobq_push_error(j.errors, jsonb_build_object(
                    'attempt', j.attempt, 'at', now(), 'kind', c.kind, 'error', c.error))
                END
        -- The ordered subquery keeps a generic plan from re-running the
        -- unnest once per running row (a nested loop): it joins by id instead.
        FROM (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[],
                                   $5::text[], $6::text[], $7::bool[])
                  AS u(id, attempt, state, delay_ms, error, kind, requeue)
              ORDER BY id) AS c
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
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Discards the attempt `attempt` of job `id` whose result PostgreSQL refused
/// (see the completer), keeping `reason` in its error history under the kind
/// `unrecordable`. Fenced like [`finish_many`]; returns how many rows were
/// written (0 or 1). Nothing of the refused result is written but `reason`,
/// which the caller makes from the database's message and cleans.
pub(crate) async fn discard_unrecordable(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
    reason: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
            errors = jobq_push_error(errors, jsonb_build_object(
                'attempt', attempt, 'at', now(), 'kind', 'unrecordable', 'error', $4::text))
        WHERE id = $1 AND attempt = $2 AND state = 'running' AND attempted_by = $3",
    )
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The last resort for a result PostgreSQL refused even as
/// [`discard_unrecordable`]: the job is discarded with a fixed error entry,
/// and nothing else the worker or the database could object to is written.
///
/// With `release_key`, the job also gives up its unique key. Passed when the
/// refusal was a unique violation: `discarded` is then one of the states the
/// key holds in, and another row holds it already, so this row may not. The
/// key's guarantee (one row holds it) is kept by that other row, and a row
/// without a key is in no unique index, so this write cannot conflict.
/// Otherwise the key is kept: releasing it would let a new job take a key
/// that the user asked to hold in `discarded`.
pub(crate) async fn discard_unrecordable_minimal(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
    release_key: bool,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE jobq_jobs SET state = 'discarded', finalized_at = now(),
            unique_key = CASE WHEN $4 THEN NULL ELSE unique_key END,
            errors = jobq_push_error(errors, jsonb_build_object(
                'attempt', attempt, 'at', now(), 'kind', 'unrecordable',
                'error', 'could not record this attempt''s result'))
        WHERE id = $1 AND attempt = $2 AND state = 'running' AND attempted_by = $3",
    )
    .bind(id)
    .bind(attempt)
    .bind(worker_id)
    .bind(release_key)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Cancels a job: one that waits ends `cancelled` at once; one that runs is
/// marked, and its worker is told through NOTIFY to fire its token. Returns
/// the job's state before the call, or `None` when there is no such job.
pub(crate) async fn cancel(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "WITH target AS (
            SELECT id, state FROM jobq_jobs WHERE id = $1 FOR UPDATE
        ),
        changed AS (
            UPDATE jobq_jobs AS j SET
                state = CASE WHEN t.state = 'running' THEN j.state ELSE 'cancelled' END,
                finalized_at = CASE WHEN t.state = 'running' THEN j.finalized_at ELSE now() END,
                cancel_requested_at = now()
            FROM target t
            WHERE j.id = t.id AND t.state IN ('available', 'scheduled', 'retryable', 'running')
            RETURNING j.id, t.state
        ),
        told AS (
            SELECT pg_notify('jobq_control', json_build_object('cancel', id)::text)
            FROM changed WHERE state = 'running'
        )
        SELECT t.state::text FROM target t WHERE (SELECT count(*) FROM told) >= 0",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// This worker's running (or buffered) jobs whose cancellation was asked:
/// for replaying requests whose NOTIFY was missed while the listener was
/// disconnected.
pub(crate) async fn cancel_requested(pool: &PgPool, worker_id: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM jobq_jobs
         WHERE state = 'running' AND attempted_by = $1 AND cancel_requested_at IS NOT NULL",
    )
    .bind(worker_id)
    .fetch_all(pool)
    .await
}

/// What one rescue pass did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rescued {
    /// Worker rows removed for missing their heartbeat.
    pub workers: i64,
    /// Running jobs taken back from dead workers.
    pub jobs: i64,
}

/// Key of the advisory lock that makes one process at a time rescue.
const RESCUE_LOCK: i64 = 0x6a6f_6271_7265_7363; // "jobqresc"

/// How many attempts a job may lose with its worker (killed, cut off, taken
/// for dead) before it is discarded. A lost attempt does not count against
/// the job's own attempts, since the job may never have started (it waited
/// in the worker's buffer), but a job that keeps killing the worker that
/// runs it must still end.
///
/// Past [`SUSPECT_LOST_ATTEMPTS`] losses a job runs alone in its worker, and
/// a loss counts only when the job had started: so the jobs that happened to
/// share a worker with a job that kills it are never discarded with it.
pub const MAX_LOST_ATTEMPTS: i32 = 5;

/// Losses after which a job is suspected of killing its worker: it then
/// runs alone (its worker starts no other job beside it), and says when it
/// starts, so that a loss counts against it only when it was running.
pub(crate) const SUSPECT_LOST_ATTEMPTS: i32 = 2;

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
/// Two statements, in this order, in one transaction: the second, with a
/// snapshot of its own, takes back the jobs of the workers the first
/// removed and of any other worker without a row. Claims after the removal
/// find no row and take nothing (see [`CLAIM_SQL`]).
pub(crate) async fn rescue_expired(
    conn: &mut PgConnection,
    lease_ms: i64,
) -> sqlx::Result<Option<Rescued>> {
    let mut tx = conn.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RESCUE_LOCK)
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
    let jobs: i64 = sqlx::query_scalar(
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
                  WHERE state = 'running'
                    AND NOT EXISTS (SELECT 1 FROM jobq_workers w WHERE w.id = attempted_by)) AS c
            WHERE j.id = c.id AND j.state = 'running'
            RETURNING j.queue
        ),
        told AS (
            SELECT pg_notify('jobq_insert', q.queue) FROM (SELECT DISTINCT queue FROM lost) AS q
        )
        SELECT (SELECT count(*) FROM lost) + 0 * (SELECT count(*) FROM told)",
    )
    .bind(MAX_LOST_ATTEMPTS)
    .bind(SUSPECT_LOST_ATTEMPTS)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Rescued {
        workers: i64::try_from(workers).unwrap_or(i64::MAX),
        jobs,
    }))
}

/// What a worker's row says about it.
pub(crate) struct WorkerRow<'a> {
    pub host: &'a str,
    pub pid: i32,
    pub queues: &'a [String],
    /// How long the worker may miss its heartbeat before it is taken for
    /// dead: rescuers judge it by this, not by their own lease.
    pub lease_ms: i64,
}

/// Records a live worker process; its id fences the jobs it claims.
pub(crate) async fn register_worker(pool: &PgPool, me: &WorkerRow<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues, lease_ms) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(me.host)
    .bind(me.pid)
    .bind(me.queues)
    .bind(me.lease_ms)
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

/// Registers a worker taken for dead again, under the same id. Its old
/// attempts' results are refused all the same: the rescue left their jobs
/// `available`, and a claim after this one counts a new attempt.
pub(crate) async fn reregister_worker(
    conn: &mut PgConnection,
    worker_id: i64,
    me: &WorkerRow<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO jobq_workers AS w (id, host, pid, queues, lease_ms)
         OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(worker_id)
    .bind(me.host)
    .bind(me.pid)
    .bind(me.queues)
    .bind(me.lease_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that this worker starts attempt `attempt` of suspect job `id`
/// (see [`SUSPECT_LOST_ATTEMPTS`]), so that losing it counts.
pub(crate) async fn mark_started(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE jobq_jobs SET started_attempt = $3
         WHERE id = $1 AND attempt = $3 AND attempted_by = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(worker_id)
    .bind(attempt)
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

/// First key of the per-queue wake locks; the second is `hashtext(queue)`.
/// Spelled out in `notify_if_asleep!` too (a unit test keeps them equal).
const WAKE_LOCK_CLASS: i32 = 27249;

/// What [`take_wake_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeLock {
    /// This session holds the queue's wake lock: every enqueue from now on
    /// notifies, and every earlier one that did not has committed.
    Held,
    /// Another producer holds it and sleeps: enqueues notify it, and the
    /// notification reaches every listener.
    Covered,
    /// An enqueue that did not notify is still open; poll until it ends.
    Busy,
}

/// Takes the wake lock of `queue` for a producer about to sleep, waiting at
/// most `wait` for open enqueues to end.
///
/// NOTIFY takes a database-wide lock from before commit until the commit is
/// flushed, so notifying transactions cannot share a disk flush and
/// concurrent enqueues queue behind each other. So an enqueue notifies only
/// when a producer sleeps on the queue. A producer that found nothing holds
/// the queue's wake lock exclusively (a session lock) while it sleeps; an
/// enqueue tries the same lock shared, for the rest of its transaction, and
/// notifies only when it cannot get it. No snapshot is involved, so this
/// holds under every isolation level:
/// - an enqueue that got the shared lock (and so did not notify) holds it
///   until it commits or rolls back, so the producer gets the lock only
///   after that, and the claim it makes next sees the job;
/// - while the producer holds the lock, or waits for it, every enqueue's
///   try fails and it notifies.
///
/// The producer therefore claims once more after [`WakeLock::Held`], and
/// sleeps only if that claim comes back short.
pub(crate) async fn take_wake_lock(
    conn: &mut PgConnection,
    queue: &str,
    wait: std::time::Duration,
) -> sqlx::Result<WakeLock> {
    // The timeout is local to this statement's transaction; it is set
    // before the lock because target lists are evaluated in order.
    let taken = sqlx::query(
        "SELECT set_config('lock_timeout', $3, true), pg_advisory_lock($1, hashtext($2))",
    )
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .bind(format!("{}ms", wait.as_millis().max(1)))
    .execute(&mut *conn)
    .await;
    match taken {
        Ok(_) => return Ok(WakeLock::Held),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {}
        Err(e) => return Err(e),
    }
    let covered: bool = sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = $1::oid AND objid = hashtext($2)::oid AND objsubid = 2
              AND pid <> pg_backend_pid())",
    )
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .fetch_one(conn)
    .await?;
    Ok(if covered {
        WakeLock::Covered
    } else {
        WakeLock::Busy
    })
}

/// Releases the wake lock of `queue` held by this session (its producer has
/// work again, polls, or stops). With `notify`, tells the queue's other
/// producers, which may have slept on this one's lock, to look again.
pub(crate) async fn release_wake_lock(
    conn: &mut PgConnection,
    queue: &str,
    notify: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "SELECT pg_advisory_unlock($1, hashtext($2)),
                CASE WHEN $3 THEN pg_notify('jobq_insert', $2)::text END",
    )
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .bind(notify)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueues_try_the_lock_sleeping_producers_hold() {
        let expr = notify_if_asleep!("queue");
        assert!(
            expr.contains(&format!("({WAKE_LOCK_CLASS}, hashtext(queue))")),
            "{expr}"
        );
    }
}
