//! Integration-test support for jobq: a fresh database per test, the jobs the
//! tests enqueue, a worker started in-process or as a separate process, and
//! waiting for a condition with a deadline (never sleeping "long enough").

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobq::{Backoff, JobContext, State, Worker, job};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod browser;
pub mod faulty;
pub mod limited;
pub mod proxy;

/// The server the tests run against: `DATABASE_URL`, set by `scripts/test`.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with scripts/test, which starts a server")
}

/// A database of its own for one test, with jobq's schema and the tests'
/// `test_runs` table. Dropped by [`TestDb::cleanup`] when the test passes; a
/// failing test leaves it behind for a look.
pub struct TestDb {
    /// A pool on the test's database.
    pub pool: PgPool,
    /// The test database's URL, for worker processes.
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates the database `jobq_<test>_<random>` and migrates it.
    pub async fn new(test: &str) -> TestDb {
        let db = Self::empty(test).await;
        jobq::migrate(&db.pool).await.expect("migrate");
        sqlx::raw_sql(
            "CREATE TABLE test_runs (
                seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                job_id  bigint NOT NULL,
                kind    text   NOT NULL,
                attempt int    NOT NULL,
                event   text   NOT NULL,
                payload jsonb,
                at      timestamptz NOT NULL DEFAULT clock_timestamp()
            )",
        )
        .execute(&db.pool)
        .await
        .expect("create test_runs");
        db
    }

    /// Creates the database without migrating it.
    pub async fn empty(test: &str) -> TestDb {
        let name = format!("jobq_{}_{}", test, fastrand::u32(..));
        let server: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
        let mut admin = server.connect().await.expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let options = server.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        TestDb { pool, url, name }
    }

    /// A single connection to the test database.
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect")
    }

    /// A pool of one connection to the test database: every statement runs
    /// on the same session, so prepared statements and their cached plans
    /// carry over from one to the next.
    pub async fn session(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Drops the database.
    pub async fn cleanup(self) {
        self.pool.close().await;
        let server: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
        if let Ok(mut admin) = server.connect().await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut admin)
            .await;
        }
    }

    /// How many rows `sql` (a `SELECT count(*) ...`) counts.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of `sql`, for
/// [`buffers_touched`]: bind the statement's parameters to it.
pub fn explain_buffers(
    sql: &str,
) -> sqlx::query::QueryScalar<'static, sqlx::Postgres, serde_json::Value, sqlx::postgres::PgArguments>
{
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"
    )))
}

/// Shared buffers (hit + read) a statement touched, nested statements
/// included: `explain` ([`explain_buffers`], parameters bound) run in a
/// transaction that is rolled back.
pub async fn buffers_touched(
    pool: &PgPool,
    explain: sqlx::query::QueryScalar<
        '_,
        sqlx::Postgres,
        serde_json::Value,
        sqlx::postgres::PgArguments,
    >,
) -> i64 {
    let mut tx = pool.begin().await.expect("begin");
    let plan = explain.fetch_one(&mut *tx).await.expect("explain");
    tx.rollback().await.expect("rollback");
    let top = &plan[0]["Plan"];
    top["Shared Hit Blocks"].as_i64().expect("shared hits")
        + top["Shared Read Blocks"].as_i64().expect("shared reads")
}

/// Analyzes `jobq_jobs` and keeps those statistics (autovacuum off for the
/// table), as on a busy table between two analyzes: what is inserted or
/// changed next is not seen by the planner.
pub async fn keep_statistics(pool: &PgPool) {
    sqlx::raw_sql(
        "ANALYZE jobq_jobs;
         ALTER TABLE jobq_jobs SET (autovacuum_enabled = false);",
    )
    .execute(pool)
    .await
    .expect("analyze jobq_jobs");
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after
/// `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Job `id`'s state, as text (`available`, `completed`, ...).
pub async fn state_of(pool: &PgPool, id: impl Into<i64>) -> String {
    sqlx::query_scalar("SELECT state::text FROM jobq_jobs WHERE id = $1")
        .bind(id.into())
        .fetch_one(pool)
        .await
        .expect("read a job's state")
}

/// Waits until job `id` is in `state`, for 60 s at most.
pub async fn wait_for_state(pool: &PgPool, id: impl Into<i64>, state: &str) {
    let id = id.into();
    wait_until(
        &format!("job {id} to be {state}"),
        Duration::from_secs(60),
        || async { state_of(pool, id).await == state },
    )
    .await;
}

/// How many sessions LISTEN on `channel` (jobq's insert channel,
/// `jobq::__private::INSERT_CHANNEL`, or another) in the test database, or
/// `None` when the query fails (the server restarts).
pub async fn listeners(pool: &PgPool, channel: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%' || $1 || '%'",
    )
    .bind(channel)
    .fetch_one(pool)
    .await
    .ok()
}

/// Waits until `n` workers LISTEN on the test database, so that jobs
/// enqueued next are announced to all of them.
pub async fn wait_for_listeners(db: &TestDb, n: i64) {
    wait_until(
        &format!("{n} worker(s) to LISTEN"),
        Duration::from_secs(60),
        || async { listeners(&db.pool, jobq::__private::INSERT_CHANNEL).await == Some(n) },
    )
    .await;
}

/// How many wake locks are held in the test database by producers sleeping
/// on a queue.
pub async fn wake_locks_held(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND classid = $1::oid AND mode = 'ExclusiveLock' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(jobq::__private::WAKE_LOCK_CLASS)
    .fetch_one(&db.pool)
    .await
    .expect("count wake locks")
}

/// Takes the wake lock of `queue` on `conn`, as a producer about to sleep
/// does.
pub async fn take_wake_lock(conn: &mut PgConnection, queue: &str) {
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(jobq::__private::WAKE_LOCK_CLASS)
        .bind(queue)
        .execute(conn)
        .await
        .expect("take a wake lock");
}

/// Quick retries, so failure tests finish fast.
pub const FAST_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(10),
    max: Duration::from_millis(50),
};

/// A worker as the tests run it: the pool as state, quick retries, the
/// `default` queue at concurrency 8.
pub fn test_worker(pool: &PgPool) -> Worker {
    Worker::new(pool.clone())
        .state(pool.clone())
        .queue("default", 8)
        .backoff(FAST_BACKOFF)
        .poll_interval(Duration::from_millis(200))
        .shutdown_grace(Duration::from_secs(10))
}

/// A worker running in this process until [`InProcess::stop`].
pub struct InProcess {
    stop: oneshot::Sender<()>,
    task: JoinHandle<jobq::Result<()>>,
}

impl InProcess {
    /// Starts `worker` on the current runtime.
    pub fn start(worker: Worker) -> InProcess {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run_until(async move {
            let _ = stopped.await;
        }));
        InProcess { stop, task }
    }

    /// Shuts the worker down gracefully and returns what `run_until` returned.
    pub async fn stop(self) -> jobq::Result<()> {
        let _ = self.stop.send(());
        self.task.await.expect("worker task panicked")
    }

    /// Drops the worker without a shutdown, for a worker whose handler would
    /// hold a graceful one: the tasks it started end with the test's
    /// runtime, and [`TestDb::cleanup`] closes their connections.
    pub fn abandon(self) {
        self.task.abort();
    }
}

/// A worker process (the `test-worker` binary) on `url`.
pub fn spawn_worker_process(bin: &str, url: &str, concurrency: usize) -> Child {
    spawn_worker_process_with_lease(bin, url, concurrency, Duration::from_secs(30), "default")
}

/// A worker process with a lease of `lease` (heartbeat every quarter of it),
/// running `queues` (comma-separated) at `concurrency` each.
pub fn spawn_worker_process_with_lease(
    bin: &str,
    url: &str,
    concurrency: usize,
    lease: Duration,
    queues: &str,
) -> Child {
    Command::new(bin)
        .env("JOBQ_TEST_LEASE_MS", lease.as_millis().to_string())
        .env("DATABASE_URL", url)
        .env("JOBQ_TEST_CONCURRENCY", concurrency.to_string())
        .env("RUST_LOG", "jobq=warn")
        .env("JOBQ_TEST_QUEUES", queues)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn test-worker")
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Waits for a child to exit, with a deadline; kills it and panics past it.
pub async fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("worker process did not exit within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn record_run(
    db: &PgPool,
    ctx: &JobContext,
    event: &str,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO test_runs (job_id, kind, attempt, event, payload) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ctx.id().0)
    .bind(ctx.name())
    .bind(ctx.attempt())
    .bind(event)
    .bind(payload)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that it ran, with its argument.
#[job(retries = 3)]
pub async fn record(db: State<PgPool>, ctx: JobContext, n: i64) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::json!({ "n": n })).await
}

/// Records its typed arguments as JSON, under a stored name of its own.
#[job(name = "typed", aliases = ["typed_v0"], retries = 0)]
pub async fn typed_args(
    db: State<PgPool>,
    ctx: JobContext,
    user_id: i64,
    email: String,
    tags: Vec<String>,
    #[serde(default)] note: Option<String>,
) -> anyhow::Result<()> {
    let payload =
        serde_json::json!({ "user_id": user_id, "email": email, "tags": tags, "note": note });
    record_run(&db, &ctx, "ran", payload).await?;
    Ok(())
}

/// Fails every attempt, after recording it.
#[job(retries = 2)]
pub async fn always_fails(db: State<PgPool>, ctx: JobContext) -> anyhow::Result<()> {
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await?;
    anyhow::bail!("boom on attempt {}", ctx.attempt())
}

/// Panics, after recording that it started.
#[job(retries = 0)]
pub async fn panics(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await?;
    panic!("the handler panicked on purpose")
}

/// Records its start, sleeps `millis`, records its end.
#[job(retries = 2)]
pub async fn slow(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await
}

/// Sleeps `millis`, then records that it ran: the fault suite's job.
#[job(retries = 10)]
pub async fn work(db: State<PgPool>, ctx: JobContext, millis: u64) -> Result<(), sqlx::Error> {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

/// Overruns its 300 ms timeout, ignoring its token.
#[job(timeout = "300ms", retries = 0)]
pub async fn overruns(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

/// Records its start, then runs for ten minutes, ignoring its token: only
/// dropping its future stops it.
#[job(retries = 3)]
pub async fn ignores_its_token(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

/// Runs until its cancellation token fires, then stops early with an error.
#[job(retries = 5)]
pub async fn until_cancelled(db: State<PgPool>, ctx: JobContext) -> anyhow::Result<()> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    ctx.cancellation().cancelled().await;
    record_run(&db, &ctx, "saw cancellation", serde_json::Value::Null).await?;
    anyhow::bail!("stopped early")
}

/// Asks the worker for `action` ("snooze", "retry_at", "discard") on its
/// first run, then completes.
#[job(retries = 3)]
pub async fn controlled(db: State<PgPool>, ctx: JobContext, action: String) -> anyhow::Result<()> {
    let earlier: i64 = sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE job_id = $1")
        .bind(ctx.id().0)
        .fetch_one(&*db)
        .await?;
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await?;
    if earlier > 0 {
        return Ok(());
    }
    let control = match action.as_str() {
        "snooze" => jobq::Control::snooze(Duration::from_millis(300)),
        "retry_at" => jobq::Control::retry_at(
            chrono::Utc::now() + chrono::Duration::milliseconds(300),
            "the remote asked us to come back later",
        ),
        _ => jobq::Control::discard("this can never work"),
    };
    Err(control.into())
}

/// Every second, in the `cron` queue (which only the cron tests run).
#[job(cron = "* * * * * *", queue = "cron", retries = 0)]
pub async fn tick(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    let tick = ctx.cron_tick().expect("a cron job knows its tick");
    record_run(&db, &ctx, "ran", serde_json::json!({ "tick": tick })).await
}

/// Every minute; skips missed ticks.
#[job(cron = "* * * * *", queue = "catchup", catch_up = "none")]
pub async fn catch_none(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

/// Every minute; runs the latest missed tick.
#[job(cron = "* * * * *", queue = "catchup", catch_up = "latest")]
pub async fn catch_latest(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

/// Every minute; runs every missed tick.
#[job(cron = "* * * * *", queue = "catchup", catch_up = "all")]
pub async fn catch_all(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

/// At most one unfinished job per `key`.
#[job(unique = "args", queue = "unique")]
pub async fn dedup(db: State<PgPool>, ctx: JobContext, key: String) -> Result<(), sqlx::Error> {
    record_run(&db, &ctx, "ran", serde_json::json!({ "key": key })).await
}

/// Overruns its 200 ms timeout by 300 ms, then succeeds: within the grace.
#[job(timeout = "200ms", retries = 3)]
pub async fn finishes_late(db: State<PgPool>, ctx: JobContext) -> Result<(), sqlx::Error> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    record_run(&db, &ctx, "ran", serde_json::Value::Null).await
}

// == Poison results (hardening): jobs whose results PostgreSQL could refuse ==

/// Fails with an error whose text holds a NUL byte, which PostgreSQL's text
/// and jsonb refuse.
#[job(retries = 0)]
pub async fn nul_error() -> anyhow::Result<()> {
    anyhow::bail!("before\0after")
}

/// Fails with a 10 MB error message.
#[job(retries = 0)]
pub async fn huge_error() -> anyhow::Result<()> {
    anyhow::bail!("{}", "x".repeat(10 * 1024 * 1024))
}

/// Snoozes for `Duration::MAX`, which no PostgreSQL interval holds.
#[job(retries = 0)]
pub async fn snoozes_forever() -> anyhow::Result<()> {
    Err(jobq::Control::snooze(Duration::MAX).into())
}

/// Asks to be retried in the year 200,000.
#[job(retries = 1)]
pub async fn retries_in_year_200000() -> anyhow::Result<()> {
    let at = chrono::NaiveDate::from_ymd_opt(200_000, 1, 1)
        .expect("chrono reaches the year 200000")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    Err(jobq::Control::retry_at(at, "come back much later").into())
}

/// Fails every one of its 50 attempts, naming the attempt.
#[job(retries = 49)]
pub async fn fails_50_times(ctx: JobContext) -> anyhow::Result<()> {
    anyhow::bail!("failure {}", ctx.attempt())
}

/// Records `started`, waits until the test records a `go` event for it, then
/// fails.
#[job(retries = 3)]
pub async fn waits_then_fails(db: State<PgPool>, ctx: JobContext) -> anyhow::Result<()> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    loop {
        let go: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM test_runs WHERE job_id = $1 AND event = 'go')",
        )
        .bind(ctx.id().0)
        .fetch_one(&*db)
        .await?;
        if go {
            anyhow::bail!("failed when told to");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// == Results ==

/// What [`doubles`] returns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Doubled {
    /// The argument.
    pub n: i64,
    /// Twice the argument.
    pub twice: i64,
}

/// Returns its argument doubled, kept with the job.
#[job(retries = 0)]
pub async fn doubles(n: i64) -> anyhow::Result<Doubled> {
    Ok(Doubled { n, twice: 2 * n })
}

/// Fails every attempt with `message`.
#[job(retries = 1)]
pub async fn fails_with(message: String) -> anyhow::Result<i64> {
    anyhow::bail!("{message}")
}

/// Returns the time it finished, for the latency of `wait`.
#[job(retries = 0)]
pub async fn returns_now() -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::Utc::now())
}

/// Returns `None`: a result serde writes as `null`, so nothing is stored.
#[job(retries = 0)]
pub async fn returns_none() -> anyhow::Result<Option<String>> {
    Ok(None)
}

// == Dependencies and workflows ==

/// A step of a workflow: records its start, sleeps `millis`, fails when
/// `fail` (every attempt), else records its end and returns `value`.
#[job(retries = 3)]
pub async fn flow_step(
    db: State<PgPool>,
    ctx: JobContext,
    value: i64,
    millis: u64,
    fail: bool,
) -> anyhow::Result<i64> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    tokio::time::sleep(Duration::from_millis(millis)).await;
    if fail {
        anyhow::bail!("step {} failed on purpose", ctx.id());
    }
    record_run(&db, &ctx, "finished", serde_json::Value::Null).await?;
    Ok(value)
}

/// Joins its dependencies: records their results as it reads them (null
/// for one that has not completed) and returns their sum.
#[job(retries = 3)]
pub async fn flow_join(db: State<PgPool>, ctx: JobContext) -> anyhow::Result<i64> {
    record_run(&db, &ctx, "started", serde_json::Value::Null).await?;
    let mut seen = Vec::new();
    for dep in ctx.dependencies().await? {
        seen.push(ctx.result_of::<flow_step::Job>(dep).await?);
    }
    record_run(&db, &ctx, "joined", serde_json::json!({ "seen": seen })).await?;
    Ok(seen.iter().flatten().sum())
}

/// One link of a chain: records its start.
#[job(retries = 3)]
pub async fn chain_link(db: State<PgPool>, ctx: JobContext, n: i64) -> anyhow::Result<()> {
    record_run(&db, &ctx, "started", serde_json::json!({ "n": n })).await?;
    Ok(())
}
