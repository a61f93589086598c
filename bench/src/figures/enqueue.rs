//! Enqueue figures: single `enqueue` calls (each its own transaction) from 1
//! and 4 clients (and, with 4, again while a worker that started idle takes
//! every job), `enqueue_many` in batches; and their raw-SQL baselines,
//! one-row `INSERT` commits with and without `pg_notify` (with 4 clients,
//! also while a raw `LISTEN` + claim worker takes every job), and an
//! `unnest` batch insert.

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::db::{self, FigureDb};
use crate::figures::latency::RawListener;
use crate::figures::process::IdleWorker;
use crate::jobs::{Kind, Starts, noop, noop_args, noop_unique};
use crate::report::Rounds;
use crate::{Ctx, progress, sql};

/// Runs `total` calls of `call(pool, i)` from `clients` concurrent tasks
/// (client `c` takes `i = c, c + clients, ...`); returns the wall time.
pub async fn run_clients<F, Fut>(
    pool: &PgPool,
    clients: usize,
    total: u64,
    call: F,
) -> anyhow::Result<Duration>
where
    F: Fn(PgPool, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..clients {
        let pool = pool.clone();
        let call = call.clone();
        set.spawn(async move {
            for i in (c as u64..total).step_by(clients) {
                call(pool.clone(), i).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(start.elapsed())
}

/// The JSON arguments of the `n`th raw-SQL job (what jobq stores for noop).
fn raw_args(n: u64) -> String {
    format!("{{\"n\":{n}}}")
}

/// The worker taking the jobs while a single-insert figure runs.
enum Worker {
    Jobq(IdleWorker),
    Raw(RawListener),
}

/// Which single-row insert a figure times.
#[derive(Debug, Clone, Copy)]
enum Single {
    Jobq,
    /// jobq with a worker process sleeping on the queue: it is notified.
    JobqIdleWorker,
    Raw,
    RawNotify,
    /// Raw `INSERT` + `pg_notify` with the raw `LISTEN` + claim worker
    /// taking every job: the idle-worker figure's baseline.
    RawListener,
}

/// One run of a single-insert figure on a fresh database: `total` inserts
/// from `clients` clients, each its own transaction. Returns the figure's
/// name and its rate.
async fn single_figure(ctx: &Ctx, what: Single, clients: usize) -> anyhow::Result<(String, f64)> {
    let total = ctx.opts.single;
    let (figure, db_name) = match (what, clients) {
        (Single::Jobq, 1) => ("enqueue_single_per_s".to_owned(), "enqueue_1c".to_owned()),
        (Single::Jobq, c) => (
            format!("enqueue_single_{c}c_per_s"),
            format!("enqueue_{c}c"),
        ),
        (Single::JobqIdleWorker, c) => (
            format!("enqueue_single_{c}c_idle_worker_per_s"),
            format!("enqueue_{c}c_idle_worker"),
        ),
        (Single::Raw, c) => (format!("raw_insert_{c}c_per_s"), format!("raw_insert_{c}c")),
        (Single::RawNotify, c) => (
            format!("raw_insert_notify_{c}c_per_s"),
            format!("raw_insert_notify_{c}c"),
        ),
        (Single::RawListener, c) => (
            format!("raw_insert_notify_{c}c_listener_per_s"),
            format!("raw_insert_notify_{c}c_listener"),
        ),
    };
    let db = db::fresh(ctx, &db_name).await?;
    let pool = db.pool(clients as u32).await?;
    db::settle(&db.pool).await?;
    let worker = match what {
        Single::JobqIdleWorker => Some(Worker::Jobq(IdleWorker::start(ctx, &db).await?)),
        Single::RawListener => Some(Worker::Raw(
            RawListener::start(&db, Starts::default()).await?,
        )),
        _ => None,
    };
    let took = match what {
        Single::Jobq | Single::JobqIdleWorker => {
            run_clients(&pool, clients, total, |pool, i| async move {
                noop::enqueue(&pool, noop_args(i)).await?;
                Ok(())
            })
            .await?
        }
        Single::Raw | Single::RawNotify | Single::RawListener => {
            let stmt = match what {
                Single::Raw => sql::INSERT_ONE,
                Single::RawNotify => sql::INSERT_ONE_NOTIFY,
                _ => sql::INSERT_ONE_NOTIFY_ID,
            };
            run_clients(&pool, clients, total, move |pool, i| async move {
                sqlx::query(stmt).bind(raw_args(i)).execute(&pool).await?;
                Ok(())
            })
            .await?
        }
    };
    match worker {
        Some(Worker::Jobq(w)) => w.stop().await?,
        Some(Worker::Raw(w)) => w.stop().await?,
        None => {}
    }
    pool.close().await;
    check_count(&db, total).await?;
    db::finish(ctx, db, total).await?;
    Ok((figure, total as f64 / took.as_secs_f64()))
}

/// The single-enqueue figures for `clients` clients: jobq, raw `INSERT`,
/// raw `INSERT` + `pg_notify`, and with several clients, jobq and raw
/// `INSERT` + `pg_notify` again while a worker takes every job. Commit-bound figures drift with the disk's
/// mood, so they run in `rounds` interleaved rounds (jobq, raw, raw + notify,
/// jobq, ...) and each records its median; the rounds are printed too.
pub async fn single(ctx: &mut Ctx, clients: usize) -> anyhow::Result<()> {
    let rounds_n = ctx.opts.rounds.max(1);
    progress(
        ctx,
        format!(
            "enqueue, single, {clients} client(s): jobq, raw insert, raw insert+notify \
             (with several, jobq and raw again with a worker taking the jobs), \
             {rounds_n} round(s)"
        ),
    );
    // The idle-worker figure shows what a worker taking every job costs the
    // enqueues (its claims and completions share the disk, and NOTIFY while
    // it sleeps), against a raw LISTEN + claim worker doing the same; it
    // matters only when several clients commit at once.
    let kinds: &[Single] = if clients > 1 {
        &[
            Single::Jobq,
            Single::JobqIdleWorker,
            Single::Raw,
            Single::RawNotify,
            Single::RawListener,
        ]
    } else {
        &[Single::Jobq, Single::Raw, Single::RawNotify]
    };
    let mut rounds = Rounds::default();
    for _ in 0..rounds_n {
        for what in kinds {
            let (name, rate) = single_figure(ctx, *what, clients).await?;
            rounds.add(name, rate, "jobs/s");
        }
    }
    rounds.record(&mut ctx.report);
    Ok(())
}

/// Enqueues `n` no-op jobs with `enqueue_many` in batches of `batch`, from
/// one client.
pub async fn enqueue_in_batches(pool: &PgPool, n: u64, batch: u64) -> anyhow::Result<()> {
    in_batches(n, batch, |jobs| async move {
        Ok(noop::enqueue_many(pool, jobs.map(noop_args)).await?.len())
    })
    .await
}

/// Inserts `n` jobs of `kind` in batches of `batch`.
pub async fn enqueue_kind_in_batches(
    pool: &PgPool,
    kind: Kind,
    n: u64,
    batch: u64,
) -> anyhow::Result<()> {
    in_batches(n, batch, |jobs| async move {
        Ok(kind.enqueue(pool, jobs).await?)
    })
    .await
}

/// Inserts jobs `0..n` in batches of `batch`, one after another: `insert`
/// takes a batch's numbers and returns how many ids it got back, which must
/// be all of them.
async fn in_batches<F, Fut>(n: u64, batch: u64, mut insert: F) -> anyhow::Result<()>
where
    F: FnMut(Range<u64>) -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut next = 0;
    while next < n {
        let end = (next + batch).min(n);
        let got = insert(next..end).await?;
        anyhow::ensure!(
            got as u64 == end - next,
            "a batch of {} lost jobs",
            end - next
        );
        next = end;
    }
    Ok(())
}

/// The batch figures: `enqueue_many` of plain and of unique jobs (each with
/// its own key, so none is a duplicate), and the raw `unnest` insert, each of
/// `batch_jobs` jobs in batches of `batch_size`, one client, in
/// `bulk_rounds` interleaved rounds (each records its median).
pub async fn batch(ctx: &mut Ctx) -> anyhow::Result<()> {
    let (n, size) = (ctx.opts.batch_jobs, ctx.opts.batch_size);
    let rounds_n = ctx.opts.bulk_rounds.max(1);
    progress(
        ctx,
        format!(
            "enqueue, batch: {n} jobs in batches of {size}: jobq, jobq unique, raw insert, \
             {rounds_n} round(s)"
        ),
    );
    let mut rounds = Rounds::default();
    for _ in 0..rounds_n {
        for what in [Batch::Jobq, Batch::Unique, Batch::Raw] {
            let (name, rate) = batch_figure(ctx, what).await?;
            rounds.add(name, rate, "jobs/s");
        }
    }
    rounds.record(&mut ctx.report);
    Ok(())
}

/// What a batch figure inserts.
#[derive(Clone, Copy)]
enum Batch {
    /// `noop::enqueue_many`.
    Jobq,
    /// `noop_unique::enqueue_many`: each job with a key of its own.
    Unique,
    /// The raw `unnest` insert.
    Raw,
}

/// One run of a batch figure on a fresh database. Returns the figure's name
/// and its rate.
async fn batch_figure(ctx: &Ctx, what: Batch) -> anyhow::Result<(&'static str, f64)> {
    let (n, size) = (ctx.opts.batch_jobs, ctx.opts.batch_size);
    let (name, db_name) = match what {
        Batch::Jobq => ("enqueue_batch_per_s", "enqueue_batch"),
        Batch::Unique => ("enqueue_batch_unique_per_s", "enqueue_batch_unique"),
        Batch::Raw => ("raw_insert_batch_per_s", "raw_insert_batch"),
    };
    let db = db::fresh(ctx, db_name).await?;
    db::settle(&db.pool).await?;
    let pool = db.pool(1).await?;
    let start = Instant::now();
    match what {
        Batch::Jobq => enqueue_in_batches(&pool, n, size).await?,
        Batch::Unique => {
            in_batches(n, size, |jobs| async {
                let args = jobs.map(|n| noop_unique::Args { n: n as i64 });
                Ok(noop_unique::enqueue_many(&pool, args).await?.len())
            })
            .await?
        }
        Batch::Raw => {
            in_batches(n, size, |jobs| async {
                let args: Vec<String> = jobs.map(raw_args).collect();
                let ids: Vec<i64> = sqlx::query_scalar(sql::INSERT_MANY)
                    .bind(args)
                    .fetch_all(&pool)
                    .await?;
                Ok(ids.len())
            })
            .await?
        }
    }
    let took = start.elapsed();
    pool.close().await;
    check_count(&db, n).await?;
    db::finish(ctx, db, n).await?;
    Ok((name, n as f64 / took.as_secs_f64()))
}

async fn check_count(db: &FigureDb, n: u64) -> anyhow::Result<()> {
    let got: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_jobs")
        .fetch_one(&db.pool)
        .await?;
    anyhow::ensure!(got as u64 == n, "{}: {got} rows, expected {n}", db.name);
    Ok(())
}
