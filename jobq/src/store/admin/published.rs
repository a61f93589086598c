//! What live workers publish (`jobq_worker_queues`, `jobq_worker_kinds`,
//! migration 7), read back.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use sqlx::{PgPool, Row};

use crate::admin::{CronJob, CronRun, KindInfo, WorkerInfo, WorkerQueue};

fn ms(n: Option<i64>) -> Option<Duration> {
    n.and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_millis)
}

/// Every worker row, oldest first, with its queues and the jobs it runs
/// (counted through `jobq_jobs_running`).
pub(crate) async fn workers(pool: &PgPool) -> sqlx::Result<Vec<WorkerInfo>> {
    let rows = sqlx::query(concat!(
        "SELECT w.id, w.host, w.pid, w.started_at, w.queues, w.lease_ms,
                (extract(epoch FROM now() - w.heartbeat_at) * 1000)::bigint AS age_ms,
                NOT (",
        live_worker!(),
        ") AS stale,
                (SELECT array_agg(p.concurrency ORDER BY q.i)
                 FROM unnest(w.queues) WITH ORDINALITY AS q(queue, i)
                 LEFT JOIN jobq_worker_queues p ON p.worker_id = w.id AND p.queue = q.queue)
                    AS concurrency,
                (SELECT count(*) FROM jobq_jobs j
                 WHERE j.state = 'running' AND j.attempted_by = w.id) AS running,
                (SELECT count(*) FROM jobq_worker_kinds k WHERE k.worker_id = w.id) AS kinds
         FROM jobq_workers w ORDER BY w.started_at, w.id"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let queues: Vec<String> = r.try_get("queues")?;
            let concurrency: Vec<Option<i32>> = r
                .try_get::<Option<Vec<Option<i32>>>, _>("concurrency")?
                .unwrap_or_default();
            Ok(WorkerInfo {
                id: r.try_get("id")?,
                host: r.try_get("host")?,
                pid: r.try_get("pid")?,
                started_at: r.try_get("started_at")?,
                heartbeat_age: ms(r.try_get("age_ms")?).unwrap_or_default(),
                lease: ms(r.try_get("lease_ms")?),
                stale: r.try_get("stale")?,
                queues: queues
                    .into_iter()
                    .enumerate()
                    .map(|(i, queue)| WorkerQueue {
                        queue,
                        concurrency: concurrency.get(i).copied().flatten(),
                    })
                    .collect(),
                running: r.try_get("running")?,
                kinds: r.try_get("kinds")?,
            })
        })
        .collect()
}

/// The kinds live workers publish, one row per distinct set of settings.
pub(crate) async fn kinds(pool: &PgPool) -> sqlx::Result<Vec<KindInfo>> {
    let rows = sqlx::query(concat!(
        "SELECT k.kind, k.aliases, k.queue, k.priority, k.max_attempts, k.timeout_ms, k.cron,
                k.tz, k.source, count(*) AS workers
         FROM jobq_workers w JOIN jobq_worker_kinds k ON k.worker_id = w.id
         WHERE ",
        live_worker!(),
        " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
         ORDER BY k.kind, workers DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(KindInfo {
                kind: r.try_get("kind")?,
                aliases: r.try_get("aliases")?,
                queue: r.try_get("queue")?,
                priority: r.try_get("priority")?,
                max_attempts: r.try_get("max_attempts")?,
                timeout: ms(r.try_get("timeout_ms")?),
                cron: r.try_get("cron")?,
                tz: r.try_get("tz")?,
                source: r.try_get("source")?,
                workers: r.try_get("workers")?,
            })
        })
        .collect()
}

/// Cron jobs: those live workers publish and those that ever ticked
/// (`jobq_cron`). Their next tick and their runs ([`cron_runs`]) are left
/// for the caller, who reads their schedules.
pub(crate) async fn cron_jobs(pool: &PgPool) -> sqlx::Result<Vec<CronJob>> {
    let rows = sqlx::query(concat!(
        "WITH live AS (SELECT w.id, w.queues FROM jobq_workers w WHERE ",
        live_worker!(),
        "),
        published AS (
            SELECT DISTINCT ON (k.kind) k.kind, k.queue, k.cron, k.tz
            FROM live JOIN jobq_worker_kinds k ON k.worker_id = live.id
            WHERE k.cron IS NOT NULL
            ORDER BY k.kind, k.worker_id DESC
        )
        SELECT coalesce(p.kind, c.name) AS kind, p.queue, p.cron, p.tz, c.last_tick,
               EXISTS (SELECT 1 FROM live WHERE p.queue = ANY(live.queues)) AS served
        FROM published p FULL JOIN jobq_cron c ON c.name = p.kind
        ORDER BY 1"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(CronJob {
                kind: r.try_get("kind")?,
                queue: r.try_get("queue")?,
                schedule: r.try_get("cron")?,
                tz: r.try_get("tz")?,
                served: r.try_get::<Option<bool>, _>("served")?.unwrap_or(false),
                next_tick: None,
                last_tick: r.try_get("last_tick")?,
                last_run: None,
                recent_runs: Vec::new(),
            })
        })
        .collect()
}

/// The jobs of cron ticks, by their unique keys (through `jobq_jobs_unique`:
/// a tick's key holds in every state), while they are kept. Each run's
/// `tick` is left for the caller, who knows it.
pub(crate) async fn cron_runs(
    pool: &PgPool,
    keys: &[String],
) -> sqlx::Result<HashMap<String, CronRun>> {
    let rows = sqlx::query(concat!(
        "SELECT unique_key, id, state, finalized_at, left(",
        last_error!(),
        ", 200) AS error
         FROM jobq_jobs
         WHERE unique_key = ANY($1) AND ",
        key_holds!()
    ))
    .bind(keys)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get("unique_key")?,
                CronRun {
                    tick: DateTime::<Utc>::MIN_UTC,
                    id: r.try_get("id")?,
                    state: r.try_get("state")?,
                    finalized_at: r.try_get("finalized_at")?,
                    error: r.try_get("error")?,
                },
            ))
        })
        .collect()
}

/// The retentions live workers publish (`jobq_workers.retention`, migration
/// 15), one per worker that prunes.
pub(crate) async fn retentions(
    pool: &PgPool,
) -> sqlx::Result<Vec<crate::store::PublishedRetention>> {
    let rows: Vec<sqlx::types::Json<crate::store::PublishedRetention>> =
        sqlx::query_scalar(concat!(
            "SELECT w.retention FROM jobq_workers w WHERE w.retention IS NOT NULL AND ",
            live_worker!()
        ))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
