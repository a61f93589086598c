//! The `jobq` binary against a real database: outputs (`--json`), exit
//! codes, one-line errors, and a bulk retry of 100,000 jobs.

use std::process::Output;
use std::time::Duration;

use jobq_tests::{InProcess, TestDb, state_of, test_worker, wait_until};
use serde_json::Value;

const JOBQ: &str = env!("CARGO_BIN_EXE_jobq");

/// Runs `jobq args...` on `url` (none: no `DATABASE_URL` at all).
async fn jobq(url: Option<&str>, args: &[&str]) -> Output {
    let url = url.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(JOBQ);
        cmd.args(&args).env_remove("DATABASE_URL");
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url);
        }
        cmd.output().expect("run jobq")
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one JSON document on stdout of a command that succeeded.
fn json(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(o)))
}

/// A failure: exit `code`, one line on stderr starting `jobq: `, which
/// contains `says`.
fn fails(o: &Output, code: i32, says: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {} stderr: {err}",
        stdout(o)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("jobq: "), "{err}");
    assert!(err.contains(says), "`{says}` not in: {err}");
}

async fn insert(db: &TestDb, n: i64, kind: &str, queue: &str, state: &str) {
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at,
                                errors)
         SELECT $2, $3, jsonb_build_object('n', i), $4::jobq_state, 1,
                CASE WHEN $4 = 'available' THEN 0 ELSE 1 END,
                CASE WHEN $4 IN ('completed', 'discarded', 'cancelled') THEN now() END,
                CASE WHEN $4 = 'discarded'
                     THEN '[{\"attempt\": 1, \"kind\": \"error\", \"error\": \"smtp down\"}]'::jsonb
                     ELSE '[]' END
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .bind(kind)
    .bind(queue)
    .bind(state)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn migrate_status_fails_while_pending_and_every_command_says_to_migrate() {
    let db = TestDb::empty("cli_migrate").await;
    let url = Some(db.url.as_str());
    let pending = jobq(url, &["migrate", "status", "--json"]).await;
    assert_eq!(pending.status.code(), Some(3));
    let s: Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(s["current"], false);
    assert_eq!(s["pending"][0], "0001_jobs.sql");
    fails(&jobq(url, &["status"]).await, 1, "run `jobq migrate`");

    let migrated = jobq(url, &["migrate"]).await;
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(stdout(&migrated).contains("applied 0001_jobs.sql"));
    let s = json(&jobq(url, &["migrate", "status", "--json"]).await);
    assert_eq!(s["current"], true);
    assert_eq!(
        s["applied"].as_array().unwrap().len(),
        jobq::migrations().len()
    );
    db.cleanup().await;
}

#[tokio::test]
async fn the_printed_sql_migrates_a_database_as_jobq_migrate_does() {
    let db = TestDb::empty("cli_print_sql").await;
    let sql = jobq(None, &["migrate", "--print-sql"]).await;
    assert!(sql.status.success(), "needs no database: {}", stderr(&sql));
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(stdout(&sql)))
        .execute(&mut *tx)
        .await
        .expect("the printed SQL applies");
    tx.commit().await.unwrap();
    let status = jobq(Some(&db.url), &["migrate", "status"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let later = jobq(None, &["migrate", "--print-sql", "--after", "5"]).await;
    assert!(!stdout(&later).contains("0005_hardening.sql"));
    assert!(stdout(&later).contains("0006_"));
    assert!(stdout(&later).contains("0007_published_kinds.sql"));
    db.cleanup().await;
}

#[tokio::test]
async fn errors_are_one_line_on_stderr_with_a_non_zero_exit() {
    let db = TestDb::new("cli_errors").await;
    let url = Some(db.url.as_str());
    fails(
        &jobq(None, &["status"]).await,
        1,
        "no database: pass --database-url",
    );
    fails(
        &jobq(Some("postgres://postgres@127.0.0.1:1/none"), &["status"]).await,
        1,
        "cannot connect to the database at 127.0.0.1:1/none",
    );
    fails(
        &jobq(url, &["jobs", "show", "424242"]).await,
        1,
        "no job 424242",
    );
    fails(
        &jobq(url, &["jobs", "list", "--state", "failed"]).await,
        1,
        "--state: unknown job state `failed`; expected one of pending, available,",
    );
    fails(
        &jobq(url, &["jobs", "list", "--args", "{user_id: 7}"]).await,
        1,
        "--args: not JSON",
    );
    fails(
        &jobq(url, &["jobs", "list", "--since", "someday"]).await,
        1,
        "--since: `someday` is neither a time",
    );
    fails(&jobq(url, &["jobs", "retry"]).await, 1, "which jobs?");
    fails(
        &jobq(url, &["jobs", "retry", "1", "--state", "discarded"]).await,
        1,
        "not both",
    );
    let delete = jobq(url, &["jobs", "delete", "424242"]).await;
    fails(&delete, 1, "no job 424242");
    assert_eq!(
        stdout(&delete),
        "",
        "no \"deleted 0 job(s)\" beside the error"
    );
    fails(
        &jobq(url, &["prune", "--dry-run", "--completed", "24"]).await,
        1,
        "--completed `24` is not a duration: write one with its unit (90m, 24h, 7d) or `forever`",
    );
    fails(
        &jobq(url, &["queues", "pause", "bad name!"]).await,
        1,
        "queue",
    );
    fails(&jobq(url, &["prune"]).await, 1, "add --dry-run");
    let usage = jobq(url, &["jobs", "frobnicate"]).await;
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    db.cleanup().await;
}

#[tokio::test]
async fn status_and_queues_show_each_queue_with_its_warnings() {
    let db = TestDb::new("cli_status").await;
    let url = Some(db.url.as_str());
    insert(&db, 3, "send_email", "email", "available").await;
    insert(&db, 2, "send_email", "email", "discarded").await;
    let s = json(&jobq(url, &["status", "--json"]).await);
    let email = &s["queues"][0];
    assert_eq!(email["queue"], "email");
    assert_eq!(
        (email["available"].as_i64(), email["discarded"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(email["failed_last_minute"], 2);
    assert!(email["lag_seconds"].as_f64().is_some());
    assert_eq!(s["warnings"][0]["warning"], "queue_not_served");
    assert_eq!(s["warnings"][0]["waiting"], 3);
    let human = stdout(&jobq(url, &["status"]).await);
    assert!(
        human.contains("warning: queue `email` has 3 waiting job(s)"),
        "{human}"
    );

    assert!(
        jobq(url, &["queues", "pause", "email"])
            .await
            .status
            .success()
    );
    let q = json(&jobq(url, &["queues", "list", "--json"]).await);
    assert_eq!(
        (q[0]["queue"].as_str(), q[0]["paused"].as_bool()),
        (Some("email"), Some(true))
    );
    assert!(
        jobq(url, &["queues", "resume", "email"])
            .await
            .status
            .success()
    );
    let q = json(&jobq(url, &["queues", "list", "--json"]).await);
    assert_eq!(q[0]["paused"], false);
    db.cleanup().await;
}

#[tokio::test]
async fn jobs_list_pages_through_a_filter_and_show_tells_a_job_in_full() {
    let db = TestDb::new("cli_jobs").await;
    let url = Some(db.url.as_str());
    insert(&db, 5, "send_email", "email", "discarded").await;
    insert(&db, 5, "other", "email", "discarded").await;
    let first = json(
        &jobq(
            url,
            &[
                "jobs",
                "list",
                "--state",
                "discarded",
                "--kind",
                "send_email",
                "--limit",
                "3",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(first["jobs"].as_array().unwrap().len(), 3);
    let next = first["next"].as_str().expect("a next page").to_owned();
    let second = json(
        &jobq(
            url,
            &[
                "jobs",
                "list",
                "--state",
                "discarded",
                "--kind",
                "send_email",
                "--limit",
                "3",
                "--after",
                &next,
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(second["jobs"].as_array().unwrap().len(), 2);
    assert!(second["next"].is_null());
    let ids: Vec<i64> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["jobs"].as_array().unwrap())
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {ids:?}"
    );
    let by_args = json(&jobq(url, &["jobs", "list", "--args", r#"{"n": 2}"#, "--json"]).await);
    assert_eq!(by_args["jobs"].as_array().unwrap().len(), 2, "one per kind");

    let id = ids[0].to_string();
    let job = json(&jobq(url, &["jobs", "show", &id, "--json"]).await);
    assert_eq!(job["kind"], "send_email");
    assert_eq!(job["state"], "discarded");
    assert_eq!(job["attempts"][0]["error"], "smtp down");
    let human = stdout(&jobq(url, &["jobs", "show", &id]).await);
    assert!(
        human.contains("smtp down") && human.contains("timeline:"),
        "{human}"
    );

    // One job by id: cancel, run-now, and an action that does not apply.
    sqlx::query(
        "UPDATE jobq_jobs SET state = 'scheduled', scheduled_at = now() + interval '1 hour',
                finalized_at = NULL WHERE id = $1",
    )
    .bind(ids[1])
    .execute(&db.pool)
    .await
    .unwrap();
    let later = ids[1].to_string();
    let ran = jobq(url, &["jobs", "run-now", &later]).await;
    assert_eq!(stdout(&ran), "made due now 1 job(s)\n", "{}", stderr(&ran));
    assert_eq!(state_of(&db.pool, ids[1]).await, "available");
    let cancelled = jobq(url, &["jobs", "cancel", &later]).await;
    assert_eq!(
        stdout(&cancelled),
        "cancelled 1 job(s)\n",
        "{}",
        stderr(&cancelled)
    );
    assert_eq!(state_of(&db.pool, ids[1]).await, "cancelled");
    let again = jobq(url, &["jobs", "run-now", &later]).await;
    assert!(again.status.success());
    assert_eq!(stdout(&again), "made due now 0 job(s)\n");
    assert!(
        stderr(&again).contains(&format!(
            "job {later} is cancelled: run-now does not apply to it, left as it was"
        )),
        "{}",
        stderr(&again)
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_retry_of_100000_discarded_jobs_goes_in_bounded_batches() {
    let db = TestDb::new("cli_bulk").await;
    let url = Some(db.url.as_str());
    insert(&db, 100_000, "send_email", "email", "discarded").await;
    insert(&db, 7, "other", "email", "discarded").await;
    let args = [
        "jobs",
        "retry",
        "--state",
        "discarded",
        "--kind",
        "send_email",
    ];

    let preview = jobq(url, &args).await;
    assert!(preview.status.success(), "{}", stderr(&preview));
    let said = stderr(&preview);
    assert!(
        said.contains("100,000 job(s) match (100,000 discarded)"),
        "{said}"
    );
    assert!(said.contains("nothing done: add --yes"), "{said}");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'discarded'")
            .await,
        100_007,
        "nothing changed without --yes"
    );

    let mut all = args.to_vec();
    all.extend(["--yes", "--batch-size", "5000", "--json"]);
    let done = jobq(url, &all).await;
    let outcome = json(&done);
    assert_eq!(outcome["changed"], 100_000);
    assert_eq!(outcome["batches"], 20, "5,000 jobs per transaction");
    assert_eq!(outcome["largest_batch"], 5000);
    let said = stderr(&done);
    let progress: Vec<&str> = said.lines().filter(|l| l.starts_with("retry: ")).collect();
    assert_eq!(progress.len(), 20, "progress after each batch");
    assert!(
        progress[0].starts_with("retry: 5,000 of 100,000 done (batch 1"),
        "{}",
        progress[0]
    );
    assert!(progress[19].starts_with("retry: 100,000 of 100,000 done (batch 20"));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM jobq_jobs
             WHERE kind = 'send_email' AND state = 'available' AND finalized_at IS NULL"
        )
        .await,
        100_000
    );
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE kind = 'other' AND state = 'discarded'")
            .await,
        7
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_cron_jobs_are_read_from_what_live_workers_publish() {
    let db = TestDb::new("cli_workers").await;
    let url = Some(db.url.as_str());
    let worker = InProcess::start(test_worker(&db.pool).queue("cron", 2));
    wait_until("a tick to run", Duration::from_secs(60), || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE kind = 'tick' AND state = 'completed'")
            .await
            > 0
    })
    .await;
    let workers = json(&jobq(url, &["workers", "--json"]).await);
    assert_eq!(workers.as_array().unwrap().len(), 1);
    assert_eq!(workers[0]["queues"][1]["queue"], "default");
    assert_eq!(workers[0]["queues"][1]["concurrency"], 8);
    let cron = json(&jobq(url, &["cron", "list", "--json"]).await);
    let tick = cron
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "tick")
        .expect("tick");
    assert_eq!(tick["schedule"], "* * * * * *");
    assert_eq!(tick["served"], true);
    assert!(tick["next_tick"].is_string());
    assert!(tick["last_tick"].is_string());
    let human = stdout(&jobq(url, &["cron", "list"]).await);
    assert!(human.contains("tick") && human.contains("in "), "{human}");
    worker.stop().await.unwrap();
    let gone = json(&jobq(url, &["workers", "--json"]).await);
    assert_eq!(gone.as_array().unwrap().len(), 0);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_dry_run_counts_and_deletes_nothing() {
    let db = TestDb::new("cli_prune").await;
    let url = Some(db.url.as_str());
    insert(&db, 4, "send_email", "email", "completed").await;
    let preview = json(&jobq(url, &["prune", "--dry-run", "--completed", "0s", "--json"]).await);
    assert_eq!(preview[0]["state"], "completed");
    assert_eq!(preview[0]["prunable"]["count"], 4);
    assert_eq!(preview[0]["prunable"]["exact"], true);
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 4);

    // Without flags, the live workers' retention: the shortest of theirs
    // (whichever worker prunes deletes with its own), and a warning that
    // they differ. The jobs finished 30 minutes ago: kept by both.
    sqlx::query("UPDATE jobq_jobs SET finalized_at = now() - interval '30 minutes'")
        .execute(&db.pool)
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    let kept_for = |completed: Duration| jobq::Retention {
        completed: jobq::Keep::For(completed),
        discarded: jobq::Keep::Forever,
        ..jobq::Retention::default()
    };
    let workers = [
        InProcess::start(test_worker(&db.pool).retention(kept_for(hour))),
        InProcess::start(test_worker(&db.pool).retention(kept_for(2 * hour))),
    ];
    wait_until(
        "both workers to publish",
        Duration::from_secs(60),
        || async {
            db.count("SELECT count(*) FROM jobq_workers WHERE retention IS NOT NULL")
                .await
                == 2
        },
    )
    .await;
    let live = jobq(url, &["prune", "--dry-run", "--json"]).await;
    let preview = json(&live);
    assert_eq!(preview[0]["state"], "completed");
    assert_eq!(preview[0]["keep_seconds"], 3600.0, "{preview}");
    assert_eq!(preview[0]["prunable"]["count"], 0);
    assert_eq!(preview[1]["state"], "discarded");
    assert!(preview[1]["keep_seconds"].is_null(), "forever: {preview}");
    assert_eq!(preview[2]["keep_seconds"], 7.0 * 86400.0);
    assert!(
        stderr(&live).contains("retention of the 2 live worker(s) that prune; they were given different ones, and the shortest applies"),
        "{}",
        stderr(&live)
    );
    // A flag still wins, for the state it names.
    let shorter = json(&jobq(url, &["prune", "--dry-run", "--completed", "10m", "--json"]).await);
    assert_eq!(shorter[0]["prunable"]["count"], 4);
    assert!(shorter[1]["keep_seconds"].is_null());
    for worker in workers {
        worker.stop().await.unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 4);
    db.cleanup().await;
}

/// One HTTP/1.1 GET on 127.0.0.1:`port`: the status code and the body.
fn http_get(port: u16, path: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, response)
}

#[tokio::test]
async fn dashboard_listens_on_loopback_and_asks_for_credentials_when_given() {
    let db = TestDb::new("cli_dashboard").await;
    let url = Some(db.url.as_str());
    // Reachable from other machines: refused without the flag, and without
    // credentials or read-only.
    let o = jobq(url, &["dashboard", "--bind", "0.0.0.0:0"]).await;
    fails(&o, 1, "--allow-remote");
    let o = jobq(url, &["dashboard", "--bind", "0.0.0.0:0", "--allow-remote"]).await;
    fails(&o, 1, "--basic-auth USER:PASSWORD or --read-only");
    let o = jobq(url, &["dashboard", "--basic-auth", "ada"]).await;
    fails(&o, 1, "USER:PASSWORD");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut child = std::process::Command::new(JOBQ)
        .args(["dashboard", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.url)
        .env("JOBQ_DASHBOARD_AUTH", "ada:pw")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start jobq dashboard");
    wait_until(
        "the dashboard to listen",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
    let (status, response) = tokio::task::spawn_blocking(move || http_get(port, "/", None))
        .await
        .unwrap();
    assert_eq!(status, 401, "{response}");
    assert!(
        response.contains("WWW-Authenticate: Basic")
            || response.contains("www-authenticate: Basic")
    );
    let (status, _) =
        tokio::task::spawn_blocking(move || http_get(port, "/", Some("Basic YWRhOnB3OnRyeQ==")))
            .await
            .unwrap();
    assert_eq!(status, 401, "a wrong password got in");
    // "ada:pw"
    let (status, page) =
        tokio::task::spawn_blocking(move || http_get(port, "/jobs", Some("Basic YWRhOnB3")))
            .await
            .unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>Jobs</h1>"), "{page}");
    let _ = child.kill();
    let _ = child.wait();
    db.cleanup().await;
}

/// The entry of `list` whose `key` is `value`.
fn entry<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
}

async fn running_in(db: &TestDb, queue: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE state = 'running' AND queue = $1")
        .bind(queue)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_limits_in_use_and_queues_limit_sets_and_clears_them() {
    let db = TestDb::new("cli_limits").await;
    let worker = jobq_tests::limited::hold_limits(&db).await;
    let url = Some(db.url.as_str());

    let s = json(&jobq(url, &["status", "--json"]).await);
    let q = entry(&s["queues"], "queue", "limit_show_q");
    assert_eq!(
        q["limit"],
        serde_json::json!({"concurrency": 2, "rate": {"count": 10, "window_seconds": 3600.0},
                           "running": 2, "started": 2})
    );
    assert_eq!(
        entry(&s["queues"], "queue", "limit_show")["limit"],
        Value::Null
    );
    let tenants = entry(&s["kind_limits"], "kind", "held_per_tenant");
    assert_eq!(tenants["concurrency"], 2);
    assert_eq!(tenants["partition"], "tenant");
    assert_eq!(tenants["running"], 5);
    assert_eq!(
        tenants["partitions"],
        serde_json::json!({"active": 3, "at_limit": 2, "busiest": [
            {"partition": "a", "running": 2, "started": 0},
            {"partition": "b", "running": 2, "started": 0},
            {"partition": "c", "running": 1, "started": 0}]})
    );
    let rated = entry(&s["kind_limits"], "kind", "held_rated");
    assert_eq!(
        rated["rate"],
        serde_json::json!({"count": 3, "window_seconds": 3600.0})
    );
    assert_eq!(
        (&rated["running"], &rated["started"]),
        (&3.into(), &3.into())
    );
    assert_eq!(rated["partitions"], Value::Null);
    // A limited kind nothing runs of shows its limit, unused.
    let idle = entry(&s["kind_limits"], "kind", "five_at_once");
    assert_eq!(
        (&idle["concurrency"], &idle["running"]),
        (&5.into(), &0.into())
    );

    let text = stdout(&jobq(url, &["status"]).await);
    for shown in [
        "queue limit_show_q",
        "2/2 running",
        "2/10 started per 1h",
        "kind held_per_tenant per tenant",
        "5 running, at most 2 per tenant",
        "2 of 3",
        "a (2 running), b (2 running), c (1 running)",
        "3/3 started per 1h",
        "0/5 running",
    ] {
        assert!(text.contains(shown), "`{shown}` not in:\n{text}");
    }
    let list = json(&jobq(url, &["queues", "list", "--json"]).await);
    assert_eq!(entry(&list, "queue", "limit_show_q")["limit"]["running"], 2);
    let text = stdout(&jobq(url, &["queues", "list"]).await);
    assert!(text.contains("2/2 running; 2/10 started per 1h"), "{text}");

    // Raised: a third job of the queue starts.
    let set = jobq(
        url,
        &["queues", "limit", "limit_show_q", "--concurrency", "3"],
    )
    .await;
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    assert!(
        stdout(&set).contains("at most 3 of its jobs run at once"),
        "{}",
        stdout(&set)
    );
    assert_eq!(stderr(&set), "", "a queue with jobs is known");
    // A queue nobody runs and no job names: most likely a typo. Set all the
    // same, with a warning.
    let typo = jobq(
        url,
        &["queues", "limit", "limit_shwo_q", "--concurrency", "3"],
    )
    .await;
    assert_eq!(typo.status.code(), Some(0), "{}", stderr(&typo));
    assert!(
        stderr(&typo).contains("no live worker runs queue `limit_shwo_q` and it holds no job"),
        "{}",
        stderr(&typo)
    );
    wait_until(
        "a third job of limit_show_q to run",
        Duration::from_secs(30),
        || async { running_in(&db, "limit_show_q").await == 3 },
    )
    .await;
    let s = json(&jobq(url, &["status", "--json"]).await);
    assert_eq!(
        entry(&s["queues"], "queue", "limit_show_q")["limit"],
        serde_json::json!({"concurrency": 3, "rate": null, "running": 3, "started": 0})
    );

    // Refused, with the limit left as it was.
    fails(
        &jobq(
            url,
            &["queues", "limit", "limit_show_q", "--rate", "ten a minute"],
        )
        .await,
        1,
        "--rate `ten a minute`",
    );
    fails(
        &jobq(
            url,
            &["queues", "limit", "limit_show_q", "--concurrency", "0"],
        )
        .await,
        1,
        "at least 1",
    );
    fails(
        &jobq(url, &["queues", "limit", "no spaces", "--concurrency", "2"]).await,
        1,
        "invalid queue name",
    );
    for usage in [
        vec!["queues", "limit", "limit_show_q"],
        vec![
            "queues",
            "limit",
            "limit_show_q",
            "--clear",
            "--concurrency",
            "2",
        ],
    ] {
        let o = jobq(url, &usage).await;
        assert_eq!(o.status.code(), Some(2), "{usage:?}: {}", stderr(&o));
    }
    let limit: Option<i32> =
        sqlx::query_scalar("SELECT concurrency_limit FROM jobq_queues WHERE name = 'limit_show_q'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(limit, Some(3));

    // Cleared: every job of the queue runs.
    let cleared = jobq(url, &["queues", "limit", "limit_show_q", "--clear"]).await;
    assert_eq!(cleared.status.code(), Some(0), "{}", stderr(&cleared));
    wait_until(
        "all 4 jobs of limit_show_q to run",
        Duration::from_secs(30),
        || async { running_in(&db, "limit_show_q").await == 4 },
    )
    .await;
    let s = json(&jobq(url, &["status", "--json"]).await);
    assert_eq!(
        entry(&s["queues"], "queue", "limit_show_q")["limit"],
        Value::Null
    );
    worker.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn show_lists_a_jobs_dependencies_and_dependents_and_status_counts_pending() {
    use jobq_tests::{flow_join, flow_step};
    let db = TestDb::new("cli_deps").await;
    let url = Some(db.url.as_str());
    let step = |value| {
        flow_step::builder(flow_step::Args {
            value,
            millis: 0,
            fail: false,
        })
    };
    let a = step(1)
        .delay(Duration::from_secs(3600))
        .enqueue(&db.pool)
        .await
        .unwrap();
    let b = step(2).after(&[a]).enqueue(&db.pool).await.unwrap();
    let c = flow_join::builder(flow_join::Args {})
        .after(&[a, b])
        .enqueue(&db.pool)
        .await
        .unwrap();
    let b_id = b.to_string();
    let job = json(&jobq(url, &["jobs", "show", &b_id, "--json"]).await);
    assert_eq!(job["state"], "pending");
    assert_eq!(
        job["dependencies"],
        serde_json::json!([{ "id": a.0, "kind": "flow_step", "state": "scheduled" }])
    );
    assert_eq!(
        job["dependents"],
        serde_json::json!([{ "id": c.0, "kind": "flow_join", "state": "pending" }])
    );
    let human = stdout(&jobq(url, &["jobs", "show", &b_id]).await);
    assert!(
        human.contains(&format!("waits for:\n  job {a}: flow_step, scheduled"))
            && human.contains(&format!("waited for by:\n  job {c}: flow_join, pending")),
        "{human}"
    );
    let s = json(&jobq(url, &["status", "--json"]).await);
    assert_eq!(s["queues"][0]["pending"], 2, "{s}");
    assert!(stdout(&jobq(url, &["status"]).await).contains("PENDING"));
    let pending = json(&jobq(url, &["jobs", "list", "--state", "pending", "--json"]).await);
    let ids: Vec<i64> = pending["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![c.0, b.0]);
    // A dependency deleted since shows as such; its dependents were cancelled.
    let out = jobq(url, &["jobs", "delete", &a.to_string(), "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let job = json(&jobq(url, &["jobs", "show", &b_id, "--json"]).await);
    assert_eq!(job["state"], "cancelled");
    assert_eq!(
        job["dependencies"],
        serde_json::json!([{ "id": a.0, "kind": null, "state": null }])
    );
    let human = stdout(&jobq(url, &["jobs", "show", &b_id]).await);
    assert!(
        human.contains(&format!("job {a}: deleted or pruned")),
        "{human}"
    );
    db.cleanup().await;
}
