//! Crash safety, one behaviour at a time: timeouts, cancellation, controls
//! from inside a job, lease rescue, and the fencing that refuses a rescued
//! job's late result. (The multi-process fault suite is `faults.rs`.)

use std::time::Duration;

use jobq::{Cancellation, JobId};
use jobq_tests::faulty::overtaken;
use jobq_tests::{
    InProcess, TestDb, buffers_touched, controlled, explain_buffers, finishes_late,
    keep_statistics, overruns, record, test_worker, until_cancelled, wait_for_state, wait_until,
};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

async fn job_row(db: &TestDb, id: JobId) -> (String, i32, serde_json::Value) {
    sqlx::query_as("SELECT state::text, attempt, errors FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .expect("job row")
}

async fn wait_for_event(db: &TestDb, event: &'static str) {
    wait_until(&format!("a run to record `{event}`"), DEADLINE, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE event = $1")
            .bind(event)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        n > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_fails_with_a_timeout_error() {
    let db = TestDb::new("timeout").await;
    let id = overruns::enqueue(&db.pool, overruns::Args {})
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, id, "discarded").await;
    worker.stop().await.unwrap();
    let (_, attempt, errors) = job_row(&db, id).await;
    assert_eq!(attempt, 1);
    assert_eq!(errors[0]["kind"], json!("timeout"));
    assert_eq!(errors[0]["error"], json!("timed out after 300ms"));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_succeeds_within_the_grace_after_its_timeout_is_not_run_again() {
    let db = TestDb::new("timeout_grace").await;
    let id = finishes_late::enqueue(&db.pool, finishes_late::Args {})
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_state(&db.pool, id, "completed").await;
    worker.stop().await.unwrap();
    let (_, attempt, errors) = job_row(&db, id).await;
    assert_eq!((attempt, errors), (1, json!([])));
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 1);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_grace_of_zero_drops_the_handler_when_its_token_fires() {
    let db = TestDb::new("cancel_grace").await;
    // Would finish 300 ms after its timeout: within the default grace, but
    // not within none.
    let id = finishes_late::enqueue(&db.pool, finishes_late::Args {})
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool).cancel_grace(Duration::ZERO));
    wait_for_state(&db.pool, id, "discarded").await;
    worker.stop().await.unwrap();
    let (_, attempt, errors) = job_row(&db, id).await;
    assert_eq!(attempt, 4, "every attempt timed out");
    for e in errors.as_array().unwrap() {
        assert_eq!(e["kind"], json!("timeout"), "{errors}");
    }
    assert_eq!(db.count("SELECT count(*) FROM test_runs").await, 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_job_means_it_never_runs() {
    let db = TestDb::new("cancel_waiting").await;
    let id = record::builder(record::Args { n: 1 })
        .delay(Duration::from_secs(3600))
        .enqueue(&db.pool)
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    assert_eq!(
        jobq::cancel(&mut tx, id).await.unwrap(),
        Cancellation::Cancelled
    );
    tx.commit().await.unwrap();
    assert_eq!(job_row(&db, id).await.0, "cancelled");
    assert_eq!(
        jobq::cancel(&db.pool, id).await.unwrap(),
        Cancellation::AlreadyFinished("cancelled".into())
    );
    assert_eq!(
        jobq::cancel(&db.pool, JobId(999_999)).await.unwrap(),
        Cancellation::NotFound
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_fires_its_token_and_ends_it_cancelled() {
    let db = TestDb::new("cancel_running").await;
    let id = until_cancelled::enqueue(&db.pool, until_cancelled::Args {})
        .await
        .unwrap();
    // A long grace: the handler's record of its token may be slow on a busy
    // machine, and the test is of the token, not of the grace.
    let worker = InProcess::start(test_worker(&db.pool).cancel_grace(Duration::from_secs(60)));
    wait_for_event(&db, "started").await;
    assert_eq!(
        jobq::cancel(&db.pool, id).await.unwrap(),
        Cancellation::Requested
    );
    wait_for_state(&db.pool, id, "cancelled").await;
    worker.stop().await.unwrap();
    let (_, attempt, errors) = job_row(&db, id).await;
    assert_eq!(attempt, 1, "not retried");
    assert_eq!(errors[0]["kind"], json!("cancelled"));
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'saw cancellation'")
            .await,
        1
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_missed_while_not_listening_is_read_back_on_reconnect() {
    let db = TestDb::new("cancel_replay").await;
    let id = until_cancelled::enqueue(&db.pool, until_cancelled::Args {})
        .await
        .unwrap();
    let worker = InProcess::start(test_worker(&db.pool));
    wait_for_event(&db, "started").await;
    // A cancellation whose notification never arrives, as when it is sent
    // while the worker's LISTEN connection is down.
    sqlx::query("UPDATE jobq_jobs SET cancel_requested_at = now() WHERE id = $1")
        .bind(id.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let dropped = db
        .count(
            "SELECT count(*) FROM (
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
        )
        .await;
    assert_eq!(dropped, 1, "the worker's LISTEN connection");
    wait_for_state(&db.pool, id, "cancelled").await;
    worker.stop().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'saw cancellation'")
            .await,
        1
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_can_snooze_retry_at_a_time_or_discard_itself() {
    let db = TestDb::new("controls").await;
    let enqueue = |action: &str| {
        controlled::enqueue(
            &db.pool,
            controlled::Args {
                action: action.into(),
            },
        )
    };
    let snooze = enqueue("snooze").await.unwrap();
    let retry = enqueue("retry_at").await.unwrap();
    let discard = enqueue("discard").await.unwrap();
    // No polling to fall back on: the snooze and the retry must start when
    // they are due because the worker knows when that is.
    let worker = InProcess::start(test_worker(&db.pool).poll_interval(Duration::from_secs(3600)));
    wait_for_state(&db.pool, snooze, "completed").await;
    wait_for_state(&db.pool, retry, "completed").await;
    wait_for_state(&db.pool, discard, "discarded").await;
    worker.stop().await.unwrap();

    // Snoozed: ran twice, yet used one attempt and recorded no error.
    let (_, attempt, errors) = job_row(&db, snooze).await;
    assert_eq!((attempt, errors), (1, json!([])));
    // Retried at a time: a failed attempt with the job's reason.
    let (_, attempt, errors) = job_row(&db, retry).await;
    assert_eq!(attempt, 2);
    assert_eq!(
        errors[0]["error"],
        json!("the remote asked us to come back later")
    );
    // Discarded: at once, though it had retries left.
    let (_, attempt, errors) = job_row(&db, discard).await;
    assert_eq!(attempt, 1);
    assert_eq!(errors[0]["kind"], json!("discard"));
    assert_eq!(errors[0]["error"], json!("this can never work"));

    let runs: Vec<(i64, i64)> =
        sqlx::query_as("SELECT job_id, count(*) FROM test_runs GROUP BY job_id ORDER BY job_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(runs, vec![(snooze.0, 2), (retry.0, 2), (discard.0, 1)]);
    // The retry waited for its time: at least 300 ms between the two runs.
    let gap: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(at) - min(at))::float8 FROM test_runs WHERE job_id = $1",
    )
    .bind(retry.0)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(gap >= 0.29, "retried after {gap}s");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_job_of_a_worker_gone_stale_is_rescued_and_run_again() {
    let db = TestDb::new("rescue_stale").await;
    // A worker that last beat an hour ago, holding a job mid-run.
    let dead: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_workers (host, pid, queues, heartbeat_at)
         VALUES ('gone', 1, '{default}', now() - interval '1 hour') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, state, attempt, attempted_by,
                               attempted_at)
         VALUES ('record', 'default', '{\"n\": 1}', 3, 'running', 1, $1, now())
         RETURNING id",
    )
    .bind(dead)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let worker = rescuing_worker(&db);
    wait_for_state(&db.pool, JobId(id), "completed").await;
    worker.stop().await.unwrap();
    let (_, attempt, errors) = job_row(&db, JobId(id)).await;
    assert_eq!(attempt, 2);
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["kind"], json!("lost"));
    assert_eq!(errors[0]["attempt"], json!(1));
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_workers").await,
        0,
        "the dead worker's row is gone, the live one deregistered"
    );
    db.cleanup().await;
}

/// A test worker that rescues within a second: lease 800 ms, heartbeat
/// every 200 ms.
fn rescuing_worker(db: &TestDb) -> InProcess {
    InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_millis(800))
            .heartbeat_interval(Duration::from_millis(200)),
    )
}

/// The rescue reads each job once, whatever the table's statistics say. With
/// statistics taken while no job ran, the planner once guessed one running
/// job and read the whole `jobq_jobs_running` index once per lost job:
/// seconds of work with thousands running, on every rescuer tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescue_reads_each_lost_job_once_whatever_the_statistics_say() {
    let db = TestDb::new("rescue_linear").await;
    // 3,000 jobs waiting when the table is analyzed, then claimed: 2,000 by
    // the live worker, 1,000 by the dead one. Their queue is not the test
    // worker's, so rescued jobs stay `available`.
    let (live, dead) = analyzed_while_waiting(&db, 3000, ("1 hour", 1000)).await;
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'running', attempt = 1, attempted_at = now(),
             attempted_by = CASE WHEN id % 3 = 0 THEN $2 ELSE $1 END",
    )
    .bind(live)
    .bind(dead)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM jobq_workers WHERE id = $1")
        .bind(dead)
        .execute(&db.pool)
        .await
        .unwrap();
    let lost: Vec<i64> = sqlx::query_scalar(jobq::__private::LOST_SQL)
        .bind(100_000i64)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(lost.len(), 1000);
    // About a dozen buffers per job read (index, heap, the worker's key and
    // the new versions). Reading the running index once per lost job costs
    // hundreds per job.
    let finding = buffers_touched(
        &db.pool,
        explain_buffers(jobq::__private::LOST_SQL).bind(100_000i64),
    )
    .await;
    let taking = buffers_touched(
        &db.pool,
        explain_buffers(jobq::__private::RESCUE_SQL)
            .bind(jobq::MAX_LOST_ATTEMPTS)
            .bind(2i32)
            .bind(lost.clone()),
    )
    .await;
    assert!(
        finding < 10 * 3000 && taking < 30 * 1000,
        "finding the lost jobs read {finding} buffers and taking them back {taking}"
    );

    let worker = rescuing_worker(&db);
    wait_until(
        "the dead worker's jobs to be taken back",
        DEADLINE,
        || async {
            db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'available'")
                .await
                == 1000
        },
    )
    .await;
    worker.stop().await.unwrap();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM jobq_jobs WHERE state = 'available' AND lost_attempts = 1
               AND id % 3 = 0 AND errors -> 0 ->> 'kind' = 'lost'"
        )
        .await,
        1000,
        "exactly the dead worker's jobs, each with its lost attempt"
    );
    db.cleanup().await;
}

/// Two workers' rows and `jobs` jobs waiting on a queue neither runs
/// (`elsewhere`), the table analyzed then and its statistics kept (see
/// [`keep_statistics`]); the tests then make the jobs run. The first worker
/// is live; the second's heartbeat is `second.0` (an interval) old and its
/// lease `second.1` ms. Returns the workers' ids.
async fn analyzed_while_waiting(db: &TestDb, jobs: i64, second: (&str, i64)) -> (i64, i64) {
    let ids = sqlx::query_as(
        "WITH w AS (
            INSERT INTO jobq_workers (host, pid, queues, heartbeat_at, lease_ms)
            VALUES ('first', 1, '{elsewhere}', now(), 3600000),
                   ('second', 2, '{elsewhere}', now() - $1::interval, $2)
            RETURNING id, host)
         SELECT (SELECT id FROM w WHERE host = 'first'), (SELECT id FROM w WHERE host = 'second')",
    )
    .bind(second.0)
    .bind(second.1)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts)
         SELECT 'record', 'elsewhere', jsonb_build_object('n', i), 3
         FROM generate_series(1, $1) AS i",
    )
    .bind(jobs)
    .execute(&db.pool)
    .await
    .unwrap();
    keep_statistics(&db.pool).await;
    ids
}

/// A result is written by its job's id, whatever the table's statistics say.
/// With statistics taken while no job ran, the planner guessed one running
/// job for the worker and read all the worker's running jobs through
/// `jobq_jobs_running` to write each result: a completion cost as much as
/// the worker ran jobs (424 buffers to complete one job of a worker running
/// 1,000), on every completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_written_by_id_whatever_the_statistics_say() {
    let db = TestDb::new("finish_by_id").await;
    // 20,000 jobs waiting when the table is analyzed, then claimed by two
    // live workers, turn about: 10,000 running for each.
    let (me, other) = analyzed_while_waiting(&db, 20000, ("0", 3_600_000)).await;
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'running', attempt = 1, attempted_at = now(),
             attempted_by = CASE WHEN id % 2 = 0 THEN $1 ELSE $2 END",
    )
    .bind(me)
    .bind(other)
    .execute(&db.pool)
    .await
    .unwrap();
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM jobq_jobs WHERE attempted_by = $1 ORDER BY id LIMIT 50")
            .bind(me)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    // A dozen buffers or so per job written (its key, its row, the new
    // version and its index entries). Reading the worker's running jobs
    // costs hundreds, whatever the batch.
    let one = buffers_touched(
        &db.pool,
        explain_buffers(jobq::__private::COMPLETE_SQL)
            .bind(me)
            .bind(&ids[..1])
            .bind(vec![1i32]),
    )
    .await;
    let started = buffers_touched(
        &db.pool,
        explain_buffers(jobq::__private::MARK_STARTED_SQL)
            .bind(ids[0])
            .bind(me)
            .bind(1i32),
    )
    .await;
    assert!(
        one < 50 && started < 50,
        "completing one job read {one} buffers, marking its start {started}"
    );

    // The statement still writes what it should, and only that.
    let written = sqlx::query(jobq::__private::COMPLETE_SQL)
        .bind(me)
        .bind(&ids)
        .bind(vec![1i32; ids.len()])
        .execute(&db.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(written, 50);
    let refused = sqlx::query(jobq::__private::COMPLETE_SQL)
        .bind(other)
        .bind(vec![ids[0] + 1])
        .bind(vec![2i32])
        .execute(&db.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(refused, 0, "another attempt's result is refused");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await,
        50
    );
    db.cleanup().await;
}

/// A pass takes back at most 10,000 jobs (a pass over millions would outlive
/// its statement timeout and never finish); more are taken by the passes
/// after it, each job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_lost_jobs_than_one_pass_takes_are_all_taken_back_once() {
    let db = TestDb::new("rescue_many").await;
    // 25,000 jobs running for a worker that has no row; their queue is not
    // the test worker's, so rescued jobs stay `available`.
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, max_attempts, state, attempt, attempted_by,
                               attempted_at)
         SELECT 'record', 'elsewhere', jsonb_build_object('n', i), 3, 'running', 1, -7, now()
         FROM generate_series(1, 25000) AS i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let worker = rescuing_worker(&db);
    wait_until("every lost job to be taken back", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'running'")
            .await
            == 0
    })
    .await;
    worker.stop().await.unwrap();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM jobq_jobs WHERE state = 'available' AND lost_attempts = 1
               AND jsonb_array_length(errors) = 1"
        )
        .await,
        25000,
        "each job taken back once, with one lost attempt"
    );
    // Each pass is a transaction of its own, with its own `now()`.
    assert!(
        db.count("SELECT count(DISTINCT errors -> 0 ->> 'at') FROM jobq_jobs")
            .await
            >= 3,
        "25,000 jobs taken back by fewer than three passes"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescued_jobs_old_worker_cannot_overwrite_the_newer_attempt() {
    let db = TestDb::new("fencing").await;
    let id = overtaken::enqueue(&db.pool, overtaken::Args {})
        .await
        .unwrap();
    // The old worker: its heartbeat is so rare that it looks dead to a worker
    // with a short lease.
    let old = InProcess::start(
        test_worker(&db.pool)
            .queue("default", 1)
            .heartbeat_interval(Duration::from_secs(1200))
            .lease_timeout(Duration::from_secs(3600)),
    );
    wait_for_event(&db, "started").await;
    let old_id: i64 = sqlx::query_scalar("SELECT attempted_by FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // A worker is judged by its own lease: the old one's is cut to the new
    // one's, so that it looks dead while its attempt still runs.
    sqlx::query("UPDATE jobq_workers SET lease_ms = 600 WHERE id = $1")
        .bind(old_id)
        .execute(&db.pool)
        .await
        .unwrap();
    let new = InProcess::start(
        test_worker(&db.pool)
            .lease_timeout(Duration::from_millis(600))
            .heartbeat_interval(Duration::from_millis(100)),
    );
    // The old attempt fails while the newer one runs; the newer one
    // completes after that failure came back to the old worker.
    wait_for_state(&db.pool, id, "completed").await;
    new.stop().await.unwrap();
    old.stop().await.unwrap();
    let (state, attempt, errors) = job_row(&db, id).await;
    assert_eq!(state, "completed");
    assert_eq!(
        db.count("SELECT count(*) FROM test_runs WHERE event = 'started'")
            .await,
        2,
        "the old attempt's failure was written over the newer attempt, which ran again"
    );
    assert_eq!(attempt, 2);
    let by: i64 = sqlx::query_scalar("SELECT attempted_by FROM jobq_jobs WHERE id = $1")
        .bind(id.0)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_ne!(by, old_id, "the newer attempt's worker recorded the result");
    let errors = errors.as_array().unwrap();
    assert_eq!(
        errors.len(),
        1,
        "only the rescue is in the history: {errors:?}"
    );
    assert_eq!(errors[0]["kind"], json!("lost"));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_shorter_than_two_heartbeats_is_refused() {
    let db = TestDb::new("lease_config").await;
    let err = test_worker(&db.pool)
        .heartbeat_interval(Duration::from_secs(10))
        .lease_timeout(Duration::from_secs(15))
        .run_until(async {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("at most half the lease timeout"),
        "{err}"
    );
    db.cleanup().await;
}
