//! The dashboard in a real browser: headless Chromium, driven over
//! WebDriver, through the views and actions an operator uses, against a
//! real database and a live worker. Saves a screenshot of every view under
//! `target/screenshots/`.
//!
//! One test, one browser session: starting Chromium costs more than every
//! step after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use jobq::JobState;
use jobq_tests::browser::{Browser, Seed, Served};
use jobq_tests::{InProcess, TestDb, state_of, test_worker, wait_until};
use jobq_web::Options;

/// How long a page may take to show what a step waits for.
const PAGE: Duration = Duration::from_secs(20);

async fn find(browser: &Browser, css: &str) -> Element {
    browser
        .client
        .wait()
        .at_most(PAGE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
}

/// Whether a WebDriver error says the element found is gone: the page's
/// live update re-renders parts of it between a find and the use of what
/// was found. The step is then retried with a fresh find. Chromium says so
/// as a stale element reference, or, when the node goes between the
/// driver's lookup and its DevTools call, as an "unknown error" whose
/// message says the node no longer belongs to the document.
fn is_stale(e: &CmdError) -> bool {
    match e {
        CmdError::Standard(w) => match w.error {
            ErrorStatus::StaleElementReference => true,
            ErrorStatus::UnknownError => w.message.contains("does not belong to the document"),
            _ => false,
        },
        _ => false,
    }
}

async fn text(browser: &Browser, css: &str) -> String {
    let start = Instant::now();
    loop {
        match find(browser, css).await.text().await {
            Ok(text) => return text,
            Err(e) if is_stale(&e) && start.elapsed() < PAGE => continue,
            Err(e) => panic!("read the text of `{css}`: {e}"),
        }
    }
}

async fn click(browser: &Browser, css: &str) {
    let start = Instant::now();
    loop {
        match find(browser, css).await.click().await {
            Ok(()) => return,
            Err(e) if is_stale(&e) && start.elapsed() < PAGE => continue,
            Err(e) => panic!("click `{css}`: {e}"),
        }
    }
}

/// Fails the test if the page opened a dialog (an injected `alert` ran) or
/// set the marker an injected script would set.
async fn assert_no_script_ran(browser: &Browser, page: &str) {
    if let Ok(text) = browser.client.get_alert_text().await {
        panic!("{page}: a dialog opened: {text}");
    }
    let marker = browser
        .client
        .execute("return window.__pwned === undefined", vec![])
        .await
        .expect("run the check");
    assert_eq!(
        marker,
        serde_json::Value::Bool(true),
        "{page}: an injected script ran"
    );
}

/// Tells the page its tab is hidden (or shown again) as a browser does:
/// `document.hidden` and `document.visibilityState` change, then
/// `visibilitychange` fires.
async fn set_hidden(browser: &Browser, hidden: bool) {
    browser
        .client
        .execute(
            "var hidden = arguments[0];
             Object.defineProperty(document, 'hidden', {
                 configurable: true, get: function () { return hidden; } });
             Object.defineProperty(document, 'visibilityState', {
                 configurable: true, get: function () { return hidden ? 'hidden' : 'visible'; } });
             document.dispatchEvent(new Event('visibilitychange'));",
            vec![serde_json::Value::Bool(hidden)],
        )
        .await
        .expect("set the page's visibility");
}

/// How many periods the tick counter `set_hidden`'s step started has seen.
async fn ticks(browser: &Browser) -> u64 {
    browser
        .client
        .execute("return window.__ticks || 0;", vec![])
        .await
        .expect("read the page's tick counter")
        .as_u64()
        .unwrap_or(0)
}

/// Jobs finished over the last hour, so the charts have something to draw.
async fn history(db: &TestDb) {
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, state, attempt, max_attempts, created_at,
                               attempted_at, finalized_at, scheduled_at)
         SELECT CASE WHEN i % 3 = 0 THEN 'send_email' ELSE 'resize_image' END,
                CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END,
                jsonb_build_object('n', i),
                CASE WHEN i % 17 = 0 THEN 'discarded' ELSE 'completed' END::jobq_state,
                1, 1, t - interval '2 seconds', t - interval '1 second', t, t - interval '2 seconds'
         FROM generate_series(1, 1500) AS i,
              LATERAL (SELECT now() - (i * interval '2.3 seconds')
                              - (sin(i / 40.0) * interval '20 seconds') AS t) AS at",
    )
    .execute(&db.pool)
    .await
    .expect("seed the history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_through_the_dashboard_in_chromium() {
    let db = TestDb::new("web_browser").await;
    history(&db).await;
    let discarded = Seed {
        kind: "send_email",
        queue: "mail",
        state: "discarded",
        args: r#"{"to": "ada@example.com", "subject": "Welcome"}"#,
        errors: &[
            "SMTP 550: mailbox unavailable",
            "SMTP 550: mailbox unavailable",
        ],
        ago_secs: 30,
    }
    .insert(&db.pool)
    .await;
    let mut bulk = Vec::new();
    for i in 0..12 {
        let args = format!(r#"{{"report": {i}}}"#);
        let id = Seed {
            kind: "build_report",
            queue: "reports",
            state: "discarded",
            args: &args,
            errors: &["timed out after 30s"],
            ago_secs: 60,
        }
        .insert(&db.pool)
        .await;
        bulk.push(id);
    }
    let hostile = Seed {
        kind: "send_email",
        queue: "mail",
        state: "retryable",
        args: r#"{"to": "<script>window.__pwned = 1; alert('args')</script>",
                  "name": "\"><img src=x onerror=\"window.__pwned = 2\">"}"#,
        errors: &["</pre><script>window.__pwned = 3; alert('error')</script>"],
        ago_secs: 10,
    }
    .insert(&db.pool)
    .await;
    for _ in 0..3 {
        Seed {
            kind: "record",
            queue: "default",
            state: "scheduled",
            ..Seed::default()
        }
        .insert(&db.pool)
        .await;
    }
    // A kind no worker knows, in a queue a worker runs.
    Seed {
        kind: "resize_image",
        queue: "default",
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;

    // A live worker: publishes its kinds (the cron job `tick` among them)
    // and serves `default` and `cron`; `mail` and `reports` it does not run.
    let worker = InProcess::start(test_worker(&db.pool).queue("cron", 1));
    wait_until(
        "the worker to publish its kinds",
        Duration::from_secs(30),
        || async {
            !jobq::admin::kinds(&db.pool)
                .await
                .unwrap_or_default()
                .is_empty()
        },
    )
    .await;

    let options = Options::default()
        .poll_interval(Duration::from_secs(1))
        .batch_size(5);
    // Counts the live updates that reach the server (`app.js` marks them).
    let polls = Arc::new(AtomicUsize::new(0));
    let counter = polls.clone();
    let router = jobq_web::router(db.pool.clone(), options).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            if request.headers().contains_key("x-jobq-poll") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            next.run(request)
        },
    ));
    let served = Served::start(router, "/admin/jobs").await;
    let browser = Browser::start(1280, 1000).await;
    let c = &browser.client;

    // Overview: queues with counts, warnings, charts.
    c.goto(&served.url).await.unwrap();
    find(&browser, "#queues").await;
    let warnings = text(&browser, "#warnings").await;
    assert!(warnings.contains("queue `mail`"), "{warnings}");
    assert!(warnings.contains("kind `resize_image`"), "{warnings}");
    let charts = c
        .find_all(Locator::Css(".chart svg rect.bar-completed"))
        .await
        .unwrap();
    assert_eq!(charts.len(), 60 + 96, "one bar per bucket of both charts");
    browser.screenshot("overview").await;

    // Live updates: a job enqueued now shows without a reload.
    let before = text(&browser, "#queues").await;
    for _ in 0..4 {
        Seed {
            kind: "record",
            queue: "parked",
            ..Seed::default()
        }
        .insert(&db.pool)
        .await;
    }
    wait_until("the overview to show the new queue", PAGE, || async {
        text(&browser, "#queues").await.contains("parked")
    })
    .await;
    assert!(!before.contains("parked"));

    // A hidden tab stops polling and catches up when shown again. The page
    // is told as a browser tells it (`document.hidden`, then a
    // `visibilitychange` event); a timer of the page's own, at the live
    // updates' period, counts the periods that pass; the server counts the
    // live updates that arrive.
    set_hidden(&browser, true).await;
    c.execute(
        "window.__ticks = 0; window.setInterval(function () { window.__ticks += 1; }, 1000);",
        vec![],
    )
    .await
    .expect("start the page's tick counter");
    // One period for an update sent before the tab was hidden to arrive.
    wait_until("a period to pass in the page", PAGE, || async {
        ticks(&browser).await >= 1
    })
    .await;
    let polls_when_hidden = polls.load(Ordering::SeqCst);
    wait_until("three more periods to pass in the page", PAGE, || async {
        ticks(&browser).await >= 4
    })
    .await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        polls_when_hidden,
        "a hidden tab kept polling"
    );
    set_hidden(&browser, false).await;
    wait_until("the tab shown again to poll", PAGE, || async {
        polls.load(Ordering::SeqCst) > polls_when_hidden
    })
    .await;

    click(&browser, "#live-toggle").await;
    let pressed = find(&browser, "#live-toggle")
        .await
        .attr("aria-pressed")
        .await
        .unwrap();
    assert_eq!(
        pressed.as_deref(),
        Some("true"),
        "the pause button did not pause"
    );
    // Paused from here on (the choice is kept across pages): the steps
    // below read pages that a refresh must not swap under them.

    // The job list, filtered through its form.
    c.goto(&format!("{}/jobs", served.url)).await.unwrap();
    find(&browser, "select[name=state]")
        .await
        .select_by_value("discarded")
        .await
        .unwrap();
    find(&browser, "input[name=queue]")
        .await
        .send_keys("mail")
        .await
        .unwrap();
    click(&browser, "#filter button[type=submit]").await;
    wait_until("the filtered list", PAGE, || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.query().is_some_and(|q| q.contains("state=discarded")))
    })
    .await;
    let rows = c.find_all(Locator::Css("#jobs tbody tr")).await.unwrap();
    assert!(!rows.is_empty());
    for row in &rows {
        let state = row
            .find(Locator::Css(".state"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let queue = row
            .find(Locator::Css("td:nth-child(4)"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!((state.as_str(), queue.as_str()), ("discarded", "mail"));
    }
    browser.screenshot("jobs").await;

    // A discarded job: its page, retry, confirm, and it is available.
    click(&browser, &format!("tr[data-job='{discarded}'] a")).await;
    let attempts = text(&browser, "#attempts").await;
    assert!(
        attempts.contains("SMTP 550: mailbox unavailable"),
        "{attempts}"
    );
    assert!(text(&browser, "#args").await.contains("ada@example.com"));
    browser.screenshot("job").await;
    click(&browser, "#action-retry").await;
    let heading = text(&browser, "#confirm h1").await;
    assert_eq!(heading, format!("Retry job {discarded}?"));
    browser.screenshot("confirm").await;
    assert_eq!(
        state_of(&db.pool, discarded).await,
        "discarded",
        "retried before the confirmation"
    );
    click(&browser, "#confirm-button").await;
    find(&browser, "#flash").await;
    assert_eq!(state_of(&db.pool, discarded).await, "available");
    assert_eq!(text(&browser, "#job-state").await, "available");

    // A bulk retry over everything the filter matches, in batches of 5.
    c.goto(&format!(
        "{}/jobs?state=discarded&queue=reports",
        served.url
    ))
    .await
    .unwrap();
    let count = text(&browser, "#match-count").await;
    assert_eq!(count, "12 matching job(s)");
    click(&browser, "#bulk-filter button[value=retry]").await;
    assert_eq!(text(&browser, "#confirm h1").await, "Retry 12 job(s)?");
    click(&browser, "#confirm-button").await;
    wait_until("the bulk retry to finish", PAGE, || async {
        // Live updates are paused: reload, as the operator would.
        c.refresh().await.is_ok()
            && find(&browser, "#operation-status")
                .await
                .attr("data-done")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("true")
    })
    .await;
    let status = text(&browser, "#operation-status").await;
    assert!(
        status.contains("12 job(s) changed of 12 expected"),
        "{status}"
    );
    assert!(status.contains("in 3 batch(es)"), "{status}");
    browser.screenshot("bulk-retry").await;
    for id in &bulk {
        assert_eq!(state_of(&db.pool, *id).await, "available");
    }

    // Selected jobs: tick two, cancel them.
    c.goto(&format!("{}/jobs?queue=reports", served.url))
        .await
        .unwrap();
    for id in &bulk[..2] {
        click(&browser, &format!("input[name=ids][value='{id}']")).await;
    }
    click(&browser, "button[form=selected][value=cancel]").await;
    assert_eq!(
        text(&browser, "#confirm h1").await,
        "Cancel 2 selected job(s)?"
    );
    click(&browser, "#confirm-button").await;
    wait_until("the cancel to finish", PAGE, || async {
        // Live updates are paused: reload, as the operator would.
        c.refresh().await.is_ok()
            && find(&browser, "#operation-status")
                .await
                .attr("data-done")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("true")
    })
    .await;
    for id in &bulk[..2] {
        assert_eq!(state_of(&db.pool, *id).await, "cancelled");
    }
    assert_eq!(state_of(&db.pool, bulk[2]).await, "available");

    // Hostile arguments and errors show as text; nothing they hold runs.
    c.goto(&format!("{}/jobs/{hostile}", served.url))
        .await
        .unwrap();
    let args = text(&browser, "#args").await;
    assert!(
        args.contains("<script>window.__pwned = 1; alert('args')</script>"),
        "{args}"
    );
    assert!(
        text(&browser, "#attempts")
            .await
            .contains("<script>window.__pwned = 3")
    );
    assert_no_script_ran(&browser, "the hostile job's page").await;
    browser.screenshot("job-hostile").await;
    c.goto(&format!("{}/jobs?queue=mail", served.url))
        .await
        .unwrap();
    find(&browser, "#jobs").await;
    assert_no_script_ran(&browser, "the list holding the hostile job").await;

    // A queue: pause it from its page, then resume it.
    c.goto(&format!("{}/queues/mail", served.url))
        .await
        .unwrap();
    click(&browser, "#toggle-pause").await;
    assert_eq!(text(&browser, "#queue-status").await, "paused");
    let paused: bool =
        sqlx::query_scalar("SELECT paused_at IS NOT NULL FROM jobq_queues WHERE name = 'mail'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(paused);
    browser.screenshot("queue").await;
    click(&browser, "#toggle-pause").await;
    assert_eq!(text(&browser, "#queue-status").await, "running");
    c.goto(&format!("{}/queues", served.url)).await.unwrap();
    find(&browser, "#queues").await;
    browser.screenshot("queues").await;

    // Workers and the kinds they run (through the menu); cron jobs with
    // their next tick.
    click(&browser, "header.top nav a[href$='/workers']").await;
    assert!(text(&browser, "#workers").await.contains("default"));
    assert!(text(&browser, "#kinds").await.contains("always_fails"));
    browser.screenshot("workers").await;
    click(&browser, "header.top nav a[href$='/cron']").await;
    let cron = text(&browser, "#cron").await;
    assert!(
        cron.contains("tick") && cron.contains("* * * * * *"),
        "{cron}"
    );
    browser.screenshot("cron").await;

    // Enqueue from the page: a kind the worker knows, JSON arguments.
    c.goto(&format!("{}/enqueue", served.url)).await.unwrap();
    find(&browser, "select[name=kind]")
        .await
        .select_by_value("record")
        .await
        .unwrap();
    let args = find(&browser, "textarea[name=args]").await;
    args.clear().await.unwrap();
    args.send_keys(r#"{"n": 41}"#).await.unwrap();
    find(&browser, "input[name=queue]")
        .await
        .send_keys("parked")
        .await
        .unwrap();
    browser.screenshot("enqueue").await;
    click(&browser, "#enqueue button[type=submit]").await;
    find(&browser, "#job-state").await;
    let enqueued: (String, String) = sqlx::query_as(
        "SELECT kind, state::text FROM jobq_jobs WHERE queue = 'parked' AND args = '{\"n\": 41}'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("the job enqueued from the page");
    assert_eq!(
        enqueued,
        ("record".to_owned(), JobState::Available.to_string())
    );

    // Back to the overview through the menu.
    click(&browser, "a.brand").await;
    find(&browser, "#queues").await;

    browser.close().await;
    worker.stop().await.expect("stop the worker");
    db.cleanup().await;
}
