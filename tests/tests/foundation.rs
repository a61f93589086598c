//! The foundation: transactional enqueue, typed args, one worker running every
//! registered job, failures, panics, unknown kinds, bad args, several worker
//! processes, and graceful shutdown. Every test gets a database of its own.

use std::time::Duration;

use jobq::{Error, Job, JobDef, Registry, Worker};
use jobq_tests::{
    InProcess, TestDb, always_fails, panics, record, sigterm, slow, spawn_worker_process, state_of,
    take_wake_lock, test_worker, typed_args, wait_exit, wait_for_listeners, wait_for_state,
    wait_until, wake_locks_held,
};
use serde_json::json;

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_test-worker");
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_enqueue_leaves_no_job() {
    let db = TestDb::new("rolled_back").await;
    let mut tx = db.pool.begin().await.unwrap();
    record::enqueue(&mut tx, record::Args { n: 1 })
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_jobs")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(inside, 1, "the job is visible inside its transaction");
    tx.rollback().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 0);

    // A worker running afterwards finds nothing to do.
    let worker = InProcess::start(test_worker(&db.pool));
    record::enqueue(&db.pool, record::Args { n: 2 })
        .await
        .unwrap();
    wait_until("the committed job to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == 1
    })
    .await;
    worker.stop().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 1);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_enqueue_runs_exactly_once_with_typed_args() {
    let db = TestDb::new("committed_once").await;
    sqlx::raw_sql("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO users VALUES (7, 'ada@example.com')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = typed_args::enqueue(
        &mut tx,
        typed_args::Args {
            user_id: 7,
            email: "ada@example.com".into(),
            tags: vec!["new".into(), "vip".into()],
            note: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, id, "completed").await;
    worker.stop().await.unwrap();

    let runs: Vec<(i64, String, i32, serde_json::Value)> =
        sqlx::query_as("SELECT job_id, kind, attempt, payload FROM test_runs")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        runs,
        vec![(
            id.0,
            "typed".to_owned(),
            1,
            json!({ "user_id": 7, "email": "ada@example.com", "tags": ["new", "vip"], "note": null })
        )]
    );
    let (kind, attempt, errors): (String, i32, serde_json::Value) =
        sqlx::query_as("SELECT kind, attempt, errors FROM jobq_jobs WHERE id = $1")
            .bind(id.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((kind.as_str(), attempt, errors), ("typed", 1, json!([])));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_without_polling() {
    let db = TestDb::new("notify_wakes").await;
    // Polling once an hour: only the notification can make this job run.
    let worker = InProcess::start(test_worker(&db.pool).poll_interval(Duration::from_secs(3600)));
    wait_for_listeners(&db, 1).await;
    // The producer found nothing and sleeps on its queue's wake lock.
    wait_until("the worker to sleep", DEADLINE, || async {
        wake_locks_held(&db).await == 1
    })
    .await;
    let mut tx = db.pool.begin().await.unwrap();
    let id = record::enqueue(&mut tx, record::Args { n: 1 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for_state(&db.pool, id, "completed").await;
    worker.stop().await.unwrap();
    assert_eq!(
        wake_locks_held(&db).await,
        0,
        "a stopped worker holds no wake lock"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_while_the_worker_goes_to_sleep_still_wakes_it() {
    let db = TestDb::new("notify_race").await;
    // No worker sleeps on the queue, so the enqueue will not notify; its
    // transaction stays open while the worker finds nothing and goes to
    // sleep for an hour.
    let mut tx = db.pool.begin().await.unwrap();
    let id = record::enqueue(&mut tx, record::Args { n: 1 })
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).poll_interval(Duration::from_secs(3600)));
    // It tries the wake lock that the open enqueue holds: its last statement
    // asked for the lock or, having waited for it in vain, who holds it.
    // (Whether it is caught between those two or after them does not
    // matter: either way the job it has to find is not announced.)
    wait_until("the worker to try the wake lock", DEADLINE, || async {
        db.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND (query LIKE '%FROM pg_locks%' OR query LIKE '%pg_advisory_lock(%')
               AND query NOT LIKE '%pg_stat_activity%'",
        )
        .await
            == 1
    })
    .await;
    tx.commit().await.unwrap();
    // So it polls instead of sleeping, and runs the job soon after.
    wait_for_state(&db.pool, id, "completed").await;
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_stream_of_single_enqueues_all_run_without_the_poll_fallback() {
    let db = TestDb::new("fast_stream").await;
    // Polling once an hour: every job must be found by a notification or by
    // the producer's own polling of a fast stream, never by the fallback.
    let worker = InProcess::start(test_worker(&db.pool).poll_interval(Duration::from_secs(3600)));
    wait_until("the worker to sleep", DEADLINE, || async {
        wake_locks_held(&db).await == 1
    })
    .await;
    // Four clients, each enqueuing as fast as it can, then a pause, twice:
    // the producer switches to polling and back to sleeping on its lock.
    for round in 0..2 {
        let clients = (0..4)
            .map(|c| {
                let pool = db.pool.clone();
                tokio::spawn(async move {
                    for n in 0..250 {
                        record::enqueue(
                            &pool,
                            record::Args {
                                n: round * 1000 + c * 250 + n,
                            },
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect::<Vec<_>>();
        for c in clients {
            c.await.unwrap();
        }
        let want = (round + 1) * 1000;
        wait_until(&format!("{want} jobs to complete"), DEADLINE, || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
                .await
                == want
        })
        .await;
        wait_until("the worker to sleep again", DEADLINE, || async {
            wake_locks_held(&db).await == 1
        })
        .await;
    }
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_notify_only_queues_a_worker_sleeps_on() {
    let db = TestDb::new("notify_sleepers").await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener
        .listen(jobq::__private::INSERT_CHANNEL)
        .await
        .unwrap();
    // A producer sleeping on `watched`, as a worker's would.
    let mut sleeper = db.connection().await;
    take_wake_lock(&mut sleeper, "watched").await;
    let enqueue = |queue: &'static str| record::builder(record::Args { n: 1 }).queue(queue);
    // Nobody sleeps on these: no notification, whatever the isolation.
    enqueue("unwatched").enqueue(&db.pool).await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .execute(&mut *tx)
        .await
        .unwrap();
    enqueue("serializable").enqueue(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    enqueue("watched").enqueue(&db.pool).await.unwrap();
    record::enqueue_many(&db.pool, [record::Args { n: 2 }])
        .await
        .unwrap();
    take_wake_lock(&mut sleeper, "default").await;
    record::enqueue_many(&db.pool, [record::Args { n: 3 }])
        .await
        .unwrap();
    // Notifications arrive in commit order, so had an enqueue to a queue
    // nobody sleeps on notified, it would come first.
    let mut next = async || {
        tokio::time::timeout(DEADLINE, listener.recv())
            .await
            .expect("a notification")
            .unwrap()
            .payload()
            .to_owned()
    };
    assert_eq!(next().await, "watched");
    assert_eq!(next().await, "default");
    // The listener holds a pool connection, which closing the pool awaits.
    drop(listener);
    drop(sleeper);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_through_pool_connection_and_transaction() {
    let db = TestDb::new("enqueue_forms").await;
    let a = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let b = record::enqueue(&mut *conn, record::Args { n: 2 })
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let c = record::enqueue(&mut tx, record::Args { n: 3 })
        .await
        .unwrap();
    let d = record::enqueue(&mut *tx, record::Args { n: 4 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(conn);
    assert!(a < b && b < c && c < d);
    let stored: Vec<(String, String, serde_json::Value, i32, i16, String)> = sqlx::query_as(
        "SELECT kind, queue, args, max_attempts, priority, state::text FROM jobq_jobs ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (i, row) in stored.iter().enumerate() {
        let n = i as i64 + 1;
        let want = (
            "record".into(),
            "default".into(),
            json!({ "n": n }),
            4,
            0,
            "available".into(),
        );
        assert_eq!(*row, want);
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_options_override_the_job_defaults() {
    let db = TestDb::new("builder").await;
    let before = chrono::Utc::now();
    let id = record::builder(record::Args { n: 1 })
        .delay(Duration::from_secs(600))
        .priority(-5)
        .queue("elsewhere")
        .max_attempts(2)
        .enqueue(&db.pool)
        .await
        .unwrap();
    let (queue, priority, max_attempts, state, scheduled_at): (
        String,
        i16,
        i32,
        String,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT queue, priority, max_attempts, state::text, scheduled_at FROM jobq_jobs WHERE id = $1",
    )
    .bind(id.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (queue.as_str(), priority, max_attempts, state.as_str()),
        ("elsewhere", -5, 2, "scheduled")
    );
    let delay = scheduled_at - before;
    assert!(
        delay >= chrono::Duration::seconds(599) && delay <= chrono::Duration::seconds(660),
        "scheduled {delay} after enqueue"
    );

    let err = record::builder(record::Args { n: 1 })
        .queue("no spaces allowed")
        .enqueue(&db.pool)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Enqueue(_)), "{err}");
    let err = record::builder(record::Args { n: 1 })
        .max_attempts(0)
        .enqueue(&db.pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_attempts must be at least 1"),
        "{err}"
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 1);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_of_10000_jobs_is_one_statement() {
    let db = TestDb::new("enqueue_many").await;
    // A plain connection, not a transaction: were this a loop of inserts,
    // every row would commit on its own, with its own transaction id.
    let mut conn = db.connection().await;
    let ids = record::enqueue_many(&mut conn, (0..10_000).map(|n| record::Args { n }))
        .await
        .unwrap();
    assert_eq!(ids.len(), 10_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in input order");
    let (rows, transactions, in_order): (i64, i64, bool) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT xmin::text),
                bool_and((args->>'n')::bigint = id - (SELECT min(id) FROM jobq_jobs))
         FROM jobq_jobs",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((rows, transactions, in_order), (10_000, 1, true));
    let empty = record::enqueue_many(&mut conn, std::iter::empty())
        .await
        .unwrap();
    assert!(empty.is_empty());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_job_runs_once_plus_retries_and_ends_discarded() {
    let db = TestDb::new("always_fails").await;
    let id = always_fails::enqueue(&db.pool, always_fails::Args {})
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, id, "discarded").await;
    worker.stop().await.unwrap();

    assert_eq!(always_fails::RETRIES, 2);
    let runs = db.count("SELECT count(*) FROM test_runs").await;
    assert_eq!(runs, 1 + always_fails::RETRIES as i64);
    let (attempt, errors): (i32, serde_json::Value) =
        sqlx::query_as("SELECT attempt, errors FROM jobq_jobs WHERE id = $1")
            .bind(id.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(attempt, 3);
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 3);
    for (i, e) in errors.iter().enumerate() {
        let n = i as i64 + 1;
        assert_eq!(e["attempt"], json!(n));
        assert_eq!(e["kind"], json!("error"));
        assert_eq!(e["error"], json!(format!("boom on attempt {n}")));
        assert!(e["at"].is_string());
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_job_is_recorded_and_the_worker_goes_on() {
    let db = TestDb::new("panics").await;
    let bad = panics::enqueue(&db.pool, panics::Args {}).await.unwrap();
    let good = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).queue("default", 1));
    wait_for_state(&db.pool, bad, "discarded").await;
    wait_for_state(&db.pool, good, "completed").await;
    // And a job enqueued after the panic still runs.
    let later = record::enqueue(&db.pool, record::Args { n: 2 })
        .await
        .unwrap();
    wait_for_state(&db.pool, later, "completed").await;
    worker.stop().await.unwrap();

    let errors: serde_json::Value =
        sqlx::query_scalar("SELECT errors FROM jobq_jobs WHERE id = $1")
            .bind(bad.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors[0]["kind"], json!("panic"));
    assert_eq!(
        errors[0]["error"],
        json!("panicked: the handler panicked on purpose")
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_are_left_alone() {
    let db = TestDb::new("unknown_kinds").await;
    let unknown: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('nobody_knows_me', 'default', '{}', 3) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let known = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, known, "completed").await;
    worker.stop().await.unwrap();
    let (state, attempt, errors): (String, i32, serde_json::Value) =
        sqlx::query_as("SELECT state::text, attempt, errors FROM jobq_jobs WHERE id = $1")
            .bind(unknown)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempt, errors),
        ("available", 0, json!([]))
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_run_jobs_stored_under_an_old_name() {
    let db = TestDb::new("aliases").await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('typed_v0', 'default', '{\"user_id\": 1, \"email\": \"a@b.c\", \"tags\": []}', 1)
         RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, jobq::JobId(id), "completed").await;
    worker.stop().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE kind = 'typed'")
            .await,
        1
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_args_are_discarded_with_a_clear_error() {
    let db = TestDb::new("undecodable").await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         VALUES ('typed', 'default', '{\"user_id\": \"not a number\"}', 5) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, jobq::JobId(id), "discarded").await;
    worker.stop().await.unwrap();
    let (attempt, errors): (i32, serde_json::Value) =
        sqlx::query_as("SELECT attempt, errors FROM jobq_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(attempt, 1, "discarded at once, not retried");
    assert_eq!(errors[0]["kind"], json!("decode"));
    let message = errors[0]["error"].as_str().unwrap();
    assert!(
        message.starts_with("cannot decode the arguments of job `typed`: invalid type: string"),
        "{message}"
    );
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_to_start_without_jobs_or_state() {
    let db = TestDb::new("refuses").await;
    let err = Worker::new(db.pool.clone())
        .registry(Registry::new())
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoJobs), "{err}");
    assert!(err.to_string().contains("use my_jobs_crate as _;"), "{err}");

    // No `.state(pool)`: every test job takes `State<PgPool>`.
    let err = Worker::new(db.pool.clone())
        .run_until(async {})
        .await
        .unwrap_err();
    match &err {
        Error::MissingState { type_name, .. } => {
            assert!(
                type_name.contains("Pool<") && type_name.contains("Postgres"),
                "{err}"
            )
        }
        other => panic!("expected MissingState, got {other}"),
    }
    assert!(err.to_string().contains("add `.state(value)`"), "{err}");

    let err = Worker::new(db.pool.clone())
        .state(db.pool.clone())
        .queue("default", 0)
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM jobq_workers").await, 0);
    db.cleanup().await;
}

/// A second registration under `record`'s name, as another crate might make.
static RECORD_AGAIN: JobDef = JobDef {
    location: jobq::__private::Location {
        module_path: "other_crate::jobs",
        file: "other_crate/src/jobs.rs",
        line: 12,
    },
    ..<record::Job as Job>::DEF
};

#[test]
fn duplicate_job_names_are_a_startup_error_naming_both() {
    assert!(jobq::registry().unwrap().get("record").is_some());
    let mut registry = Registry::new().register::<record::Job>().unwrap();
    let err = registry.add(&RECORD_AGAIN).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("two jobs are named `record`"), "{message}");
    assert!(message.contains("tests/src/lib.rs"), "{message}");
    assert!(message.contains("other_crate/src/jobs.rs:12"), "{message}");
    // Registering the very same job twice is harmless.
    let again = registry.clone().register::<record::Job>().unwrap();
    assert_eq!(again.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_or_concurrently_is_safe_and_apart_from_sqlx() {
    let db = TestDb::empty("migrate").await;
    let runs = (0..4)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move { jobq::migrate(&pool).await })
        })
        .collect::<Vec<_>>();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    jobq::migrate(&db.pool).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("read migrations/")
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "sql")
        })
        .count() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_migrations").await,
        files
    );
    assert_eq!(files, jobq::migrations().len() as i64);
    let status = jobq::migration_status(&db.pool).await.unwrap();
    assert!(status.pending.is_empty() && !status.too_new());
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'")
            .await,
        0
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_database_is_an_error_that_says_to_migrate() {
    let db = TestDb::empty("unmigrated").await;
    let enqueue = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .expect_err("no jobq_jobs table");
    let run = tokio::time::timeout(DEADLINE, test_worker(&db.pool).run_until(async {}))
        .await
        .expect("the worker gives up at once")
        .expect_err("no jobq_workers table");
    for message in [enqueue.to_string(), run.to_string()] {
        assert!(message.contains("does not exist"), "{message}");
        assert!(message.contains("run `jobq::migrate(&pool)`"), "{message}");
    }
    // A schema older than the build (a column this build writes is
    // missing: an upgrade without its migration) says so too.
    jobq::migrate(&db.pool).await.unwrap();
    sqlx::query("ALTER TABLE jobq_workers DROP COLUMN retention")
        .execute(&db.pool)
        .await
        .unwrap();
    let behind = tokio::time::timeout(DEADLINE, test_worker(&db.pool).run_until(async {}))
        .await
        .expect("the worker gives up at once")
        .expect_err("no jobq_workers.retention column");
    let message = behind.to_string();
    assert!(
        message
            .contains("jobq schema is older than this build of jobq: run `jobq::migrate(&pool)`"),
        "{message}"
    );
    // Other database errors get no such hint.
    let other = Error::from(
        sqlx::query("SELECT * FROM not_ours")
            .execute(&db.pool)
            .await
            .unwrap_err(),
    );
    assert!(!other.to_string().contains("migrate"), "{other}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_complete_2000_jobs_exactly_once() {
    let db = TestDb::new("two_processes").await;
    let mut workers = [
        spawn_worker_process(WORKER_BIN, &db.url, 8),
        spawn_worker_process(WORKER_BIN, &db.url, 8),
    ];
    // Both must be listening before the jobs arrive, so both take part.
    wait_for_listeners(&db, 2).await;
    let ids = record::enqueue_many(&db.pool, (0..2000).map(|n| record::Args { n }))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2000);
    wait_until("2000 jobs to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == 2000
    })
    .await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        let status = wait_exit(w, DEADLINE).await;
        assert!(status.success(), "worker exited with {status}");
    }
    let (runs, distinct_jobs, workers_used): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM test_runs),
                (SELECT count(DISTINCT job_id) FROM test_runs),
                (SELECT count(DISTINCT attempted_by) FROM jobq_jobs)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (runs, distinct_jobs),
        (2000, 2000),
        "each job ran exactly once"
    );
    assert_eq!(workers_used, 2, "both processes claimed jobs");
    assert_eq!(db.count("SELECT count(*) FROM jobq_workers").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_and_exits_0() {
    let db = TestDb::new("sigterm").await;
    let mut worker = spawn_worker_process(WORKER_BIN, &db.url, 4);
    let id = slow::enqueue(&db.pool, slow::Args { millis: 1500 })
        .await
        .unwrap();
    wait_until("the slow job to start", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await
            == 1
    })
    .await;
    sigterm(&worker);
    let status = wait_exit(&mut worker, DEADLINE).await;
    assert!(status.success(), "worker exited with {status}");
    assert_eq!(state_of(&db.pool, id).await, "completed");
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'finished'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM jobq_workers").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_the_grace_period_puts_running_jobs_back() {
    let db = TestDb::new("shutdown_grace").await;
    let id = slow::enqueue(&db.pool, slow::Args { millis: 600_000 })
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).shutdown_grace(Duration::from_millis(200)));
    wait_until("the slow job to start", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await
            == 1
    })
    .await;
    worker.stop().await.unwrap();
    let (state, attempt, errors): (String, i32, serde_json::Value) =
        sqlx::query_as("SELECT state::text, attempt, errors FROM jobq_jobs WHERE id = $1")
            .bind(id.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempt), ("available", 0));
    assert_eq!(errors[0]["kind"], json!("shutdown"));
    db.cleanup().await;
}
