//! Jobs by filter: the filter's SQL, pages, one job, counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::admin::{JobFilter, JobSummary};
use crate::job::JobState;

/// Appends `filter` to a `WHERE` clause, as `AND ...` conditions (start the
/// clause with `TRUE`). States are written as literals (they are the enum's
/// fixed names), so the planner may match them against the partial indexes;
/// a filter on finished states only also gets [`finished_rows!`], so those
/// states are read through `jobq_jobs_prunable` and `jobq_jobs_unique`
/// rather than the whole table. Everything else is bound.
pub(crate) fn push_filter(qb: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
    if !filter.ids.is_empty() {
        qb.push(" AND id = ANY(")
            .push_bind(filter.ids.clone())
            .push(")");
    }
    if !filter.states.is_empty() {
        let names: Vec<String> = filter
            .states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        qb.push(" AND state IN (").push(names.join(", ")).push(")");
        if filter.states.iter().all(|s| s.is_finished()) {
            qb.push(concat!(" AND ", finished_rows!()));
        }
    }
    if !filter.queues.is_empty() {
        qb.push(" AND queue = ANY(")
            .push_bind(filter.queues.clone())
            .push(")");
    }
    if !filter.kinds.is_empty() {
        qb.push(" AND kind = ANY(")
            .push_bind(filter.kinds.clone())
            .push(")");
    }
    if let Some(args) = &filter.args {
        qb.push(" AND args @> ")
            .push_bind(args.clone())
            .push("::jsonb");
    }
    if let Some(since) = filter.since {
        qb.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND created_at < ").push_bind(until);
    }
}

/// The columns of a [`JobSummary`], read by [`summary`].
macro_rules! summary_columns {
    () => {
        "id, kind, queue, state, priority, attempt, max_attempts, created_at, scheduled_at,
         attempted_at, finalized_at, attempted_by, left(args::text, 200) AS args_preview,
         left(CASE WHEN jsonb_typeof(errors) = 'array' THEN errors -> -1 ->> 'error' END, 200)
             AS last_error"
    };
}

fn summary(r: &PgRow) -> sqlx::Result<JobSummary> {
    Ok(JobSummary {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        queue: r.try_get("queue")?,
        state: r.try_get("state")?,
        priority: r.try_get("priority")?,
        attempt: r.try_get("attempt")?,
        max_attempts: r.try_get("max_attempts")?,
        created_at: r.try_get("created_at")?,
        scheduled_at: r.try_get("scheduled_at")?,
        attempted_at: r.try_get("attempted_at")?,
        finalized_at: r.try_get("finalized_at")?,
        attempted_by: r.try_get("attempted_by")?,
        args_preview: r.try_get("args_preview")?,
        last_error: r.try_get("last_error")?,
    })
}

/// Runs `qb` on a connection with JIT off, in a transaction of its own: the
/// queries here vary with the filter and run once each, and compiling one
/// costs more (up to 0.2 s) than running it. States are literals in the
/// text (see [`push_filter`]), so even a generic plan may use the partial
/// indexes.
async fn fetch_all(pool: &PgPool, qb: &mut QueryBuilder<Postgres>) -> sqlx::Result<Vec<PgRow>> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    no_jit(&mut tx).await?;
    let rows = qb.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Turns JIT off for the rest of the transaction.
pub(crate) async fn no_jit(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('jit', 'off', true)")
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `limit` jobs matching `filter` with an id below `before`, newest
/// first. The planner picks between walking the primary key backwards
/// (when matches are many) and the partial index of the filtered state
/// (when they are few).
pub(crate) async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<JobSummary>> {
    let mut qb = QueryBuilder::new(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM jobq_jobs WHERE TRUE"
    ));
    push_filter(&mut qb, filter);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before);
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    fetch_all(pool, &mut qb)
        .await?
        .iter()
        .map(summary)
        .collect()
}

/// One entry of a job's error history, as written by the completer and the
/// rescuer; fields missing from older entries are `None`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub attempt: i32,
    pub at: Option<DateTime<Utc>>,
    pub kind: Option<String>,
    pub error: Option<String>,
    pub worker: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
}

/// One job's row in full.
pub(crate) struct DetailRow {
    pub summary: JobSummary,
    pub args: serde_json::Value,
    pub metadata: serde_json::Value,
    pub tags: Vec<String>,
    pub unique_key: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub lost_attempts: i32,
    pub errors: Vec<ErrorEntry>,
}

/// Job `id` in full.
pub(crate) async fn job_detail(pool: &PgPool, id: i64) -> sqlx::Result<Option<DetailRow>> {
    let Some(r) = sqlx::query(concat!(
        "SELECT ",
        summary_columns!(),
        ", args, metadata, tags, unique_key, cancel_requested_at, lost_attempts,
           CASE WHEN jsonb_typeof(errors) = 'array' THEN errors ELSE jsonb_build_array(errors) END
               AS errors
         FROM jobq_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let errors: serde_json::Value = r.try_get("errors")?;
    // An entry written by hand that does not read as one is skipped, not
    // an error: the rest of the job is still worth showing.
    let errors = match errors {
        serde_json::Value::Array(entries) => entries
            .into_iter()
            .filter_map(|e| serde_json::from_value(e).ok())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(DetailRow {
        summary: summary(&r)?,
        args: r.try_get("args")?,
        metadata: r.try_get("metadata")?,
        tags: r.try_get("tags")?,
        unique_key: r.try_get("unique_key")?,
        cancel_requested_at: r.try_get("cancel_requested_at")?,
        lost_attempts: r.try_get("lost_attempts")?,
        errors,
    }))
}

/// How many jobs match `filter`, per state.
pub(crate) async fn count_by_state(
    pool: &PgPool,
    filter: &JobFilter,
) -> sqlx::Result<BTreeMap<JobState, i64>> {
    let mut qb = QueryBuilder::new("SELECT state, count(*) AS n FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter);
    qb.push(" GROUP BY state");
    fetch_all(pool, &mut qb)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

/// How many jobs match `filter`, counting at most `cap + 1`.
pub(crate) async fn count_capped(pool: &PgPool, filter: &JobFilter, cap: i64) -> sqlx::Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) AS n FROM (SELECT 1 FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter);
    qb.push(" LIMIT ")
        .push_bind(cap.saturating_add(1))
        .push(") AS c");
    let rows = fetch_all(pool, &mut qb).await?;
    rows.first().map_or(Ok(0), |r| r.try_get("n"))
}

/// The planner's estimate of how many jobs match `filter` (from the
/// table's statistics; reads no row).
pub(crate) async fn estimate_matching(pool: &PgPool, filter: &JobFilter) -> sqlx::Result<i64> {
    let mut qb = QueryBuilder::new("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter);
    let rows = fetch_all(pool, &mut qb).await?;
    let plan: serde_json::Value = match rows.first() {
        Some(r) => r.try_get(0)?,
        None => return Ok(0),
    };
    Ok(plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(|v| v.as_f64())
        .map_or(0, |n| n as i64))
}
