//! The latency figure: jobs enqueued one at a time at a steady rate into an
//! idle worker; the time from the enqueue's commit (and from the call) to the
//! handler's start. Its raw-SQL baseline: an `INSERT` + `pg_notify` at the
//! same rate, picked up by a plain `LISTEN` connection that runs the raw claim
//! as each notification arrives.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use crate::jobs::{LATENCY_QUEUE, Starts, probe, probe_registry};
use crate::{Ctx, db, progress, sql};

/// Jobs enqueued before the measured ones (they pay for prepared statements).
const WARMUP: u64 = 20;

/// The `p`th percentile (0-100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds from `a` to `b`, negative when `b` came first (a handler can
/// start before the enqueuing client has read its commit's reply).
fn ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1000.0
    } else {
        -(a - b).as_secs_f64() * 1000.0
    }
}

/// Latencies of one run, sorted, in milliseconds.
struct Latencies {
    from_commit: Vec<f64>,
    from_call: Vec<f64>,
}

/// Enqueues `WARMUP` then `n` jobs with `enqueue` (returning the job's id once
/// committed) at `rate` per second, waits until `starts` has seen them all,
/// and returns the latencies of the `n`.
async fn drive<F, Fut>(
    n: u64,
    rate: u64,
    starts: &Starts,
    mut enqueue: F,
) -> anyhow::Result<Latencies>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<i64>>,
{
    for _ in 0..WARMUP {
        enqueue().await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tick.tick().await;
        let called = Instant::now();
        let id = enqueue().await?;
        let committed = Instant::now();
        sent.push((id, called, committed));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while starts.len() < (n + WARMUP) as usize {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} jobs started",
            starts.len(),
            n + WARMUP
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut from_commit = Vec::with_capacity(sent.len());
    let mut from_call = Vec::with_capacity(sent.len());
    for (id, called, committed) in sent {
        let started = starts
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("job {id} never started"))?;
        from_commit.push(ms(committed, started));
        from_call.push(ms(called, started));
    }
    from_commit.sort_by(f64::total_cmp);
    from_call.sort_by(f64::total_cmp);
    Ok(Latencies {
        from_commit,
        from_call,
    })
}

/// Records p50/p95/p99 of sorted `values` as `<prefix>_pNN_ms`.
fn record(ctx: &mut Ctx, prefix: &str, values: &[f64]) {
    for p in [50.0, 95.0, 99.0] {
        ctx.report
            .record(format!("{prefix}_p{p:.0}_ms"), percentile(values, p), "ms");
    }
}

/// Runs the latency figure and its baseline. jobq: an in-process worker
/// (concurrency 16) on its own pool, `latency_jobs` probes enqueued through
/// another pool at `latency_rate` per second, each in its own autocommit
/// transaction. Baseline: the same rate of raw `INSERT` + `pg_notify`, a
/// `LISTEN` connection, and the raw claim run on each notification.
pub async fn latency(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (n, rate) = (ctx.opts.latency_jobs, ctx.opts.latency_rate.max(1));
    progress(
        ctx,
        format!("latency: {n} jobs, one at a time, {rate}/s, idle worker; then raw LISTEN + claim"),
    );

    let db = db::fresh(ctx, "latency").await?;
    db::settle(&db.pool).await?;
    let starts = Starts::default();
    let worker_pool = db.pool(8).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = jobq::Worker::new(worker_pool)
        .registry(probe_registry()?)
        .state(starts.clone())
        .queue(LATENCY_QUEUE, 16)
        .run_until(async move {
            let _ = stopped.await;
        });
    let worker = tokio::spawn(worker);
    // Let the worker register and LISTEN before the first job.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pool = db.pool(1).await?;
    let jobq = drive(n, rate, &starts, || {
        let pool = pool.clone();
        async move { Ok(probe::enqueue(&pool, probe::Args {}).await?.0) }
    })
    .await?;
    let _ = stop.send(());
    worker.await??;
    pool.close().await;
    record(ctx, "latency", &jobq.from_commit);
    record(ctx, "latency_call", &jobq.from_call);
    db::finish(ctx, db, n).await?;

    let db = db::fresh(ctx, "raw_latency").await?;
    db::settle(&db.pool).await?;
    let starts = Starts::default();
    // Two connections: the listener holds one of its pool's for good.
    let claim_pool = db.pool(2).await?;
    let mut listener = PgListener::connect_with(&claim_pool).await?;
    listener.listen("jobq_bench_raw").await?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = starts.clone();
    let claimer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return anyhow::Ok(()),
                note = listener.recv() => { note?; }
            }
            loop {
                let rows: Vec<(i64, String)> = sqlx::query_as(sql::CLAIM)
                    .bind(16i64)
                    .bind(-1i64)
                    .fetch_all(&claim_pool)
                    .await?;
                let now = Instant::now();
                for (id, _args) in &rows {
                    seen.record(*id, now);
                }
                if rows.len() < 16 {
                    break;
                }
            }
        }
    });
    let pool = db.pool(1).await?;
    let raw = drive(n, rate, &starts, || {
        let pool = pool.clone();
        async move {
            Ok(sqlx::query_scalar(sql::INSERT_ONE_NOTIFY_ID)
                .bind("{\"n\":0}")
                .fetch_one(&pool)
                .await?)
        }
    })
    .await?;
    let _ = stop.send(());
    claimer.await??;
    pool.close().await;
    record(ctx, "raw_latency", &raw.from_commit);
    db::finish(ctx, db, n).await
}
