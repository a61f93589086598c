//! SQL for unique jobs, delayed jobs, cron ticks, queue control and stats.

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sqlx::{Connection, PgConnection, PgPool, Row};

use super::NewJob;

/// How long a cron tick's row is kept at least after it finished, whatever
/// the retention: a worker that comes back late with the same tick (within
/// this time) still finds the row, and its key. Older ticks are refused by
/// [`insert_cron_tick`] instead.
pub(crate) const CRON_TICK_MIN_KEEP_MS: i64 = 3_600_000;

/// The longest unique key stored as it is. A btree entry holds at most about
/// 2.7 kB, and a `unique = "args"` key is as long as the arguments: a longer
/// key is stored as its SHA-256 instead (`sha256:` and 64 hex digits), which
/// no two keys share in practice. Short keys, most of them, cost nothing more.
pub(crate) const MAX_STORED_KEY: usize = 512;

/// The unique key as stored and indexed: `key` itself, or its SHA-256 when
/// longer than [`MAX_STORED_KEY`] bytes.
pub(crate) fn stored_unique_key(key: String) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    if key.len() <= MAX_STORED_KEY {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut stored = String::with_capacity(7 + 64);
    stored.push_str("sha256:");
    for byte in digest {
        let _ = write!(stored, "{byte:02x}");
    }
    stored
}

/// A unique key and the states in which it holds, for one insert.
pub(crate) struct Unique {
    pub key: String,
    pub states: i32,
    /// When the key's window ends (`unique_for`), after which no enqueue
    /// uses this key again; `None` when it has no window.
    pub until: Option<DateTime<Utc>>,
}

/// Inserts one unique job, or finds the job that already holds its key.
/// Never raises a unique violation, so the caller's transaction stays usable.
/// Returns the id and whether it was a duplicate.
pub(crate) async fn insert_unique(
    conn: &mut PgConnection,
    job: &NewJob,
    unique: &Unique,
) -> sqlx::Result<(i64, bool)> {
    // The key's holder can leave its unique states between the two
    // statements; then the insert is tried again.
    for _ in 0..5 {
        let inserted: Option<i64> = sqlx::query_scalar(concat!(
            "INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts, scheduled_at,
                                   state, unique_key, unique_states, unique_until)
            VALUES ($1, $2, $3::jsonb, $4, $5, coalesce($6, now()),
                    CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available' END::jobq_state,
                    $7, $8, $9)
            ON CONFLICT (unique_key)
                WHERE unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0
                DO NOTHING
            RETURNING id, ",
            notify_if_asleep!("queue")
        ))
        .bind(job.kind)
        .bind(&job.queue)
        .bind(&job.args)
        .bind(job.priority)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(&unique.key)
        .bind(unique.states)
        .bind(unique.until)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = inserted {
            return Ok((id, false));
        }
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobq_jobs
             WHERE unique_key = $1 AND (unique_states & jobq_state_bit(state)) <> 0",
        )
        .bind(&unique.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = existing {
            return Ok((id, true));
        }
    }
    Err(sqlx::Error::Protocol(format!(
        "unique job key {:?} kept changing hands; gave up after 5 tries",
        unique.key
    )))
}

/// Inserts unique jobs with one statement, or finds the jobs that already
/// hold their keys; returns each job's id in input order. Every job must
/// share the first's kind, queue, priority and attempt budget, and be due now
/// (what `enqueue_many` builds). Two jobs of the batch with the same key make
/// one job. Never raises a unique violation.
///
/// The insert skips every key already held, waiting first for a holder that
/// has not committed yet. A second statement, with a snapshot of its own,
/// then finds the holders of the skipped keys; a key still without one (its
/// holder left its unique states meanwhile) is settled by [`insert_unique`].
///
/// Rows go in in key order, so two batches over the same keys wait on each
/// other's keys in the same order and never deadlock each other. A batch does
/// hold the keys it inserted while it waits for later ones, as a transaction
/// that enqueues several unique jobs does, so it can deadlock with such a
/// transaction taking the same keys in another order. Outside a transaction,
/// when PostgreSQL picks the batch to abort, nothing of it is kept, and the
/// jobs are settled one by one, each statement committing on its own.
pub(crate) async fn insert_unique_many(
    conn: &mut PgConnection,
    jobs: &[(NewJob, Unique)],
) -> sqlx::Result<Vec<i64>> {
    let Some((first, _)) = jobs.first() else {
        return Ok(Vec::new());
    };
    debug_assert!(jobs.iter().all(|(j, _)| j.kind == first.kind
        && j.queue == first.queue
        && j.priority == first.priority
        && j.max_attempts == first.max_attempts
        && j.run_at.is_none()));
    let args: Vec<&str> = jobs.iter().map(|(j, _)| j.args.as_str()).collect();
    let keys: Vec<&str> = jobs.iter().map(|(_, u)| u.key.as_str()).collect();
    let states: Vec<i32> = jobs.iter().map(|(_, u)| u.states).collect();
    let until: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|(_, u)| u.until).collect();
    // Outside a transaction, the statement is one of its own.
    let autocommit = !conn.is_in_transaction();
    // The notification is an InitPlan: run once, and only if a row went in.
    let inserted: sqlx::Result<Vec<(String, i64, Option<String>)>> = sqlx::query_as(concat!(
        "WITH ins AS (
            INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts,
                                   unique_key, unique_states, unique_until)
            SELECT $1, $2, a::jsonb, $3, $4, k, s, u
            FROM unnest($5::text[], $6::text[], $7::int4[], $8::timestamptz[])
                WITH ORDINALITY AS t(a, k, s, u, ord)
            ORDER BY k COLLATE \"C\", ord
            ON CONFLICT (unique_key)
                WHERE unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0
                DO NOTHING
            RETURNING id, unique_key
        )
        SELECT unique_key, id, (SELECT ",
        notify_if_asleep!("$2"),
        ") FROM ins"
    ))
    .bind(first.kind)
    .bind(&first.queue)
    .bind(first.priority)
    .bind(first.max_attempts)
    .bind(&args)
    .bind(&keys)
    .bind(&states)
    .bind(&until)
    .fetch_all(&mut *conn)
    .await;
    let inserted = match inserted {
        Ok(rows) => rows,
        Err(e) if autocommit && is_deadlock(&e) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut ids: HashMap<&str, i64> = HashMap::with_capacity(jobs.len());
    for (key, id, _) in &inserted {
        if ids.insert(key.as_str(), *id).is_some() {
            return Err(sqlx::Error::Protocol(format!(
                "unique job key {key:?} was inserted twice by one batch"
            )));
        }
    }
    let mut missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !ids.contains_key(k))
        .collect();
    let held: Vec<(String, i64)> = if missing.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT unique_key, id FROM jobq_jobs
             WHERE unique_key = ANY($1) AND (unique_states & jobq_state_bit(state)) <> 0",
        )
        .bind(&missing)
        .fetch_all(&mut *conn)
        .await?
    };
    for (key, id) in &held {
        ids.insert(key.as_str(), *id);
    }
    // What is left goes one by one, in the same key order (byte order, as
    // `COLLATE "C"` above).
    missing.retain(|k| !ids.contains_key(k));
    missing.sort_unstable();
    missing.dedup();
    let mut settled = Vec::with_capacity(missing.len());
    for key in missing {
        let (job, unique) = jobs
            .iter()
            .find(|(_, u)| u.key == key)
            .expect("a missing key is one of the batch's");
        settled.push((key, insert_unique(conn, job, unique).await?.0));
    }
    ids.extend(settled);
    Ok(keys.iter().map(|k| ids[k]).collect())
}

/// Whether `e` is PostgreSQL's `deadlock_detected` (40P01).
fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01")
}

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
    let key = format!("{}:cron:{}", job.kind, tick.to_rfc3339());
    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS (
            INSERT INTO jobq_jobs (kind, queue, args, priority, max_attempts, scheduled_at,
                                   state, unique_key, unique_states)
            SELECT $1, $2, $3::jsonb, $4, $5, $6,
                   CASE WHEN $6 > now() THEN 'scheduled' ELSE 'available' END::jobq_state,
                   $7, 255
            WHERE NOT EXISTS (
                SELECT 1 FROM jobq_cron
                WHERE name = $1 AND last_tick >= $6
                  AND $6 < now() - $8 * interval '1 millisecond')
            ON CONFLICT (unique_key)
                WHERE unique_key IS NOT NULL AND (unique_states & jobq_state_bit(state)) <> 0
                DO NOTHING
            RETURNING id, queue
        ),
        mark AS (
            INSERT INTO jobq_cron (name, last_tick) VALUES ($1, $6)
            ON CONFLICT (name) DO UPDATE
                SET last_tick = greatest(jobq_cron.last_tick, excluded.last_tick),
                    updated_at = now()
        ),
        told AS (SELECT pg_notify('jobq_insert', queue) FROM ins)
        SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM told)",
    )
    .bind(job.kind)
    .bind(&job.queue)
    .bind(&job.args)
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(tick)
    .bind(key)
    .bind(CRON_TICK_MIN_KEEP_MS)
    .fetch_one(pool)
    .await?;
    Ok(inserted > 0)
}

/// Pauses (`paused = true`) or resumes a queue and tells every worker.
pub(crate) async fn set_paused(
    conn: &mut PgConnection,
    queue: &str,
    paused: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH q AS (
            INSERT INTO jobq_queues (name, paused_at) VALUES ($1, CASE WHEN $2 THEN now() END)
            ON CONFLICT (name) DO UPDATE
                SET paused_at = CASE WHEN $2 THEN coalesce(jobq_queues.paused_at, now()) END,
                    updated_at = now()
            RETURNING name
        )
        SELECT pg_notify('jobq_insert', name) FROM q",
    )
    .bind(queue)
    .bind(paused)
    .execute(conn)
    .await?;
    Ok(())
}

/// One row of [`stats`]: a queue, a state, how many jobs, and the oldest
/// due time among the claimable ones.
pub(crate) struct StatRow {
    pub queue: String,
    pub state: String,
    pub count: i64,
    pub oldest_due: Option<DateTime<Utc>>,
    pub paused: bool,
    pub now: DateTime<Utc>,
}

/// Counts jobs per queue and state, with paused queues that hold no job.
pub(crate) async fn stats(pool: &PgPool) -> sqlx::Result<Vec<StatRow>> {
    let rows = sqlx::query(
        "WITH counts AS (
            SELECT queue, state::text AS state, count(*) AS n,
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
                state: r.try_get::<Option<String>, _>("state")?.unwrap_or_default(),
                count: r.try_get("n")?,
                oldest_due: r.try_get("oldest_due")?,
                paused: r.try_get::<Option<bool>, _>("paused")?.unwrap_or(false),
                now: r.try_get("now")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_unique_keys_are_stored_as_their_sha256() {
        let short = "k".repeat(MAX_STORED_KEY);
        assert_eq!(stored_unique_key(short.clone()), short);
        let long = stored_unique_key("k".repeat(MAX_STORED_KEY + 1));
        assert_eq!(long.len(), 7 + 64);
        assert!(long.starts_with("sha256:"), "{long}");
        assert_ne!(long, stored_unique_key("j".repeat(MAX_STORED_KEY + 1)));
        // The same key, the same stored key.
        assert_eq!(long, stored_unique_key("k".repeat(MAX_STORED_KEY + 1)));
        // As any SHA-256 tool computes it.
        assert_eq!(
            long,
            "sha256:45a7c7ef95c3417e800362f5672aba16da807261fe7121f3a81b0a0fb6b9a05c"
        );
    }
}
