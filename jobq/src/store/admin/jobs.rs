//! Jobs by filter: the filter's SQL, pages, one job, counts.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::admin::{JobFilter, JobSummary};
use crate::job::JobState;

/// Appends `filter` to a `WHERE` clause, as `AND ...` conditions (start the
/// clause with `TRUE`). States are written as literals (they are the enum's
/// fixed names), so the planner may match them against the partial indexes;
/// a filter on finished states only, `completed` among them, also gets
/// [`finished_rows!`], so those states are read through
/// `jobq_jobs_prunable` and `jobq_jobs_finished_held` rather than the whole
/// table (discarded and cancelled alone through `jobq_jobs_failed`). A time
/// range is also written as the id range it covers ([`IdRange`]), which the
/// primary key serves. Everything else is bound.
pub(crate) fn push_filter(qb: &mut QueryBuilder<Postgres>, filter: &JobFilter, range: IdRange) {
    range.push(qb);
    if !filter.ids.is_empty() {
        qb.push(" AND id = ANY(")
            .push_bind(filter.ids.clone())
            .push(")");
    }
    if !filter.states.is_empty() {
        let names: Vec<String> = filter
            .states
            .iter()
            .filter(|s| **s != JobState::Pending)
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        // Pending jobs, and only they, have `deps_left`: they are read
        // through `jobq_jobs_pending` (migration 11).
        let pending = "state = 'pending' AND deps_left IS NOT NULL";
        match (filter.states.contains(&JobState::Pending), names.is_empty()) {
            (true, true) => qb.push(" AND ").push(pending),
            (true, false) => qb
                .push(" AND (state IN (")
                .push(names.join(", "))
                .push(") OR (")
                .push(pending)
                .push("))"),
            (false, _) => qb.push(" AND state IN (").push(names.join(", ")).push(")"),
        };
        // Discarded and cancelled alone are read through jobq_jobs_failed.
        if filter.states.iter().all(|s| s.is_finished())
            && filter.states.contains(&JobState::Completed)
        {
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
        concat!(
            "id, kind, queue, state, priority, attempt, max_attempts, created_at, scheduled_at,
             attempted_at, finalized_at, attempted_by, left(args::text, 200) AS args_preview,
             left(",
            last_error!(),
            ", 200) AS last_error"
        )
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

/// Keeps the rest of the transaction's statements to one process each: the
/// overview runs every few seconds per open dashboard tab, and two parallel
/// workers per poll cost the server more than they save the page (on 2
/// cores, counting 300,000 failed jobs took 85 ms with them, 55 ms without).
pub(crate) async fn no_parallel(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
        .execute(conn)
        .await?;
    Ok(())
}

/// Turns JIT off for the rest of the transaction.
pub(crate) async fn no_jit(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('jit', 'off', true)")
        .execute(conn)
        .await?;
    Ok(())
}

/// The ids a filter's time range covers, found by [`id_range`]: ids grow
/// with the time jobs are enqueued, so the primary key serves a time range
/// as this id range.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IdRange {
    /// The first id that may be in the range.
    pub from: Option<i64>,
    /// The first id past it.
    pub below: Option<i64>,
}

impl IdRange {
    fn push(self, qb: &mut QueryBuilder<Postgres>) {
        if let Some(from) = self.from {
            qb.push(" AND id >= ").push_bind(from);
        }
        if let Some(below) = self.below {
            qb.push(" AND id < ").push_bind(below);
        }
    }
}

/// How far an id bound of [`id_range`] reaches past its time: a job is
/// stamped (`created_at = now()`) when its enqueueing transaction starts and
/// numbered when it inserts, so a transaction that ran longer than this
/// before inserting could put a job on the wrong side of a bound.
const ID_RANGE_SLACK: &str = "5 minutes";

/// The id range holding every job created in `[since, until)`, by a binary
/// search over the primary key (one index probe per step, about 24 at 10
/// million rows, whatever the range): the first id created at `since` less
/// [`ID_RANGE_SLACK`], and the first created at `until` plus it. The time
/// filter itself still applies to every row; the ids only keep the scan to
/// that part of the table.
pub(crate) async fn id_range(conn: &mut PgConnection, filter: &JobFilter) -> sqlx::Result<IdRange> {
    let mut range = IdRange::default();
    for (at, slack, bound) in [
        (filter.since, "-", &mut range.from),
        (filter.until, "+", &mut range.below),
    ] {
        let Some(at) = at else { continue };
        *bound = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH RECURSIVE search(lo, hi) AS (
                SELECT min(id) - 1, max(id) + 1 FROM jobq_jobs
              UNION ALL
                SELECT CASE WHEN p.id < s.hi AND p.created_at < t.at THEN p.id ELSE s.lo END,
                       CASE WHEN p.id IS NULL OR p.id >= s.hi THEN s.lo + (s.hi - s.lo) / 2
                            WHEN p.created_at < t.at THEN s.hi
                            ELSE p.id END
                FROM search s
                CROSS JOIN (SELECT $1::timestamptz {slack} interval '{ID_RANGE_SLACK}' AS at) t
                LEFT JOIN LATERAL (
                    SELECT id, created_at FROM jobq_jobs WHERE id >= s.lo + (s.hi - s.lo) / 2
                    ORDER BY id LIMIT 1) p ON true
                WHERE s.hi - s.lo > 1
            )
            SELECT hi FROM search ORDER BY hi - lo LIMIT 1"
        )))
        .bind(at)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(range)
}

/// [`id_range`] on a connection of its own.
pub(crate) async fn filter_id_range(pool: &PgPool, filter: &JobFilter) -> sqlx::Result<IdRange> {
    if filter.since.is_none() && filter.until.is_none() {
        return Ok(IdRange::default());
    }
    let mut conn = pool.acquire().await?;
    id_range(&mut conn, filter).await
}

/// Whether an index bounds the jobs `filter` may match, so that reading
/// every match costs little: ids (the primary key), or unfinished states
/// only (the claim's partial indexes, which hold the jobs waiting and
/// running, never the history). Any other filter reads the table newest
/// first, at most a window of jobs at a time (see [`list_jobs`]).
pub(crate) fn indexed(filter: &JobFilter) -> bool {
    !filter.ids.is_empty()
        || (!filter.states.is_empty() && filter.states.iter().all(|s| !s.is_finished()))
}

/// Whether `jobq_jobs.args` has a GIN index (one you create: jobq does
/// not, since every enqueue would pay for it), which serves an arguments
/// filter: `CREATE INDEX CONCURRENTLY ON jobq_jobs USING gin (args
/// jsonb_path_ops)`. Only a valid index on the column itself counts.
async fn args_indexed(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            JOIN pg_am am ON am.oid = c.relam
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
            WHERE i.indrelid = 'jobq_jobs'::regclass AND i.indisvalid AND am.amname = 'gin'
              AND i.indnatts = 1 AND a.attname = 'args'
              AND i.indpred IS NULL AND i.indexprs IS NULL)",
    )
    .fetch_one(conn)
    .await
}

/// Whether a read of `filter` goes through an index ([`indexed`], or an
/// arguments filter and the GIN index of [`args_indexed`]).
async fn read_indexed(conn: &mut PgConnection, filter: &JobFilter) -> sqlx::Result<bool> {
    Ok(indexed(filter) || (filter.args.is_some() && args_indexed(conn).await?))
}

/// Whether a count of `filter` is served by an index, though a list is not
/// ([`indexed`]): discarded and cancelled jobs by queue are counted from
/// `jobq_jobs_failed` alone (migration 10), up to the cap.
fn count_indexed(filter: &JobFilter) -> bool {
    indexed(filter)
        || (!filter.states.is_empty()
            && filter
                .states
                .iter()
                .all(|s| matches!(s, JobState::Discarded | JobState::Cancelled))
            && filter.kinds.is_empty()
            && filter.args.is_none()
            && filter.since.is_none()
            && filter.until.is_none())
}

/// Pushes the jobs a read looks at, as `FROM ... WHERE TRUE` with `filter`:
/// the whole table, or with `window`, only the newest `window` jobs below
/// `before` in the filter's id range (a scan of the primary key that stops
/// there, however few of them match).
fn push_source(
    qb: &mut QueryBuilder<Postgres>,
    filter: &JobFilter,
    range: IdRange,
    before: Option<i64>,
    window: Option<i64>,
) {
    let push_before = |qb: &mut QueryBuilder<Postgres>| {
        if let Some(before) = before {
            qb.push(" AND id < ").push_bind(before);
        }
    };
    match window {
        None => {
            qb.push(" FROM jobq_jobs WHERE TRUE");
            push_before(qb);
            push_filter(qb, filter, range);
        }
        Some(window) => {
            qb.push(" FROM (SELECT * FROM jobq_jobs WHERE TRUE");
            push_before(qb);
            range.push(qb);
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(window)
                .push(") AS j WHERE TRUE");
            push_filter(qb, filter, IdRange::default());
        }
    }
}

/// How much of the table a window read covered: how many jobs it looked at
/// and the oldest of them (an index-only scan of the primary key).
async fn window_extent(
    conn: &mut PgConnection,
    range: IdRange,
    before: Option<i64>,
    window: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    let mut qb = QueryBuilder::new(
        "SELECT count(*) AS n, min(id) AS oldest FROM (SELECT id FROM jobq_jobs WHERE TRUE",
    );
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before);
    }
    range.push(&mut qb);
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(window)
        .push(") AS w");
    let row = qb.build().fetch_one(conn).await?;
    Ok((row.try_get("n")?, row.try_get("oldest")?))
}

/// What [`list_jobs`] found.
pub(crate) struct ListRows {
    pub jobs: Vec<JobSummary>,
    /// When the read stopped at its window before filling the page: how
    /// many jobs it looked at, and the oldest of them (where to go on).
    pub stopped: Option<(i64, i64)>,
}

/// Up to `limit` jobs matching `filter` with an id below `before`, newest
/// first. A filter [`indexed`] (or on arguments, with a GIN index of yours
/// on them: [`args_indexed`]) is read through its index; any other walks
/// the primary key backwards and stops at the page, or after `window` jobs,
/// so a page never reads more than `window` rows however rare the matches
/// (arguments, a rare kind among millions of finished jobs).
pub(crate) async fn list_jobs(
    pool: &PgPool,
    filter: &JobFilter,
    before: Option<i64>,
    limit: i64,
    window: i64,
) -> sqlx::Result<ListRows> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    no_jit(&mut tx).await?;
    let range = id_range(&mut tx, filter).await?;
    let window = (!read_indexed(&mut tx, filter).await?).then_some(window.max(1));
    let mut qb = QueryBuilder::new(concat!("SELECT ", summary_columns!()));
    push_source(&mut qb, filter, range, before, window);
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    let jobs = qb
        .build()
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(summary)
        .collect::<sqlx::Result<Vec<_>>>()?;
    let mut stopped = None;
    if let Some(window) = window
        && (jobs.len() as i64) < limit
    {
        let (seen, oldest) = window_extent(&mut tx, range, before, window).await?;
        if seen == window {
            stopped = oldest.map(|oldest| (seen, oldest));
        }
    }
    tx.commit().await?;
    Ok(ListRows { jobs, stopped })
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

/// A job linked to another by a dependency: its kind and state, `None`
/// when it no longer exists (pruned or deleted).
pub(crate) struct LinkRow {
    /// Whether it is a dependency of the job asked about (else a dependent).
    pub dependency: bool,
    pub id: i64,
    pub kind: Option<String>,
    pub state: Option<JobState>,
}

/// Job `id`'s dependencies (its `depends_on`, each as it is now) and its
/// first `limit` dependents (jobs whose `depends_on` names it, through
/// `jobq_jobs_depends_on`, migration 11), each in id order. A job without
/// either reads one row by its key and one empty index probe.
pub(crate) async fn job_links(pool: &PgPool, id: i64, limit: i64) -> sqlx::Result<Vec<LinkRow>> {
    let rows = sqlx::query(
        "SELECT * FROM (
            SELECT true AS dependency, d.id, j.kind, j.state
            FROM jobq_jobs AS c
            CROSS JOIN LATERAL unnest(c.depends_on) AS d(id)
            LEFT JOIN jobq_jobs AS j ON j.id = d.id
            WHERE c.id = $1
        ) AS deps
        UNION ALL
        SELECT * FROM (
            SELECT false, id, kind, state FROM jobq_jobs
            WHERE depends_on @> ARRAY[$1::bigint] AND depends_on IS NOT NULL
            ORDER BY id LIMIT $2
        ) AS dependents
        ORDER BY 1 DESC, 2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LinkRow {
                dependency: r.try_get("dependency")?,
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                state: r.try_get("state")?,
            })
        })
        .collect()
}

/// How many jobs match `filter`, per state.
pub(crate) async fn count_by_state(
    pool: &PgPool,
    filter: &JobFilter,
) -> sqlx::Result<BTreeMap<JobState, i64>> {
    let range = filter_id_range(pool, filter).await?;
    let mut qb = QueryBuilder::new("SELECT state, count(*) AS n FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter, range);
    qb.push(" GROUP BY state");
    fetch_all(pool, &mut qb)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

/// How many jobs match `filter`, counting at most `cap + 1`; for a filter
/// not [`indexed`], among the newest `window` jobs only. Returns the count
/// and, when the window did not reach the oldest job, how many jobs it
/// looked at.
pub(crate) async fn count_capped(
    pool: &PgPool,
    filter: &JobFilter,
    cap: i64,
    window: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    no_jit(&mut tx).await?;
    let range = id_range(&mut tx, filter).await?;
    let indexed = count_indexed(filter) || read_indexed(&mut tx, filter).await?;
    let window = (!indexed).then_some(window.max(1));
    let mut qb = QueryBuilder::new("SELECT count(*) AS n FROM (SELECT 1");
    push_source(&mut qb, filter, range, None, window);
    qb.push(" LIMIT ")
        .push_bind(cap.saturating_add(1))
        .push(") AS c");
    let n: i64 = qb.build().fetch_one(&mut *tx).await?.try_get("n")?;
    let mut partial = None;
    if let Some(window) = window
        && n <= cap
    {
        let (seen, _) = window_extent(&mut tx, range, None, window).await?;
        if seen == window {
            partial = Some(seen);
        }
    }
    tx.commit().await?;
    Ok((n, partial))
}

/// The planner's estimate of how many jobs match `filter` (from the
/// table's statistics; reads no row).
pub(crate) async fn estimate_matching(pool: &PgPool, filter: &JobFilter) -> sqlx::Result<i64> {
    let range = filter_id_range(pool, filter).await?;
    let mut qb = QueryBuilder::new("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobq_jobs WHERE TRUE");
    push_filter(&mut qb, filter, range);
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
