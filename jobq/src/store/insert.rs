//! Inserting jobs: one, a batch, unique ones.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Row};

use crate::limit::JobLimits;
use crate::queue::QueueName;

/// A job about to be inserted.
#[derive(Debug)]
pub(crate) struct NewJob {
    pub kind: &'static str,
    /// Its job's limits: a limited job gets its `limit_key`.
    pub limits: JobLimits,
    pub queue: QueueName,
    pub args: String,
    pub priority: i16,
    pub max_attempts: i32,
    pub run_at: Option<DateTime<Utc>>,
    /// The W3C trace context of the enqueue, as JSON (see `crate::trace`).
    #[cfg(feature = "opentelemetry")]
    pub trace: Option<String>,
}

/// Inserts one job and notifies its queue if a producer sleeps on it, in one
/// round trip.
pub(crate) async fn insert_one(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<i64> {
    bind_trace!(
        bind_job!(
            sqlx::query_scalar(concat!(
                "INSERT INTO jobq_jobs (",
                job_columns!(),
                trace_column!(),
                ") VALUES (",
                job_values!(),
                trace_value!("$9"),
                ") RETURNING id, ",
                notify_if_asleep!("queue")
            )),
            job
        ),
        &job.trace
    )
    .fetch_one(conn)
    .await
}

/// Jobs of one kind, queue, priority and attempt budget, due now: what
/// `enqueue_many` inserts.
pub(crate) struct NewBatch<'a> {
    pub kind: &'static str,
    /// Its job's limits: a limited job gets its `limit_key`.
    pub limits: JobLimits,
    pub queue: &'a QueueName,
    pub priority: i16,
    pub max_attempts: i32,
    /// Each job's arguments, as JSON.
    pub args: Vec<String>,
    /// The W3C trace context of the enqueue, as JSON, for every job.
    #[cfg(feature = "opentelemetry")]
    pub trace: Option<String>,
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
    let query = sqlx::query(concat!(
        "WITH ins AS (
            INSERT INTO jobq_jobs (",
        batch_columns!(),
        trace_column!(),
        ")
            SELECT $1, $2, a::jsonb, $3, $4, ",
        limit_key_sql!("a", "$6", "$7"),
        trace_value!("$8"),
        " FROM unnest($5::text[]) AS a
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
    .bind(batch.limits.is_limited().then_some(batch.kind))
    .bind(batch.limits.partition);
    let row = bind_trace!(query, &batch.trace).fetch_one(conn).await?;
    row.try_get("ids")
}

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
        let query = bind_job!(
            sqlx::query_scalar(concat!(
                "INSERT INTO jobq_jobs (",
                job_columns!(),
                ", unique_key, unique_states, unique_until",
                trace_column!(),
                ") VALUES (",
                job_values!(),
                ", $9, $10, $11",
                trace_value!("$12"),
                ") ",
                on_key_held_do_nothing!(),
                " RETURNING id, ",
                notify_if_asleep!("queue")
            )),
            job
        )
        .bind(&unique.key)
        .bind(unique.states)
        .bind(unique.until);
        let inserted: Option<i64> = bind_trace!(query, &job.trace)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(id) = inserted {
            return Ok((id, false));
        }
        let existing: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT id FROM jobq_jobs WHERE unique_key = $1 AND ",
            key_holds!()
        ))
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
///
/// Returns the ids, and how many of the jobs were inserted (not found).
pub(crate) async fn insert_unique_many(
    conn: &mut PgConnection,
    jobs: &[(NewJob, Unique)],
) -> sqlx::Result<(Vec<i64>, u64)> {
    let Some((first, _)) = jobs.first() else {
        return Ok((Vec::new(), 0));
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
    let query = sqlx::query_as(concat!(
        "WITH ins AS (
            INSERT INTO jobq_jobs (",
        batch_columns!(),
        ", unique_key, unique_states, unique_until",
        trace_column!(),
        ")
            SELECT $1, $2, a::jsonb, $3, $4, ",
        limit_key_sql!("a", "$9", "$10"),
        ", k, s, u",
        trace_value!("$11"),
        "
            FROM unnest($5::text[], $6::text[], $7::int4[], $8::timestamptz[])
                WITH ORDINALITY AS t(a, k, s, u, ord)
            ORDER BY k COLLATE \"C\", ord
            ",
        on_key_held_do_nothing!(),
        " RETURNING id, unique_key
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
    .bind(first.limits.is_limited().then_some(first.kind))
    .bind(first.limits.partition);
    let inserted: sqlx::Result<Vec<(String, i64, Option<String>)>> =
        bind_trace!(query, &first.trace).fetch_all(&mut *conn).await;
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
        sqlx::query_as(concat!(
            "SELECT unique_key, id FROM jobq_jobs WHERE unique_key = ANY($1) AND ",
            key_holds!()
        ))
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
    let mut count = inserted.len() as u64;
    let mut settled = Vec::with_capacity(missing.len());
    for key in missing {
        let (job, unique) = jobs
            .iter()
            .find(|(_, u)| u.key == key)
            .expect("a missing key is one of the batch's");
        let (id, duplicate) = insert_unique(conn, job, unique).await?;
        count += u64::from(!duplicate);
        settled.push((key, id));
    }
    ids.extend(settled);
    Ok((keys.iter().map(|k| ids[k]).collect(), count))
}

/// Whether `e` is PostgreSQL's `deadlock_detected` (40P01).
fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01")
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
