//! One bad result costs its own job only: results PostgreSQL refuses (a NUL
//! byte, an interval out of range, a unique key another row holds) never stop
//! the completer from writing the others; error text and history are capped;
//! durations from user code are clamped; and two database settings that used
//! to stall a service (a cron job registered by many workers at once, a low
//! `statement_timeout` for the pruner) do not.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobq::{Backoff, Error, Keep, Retention};
use jobq_tests::{
    InProcess, TestDb, always_fails, fails_50_times, huge_error, nul_error, record,
    retries_in_year_200000, snoozes_forever, test_worker, wait_until,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const DEADLINE: Duration = Duration::from_secs(60);

/// Ordinary jobs enqueued behind the bad one, in the same worker.
const NEIGHBOURS: i64 = 500;

/// 100 years, the longest wait jobq writes (give or take leap days).
const CENTURY: chrono::TimeDelta = chrono::TimeDelta::days(36_525);

/// Enqueues the neighbours, waits until every one of them completed, stops
/// the worker (which must return), and checks that no job is left `running`.
async fn neighbours_complete_and_the_worker_stops(db: &TestDb, worker: InProcess) {
    let args = (0..NEIGHBOURS).map(|n| record::Args { n });
    record::enqueue_many(&db.pool, args)
        .await
        .expect("enqueue the neighbours");
    wait_until(
        "every neighbour of the bad job to complete",
        DEADLINE,
        || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE kind = 'record' AND state = 'completed'")
                .await
                == NEIGHBOURS
        },
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), worker.stop())
        .await
        .expect("stop() returns")
        .expect("the worker stops cleanly");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running'")
            .await,
        0,
        "no job is left running"
    );
}

/// The state, `scheduled_at` and last error message of job `id`.
async fn job_row(db: &TestDb, id: i64) -> (String, DateTime<Utc>, Option<String>) {
    sqlx::query_as(
        "SELECT state::text, scheduled_at, errors -> -1 ->> 'error' FROM jobq_jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .expect("read the job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_with_a_nul_byte_costs_that_job_only() {
    let db = TestDb::new("poison_nul").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let bad = nul_error::enqueue(&db.pool, nul_error::Args {})
        .await
        .unwrap()
        .0;
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, _, error) = job_row(&db, bad).await;
    assert_eq!(state, "discarded");
    // The NUL byte is written as the two characters `\0`.
    assert_eq!(error.as_deref(), Some("before\\0after"));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_of_duration_max_costs_that_job_only_and_waits_100_years() {
    let db = TestDb::new("poison_snooze").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let bad = snoozes_forever::enqueue(&db.pool, snoozes_forever::Args {})
        .await
        .unwrap()
        .0;
    let before = Utc::now();
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, scheduled_at, _) = job_row(&db, bad).await;
    assert_eq!(state, "scheduled");
    assert!(
        scheduled_at > before + CENTURY - chrono::TimeDelta::days(2)
            && scheduled_at < Utc::now() + CENTURY + chrono::TimeDelta::days(2),
        "snoozed to {scheduled_at}, not about 100 years from now"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_of_duration_max_is_clamped_to_100_years() {
    let db = TestDb::new("poison_backoff").await;
    let endless = Backoff {
        base: Duration::MAX,
        max: Duration::MAX,
    };
    let worker = InProcess::start(test_worker(&db.pool).backoff(endless));
    let bad = always_fails::enqueue(&db.pool, always_fails::Args {})
        .await
        .unwrap()
        .0;
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, scheduled_at, _) = job_row(&db, bad).await;
    assert_eq!(state, "retryable");
    assert!(
        scheduled_at < Utc::now() + CENTURY + chrono::TimeDelta::days(2),
        "retries at {scheduled_at}, later than 100 years from now"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_the_year_200000_is_clamped_to_100_years() {
    let db = TestDb::new("poison_retry_at").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let bad = retries_in_year_200000::enqueue(&db.pool, retries_in_year_200000::Args {})
        .await
        .unwrap()
        .0;
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, scheduled_at, error) = job_row(&db, bad).await;
    assert_eq!(state, "retryable");
    assert_eq!(error.as_deref(), Some("come back much later"));
    assert!(
        scheduled_at < Utc::now() + CENTURY + chrono::TimeDelta::days(2),
        "retries at {scheduled_at}, later than 100 years from now"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_conflict_on_the_way_to_retryable_costs_that_job_only() {
    let db = TestDb::new("poison_unique").await;
    // available | scheduled | retryable: the key does not hold while the job
    // runs, so a second row can take it meanwhile. Enqueue refuses such sets
    // now; rows written before it did, or by hand, still have them.
    let mask = 1 | 2 | 8;
    let insert = |queue: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, unique_key, unique_states)
             VALUES ('waits_then_fails', $1, '{}', 4, 'the-key', $2) RETURNING id",
        )
        .bind(queue)
        .bind(mask)
        .fetch_one(&db.pool)
    };
    let bad = insert("default").await.expect("insert the first holder");
    let worker = InProcess::start(test_worker(&db.pool));
    wait_until("the first holder to start", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await
            == 1
    })
    .await;
    // A second row takes the key while the first runs, in a queue no worker
    // runs: the first's move to `retryable` now conflicts with it.
    let second = insert("parked").await.expect("insert the second holder");
    sqlx::query(
        "INSERT INTO test_runs (job_id, kind, attempt, event)
         VALUES ($1, 'waits_then_fails', 1, 'go')",
    )
    .bind(bad)
    .execute(&db.pool)
    .await
    .unwrap();
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, _, error) = job_row(&db, bad).await;
    assert_eq!(state, "discarded");
    let error = error.expect("the job says why");
    assert!(
        error.starts_with("could not record this attempt's result: ")
            && error.contains("duplicate key"),
        "{error}"
    );
    let (state, _, _) = job_row(&db, second).await;
    assert_eq!(state, "available", "the other holder is untouched");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_error_is_cut_to_8_kib_with_a_note() {
    let db = TestDb::new("poison_huge").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let bad = huge_error::enqueue(&db.pool, huge_error::Args {})
        .await
        .unwrap()
        .0;
    neighbours_complete_and_the_worker_stops(&db, worker).await;
    let (state, _, error) = job_row(&db, bad).await;
    assert_eq!(state, "discarded");
    let error = error.expect("an error entry");
    assert!(error.len() <= 8192, "{} bytes kept", error.len());
    assert!(error.starts_with("xxxxxxxx"), "{}", &error[..64]);
    assert!(
        error.ends_with("bytes cut]"),
        "{}",
        &error[error.len() - 64..]
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_history_keeps_the_first_and_the_last_20_attempts() {
    let db = TestDb::new("poison_history").await;
    let worker = InProcess::start(test_worker(&db.pool));
    let id = fails_50_times::enqueue(&db.pool, fails_50_times::Args {})
        .await
        .unwrap()
        .0;
    wait_until("the job to fail 50 times", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'discarded'")
            .await
            == 1
    })
    .await;
    worker.stop().await.unwrap();
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT (e ->> 'attempt')::int FROM jobq_jobs, jsonb_array_elements(errors) AS e
         WHERE id = $1",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let expected: Vec<i32> = std::iter::once(1).chain(31..=50).collect();
    assert_eq!(attempts, expected);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_or_run_at_postgres_cannot_store_is_an_error_not_a_panic() {
    let db = TestDb::new("poison_enqueue").await;
    let mut tx = db.pool.begin().await.unwrap();
    let delays = [
        Duration::MAX,
        // Within chrono's durations, but not added to now.
        Duration::from_secs(1_000_000_000_000_000),
    ];
    for delay in delays {
        let err = record::builder(record::Args { n: 1 })
            .delay(delay)
            .enqueue(&mut *tx)
            .await
            .expect_err("an overlong delay is refused");
        assert!(matches!(err, Error::Enqueue(_)), "{err:?}");
        assert!(err.to_string().contains("delay"), "{err}");
    }
    // Before 4714 BC, PostgreSQL's earliest timestamp.
    let ancient = chrono::NaiveDate::from_ymd_opt(-5000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let err = record::builder(record::Args { n: 1 })
        .run_at(ancient)
        .enqueue(&mut *tx)
        .await
        .expect_err("a run_at PostgreSQL cannot store is refused");
    assert!(matches!(err, Error::Enqueue(_)), "{err:?}");
    assert!(err.to_string().contains("run_at"), "{err}");
    // Refused before reaching the database: the transaction goes on.
    record::enqueue(&mut *tx, record::Args { n: 2 })
        .await
        .expect("the transaction is still usable");
    tx.commit().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_registering_one_cron_job_at_once_all_read_its_row() {
    let db = TestDb::new("poison_cron").await;
    const CALLERS: usize = 16;
    for round in 0..30 {
        let name = format!("race_{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
        // Each caller holds a connection of its own before the race starts.
        let mut calls = Vec::new();
        for _ in 0..CALLERS {
            let (pool, name, barrier) = (db.pool.clone(), name.clone(), barrier.clone());
            calls.push(tokio::spawn(async move {
                let now = Utc::now();
                barrier.wait().await;
                jobq::__private::cron_last_tick(&pool, &name, now).await
            }));
        }
        let mut firsts = 0;
        let mut ticks = Vec::new();
        for call in calls {
            let (tick, first) = call
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            firsts += usize::from(first);
            ticks.push(tick);
        }
        assert_eq!(firsts, 1, "round {round}: one caller records the start");
        ticks.dedup();
        assert_eq!(ticks.len(), 1, "round {round}: every caller reads one tick");
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_prunes_under_a_low_statement_timeout() {
    let db = TestDb::new("poison_prune").await;
    const ROWS: i64 = 1000;
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at)
         SELECT 'record', 'parked', '{\"n\": 0}', 'completed', 1, 1, now() - interval '1 day'
         FROM generate_series(1, $1)",
    )
    .bind(ROWS)
    .execute(&db.pool)
    .await
    .unwrap();
    // Each deleted row costs about 1 ms and a statement may run 250 ms: a
    // statement deletes at most about 230 rows. Deterministic, whatever the
    // machine's speed: the limit is the sleep, not the work.
    sqlx::raw_sql(
        "CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.001); RETURN OLD; END $$;
         CREATE TRIGGER slow_delete BEFORE DELETE ON jobq_jobs
             FOR EACH ROW EXECUTE FUNCTION slow_delete();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" SET statement_timeout = '250ms'"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    // The worker's connections are new, so they take the database's setting.
    let options: PgConnectOptions = db.url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(timeout, "250ms");
    let worker = InProcess::start(test_worker(&pool).retention(Retention {
        completed: Keep::For(Duration::from_secs(3600)),
        interval: Duration::from_millis(100),
        ..Retention::default()
    }));
    wait_until("every old completed job to be pruned", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs").await == 0
    })
    .await;
    worker.stop().await.unwrap();
    pool.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_writes_the_last_results_without_waiting_out_the_grace() {
    let db = TestDb::new("poison_stop").await;
    // A long grace: the completer is waited for up to that long.
    let worker = InProcess::start(test_worker(&db.pool).shutdown_grace(Duration::from_secs(60)));
    let args = (0..NEIGHBOURS).map(|n| record::Args { n });
    record::enqueue_many(&db.pool, args).await.unwrap();
    wait_until("every job to run", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs").await == NEIGHBOURS
    })
    .await;
    let started = std::time::Instant::now();
    worker.stop().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "stop() took {took:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await,
        NEIGHBOURS,
        "every result is written before stop() returns"
    );
    db.cleanup().await;
}
