//! The latency figure: jobs enqueued one at a time at a steady rate into an
//! idle worker; the time from the enqueue's commit (and from the call) to the
//! handler's start. Its raw-SQL baseline: an `INSERT` + `pg_notify` at the
//! same rate, picked up by a plain `LISTEN` connection that runs the raw claim
//! as each notification arrives.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use crate::db::{self, FigureDb};
use crate::jobs::{LATENCY_QUEUE, Starts, probe, probe_registry};
use crate::{Ctx, progress, sql};

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

/// Latencies of one run, in milliseconds.
#[derive(Default)]
struct Latencies {
    from_commit: Vec<f64>,
    from_call: Vec<f64>,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.from_commit.extend(other.from_commit);
        self.from_call.extend(other.from_call);
    }

    fn sort(&mut self) {
        self.from_commit.sort_by(f64::total_cmp);
        self.from_call.sort_by(f64::total_cmp);
    }
}

/// Enqueues `WARMUP` jobs with `enqueue`, 5 ms apart (they pay for prepared
/// statements and wake the pickup path), and waits until they started.
async fn warm_up<F, Fut>(starts: &Starts, mut enqueue: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<i64>>,
{
    let mut ids = Vec::with_capacity(WARMUP as usize);
    for _ in 0..WARMUP {
        ids.push(enqueue().await?);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_started(starts, &ids).await
}

/// Waits until every job of `ids` has started; fails after 30 s.
async fn wait_started(starts: &Starts, ids: &[i64]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = ids.iter().filter(|id| starts.get(**id).is_none()).count();
        if missing == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{missing} of {} jobs never started",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Enqueues `n` jobs with `enqueue` (returning the job's id once committed)
/// at `rate` per second, waits until `starts` has seen them all, and returns
/// their latencies.
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
    let ids: Vec<i64> = sent.iter().map(|(id, ..)| *id).collect();
    wait_started(starts, &ids).await?;
    let mut out = Latencies::default();
    for (id, called, committed) in sent {
        let started = starts.get(id).expect("waited for");
        out.from_commit.push(ms(committed, started));
        out.from_call.push(ms(called, started));
    }
    Ok(out)
}

/// Records p50/p95/p99 of sorted `values` as `<prefix>_pNN_ms`.
fn record(ctx: &mut Ctx, prefix: &str, values: &[f64]) {
    for p in [50.0, 95.0, 99.0] {
        ctx.report
            .record(format!("{prefix}_p{p:.0}_ms"), percentile(values, p), "ms");
    }
}

/// The raw-SQL worker: a `LISTEN` connection on [`sql::RAW_CHANNEL`] that
/// runs the raw claim (16 at a time, until one comes back short) as each
/// notification arrives, and a second connection that completes what was
/// claimed, as jobq's completer does. Records each claimed job in `starts`.
pub struct RawListener {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RawListener {
    /// Starts listening on `db`; returns once the `LISTEN` is in place.
    pub async fn start(db: &FigureDb, starts: Starts) -> anyhow::Result<RawListener> {
        // The listener holds one of its pool's connections for good; the
        // claims take another.
        let claim_pool = db.pool(2).await?;
        let complete_pool = db.pool(1).await?;
        let mut listener = PgListener::connect_with(&claim_pool).await?;
        listener.listen(sql::RAW_CHANNEL).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut completions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    note = listener.recv() => { note?; }
                }
                loop {
                    let rows: Vec<(i64, String)> = sqlx::query_as(sql::CLAIM)
                        .bind(16i64)
                        .bind(-1i64)
                        .fetch_all(&claim_pool)
                        .await?;
                    let now = Instant::now();
                    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
                    for id in &ids {
                        starts.record(*id, now);
                    }
                    let complete_pool = complete_pool.clone();
                    completions.spawn(async move {
                        sqlx::query(sql::COMPLETE)
                            .bind(&ids)
                            .execute(&complete_pool)
                            .await
                    });
                    if rows.len() < 16 {
                        break;
                    }
                }
            }
            while let Some(done) = completions.join_next().await {
                done??;
            }
            anyhow::Ok(())
        });
        Ok(RawListener { stop, task })
    }

    /// Stops listening once the claim in progress ends, and waits for the
    /// completions in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Interleaved rounds of the latency figure and its baseline: the disk's
/// commit time drifts within a minute, and both should see the same disk.
const ROUNDS: u64 = 4;

/// Runs the latency figure and its baseline, in [`ROUNDS`] interleaved
/// rounds of `latency_jobs / ROUNDS` jobs each. jobq: an in-process worker
/// (concurrency 16) on its own pool, probes enqueued through another pool at
/// `latency_rate` per second, each in its own autocommit transaction.
/// Baseline: the same rate of raw `INSERT` + `pg_notify`, a `LISTEN`
/// connection that runs the raw claim on each notification, and a second
/// connection that completes what was claimed, as jobq's completer does.
pub async fn latency(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (n, rate) = (ctx.opts.latency_jobs, ctx.opts.latency_rate.max(1));
    progress(
        ctx,
        format!(
            "latency: {n} jobs, one at a time, {rate}/s, idle worker, and raw LISTEN + claim; \
             {ROUNDS} interleaved rounds"
        ),
    );

    // jobq's side.
    let jobq_db = db::fresh(ctx, "latency").await?;
    db::settle(&jobq_db.pool).await?;
    let jobq_starts = Starts::default();
    let worker_pool = jobq_db.pool(8).await?;
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = jobq::Worker::new(worker_pool)
        .registry(probe_registry()?)
        .state(jobq_starts.clone())
        .queue(LATENCY_QUEUE, 16)
        .run_until(async move {
            let _ = stopped.await;
        });
    let worker = tokio::spawn(worker);
    let jobq_pool = jobq_db.pool(1).await?;
    let jobq_enqueue = || {
        let pool = jobq_pool.clone();
        async move { Ok(probe::enqueue(&pool, probe::Args {}).await?.0) }
    };

    // The baseline's side.
    let raw_db = db::fresh(ctx, "raw_latency").await?;
    db::settle(&raw_db.pool).await?;
    let raw_starts = Starts::default();
    let claimer = RawListener::start(&raw_db, raw_starts.clone()).await?;
    let raw_pool = raw_db.pool(1).await?;
    let raw_enqueue = || {
        let pool = raw_pool.clone();
        async move {
            Ok(sqlx::query_scalar(sql::INSERT_ONE_NOTIFY_ID)
                .bind("{\"n\":0}")
                .fetch_one(&pool)
                .await?)
        }
    };

    warm_up(&jobq_starts, jobq_enqueue).await?;
    warm_up(&raw_starts, raw_enqueue).await?;
    let (mut jobq, mut raw) = (Latencies::default(), Latencies::default());
    for round in 0..ROUNDS {
        let this = n / ROUNDS + u64::from(round < n % ROUNDS);
        jobq.extend(drive(this, rate, &jobq_starts, jobq_enqueue).await?);
        raw.extend(drive(this, rate, &raw_starts, raw_enqueue).await?);
    }
    jobq.sort();
    raw.sort();

    let _ = stop_worker.send(());
    worker.await??;
    claimer.stop().await?;
    jobq_pool.close().await;
    raw_pool.close().await;
    record(ctx, "latency", &jobq.from_commit);
    record(ctx, "latency_call", &jobq.from_call);
    record(ctx, "raw_latency", &raw.from_commit);
    record(ctx, "raw_latency_call", &raw.from_call);
    db::finish(ctx, jobq_db, n).await?;
    db::finish(ctx, raw_db, n).await
}
