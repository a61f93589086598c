//! Cron ticks: each enqueued once across every process.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::NewJob;

/// How long a cron tick's row is kept at least after it finished, whatever
/// the retention: a worker that comes back late with the same tick (within
/// this time) still finds the row, and its key. Older ticks are refused by
/// [`insert_cron_tick`] instead.
pub(crate) const CRON_TICK_MIN_KEEP_MS: i64 = 3_600_000;

/// The latest tick enqueued for cron job `name`; records `now` as its start
/// when the job has never ticked. Returns the tick and whether this call
/// recorded it.
///
/// Always returns the row, even when many workers register the job at once:
/// `DO UPDATE` waits for a concurrent insert of the same name to commit and
/// then locks and returns that row, which `DO NOTHING` followed by a read
/// would miss (the statement's snapshot predates the other insert). The
/// update changes nothing (the name to itself); a row the statement updated
/// has a non-zero `xmax`, one it inserted has none.
pub(crate) async fn cron_last_tick(
    pool: &PgPool,
    name: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<(DateTime<Utc>, bool)> {
    let row = sqlx::query(
        "INSERT INTO jobq_cron (name, last_tick) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET name = excluded.name
        RETURNING last_tick, (xmax::text = '0') AS first",
    )
    .bind(name)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("last_tick")?, row.try_get("first")?))
}

/// The unique key of cron job `kind`'s tick `tick`.
pub(crate) fn cron_tick_key(kind: &str, tick: DateTime<Utc>) -> String {
    format!("{kind}:cron:{}", tick.to_rfc3339())
}

/// Enqueues one cron tick of `job` at `tick`, once across every process:
/// its unique key holds in every state, so a second insert of the same tick
/// is a no-op. Records the tick as the job's latest. Returns whether this
/// call inserted it.
///
/// The key is jobq's own (bit 128 of `unique_states`, which is no state), so
/// the pruner deletes the tick's row once it is old: the row is kept at least
/// [`CRON_TICK_MIN_KEEP_MS`] after it finished, and a tick that is older than
/// that and not newer than the job's latest recorded tick is refused here, so
/// a worker that comes back very late cannot run a pruned tick again.
pub(crate) async fn insert_cron_tick(
    pool: &PgPool,
    job: &NewJob,
    tick: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let key = cron_tick_key(job.kind, tick);
    debug_assert_eq!(job.run_at, Some(tick), "a tick's job runs at the tick");
    let inserted: i64 = bind_job!(
        sqlx::query_scalar(concat!(
            "WITH ins AS (
            INSERT INTO jobq_jobs (",
            job_columns!(),
            ", unique_key, unique_states)
            SELECT ",
            job_values!(),
            ", $9, 255
            WHERE NOT EXISTS (
                SELECT 1 FROM jobq_cron
                WHERE name = $1 AND last_tick >= $6
                  AND $6 < now() - $10 * interval '1 millisecond')
            ",
            on_key_held_do_nothing!(),
            " RETURNING id, queue
        ),
        mark AS (
            INSERT INTO jobq_cron (name, last_tick) VALUES ($1, $6)
            ON CONFLICT (name) DO UPDATE
                SET last_tick = greatest(jobq_cron.last_tick, excluded.last_tick),
                    updated_at = now()
        ),
        told AS (SELECT pg_notify('",
            insert_channel!(),
            "', queue) FROM ins)
        SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM told)"
        )),
        job
    )
    .bind(key)
    .bind(CRON_TICK_MIN_KEEP_MS)
    .fetch_one(pool)
    .await?;
    Ok(inserted > 0)
}
