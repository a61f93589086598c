//! One bad job never stops the others, and a job that never started never
//! loses an attempt: claims that cost nothing for rows they cannot take,
//! attempts lost with a worker counted apart, unique keys of any length and
//! only in sets that every state change can keep, a worker taken for dead
//! that cannot claim under its old identity, a heartbeat jobs cannot starve,
//! lost claims put back only once their session is gone, decoders that
//! panic, timestamps that are not finite, and a shutdown no lock can hold.

use std::time::{Duration, Instant};

use jobq::{JobId, JobState};
use jobq_tests::faulty::{aborts, blocks, bystander, decodes_badly, hogs_a_connection, once};
use jobq_tests::proxy::Proxy;
use jobq_tests::{
    InProcess, TestDb, buffers_touched, dedup, explain_buffers, ignores_its_token, record, sigterm,
    spawn_worker_process_with_lease, state_of, test_worker, wait_exit, wait_for_listeners,
    wait_until,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_test-worker");
const DEADLINE: Duration = Duration::from_secs(60);

/// Waits for `n` rescue passes of the running workers: each removes a
/// worker row planted long dead.
async fn rescue_passes(db: &TestDb, n: usize) {
    for _ in 0..n {
        sqlx::query(
            "INSERT INTO jobq_workers (host, pid, queues, heartbeat_at)
             VALUES ('dead', 0, '{}', now() - interval '1 hour')",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        wait_until("a rescue pass", DEADLINE, || async {
            db.count("SELECT count(*) FROM jobq_workers WHERE host = 'dead'")
                .await
                == 0
        })
        .await;
    }
}

/// Shared buffers (hit + read) that one claim of `limit` `record` jobs of the
/// `default` queue touches, by `EXPLAIN (ANALYZE, BUFFERS)`, rolled back.
async fn claim_buffers(db: &TestDb, limit: i64) -> i64 {
    let explain = explain_buffers(jobq::__private::CLAIM_SQL)
        .bind("default")
        .bind(vec!["record".to_owned(), "typed".to_owned()])
        .bind(limit)
        .bind(-1i64)
        .bind(chrono::Utc::now())
        .bind(false);
    buffers_touched(&db.pool, explain).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_costs_the_same_with_200000_rows_it_cannot_take() {
    let db = TestDb::new("claim_cost").await;
    sqlx::query(
        "INSERT INTO jobq_workers (id, host, pid, queues) OVERRIDING SYSTEM VALUE
         VALUES (-1, 'test', 0, '{default}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Ten jobs the claim can take.
    record::enqueue_many(&db.pool, (0..10).map(|n| record::Args { n }))
        .await
        .unwrap();
    sqlx::query("ANALYZE jobq_jobs")
        .execute(&db.pool)
        .await
        .unwrap();
    // Warm the caches and the plan, then measure.
    claim_buffers(&db, 10).await;
    let alone = claim_buffers(&db, 10).await;
    // 200,000 jobs of a kind no worker runs, waiting before the ten, and
    // 200,000 of a known kind due tomorrow, at the same priority.
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, scheduled_at)
         SELECT 'renamed_long_ago', 'default', '{}', 1, now() - interval '1 day'
         FROM generate_series(1, 200000)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, state, scheduled_at)
         SELECT 'record', 'default', '{\"n\": 0}', 1, 'scheduled', now() + interval '1 day'
         FROM generate_series(1, 200000)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE jobq_jobs")
        .execute(&db.pool)
        .await
        .unwrap();
    claim_buffers(&db, 10).await;
    let crowded = claim_buffers(&db, 10).await;
    println!("claim of 10: {alone} buffers alone, {crowded} with 400,000 unclaimable rows");
    // Deeper index trees cost a page or two per lookup; a claim that stepped
    // over the unclaimable rows would read thousands of pages.
    assert!(
        crowded <= 2 * alone + 50,
        "a claim touched {crowded} buffers beside 400,000 unclaimable rows, {alone} without"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_buffered_jobs_lose_no_attempt() {
    let db = TestDb::new("lost_buffer").await;
    const JOBS: i64 = 4000;
    let mut victim =
        spawn_worker_process_with_lease(WORKER_BIN, &db.url, 4, Duration::from_secs(2), "default");
    wait_for_listeners(&db, 1).await;
    once::enqueue_many(&db.pool, (0..JOBS).map(|_| once::Args { millis: 1 }))
        .await
        .unwrap();
    // Kill it while it holds claimed jobs it has not started: more running
    // for it than its 4 slots.
    wait_until("the victim to buffer jobs", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running'")
            .await
            > 20
    })
    .await;
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    let worker = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500)),
    );
    wait_until("every job to finish", DEADLINE, || async {
        db.count(
            "SELECT count(*) FROM jobq_jobs
             WHERE state IN ('completed', 'discarded', 'cancelled')",
        )
        .await
            == JOBS
    })
    .await;
    worker.stop().await.unwrap();
    let (completed, lost, never_ran): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'completed'),
                count(*) FILTER (WHERE lost_attempts > 0),
                count(*) FILTER (WHERE NOT EXISTS (
                    SELECT 1 FROM test_runs r WHERE r.job_id = j.id))
         FROM jobq_jobs j",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    println!("{completed} of {JOBS} completed; {lost} lost with the killed worker");
    assert!(lost > 0, "the kill took no job with it");
    assert_eq!(completed, JOBS, "a job lost with its worker was discarded");
    assert_eq!(never_ran, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lost_with_its_worker_too_often_is_discarded_with_the_reason() {
    let db = TestDb::new("lost_bound").await;
    let dead: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues, heartbeat_at)
         VALUES ('gone', 1, '{default}', now() - interval '1 hour') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Lost with its worker once short of the bound; then once more, after
    // it said it started (a suspect, it ran alone).
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, state, attempt, lost_attempts,
                               attempted_by, attempted_at, started_attempt)
         VALUES ('record', 'default', '{\"n\": 1}', 3, 'running', $2, $2 - 1, $1, now(), $2)
         RETURNING id",
    )
    .bind(dead)
    .bind(jobq::MAX_LOST_ATTEMPTS)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let worker = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_millis(800))
            .heartbeat_interval(Duration::from_millis(200)),
    );
    wait_until("the job to be discarded", DEADLINE, || async {
        state_of(&db.pool, JobId(id)).await == "discarded"
    })
    .await;
    worker.stop().await.unwrap();
    let last: String =
        sqlx::query_scalar("SELECT errors -> -1 ->> 'error' FROM jobq_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        last.contains("attempts of this job were lost with their worker"),
        "{last}"
    );
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_states_that_leave_out_an_unfinished_state_are_refused() {
    let db = TestDb::new("unique_states").await;
    for states in [
        &[
            JobState::Available,
            JobState::Scheduled,
            JobState::Retryable,
        ][..],
        &[JobState::Running][..],
        &[JobState::Completed][..],
    ] {
        let refused = record::builder(record::Args { n: 1 })
            .unique_key("k")
            .unique_states(states)
            .enqueue(&db.pool)
            .await;
        let Err(jobq::Error::Enqueue(message)) = refused else {
            panic!("unique_states {states:?} accepted: {refused:?}");
        };
        assert!(message.contains("every unfinished state"), "{message}");
    }
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 0);
    // Finished states may be added.
    record::builder(record::Args { n: 1 })
        .unique_key("k")
        .unique_states(&JobState::ALL)
        .enqueue(&db.pool)
        .await
        .unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_keys_of_any_length_hold() {
    let db = TestDb::new("long_keys").await;
    // A key and arguments far past a btree entry's 2.7 kB, and random, so
    // that no compression brings them under it.
    let random = |n: usize| (0..n).map(|_| fastrand::alphanumeric()).collect::<String>();
    let long = random(8000);
    let first = record::builder(record::Args { n: 1 })
        .unique_key(long.clone())
        .insert(&db.pool)
        .await
        .unwrap();
    let again = record::builder(record::Args { n: 2 })
        .unique_key(long.clone())
        .insert(&db.pool)
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!((again.id, again.duplicate), (first.id, true));
    let a = dedup::enqueue(&db.pool, dedup::Args { key: long.clone() })
        .await
        .unwrap();
    let b = dedup::enqueue(&db.pool, dedup::Args { key: long.clone() })
        .await
        .unwrap();
    let many = dedup::enqueue_many(
        &db.pool,
        [long.clone(), random(5000)].map(|key| dedup::Args { key }),
    )
    .await
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(many[0], a);
    assert_ne!(many[1], a);
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 3);
    db.cleanup().await;
}

/// A worker taken for dead has had its jobs given to others: a handler it
/// still runs is dropped within a second of its token, however long the
/// grace a cancelled handler gets otherwise, so that two attempts of a job
/// do not run side by side for that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_its_handlers_within_a_second_whatever_the_grace() {
    let db = TestDb::new("lease_lost_grace").await;
    let worker = InProcess::start(
        test_worker(&db.pool)
            .cancel_grace(Duration::from_secs(600))
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500)),
    );
    let id = ignores_its_token::enqueue(&db.pool, ignores_its_token::Args {})
        .await
        .unwrap();
    let started = || db.count("SELECT count(*) FROM test_runs WHERE event = 'started'");
    wait_until("the job to start", DEADLINE, || async {
        started().await == 1
    })
    .await;
    // Taken for dead (no rescue here: the row still names this worker). Its
    // next heartbeat finds its row gone, interrupts the attempt and
    // registers again; the attempt, dropped, goes back to `available`
    // without counting, and the worker claims it once more.
    sqlx::query("DELETE FROM jobq_workers")
        .execute(&db.pool)
        .await
        .unwrap();
    // Half a second to the next beat and a second of grace, against the
    // ten minutes the grace would give: 30 s is plenty for a busy machine.
    wait_until(
        "the interrupted attempt to be dropped and the job to start again",
        Duration::from_secs(30),
        || async { started().await == 2 },
    )
    .await;
    assert_eq!(
        state_of(&db.pool, id).await,
        "running",
        "the job runs again"
    );
    // A graceful stop would give the handler its ten minutes.
    worker.abandon();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_row_was_removed_claims_nothing_under_it() {
    let db = TestDb::new("fenced_claim").await;
    // A worker whose row a rescuer removed, and which cannot register again
    // for now (a trigger refuses it): anything it claimed under its old id
    // would look orphaned to the next rescue pass, and run again.
    sqlx::raw_sql(
        "CREATE TABLE test_block_workers ();
         CREATE FUNCTION test_block_workers() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF EXISTS (SELECT FROM test_block_workers) AND NEW.host <> 'dead' THEN
                 RAISE EXCEPTION 'registration blocked by the test';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER test_block_workers BEFORE INSERT ON jobq_workers
             FOR EACH ROW EXECUTE FUNCTION test_block_workers();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let worker = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500)),
    );
    wait_for_listeners(&db, 1).await;
    let removed = db
        .count(
            "WITH b AS (INSERT INTO test_block_workers DEFAULT VALUES),
                  d AS (DELETE FROM jobq_workers RETURNING 1)
             SELECT count(*) FROM d",
        )
        .await;
    assert_eq!(removed, 1);
    let ids = once::enqueue_many(&db.pool, (0..20).map(|_| once::Args { millis: 300 }))
        .await
        .unwrap();
    // Two rescue passes after the jobs were announced: a dead worker's row
    // for each to remove.
    rescue_passes(&db, 2).await;
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs").await,
        0,
        "a worker without its row ran jobs"
    );
    // Free to register again, it runs each job once.
    sqlx::query("DELETE FROM test_block_workers")
        .execute(&db.pool)
        .await
        .unwrap();
    wait_until("every job to finish", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == ids.len() as i64
    })
    .await;
    worker.stop().await.unwrap();
    let twice = db
        .count(
            "SELECT count(*) FROM (SELECT job_id FROM test_runs GROUP BY job_id
                                   HAVING count(*) > 1) AS t",
        )
        .await;
    assert_eq!(twice, 0, "jobs ran twice");
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 20);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_holding_every_pooled_connection_do_not_cost_the_worker_its_lease() {
    let db = TestDb::new("starved_heartbeat").await;
    // The worker's pool: 4 connections, all held by jobs for 4 s, past a 2 s
    // lease; another worker rescues what looks dead.
    let small = PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .unwrap();
    let starved = InProcess::start(
        jobq::Worker::new(small.clone())
            .state(db.pool.clone())
            .queue("default", 4)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500))
            .shutdown_grace(Duration::from_secs(10)),
    );
    wait_for_listeners(&db, 1).await;
    let ids = hogs_a_connection::enqueue_many(
        &db.pool,
        (0..4).map(|_| hogs_a_connection::Args { millis: 4000 }),
    )
    .await
    .unwrap();
    wait_until("the jobs to start", DEADLINE, || async {
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await
            == 4
    })
    .await;
    let rescuer = InProcess::start(
        test_worker(&db.pool)
            .queue("elsewhere", 1)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500)),
    );
    wait_until("the jobs to finish", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == ids.len() as i64
    })
    .await;
    rescuer.stop().await.unwrap();
    starved.stop().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await,
        4,
        "a job ran twice: its worker was taken for dead"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE lost_attempts > 0")
            .await,
        0
    );
    db.cleanup().await;
}

/// The server's address from `DATABASE_URL`.
fn server_addr() -> std::net::SocketAddr {
    let options: PgConnectOptions = jobq_tests::server_url().parse().unwrap();
    let host = match options.get_host() {
        "localhost" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{}", options.get_port()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_claim_is_put_back_only_once_its_session_is_gone() {
    let db = TestDb::new("lost_claim").await;
    let proxy = Proxy::start(server_addr()).await;
    let url = {
        let options: PgConnectOptions = db.url.parse().unwrap();
        options
            .host("127.0.0.1")
            .port(proxy.addr.port())
            .to_url_lossy()
            .to_string()
    };
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&pool).state(db.pool.clone()));
    wait_for_listeners(&db, 1).await;
    // A lock the claim waits for, as behind a migration.
    let mut blocker = db.connection().await;
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobq_queues IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let id = record::enqueue(&db.pool, record::Args { n: 7 })
        .await
        .unwrap();
    let claiming: i32 = {
        let mut pid = None;
        let start = Instant::now();
        while pid.is_none() {
            pid = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%FOR UPDATE SKIP LOCKED%'",
            )
            .fetch_optional(&db.pool)
            .await
            .unwrap();
            assert!(start.elapsed() < DEADLINE, "no claim waited for the lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pid.unwrap()
    };
    // The worker loses the claim's answer; the claim's session lives on.
    proxy.cut_clients();
    // The worker ends that session before putting the claim back.
    wait_until(
        "the lost claim's session to end",
        Duration::from_secs(20),
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(claiming)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            left == 0
        },
    )
    .await;
    lock.commit().await.unwrap();
    wait_until("the job to complete", DEADLINE, || async {
        state_of(&db.pool, id).await == "completed"
    })
    .await;
    worker.stop().await.unwrap();
    drop(proxy);
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 1);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_blocked_by_a_lock_does_not_block_shutdown() {
    let db = TestDb::new("blocked_shutdown").await;
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_listeners(&db, 1).await;
    let mut blocker = db.connection().await;
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobq_queues IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let id = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    wait_until("a claim to wait for the lock", DEADLINE, || async {
        db.count(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%FOR UPDATE SKIP LOCKED%'",
        )
        .await
            > 0
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), worker.stop())
        .await
        .expect("stop() did not return while a claim waited for a lock")
        .unwrap();
    lock.commit().await.unwrap();
    // The abandoned claim never took the job, or was put back.
    assert_eq!(state_of(&db.pool, id).await, "available");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_decoder_fails_its_own_job_only() {
    let db = TestDb::new("panicking_decoder").await;
    let bad = decodes_badly::enqueue(&db.pool, decodes_badly::Args { n: 13 })
        .await
        .unwrap();
    let good = decodes_badly::enqueue_many(
        &db.pool,
        (0..20).map(|n| decodes_badly::Args { n: 100 + n }),
    )
    .await
    .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_until("the bad job to be discarded", DEADLINE, || async {
        state_of(&db.pool, bad).await == "discarded"
    })
    .await;
    wait_until("the good jobs to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == good.len() as i64
    })
    .await;
    worker.stop().await.unwrap();
    let errors: serde_json::Value =
        sqlx::query_scalar("SELECT errors FROM jobq_jobs WHERE id = $1")
            .bind(bad.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 2, "{errors}");
    assert_eq!(errors[0]["kind"], "panic");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("the decoder panicked on 13"),
        "{errors}"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_that_are_not_finite_are_refused() {
    let db = TestDb::new("infinite_times").await;
    for at in ["-infinity", "infinity"] {
        let refused = sqlx::query(
            "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, scheduled_at)
             VALUES ('record', 'default', '{\"n\": 1}', 1, $1::timestamptz)",
        )
        .bind(at)
        .execute(&db.pool)
        .await
        .expect_err("a job due at a time that is not finite was stored");
        let code = refused.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23514"), "{refused}");
    }
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_takes_no_neighbour_with_it() {
    let db = TestDb::new("abort_neighbours").await;
    // One job that aborts its process, first in the queue, and three that
    // would succeed, all claimed together by each worker that comes up.
    let poison = aborts::enqueue(&db.pool, aborts::Args { millis: 200 })
        .await
        .unwrap();
    bystander::enqueue_many(&db.pool, (0..3).map(|_| bystander::Args { millis: 1500 }))
        .await
        .unwrap();
    // A supervisor that starts the worker again each time it dies.
    let open = || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state NOT IN ('completed', 'discarded')")
            .await
    };
    let mut crashes = 0;
    let start = Instant::now();
    while open().await > 0 {
        assert!(start.elapsed() < Duration::from_secs(150), "never settled");
        let mut worker = spawn_worker_process_with_lease(
            WORKER_BIN,
            &db.url,
            4,
            Duration::from_secs(2),
            "abortq",
        );
        loop {
            if worker.try_wait().unwrap().is_some() {
                crashes += 1;
                break;
            }
            if open().await == 0 {
                sigterm(&worker);
                wait_exit(&mut worker, DEADLINE).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let jobs: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT kind, state::text, lost_attempts FROM jobq_jobs ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    println!("{crashes} crashes: {jobs:?}");
    assert_eq!(state_of(&db.pool, poison).await, "discarded");
    assert_eq!(
        jobs.iter()
            .filter(|(kind, state, _)| kind == "bystander" && state == "completed")
            .count(),
        3,
        "a job was discarded because another killed their worker: {jobs:?}"
    );
    let reason: String =
        sqlx::query_scalar("SELECT errors -> -1 ->> 'error' FROM jobq_jobs WHERE id = $1")
            .bind(poison.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(reason.contains("were lost with their worker"), "{reason}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_judged_by_its_own_lease() {
    let db = TestDb::new("own_lease").await;
    // A worker with a long lease...
    let patient = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_secs(30))
            .heartbeat_interval(Duration::from_secs(10)),
    );
    wait_for_listeners(&db, 1).await;
    let (patient_id, registered, beat): (
        i64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("SELECT id, started_at, heartbeat_at FROM jobq_workers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // ...and one with a lease of 1 s, whose rescuer passes every 250 ms.
    let eager = InProcess::start(
        test_worker(&db.pool)
            .queue("elsewhere", 1)
            .lease_timeout(Duration::from_secs(1))
            .heartbeat_interval(Duration::from_millis(250)),
    );
    // The patient worker's last beat gets older than the eager one's lease...
    wait_until("1.5 s past the patient worker's beat", DEADLINE, || async {
        sqlx::query_scalar::<_, bool>("SELECT now() > $1 + interval '1500 ms'")
            .bind(beat)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    })
    .await;
    // ...through two rescue passes.
    rescue_passes(&db, 2).await;
    // The same row: not removed (and registered again since).
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobq_workers WHERE id = $1 AND started_at = $2")
            .bind(patient_id)
            .bind(registered)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(kept, 1, "a worker was taken for dead by another's lease");
    eager.stop().await.unwrap();
    patient.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_block_their_threads_do_not_cost_the_worker_its_lease() {
    let db = TestDb::new("blocking_handlers").await;
    // A worker process of 2 runtime threads (2 cores), both blocked by its
    // jobs for 5 s, past a 2 s lease; another worker rescues what looks dead.
    let mut blocked =
        spawn_worker_process_with_lease(WORKER_BIN, &db.url, 2, Duration::from_secs(2), "blocking");
    wait_for_listeners(&db, 1).await;
    let rescuer = InProcess::start(
        test_worker(&db.pool)
            .queue("elsewhere", 1)
            .lease_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(500)),
    );
    wait_for_listeners(&db, 2).await;
    let ids = blocks::enqueue_many(&db.pool, (0..2).map(|_| blocks::Args { millis: 5000 }))
        .await
        .unwrap();
    wait_until("the jobs to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == ids.len() as i64
    })
    .await;
    rescuer.stop().await.unwrap();
    sigterm(&blocked);
    wait_exit(&mut blocked, DEADLINE).await;
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await,
        2,
        "a job ran twice: its worker was taken for dead"
    );
    db.cleanup().await;
}

/// Under a backlog, the claim passes over rows another transaction touched
/// since its snapshot, judged by their `xmax` against the oldest running
/// transaction. A job a finished transaction merely locked (another claim's
/// leftover of a kind it did not take, an admin's `FOR UPDATE`) looks so
/// too for as long as an older transaction runs: a claim without a backlog
/// (the last one took less than it asked) reads the queue without that
/// test, so the job still runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_a_finished_transaction_locked_runs_while_an_older_one_is_open() {
    let db = TestDb::new("locked_then_old_txn").await;
    let id = record::enqueue(&db.pool, record::Args { n: 1 })
        .await
        .unwrap();
    // An older transaction with an id, open throughout: the snapshots'
    // oldest running transaction stays older than the lock below.
    let mut old = db.pool.begin().await.unwrap();
    sqlx::query("SELECT txid_current()")
        .execute(&mut *old)
        .await
        .unwrap();
    let mut lock = db.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM jobq_jobs WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .execute(&mut *lock)
        .await
        .unwrap();
    lock.commit().await.unwrap();
    let xmax_set: bool = sqlx::query_scalar("SELECT xmax <> '0'::xid FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(xmax_set, "the lock left no xmax on the row");

    let worker = InProcess::start(test_worker(&db.pool));
    wait_until("the locked job to complete", DEADLINE, || async {
        state_of(&db.pool, id.0).await == "completed"
    })
    .await;
    worker.stop().await.unwrap();
    old.rollback().await.unwrap();
    db.cleanup().await;
}
