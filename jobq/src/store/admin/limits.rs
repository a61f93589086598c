//! The limits and their use, read back for [`crate::admin`]: the queues'
//! (`jobq_queues`, set at run time) and the kinds' (published by live
//! workers, migration 12). Use is counted as the limited claim counts it:
//! `running` rows through `jobq_jobs_running` / `jobq_jobs_limited_running`,
//! starts in `jobq_limit_starts` within the window up to now.

use std::time::Duration;

use sqlx::{PgConnection, Row};

use crate::admin::{
    BUSIEST_PARTITIONS, KindLimits, PartitionUse, PartitionsUse, QueueLimit, RateLimit,
};

/// A rate from its stored columns.
fn rate(count: Option<i32>, window_ms: Option<i64>) -> Option<RateLimit> {
    Some(RateLimit {
        count: i64::from(count?),
        window: Duration::from_millis(u64::try_from(window_ms?).ok()?),
    })
}

/// Every queue with a limit of its own, by name, with its running jobs and
/// (under a rate) the starts in its window.
pub(crate) async fn queue_limits(
    conn: &mut PgConnection,
) -> sqlx::Result<Vec<(String, QueueLimit)>> {
    let rows = sqlx::query(
        "SELECT q.name, q.concurrency_limit, q.rate_limit, q.rate_window_ms,
                (SELECT count(*) FROM jobq_jobs j
                 WHERE j.state = 'running' AND j.queue = q.name) AS running,
                (SELECT coalesce(sum(s.n), 0)::int8 FROM jobq_limit_starts s
                 WHERE q.rate_limit IS NOT NULL AND s.key = ' queue ' || q.name
                   AND s.at > now() - q.rate_window_ms * interval '1 millisecond') AS started
         FROM jobq_queues q
         WHERE q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
         ORDER BY q.name",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let limit = QueueLimit {
                concurrency: r
                    .try_get::<Option<i32>, _>("concurrency_limit")?
                    .map(i64::from),
                rate: rate(r.try_get("rate_limit")?, r.try_get("rate_window_ms")?),
                running: r.try_get("running")?,
                started: r.try_get("started")?,
            };
            Ok((r.try_get("name")?, limit))
        })
        .collect()
}

/// The limits live workers publish for their kinds, one entry per distinct
/// version, by kind, each with its use: one row per limit key (partition)
/// with an attempt running or started in the window, or one row of nulls.
///
/// The running attempts are read once, through `jobq_jobs_limited_running`
/// (as many rows as run under limits); the starts through
/// `jobq_limit_starts`, which holds a rate's windows (and a minute more).
/// A key's name is what precedes its first space (names have none).
pub(crate) async fn kind_limits(conn: &mut PgConnection) -> sqlx::Result<Vec<KindLimits>> {
    let rows = sqlx::query(concat!(
        "WITH k AS (
            SELECT k.kind, k.queue, k.concurrency_limit, k.rate_limit, k.rate_window_ms,
                   k.partition, count(*) AS workers
            FROM jobq_workers w JOIN jobq_worker_kinds k ON k.worker_id = w.id
            WHERE ",
        live_worker!(),
        "  AND (k.concurrency_limit IS NOT NULL OR k.rate_limit IS NOT NULL)
            GROUP BY 1, 2, 3, 4, 5, 6
        ),
        running AS MATERIALIZED (
            SELECT j.limit_key AS key, count(*) AS n FROM jobq_jobs j
            WHERE j.state = 'running' AND j.limit_key IS NOT NULL
            GROUP BY 1
        )
        SELECT k.*, p.key, p.running, p.started
        FROM k LEFT JOIN LATERAL (
            SELECT u.key, sum(u.running)::int8 AS running, sum(u.started)::int8 AS started
            FROM (
                SELECT r.key, r.n AS running, 0 AS started FROM running r
                WHERE split_part(r.key, ' ', 1) = k.kind
                UNION ALL
                SELECT s.key, 0, s.n FROM jobq_limit_starts s
                WHERE k.rate_limit IS NOT NULL AND split_part(s.key, ' ', 1) = k.kind
                  AND s.at > now() - k.rate_window_ms * interval '1 millisecond'
            ) AS u
            GROUP BY u.key
        ) AS p ON true
        ORDER BY k.kind, k.workers DESC, k.queue, k.concurrency_limit, k.rate_limit,
                 k.rate_window_ms, k.partition"
    ))
    .fetch_all(conn)
    .await?;
    let mut out: Vec<KindLimits> = Vec::new();
    // Per entry, every partition's figures, to rank once it is complete.
    let mut parts: Vec<Vec<PartitionUse>> = Vec::new();
    for r in rows {
        let entry = KindLimits {
            kind: r.try_get("kind")?,
            queue: r.try_get("queue")?,
            concurrency: r
                .try_get::<Option<i32>, _>("concurrency_limit")?
                .map(i64::from),
            rate: rate(r.try_get("rate_limit")?, r.try_get("rate_window_ms")?),
            partition: r.try_get("partition")?,
            running: 0,
            started: 0,
            partitions: None,
            workers: r.try_get("workers")?,
        };
        let same = out.last().is_some_and(|last| {
            (
                &last.kind,
                &last.queue,
                last.concurrency,
                last.rate,
                &last.partition,
                last.workers,
            ) == (
                &entry.kind,
                &entry.queue,
                entry.concurrency,
                entry.rate,
                &entry.partition,
                entry.workers,
            )
        });
        if !same {
            out.push(entry);
            parts.push(Vec::new());
        }
        let Some(key) = r.try_get::<Option<String>, _>("key")? else {
            continue; // nothing runs or started under these limits
        };
        let last = out.last_mut().expect("pushed above");
        let running: i64 = r.try_get("running")?;
        let started: i64 = r.try_get("started")?;
        last.running += running;
        last.started += started;
        parts.last_mut().expect("pushed above").push(PartitionUse {
            partition: key
                .get(last.kind.len() + 1..)
                .unwrap_or_default()
                .to_owned(),
            running,
            started,
        });
    }
    for (entry, mut parts) in out.iter_mut().zip(parts) {
        if entry.partition.is_none() {
            continue;
        }
        let at_limit = parts
            .iter()
            .filter(|p| entry.full(p.running, p.started))
            .count();
        parts.sort_by(|a, b| {
            (b.running, b.started)
                .cmp(&(a.running, a.started))
                .then_with(|| a.partition.cmp(&b.partition))
        });
        let active = parts.len();
        parts.truncate(BUSIEST_PARTITIONS);
        entry.partitions = Some(PartitionsUse {
            active: active as i64,
            at_limit: at_limit as i64,
            busiest: parts,
        });
    }
    Ok(out)
}
