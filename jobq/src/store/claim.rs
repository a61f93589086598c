//! Claiming jobs for attempts, and putting back claims whose answer was lost.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

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
    /// The W3C trace context of the job's enqueue, as JSON.
    #[cfg(feature = "opentelemetry")]
    pub trace_context: Option<String>,
}

impl ClaimedJob {
    /// This attempt's number as the job sees it: lost attempts do not count.
    pub(crate) fn counted_attempt(&self) -> i32 {
        self.attempt - self.lost_attempts
    }
}

/// The claim: `$1` queue, `$2` kinds, `$3` limit, `$4` worker id, `$5` the
/// claim's stamp (`attempted_at`), `$6` whether the queue has a backlog.
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
/// - Nothing is claimed while the queue is paused, or while it has a limit
///   of its own (`queue_limited`): the worker then claims it through
///   [`claim_limited`](super::claim_limited), which counts against the
///   limit. Both are read from the queue's one row, which the claim read
///   already, so kinds and queues without limits pay nothing for them.
/// - With `$6` (the worker's last claim took all it asked for: the queue
///   has a backlog, and other workers are likely claiming beside it), rows
///   another claim touched since the statement's snapshot are passed over
///   before any lock is tried: a row whose `xmax` is a transaction not
///   older than the snapshot's oldest running one is being claimed, or was
///   claimed after the snapshot. Locking such a row, as `FOR UPDATE` does
///   in READ COMMITTED, follows its update to the `running` version and
///   locks that, so its completion waits for this claim to commit; with 16
///   worker processes claiming at once, completions spent much of their
///   time so. The same test passes over a row a finished transaction
///   merely locked (another claim's leftover of a kind it did not take)
///   until every transaction older than that lock has ended; a claim that
///   takes less than it asked makes the worker's next claim without the
///   test, so such a row waits at most while the queue's backlog lasts,
///   and only while an older transaction runs.
/// - The claimed rows are updated by id through an array (`= ANY (ARRAY
///   (...))`), an index lookup whatever the plan: joined to the candidates
///   instead, a generic plan (which cannot see `$3`) hashed the whole table
///   to update 16 rows, 22-56 ms on 100,000 waiting jobs.
/// - The statement always returns one row at least: with no job claimed, a
///   row of nulls that still carries `promoted`, `alive`, `queue_limited` and
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
        q AS (
            SELECT paused_at IS NOT NULL AS paused,
                   concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL AS limited
            FROM jobq_queues WHERE name = $1
        ),
        c AS (
            SELECT x.id
            FROM unnest($2::text[]) AS k(kind)
            CROSS JOIN LATERAL (
                SELECT id, priority, scheduled_at FROM jobq_jobs
                WHERE state = 'available' AND queue = $1 AND kind = k.kind
                  AND (NOT $6 OR age(xmax) > (
                      SELECT age(xid(pg_snapshot_xmin(pg_current_snapshot())))))
                ORDER BY priority, scheduled_at, id
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ) AS x
            WHERE EXISTS (SELECT 1 FROM me)
              AND NOT EXISTS (SELECT 1 FROM q WHERE q.paused OR q.limited)
            ORDER BY x.priority, x.scheduled_at, x.id
            LIMIT $3
        ),
        claimed AS (
            UPDATE jobq_jobs AS j
            SET state = 'running', attempt = j.attempt + 1, attempted_at = $5, attempted_by = $4
            WHERE j.id = ANY (ARRAY (SELECT id FROM c))
            RETURNING j.id, j.kind, j.args::text AS args, j.attempt, j.lost_attempts,
                      j.max_attempts, j.priority, j.scheduled_at",
    trace_returning!(),
    "
        )
        SELECT claimed.*, p.n AS promoted, EXISTS (SELECT 1 FROM me) AS alive,
               EXISTS (SELECT 1 FROM q WHERE q.limited) AS queue_limited,
               NULL::float8 AS held_ms, (",
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
    /// Whether the queue has a limit of its own: the plain claim then takes
    /// nothing from it, and the limited claim takes everything.
    pub queue_limited: bool,
    /// A limit held a waiting job back: how long until a rate limit lets
    /// one more start (zero for a concurrency limit). `None` otherwise.
    pub held: Option<std::time::Duration>,
}

impl Claim {
    /// The answer of a claim that was not made, there being no room: no
    /// job, nothing promoted, the worker taken for alive and the queue's
    /// limit as last known (`queue_limited`), until the next claim says.
    pub(crate) fn nothing(queue_limited: bool) -> Claim {
        Claim {
            jobs: Vec::new(),
            promoted: 0,
            alive: true,
            next_due: None,
            queue_limited,
            held: None,
        }
    }
}

/// Claims up to `limit` due jobs of `queue` whose kind this worker knows, in
/// (priority, scheduled_at, id) order, skipping rows other workers hold, and
/// makes due future jobs available (see [`CLAIM_SQL`]); with `backlog`,
/// passing over rows other claims hold without trying their locks.
pub(crate) async fn claim_batch(
    conn: &mut PgConnection,
    queue: &str,
    kinds: &[String],
    limit: i64,
    worker_id: i64,
    claim_at: DateTime<Utc>,
    backlog: bool,
) -> sqlx::Result<Claim> {
    let rows = sqlx::query(CLAIM_SQL)
        .bind(queue)
        .bind(kinds)
        .bind(limit)
        .bind(worker_id)
        .bind(claim_at)
        .bind(backlog)
        .fetch_all(conn)
        .await?;
    read_claim(&rows)
}

/// Reads a claim's rows: the plain claim's and the limited claim's have the
/// same columns.
pub(crate) fn read_claim(rows: &[PgRow]) -> sqlx::Result<Claim> {
    let first = rows
        .first()
        .ok_or_else(|| sqlx::Error::Protocol("the claim returned no row".into()))?;
    let promoted: i64 = first.try_get("promoted")?;
    let alive: bool = first.try_get("alive")?;
    let next_due_ms: Option<f64> = first.try_get("next_due_ms")?;
    let queue_limited: bool = first.try_get("queue_limited")?;
    let held_ms: Option<f64> = first.try_get("held_ms")?;
    // The limited claim (`jobq_claim_limited`, a function of fixed columns)
    // returns no trace context: `claim_limited` reads its jobs' afterwards.
    // Looked up once per claim, not per row.
    #[cfg(feature = "opentelemetry")]
    let traced = first.try_column("trace_context").is_ok();
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
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
            #[cfg(feature = "opentelemetry")]
            trace_context: match traced {
                true => r.try_get("trace_context")?,
                false => None,
            },
        });
    }
    jobs.sort_by_key(|j| (j.priority, j.scheduled_at, j.id));
    Ok(Claim {
        jobs,
        promoted,
        alive,
        next_due: next_due_ms.map(millis_to_duration),
        queue_limited,
        held: held_ms.map(millis_to_duration),
    })
}

/// Puts back the jobs of claims whose answer never reached this worker (the
/// connection failed mid-claim, perhaps after the claim committed): none of
/// them was started. Each claim is known by its `claim_at` stamp. The caller
/// first makes sure the session that ran the claims is gone
/// ([`terminate`](super::terminate)): a claim still running there could otherwise commit
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

/// What [`mark_started`] runs: `$1` job, `$2` worker, `$3` attempt. By id:
/// `state` is compared as text so that no plan reads the worker's running
/// jobs through `jobq_jobs_running` instead (see `fenced!` in `finish.rs`).
/// Reachable from `__private` for the tests.
pub const MARK_STARTED_SQL: &str = "UPDATE jobq_jobs SET started_attempt = $3
         WHERE id = $1 AND attempt = $3 AND attempted_by = $2 AND state::text = 'running'";

/// Records that this worker starts attempt `attempt` of suspect job `id`
/// (see [`SUSPECT_LOST_ATTEMPTS`](super::SUSPECT_LOST_ATTEMPTS)), so that losing it counts.
pub(crate) async fn mark_started(
    conn: &mut PgConnection,
    worker_id: i64,
    id: i64,
    attempt: i32,
) -> sqlx::Result<()> {
    sqlx::query(MARK_STARTED_SQL)
        .bind(id)
        .bind(worker_id)
        .bind(attempt)
        .execute(conn)
        .await?;
    Ok(())
}
