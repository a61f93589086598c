//! The fault suite: three worker processes, 5,000 jobs that each record their
//! execution, mixed with poison jobs (errors with a NUL byte or of 10 MB,
//! snoozes of `Duration::MAX`, decoders that panic), one worker killed with
//! SIGKILL mid-run and the PostgreSQL server restarted mid-run. Nothing
//! committed may be lost, a job may run twice only if it was running on the
//! killed worker or during the outage, every poison job ends with a readable
//! reason, and no job is left `running`.
//!
//! Alone in its test binary on purpose: the restart drops every connection to
//! the server, which would break tests running beside it.

use std::process::Command;
use std::time::{Duration, Instant};

use jobq_tests::faulty::decodes_badly;
use jobq_tests::{
    TestDb, huge_error, listeners, nul_error, sigterm, snoozes_forever,
    spawn_worker_process_with_lease, wait_exit, wait_until, work,
};

const WORKER_BIN: &str = env!("CARGO_BIN_EXE_test-worker");
const JOBS: i64 = 5_000;
const LEASE: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(180);
/// Poison jobs of each kind, spread through the ordinary ones.
const POISON: usize = 20;

/// Counts with a query that may fail while the server restarts (then `None`).
async fn try_count(db: &TestDb, sql: &'static str) -> Option<i64> {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.ok()
}

async fn wait_completed(db: &TestDb, at_least: i64) {
    wait_until(&format!("{at_least} completed jobs"), DEADLINE, || async {
        try_count(
            db,
            "SELECT count(*) FROM jobq_jobs WHERE state = 'completed' AND kind = 'work'",
        )
        .await
        .is_some_and(|n| n >= at_least)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_a_database_restart_lose_no_job() {
    let db = TestDb::new("faults").await;
    let mut workers: Vec<_> = (0..3)
        .map(|_| spawn_worker_process_with_lease(WORKER_BIN, &db.url, 8, LEASE, "default"))
        .collect();
    wait_until("3 workers to LISTEN", DEADLINE, || async {
        listeners(&db.pool, jobq::__private::INSERT_CHANNEL).await == Some(3)
    })
    .await;
    let started = Instant::now();
    // Ordinary jobs in batches, poison jobs between them.
    for _ in 0..POISON {
        work::enqueue_many(
            &db.pool,
            (0..JOBS / POISON as i64).map(|_| work::Args { millis: 5 }),
        )
        .await
        .unwrap();
        nul_error::enqueue(&db.pool, nul_error::Args {})
            .await
            .unwrap();
        snoozes_forever::enqueue(&db.pool, snoozes_forever::Args {})
            .await
            .unwrap();
        decodes_badly::enqueue(&db.pool, decodes_badly::Args { n: 13 })
            .await
            .unwrap();
    }
    for _ in 0..3 {
        huge_error::enqueue(&db.pool, huge_error::Args {})
            .await
            .unwrap();
    }

    // Kill one worker mid-run.
    wait_completed(&db, JOBS / 5).await;
    let victim = workers.remove(0);
    let victim_id: i64 = sqlx::query_scalar("SELECT id FROM jobq_workers WHERE pid = $1")
        .bind(victim.id() as i32)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let running_on_victim: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobq_jobs WHERE state = 'running' AND attempted_by = $1",
    )
    .bind(victim_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut victim = victim;
    victim.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    victim.wait().unwrap();

    // Measure how long the victim's jobs stay stuck.
    wait_until("the victim's jobs to be rescued", DEADLINE, || async {
        let stuck: Option<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM jobq_jobs WHERE state = 'running' AND attempted_by = $1",
        )
        .bind(victim_id)
        .fetch_one(&db.pool)
        .await
        .ok();
        stuck == Some(0)
    })
    .await;
    let recovered_after = killed_at.elapsed();

    // Restart the server mid-run, when the server is one this run started.
    let restarted = match std::env::var("JOBQ_PG_RESTART") {
        Ok(restart) => {
            wait_completed(&db, JOBS / 2).await;
            let status = Command::new(restart).status().expect("run pg-restart");
            assert!(status.success(), "pg-restart failed: {status}");
            true
        }
        Err(_) => {
            eprintln!("JOBQ_PG_RESTART unset (DATABASE_URL given): not restarting the server");
            false
        }
    };

    wait_completed(&db, JOBS).await;
    let elapsed = started.elapsed();
    // The poison jobs that end (all but the snoozed ones) may still be
    // between attempts: the last one enqueued fails as the last ordinary
    // jobs complete, and its retry is due a few milliseconds later. A
    // SIGTERM before it runs would leave it `available`.
    wait_until(
        "every poison job but the snoozed to end",
        DEADLINE,
        || async {
            try_count(
                &db,
                "SELECT count(*) FROM jobq_jobs
             WHERE kind IN ('nul_error', 'decodes_badly', 'huge_error')
               AND state NOT IN ('completed', 'discarded', 'cancelled')",
            )
            .await
                == Some(0)
        },
    )
    .await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        let status = wait_exit(w, Duration::from_secs(60)).await;
        assert!(status.success(), "surviving worker exited with {status}");
    }

    let (jobs, completed, runs, distinct, rerun): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobq_jobs WHERE kind = 'work'),
                (SELECT count(*) FROM jobq_jobs WHERE state = 'completed' AND kind = 'work'),
                (SELECT count(*) FROM test_runs),
                (SELECT count(DISTINCT job_id) FROM test_runs),
                (SELECT count(*) FROM (SELECT job_id FROM test_runs GROUP BY job_id
                                       HAVING count(*) > 1) AS r)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let (rescued, failed_in_outage): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE errors @> '[{\"kind\": \"lost\"}]'),
                count(*) FILTER (WHERE errors @> '[{\"kind\": \"error\"}]')
         FROM jobq_jobs",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Every job that ran more than once has a reason in its history: it was
    // rescued from the killed worker, or an attempt failed during the outage.
    let unexplained: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobq_jobs j
         WHERE (SELECT count(*) FROM test_runs r WHERE r.job_id = j.id) > 1
           AND NOT (j.errors @> '[{\"kind\": \"lost\"}]' OR j.errors @> '[{\"kind\": \"error\"}]')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let rescued_not_from_victim: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobq_jobs
         WHERE errors @> '[{\"kind\": \"lost\"}]'
           AND NOT errors @> jsonb_build_array(jsonb_build_object(
               'kind', 'lost',
               'error', 'worker ' || $1 || ' stopped heartbeating while running this attempt'))",
    )
    .bind(victim_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();

    println!(
        "fault suite: {jobs} jobs, {completed} completed, {runs} executions ({} extra), \
         {rerun} jobs re-executed; {running_on_victim} running on the killed worker, \
         {rescued} rescued; {failed_in_outage} with a failed attempt; \
         victim's jobs rescued {recovered_after:.2?} after the kill (lease {LEASE:?}); \
         server restarted: {restarted}; all done in {elapsed:.2?}",
        runs - distinct
    );
    assert_eq!(
        (jobs, completed, distinct),
        (JOBS, JOBS, JOBS),
        "no job lost"
    );
    assert_eq!(
        unexplained, 0,
        "a job ran twice with no crash or outage to explain it"
    );
    assert_eq!(
        rescued_not_from_victim, 0,
        "only the killed worker's jobs were rescued"
    );
    assert!(
        rerun <= rescued + failed_in_outage,
        "{rerun} re-executions, more than the {rescued} rescued + {failed_in_outage} failed jobs"
    );
    assert!(
        rescued <= running_on_victim + 64,
        "rescued more than the victim could hold"
    );

    // Poison jobs: each ended with a readable reason, none is left running.
    let poison: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT kind, state::text, count(*),
                min(errors -> -1 ->> 'error') FILTER (WHERE state <> 'scheduled')
         FROM jobq_jobs WHERE kind <> 'work' GROUP BY kind, state ORDER BY kind, state",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (kind, state, n, error) in &poison {
        let error: String = error
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(100)
            .collect();
        println!("poison jobs: {n} {kind} ended {state}; last error {error:?}");
    }
    let ended = |kind: &str, state: &str| {
        poison
            .iter()
            .filter(|(k, s, _, _)| k == kind && s == state)
            .map(|(_, _, n, _)| *n)
            .sum::<i64>()
    };
    let n = POISON as i64;
    // Kinds, states and counts only: an error may be 8 KiB long.
    let summary: Vec<(&str, &str, i64)> = poison
        .iter()
        .map(|(kind, state, n, _)| (kind.as_str(), state.as_str(), *n))
        .collect();
    assert_eq!(ended("nul_error", "discarded"), n, "{summary:?}");
    assert_eq!(ended("decodes_badly", "discarded"), n, "{summary:?}");
    assert_eq!(ended("huge_error", "discarded"), 3, "{summary:?}");
    // Snoozed as far as PostgreSQL stores, not lost, not running.
    assert_eq!(ended("snoozes_forever", "scheduled"), n, "{summary:?}");
    for (kind, state, _, error) in &poison {
        if state == "discarded" {
            let error = error.as_deref().unwrap_or_default();
            assert!(
                !error.is_empty() && error.len() <= 16 * 1024,
                "{kind}: unreadable reason {error:?}"
            );
        }
    }
    assert_eq!(
        try_count(
            &db,
            "SELECT count(*) FROM jobq_jobs WHERE state = 'running'"
        )
        .await,
        Some(0),
        "a job was left running"
    );
    db.cleanup().await;
}
