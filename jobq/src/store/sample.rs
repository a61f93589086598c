//! The metrics sampler's reads: unfinished jobs per queue and state, each
//! queue's lag, live workers, read by one worker and shared with the others
//! through `jobq_metrics_sample` (migration 14).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::types::Json;
use sqlx::{Connection, PgConnection, Row};

use super::Lock;
use crate::job::JobState;

/// One queue in a [`Sample`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueueSample {
    pub queue: String,
    /// Unfinished jobs per state; a state without jobs is left out.
    pub counts: Vec<(JobState, i64)>,
    /// Age of the oldest due job not yet started (zero when none waits).
    pub lag: Duration,
}

/// What one sample read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Every queue holding an unfinished job, by name.
    pub queues: Vec<QueueSample>,
    /// Workers whose lease is live.
    pub workers: i64,
}

/// Counts per queue and unfinished state, and the oldest due time of each,
/// in one statement. Each part matches the predicate of one of the claim's
/// partial indexes (`jobq_jobs_ready`, `jobq_jobs_due`, `jobq_jobs_running`)
/// or of `jobq_jobs_pending` (`deps_left` is set exactly while a job is
/// `pending`),
/// so the statement reads unfinished jobs only: finished history, however
/// long, costs it nothing: exact counts, about 0.3 µs per available job
/// (counted from the index alone, which holds `queue` and `scheduled_at`,
/// where the visibility map allows) and 1 µs per waiting one. Finished jobs
/// are not counted: `jobq_attempts_total` counts how jobs end.
const SAMPLE_SQL: &str = "
    SELECT queue, 'available' AS state, count(*) AS n,
           extract(epoch FROM now() - min(scheduled_at))::float8 AS lag_s
    FROM jobq_jobs WHERE state = 'available'
    GROUP BY queue
    UNION ALL
    SELECT queue, state::text, count(*),
           extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE scheduled_at <= now()))::float8
    FROM jobq_jobs WHERE state IN ('scheduled', 'retryable')
    GROUP BY queue, state
    UNION ALL
    SELECT queue, 'running', count(*), NULL
    FROM jobq_jobs WHERE state = 'running'
    GROUP BY queue
    UNION ALL
    SELECT queue, 'pending', count(*), NULL
    FROM jobq_jobs WHERE deps_left IS NOT NULL
    GROUP BY queue";

/// Workers whose heartbeat is within their lease (30 s for a row that
/// records none).
const LIVE_WORKERS_SQL: &str =
    concat!("SELECT count(*) FROM jobq_workers w WHERE ", live_worker!());

/// One row of [`SAMPLE_SQL`], as stored in `jobq_metrics_sample.counts`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Part {
    queue: String,
    state: String,
    n: i64,
    lag_s: Option<f64>,
}

/// Reads the shared reading when it is younger than its argument.
const STORED_SQL: &str = "
    SELECT counts, workers FROM jobq_metrics_sample
    WHERE taken_at > clock_timestamp() - $1 * interval '1 millisecond'";

/// Stores a reading for the other workers.
const STORE_SQL: &str = "
    INSERT INTO jobq_metrics_sample (taken_at, counts, workers)
    VALUES (clock_timestamp(), $1, $2)
    ON CONFLICT (one) DO UPDATE SET
        taken_at = excluded.taken_at, counts = excluded.counts,
        workers = excluded.workers, readings = jobq_metrics_sample.readings + 1";

/// The first pause between two tries for [`Lock::Sample`]; it doubles up
/// to [`TURN_PAUSE_MAX`].
const TURN_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between two tries for [`Lock::Sample`].
const TURN_PAUSE_MAX: Duration = Duration::from_millis(200);
/// How long a sampler waits for another's reading before it reads the
/// table itself: far longer than a scan (220 ms at 10 million rows, below).
const TURN_WAIT: Duration = Duration::from_secs(30);

/// Reads a [`Sample`]: the shared one (`jobq_metrics_sample`) while it is
/// younger than `fresh`, else a new reading of the jobs table, stored there
/// for the other workers. The reader holds [`Lock::Sample`] while it reads,
/// so one that comes meanwhile waits for that reading and takes it, rather
/// than scanning again: N workers cost one scan per `fresh`, not N.
///
/// It waits between tries of the lock, outside any statement: a statement
/// blocked on the lock would hold its snapshot, and with it the cleanup of
/// every row other sessions update meanwhile. When every worker started at
/// once, 16 of them queued that way for up to a second, and the claims
/// behind them read ever more dead index entries. A holder stuck past
/// [`TURN_WAIT`] is not waited for: this sampler reads the table itself.
pub(crate) async fn sample(conn: &mut PgConnection, fresh: Duration) -> sqlx::Result<Sample> {
    let fresh_ms = fresh.as_secs_f64() * 1000.0;
    let waited = std::time::Instant::now();
    let mut pause = TURN_PAUSE;
    let (parts, workers) = loop {
        if let Some(stored) = stored(&mut *conn, fresh_ms).await? {
            break stored;
        }
        let mut tx = conn.begin().await?;
        let turn: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(Lock::Sample.key())
            .fetch_one(&mut *tx)
            .await?;
        if turn || waited.elapsed() >= TURN_WAIT {
            // Another reading may have been stored since the look above.
            let reading = match stored(&mut tx, fresh_ms).await? {
                Some(stored) => stored,
                None => read_and_store(&mut tx).await?,
            };
            tx.commit().await?;
            break reading;
        }
        tx.rollback().await?;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(TURN_PAUSE_MAX);
    };
    let mut queues: BTreeMap<String, QueueSample> = BTreeMap::new();
    for Part {
        queue,
        state,
        n,
        lag_s,
    } in parts
    {
        let Some(state) = JobState::from_name(&state) else {
            continue;
        };
        let lag = Duration::from_secs_f64(lag_s.unwrap_or(0.0).clamp(0.0, 1e12));
        let q = queues.entry(queue).or_insert_with_key(|queue| QueueSample {
            queue: queue.clone(),
            counts: Vec::with_capacity(4),
            lag: Duration::ZERO,
        });
        q.counts.push((state, n));
        q.lag = q.lag.max(lag);
    }
    Ok(Sample {
        queues: queues.into_values().collect(),
        workers,
    })
}

/// The shared reading, when it is younger than `fresh_ms`.
async fn stored(conn: &mut PgConnection, fresh_ms: f64) -> sqlx::Result<Option<(Vec<Part>, i64)>> {
    let Some(row) = sqlx::query(STORED_SQL)
        .bind(fresh_ms)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let Json(parts): Json<Vec<Part>> = row.try_get("counts")?;
    Ok(Some((parts, row.try_get("workers")?)))
}

/// Reads the jobs table and the live workers, and stores the reading for
/// the other workers.
async fn read_and_store(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> sqlx::Result<(Vec<Part>, i64)> {
    // Compiling the statement (planned above JIT's threshold on big
    // tables) took longer than running it: 430 ms against 220 ms, with
    // 450,000 unfinished jobs among 10 million.
    super::no_jit(tx).await?;
    let parts = sqlx::query(SAMPLE_SQL)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            Ok(Part {
                queue: r.try_get("queue")?,
                state: r.try_get("state")?,
                n: r.try_get("n")?,
                lag_s: r.try_get("lag_s")?,
            })
        })
        .collect::<sqlx::Result<Vec<Part>>>()?;
    let workers: i64 = sqlx::query_scalar(LIVE_WORKERS_SQL)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(STORE_SQL)
        .bind(Json(&parts))
        .bind(workers)
        .execute(&mut **tx)
        .await?;
    Ok((parts, workers))
}
