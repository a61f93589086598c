//! The dashboard over HTTP, without a browser: the security checks every
//! state change passes, read-only mode, hostile payloads, counts on big
//! filters, ids in JSON, bulk actions in batches. (The browser test,
//! `browser.rs`, drives the same pages through Chromium.)

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use jobq_tests::browser::Seed;
use jobq_tests::{InProcess, TestDb, state_of, test_worker, wait_until};
use jobq_web::Options;
use tower::ServiceExt;

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(router: &Router, request: Request<Body>) -> Response {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .expect("read the body");
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(router: &Router, path: &str) -> Response {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

/// A browser's session: the CSRF cookie a first page set.
struct Session {
    token: String,
}

impl Session {
    async fn open(router: &Router, path: &str) -> Session {
        let page = get(router, path).await;
        let cookie = page
            .headers
            .get(header::SET_COOKIE)
            .expect("the first page sets the CSRF cookie")
            .to_str()
            .unwrap();
        let token = cookie
            .strip_prefix("jobq_csrf=")
            .and_then(|rest| rest.split(';').next())
            .expect("a jobq_csrf cookie")
            .to_owned();
        Session { token }
    }

    /// A same-origin form post, as a browser sends it.
    fn post(&self, path: &str) -> axum::http::request::Builder {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("jobq_csrf={}", self.token))
            .header("sec-fetch-site", "same-origin")
    }

    fn form(&self, body: &str) -> Body {
        Body::from(format!("csrf={}&{body}", self.token))
    }
}

async fn discarded(db: &TestDb, queue: &str) -> i64 {
    Seed {
        queue,
        state: "discarded",
        errors: &["boom"],
        ..Seed::default()
    }
    .insert(&db.pool)
    .await
}

#[tokio::test]
async fn a_post_from_another_site_or_without_the_token_changes_nothing() {
    let db = TestDb::new("web_csrf").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let id = discarded(&db, "mail").await;
    let session = Session::open(&router, "/").await;
    let path = format!("/jobs/{id}/retry");
    let form = || session.form("confirm=yes");

    let attempts: Vec<(&str, Request<Body>)> = vec![
        (
            "cross-site fetch metadata",
            Request::post(&path)
                .header(header::COOKIE, format!("jobq_csrf={}", session.token))
                .header("sec-fetch-site", "cross-site")
                .header(header::ORIGIN, "http://dash.example")
                .header(header::HOST, "dash.example")
                .body(form())
                .unwrap(),
        ),
        (
            "neither Sec-Fetch-Site nor Origin",
            Request::post(&path)
                .header(header::COOKIE, format!("jobq_csrf={}", session.token))
                .body(form())
                .unwrap(),
        ),
        (
            "an Origin of another host",
            Request::post(&path)
                .header(header::COOKIE, format!("jobq_csrf={}", session.token))
                .header(header::ORIGIN, "http://evil.example")
                .header(header::HOST, "dash.example")
                .body(form())
                .unwrap(),
        ),
        (
            "a token that is not the cookie's",
            session
                .post(&path)
                .body(Body::from(format!("csrf={}&confirm=yes", "0".repeat(64))))
                .unwrap(),
        ),
        (
            "no token",
            session.post(&path).body(Body::from("confirm=yes")).unwrap(),
        ),
        (
            "no cookie",
            Request::post(&path)
                .header("sec-fetch-site", "same-origin")
                .body(form())
                .unwrap(),
        ),
    ];
    for (what, request) in attempts {
        let response = send(&router, request).await;
        assert_eq!(
            response.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            response.body
        );
        assert_eq!(
            state_of(&db.pool, id).await,
            "discarded",
            "{what} changed the job"
        );
    }

    // No action by GET.
    let response = get(&router, &path).await;
    assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(state_of(&db.pool, id).await, "discarded");

    // The same post from the dashboard's own page (Origin matching Host
    // serves a browser that sends no fetch metadata) does it.
    let response = send(
        &router,
        Request::post(&path)
            .header(header::COOKIE, format!("jobq_csrf={}", session.token))
            .header(header::ORIGIN, "http://dash.example:8080")
            .header(header::HOST, "dash.example:8080")
            .body(form())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(state_of(&db.pool, id).await, "available");
    db.cleanup().await;
}

#[tokio::test]
async fn a_first_post_asks_for_confirmation_and_changes_nothing() {
    let db = TestDb::new("web_confirm").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let id = discarded(&db, "mail").await;
    let session = Session::open(&router, "/").await;
    let response = send(
        &router,
        session
            .post(&format!("/jobs/{id}/delete"))
            .body(session.form(""))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response.body.contains(&format!("Delete job {id}?")),
        "{}",
        response.body
    );
    assert!(response.body.contains("name=\"confirm\" value=\"yes\""));
    assert_eq!(state_of(&db.pool, id).await, "discarded");
    db.cleanup().await;
}

#[tokio::test]
async fn delete_cancel_and_run_now_of_one_job_do_what_they_say() {
    let db = TestDb::new("web_one_job").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let session = Session::open(&router, "/").await;
    let act = |id: i64, action: &'static str| {
        send(
            &router,
            session
                .post(&format!("/jobs/{id}/{action}"))
                .body(session.form("confirm=yes"))
                .unwrap(),
        )
    };

    // Delete, confirmed: the row is gone and the answer leads away from
    // the job's page (which would now be a 404).
    let gone = discarded(&db, "mail").await;
    let response = act(gone, "delete").await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let to = response.headers[header::LOCATION].to_str().unwrap();
    assert!(!to.contains(&format!("/jobs/{gone}")), "{to}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE id = $1")
        .bind(gone)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // Run now: a job scheduled an hour out becomes due now.
    let later = Seed {
        queue: "mail",
        state: "scheduled",
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    let response = act(later, "run-now").await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(state_of(&db.pool, later).await, "available");
    let due_in: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM scheduled_at - now())::float8 FROM jobq_jobs WHERE id = $1",
    )
    .bind(later)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(due_in <= 0.0, "still due in {due_in} s");

    // Cancel: an available job ends cancelled, and its page says so.
    let waiting = Seed {
        queue: "mail",
        state: "available",
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    let response = act(waiting, "cancel").await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(state_of(&db.pool, waiting).await, "cancelled");
    let page = get(&router, &format!("/jobs/{waiting}")).await;
    assert!(page.body.contains("cancelled"), "{}", page.body);

    // Neither applies to a finished job: it is left as it was, and said so.
    let response = act(waiting, "run-now").await;
    assert_eq!(state_of(&db.pool, waiting).await, "cancelled");
    let followed = get(
        &router,
        response.headers[header::LOCATION].to_str().unwrap(),
    )
    .await;
    assert!(
        followed
            .body
            .contains("Nothing changed: the job&#39;s state does not allow that action now."),
        "{}",
        followed.body
    );
    db.cleanup().await;
}

#[tokio::test]
async fn read_only_hides_every_action_and_refuses_them_all() {
    let db = TestDb::new("web_read_only").await;
    let router = jobq_web::router(db.pool.clone(), Options::default().read_only(true));
    let id = discarded(&db, "mail").await;
    for path in [
        "/",
        "/jobs",
        &format!("/jobs/{id}"),
        "/queues",
        "/queues/mail",
    ] {
        let page = get(&router, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains("method=\"post\""),
            "{path} shows a form that posts"
        );
        assert!(
            page.body.contains("read-only"),
            "{path} does not say it is read-only"
        );
    }
    assert_eq!(get(&router, "/enqueue").await.status, StatusCode::NOT_FOUND);

    let session = Session::open(&router, "/").await;
    for (path, body) in [
        (format!("/jobs/{id}/retry"), "confirm=yes"),
        (
            "/actions/filter".to_owned(),
            "state=discarded&action=delete&confirm=yes",
        ),
        ("/queues/mail/pause".to_owned(), ""),
        ("/queues/mail/limit".to_owned(), "concurrency=5"),
        ("/enqueue".to_owned(), "kind=record&args=%7B%7D"),
    ] {
        let response = send(
            &router,
            session.post(&path).body(session.form(body)).unwrap(),
        )
        .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            response.body.contains("read-only"),
            "{path}: {}",
            response.body
        );
    }
    assert_eq!(state_of(&db.pool, id).await, "discarded");
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM jobq_queues").await, 0);
    db.cleanup().await;
}

/// Text an attacker may put in arguments and errors.
const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "</script><script>alert(2)</script>",
    "\"><img src=x onerror=alert(3)>",
    "' onmouseover='alert(4)",
    "</pre></textarea><svg onload=alert(5)>",
    "{{ ctx.csrf }}",
];

#[tokio::test]
async fn hostile_arguments_and_errors_are_escaped_on_every_page() {
    let db = TestDb::new("web_hostile").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let args = serde_json::json!({
        "html": HOSTILE,
        "<script>key</script>": HOSTILE[2],
    })
    .to_string();
    let id = Seed {
        kind: "<b>kind</b>",
        state: "discarded",
        args: &args,
        errors: HOSTILE,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    let pages = [
        "/".to_owned(),
        "/jobs".to_owned(),
        format!("/jobs/{id}"),
        format!("/jobs?kind={}", "%3Cb%3Ekind%3C%2Fb%3E"),
        "/queues/default".to_owned(),
    ];
    for path in &pages {
        let page = get(&router, path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        for needle in [
            "<script>alert",
            "<img src=x",
            "<svg onload",
            "' onmouseover='",
            "<b>kind",
        ] {
            assert!(
                !page.body.contains(needle),
                "{path} holds `{needle}` unescaped"
            );
        }
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let detail = get(&router, &format!("/jobs/{id}")).await.body;
    assert!(
        detail.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "the arguments are not shown as text"
    );
    assert!(
        detail.contains("&#60;/pre&#62;&#60;/textarea&#62;&#60;svg onload=alert(5)&#62;"),
        "the errors are not shown as text"
    );
    // The template syntax in a value is text, not template.
    assert!(detail.contains("{{ ctx.csrf }}"));

    // The job page posts a filter form back: the hostile kind survives as
    // a form value, escaped.
    let list = get(
        &router,
        "/jobs?kind=%22%3E%3Cscript%3Ealert(6)%3C%2Fscript%3E",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("<script>alert(6)"));
    assert!(
        list.body
            .contains("value=\"&#34;&#62;&#60;script&#62;alert(6)&#60;/script&#62;\""),
        "{}",
        list.body
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_megabyte_of_arguments_shows_in_full_on_its_page_and_cut_in_the_list() {
    let db = TestDb::new("web_megabyte").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let big = format!("{}END-OF-IT", "x<".repeat(512 * 1024));
    let args = serde_json::json!({ "big": big }).to_string();
    let id = Seed {
        args: &args,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    let detail = get(&router, &format!("/jobs/{id}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.body.contains("x&#60;x&#60;END-OF-IT"),
        "{}",
        &detail.body[detail.body.len().saturating_sub(3000)..]
    );
    let list = get(&router, "/jobs").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.len() < 64 * 1024,
        "the list shows the whole megabyte"
    );
    assert!(!list.body.contains("END-OF-IT"));
    db.cleanup().await;
}

#[tokio::test]
async fn enqueue_refuses_what_is_not_json_or_not_storable_with_a_clear_message() {
    let db = TestDb::new("web_enqueue").await;
    let worker = InProcess::start(test_worker(&db.pool));
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
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let session = Session::open(&router, "/enqueue").await;
    let post = |fields: &[(&str, &str)]| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        send(
            &router,
            session.post("/enqueue").body(session.form(&body)).unwrap(),
        )
    };
    for (fields, says) in [
        (
            vec![("kind", "record"), ("args", r#"{"n": "#)],
            "the arguments are not JSON",
        ),
        (
            vec![("kind", "record"), ("args", r#"{"s": "\ud800"}"#)],
            "hex escape",
        ),
        (
            vec![("kind", "record"), ("args", r#"{"s": "a\u0000b"}"#)],
            "NUL character",
        ),
        (
            vec![
                ("kind", "record"),
                ("args", r#"{"<script>alert(1)</script>": "#),
            ],
            "not JSON",
        ),
        (
            vec![("kind", "nobody_knows"), ("args", "{}")],
            "no live worker knows the kind",
        ),
        (
            vec![("kind", "record"), ("args", "{}"), ("priority", "high")],
            "the priority must be",
        ),
        (
            vec![("kind", "record"), ("args", "{}"), ("queue", "no spaces")],
            "queue",
        ),
        (
            vec![("kind", "record"), ("args", "{}"), ("run_at", "soon")],
            "run at:",
        ),
    ] {
        let response = post(&fields).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields:?}: {}",
            response.body
        );
        assert!(
            response.body.contains(says),
            "{fields:?} does not say `{says}`: {}",
            response.body
        );
        assert!(
            !response.body.contains("<script>alert"),
            "the typed text is not escaped"
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM jobq_jobs").await, 0);

    // A queue the worker does not run, so the job stays where it landed.
    let response = post(&[
        ("kind", "record"),
        ("args", r#"{"n": 5}"#),
        ("queue", "parked"),
    ])
    .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let id: i64 = sqlx::query_scalar(
        "SELECT id FROM jobq_jobs WHERE kind = 'record' AND queue = 'parked' AND args = '{\"n\": 5}'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("the enqueued job");
    assert_eq!(
        response.headers[header::LOCATION],
        format!("/jobs/{id}").as_str()
    );
    worker.stop().await.expect("stop the worker");
    db.cleanup().await;
}

#[tokio::test]
async fn counts_past_the_exact_limit_are_estimates_and_say_so() {
    let db = TestDb::new("web_estimate").await;
    for _ in 0..30 {
        discarded(&db, "mail").await;
    }
    sqlx::query("ANALYZE jobq_jobs")
        .execute(&db.pool)
        .await
        .unwrap();
    let exact = jobq_web::router(db.pool.clone(), Options::default());
    let page = get(&exact, "/jobs?state=discarded").await.body;
    assert!(page.contains("30 matching job(s)"), "{page}");
    let capped = jobq_web::router(
        db.pool.clone(),
        Options::default().exact_count_limit(10).page_size(5),
    );
    let page = get(&capped, "/jobs?state=discarded").await.body;
    assert!(
        page.contains("estimated by PostgreSQL; exact up to 10"),
        "{page}"
    );
    assert!(page.contains("about "));
    db.cleanup().await;
}

#[tokio::test]
async fn a_live_update_gets_the_rows_without_the_count_it_would_throw_away() {
    let db = TestDb::new("web_live_update").await;
    let id = discarded(&db, "mail").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let poll = Request::get("/jobs?state=discarded")
        .header("X-Jobq-Poll", "1")
        .body(Body::empty())
        .unwrap();
    let page = send(&router, poll).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("/jobs/{id}")), "{}", page.body);
    assert!(!page.body.contains("matching job"), "{}", page.body);
    // A page a person opens still counts.
    let page = get(&router, "/jobs?state=discarded").await.body;
    assert!(page.contains("1 matching job(s)"), "{page}");
    db.cleanup().await;
}

#[tokio::test]
async fn the_json_api_gives_ids_and_integers_javascript_would_round_as_strings() {
    let db = TestDb::new("web_json_ids").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    // The next id is 2^53 + 1: a JavaScript number cannot hold it.
    sqlx::query("SELECT setval(pg_get_serial_sequence('jobq_jobs', 'id'), 9007199254740992)")
        .execute(&db.pool)
        .await
        .unwrap();
    let id = Seed {
        args: r#"{"user_id": 9007199254740993, "small": 7, "ratio": 0.5}"#,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    assert_eq!(id, 9_007_199_254_740_993);

    let api = get(&router, &format!("/api/jobs/{id}")).await;
    assert_eq!(api.status, StatusCode::OK);
    let job: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(job["id"], "9007199254740993");
    assert_eq!(job["args"]["user_id"], "9007199254740993");
    assert_eq!(job["args"]["small"], 7);
    assert_eq!(job["args"]["ratio"], 0.5);

    let list: serde_json::Value =
        serde_json::from_str(&get(&router, "/api/jobs").await.body).unwrap();
    assert_eq!(list["jobs"][0]["id"], "9007199254740993");
    assert_eq!(list["count"], 1);

    let page = get(&router, &format!("/jobs/{id}")).await.body;
    assert!(
        page.contains("<span class=\"j-bignum\">9007199254740993</span>"),
        "{page}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn links_cookies_and_assets_follow_the_prefix_the_router_is_nested_under() {
    let db = TestDb::new("web_nested").await;
    discarded(&db, "mail").await;
    let app = Router::new().nest(
        "/admin/jobs",
        jobq_web::router(db.pool.clone(), Options::default()),
    );
    let page = get(&app, "/admin/jobs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("href=\"/admin/jobs/jobs\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("href=\"/admin/jobs/queues/mail\""));
    let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("Path=/admin/jobs;")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let css = page
        .body
        .split("href=\"")
        .find_map(|rest| rest.split('"').next().filter(|href| href.ends_with(".css")))
        .expect("a stylesheet link")
        .to_owned();
    assert!(css.starts_with("/admin/jobs/assets/app."), "{css}");
    let asset = get(&app, &css).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert!(
        asset.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        asset.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert_eq!(
        get(&app, "/admin/jobs/assets/app.0000.css").await.status,
        StatusCode::NOT_FOUND
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_browser_meets_an_error_as_a_page_with_a_way_back_and_the_api_as_text() {
    let db = TestDb::new("web_errors").await;
    let app = Router::new().nest(
        "/admin/jobs",
        jobq_web::router(db.pool.clone(), Options::default()),
    );
    let browser = |path: &str| {
        Request::get(path)
            .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Body::empty())
            .unwrap()
    };
    let content_type = |r: &Response| r.headers[header::CONTENT_TYPE].to_str().unwrap().to_owned();

    // A job that was pruned, a page that does not exist, and a path carrying
    // markup: each a page of the dashboard, with its status, the message
    // escaped, and links back (under the prefix).
    for (path, status, says) in [
        (
            "/admin/jobs/jobs/424242",
            StatusCode::NOT_FOUND,
            "no job 424242: never enqueued, or pruned",
        ),
        (
            "/admin/jobs/nowhere",
            StatusCode::NOT_FOUND,
            "no such page in the jobq dashboard",
        ),
        (
            "/admin/jobs/jobs/%3Cb%3Ex",
            StatusCode::NOT_FOUND,
            "`&#60;b&#62;x` is not a job id",
        ),
    ] {
        let page = send(&app, browser(path)).await;
        assert_eq!(page.status, status, "{path}");
        assert!(content_type(&page).starts_with("text/html"), "{path}");
        assert!(page.body.contains(says), "{path}: {}", page.body);
        assert!(!page.body.contains("<b>x"), "{}", page.body);
        assert!(page.body.contains("href=\"/admin/jobs\""), "{}", page.body);
        assert!(page.headers[header::X_CONTENT_TYPE_OPTIONS] == "nosniff");
    }

    // The JSON API, a live update's fetch and a client that does not ask
    // for HTML keep the plain line.
    let api = send(&app, browser("/admin/jobs/api/jobs/424242")).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(content_type(&api).starts_with("text/plain"));
    let mut poll = browser("/admin/jobs/jobs/424242");
    poll.headers_mut()
        .insert("x-jobq-poll", "1".parse().unwrap());
    let poll = send(&app, poll).await;
    assert!(content_type(&poll).starts_with("text/plain"));
    let plain = get(&app, "/admin/jobs/jobs/424242").await;
    assert_eq!(plain.status, StatusCode::NOT_FOUND);
    assert_eq!(plain.body, "no job 424242: never enqueued, or pruned");
    db.cleanup().await;
}

#[tokio::test]
async fn a_bulk_action_over_a_filter_runs_in_batches_and_reports_progress() {
    let db = TestDb::new("web_bulk").await;
    let router = jobq_web::router(db.pool.clone(), Options::default().batch_size(10));
    for _ in 0..25 {
        discarded(&db, "bulk").await;
    }
    let other = discarded(&db, "mail").await;
    let session = Session::open(&router, "/jobs").await;

    let preview = send(
        &router,
        session
            .post("/actions/filter")
            .body(session.form("state=discarded&queue=bulk&action=retry"))
            .unwrap(),
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview.body.contains("Retry 25 job(s)?"),
        "{}",
        preview.body
    );
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'discarded'")
            .await,
        26
    );

    let started = send(
        &router,
        session
            .post("/actions/filter")
            .body(session.form("state=discarded&queue=bulk&action=retry&confirm=yes"))
            .unwrap(),
    )
    .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    let operation = started.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(operation.starts_with("/operations/"), "{operation}");
    wait_until(
        "the bulk retry to finish",
        Duration::from_secs(30),
        || async {
            get(&router, &operation)
                .await
                .body
                .contains("data-done=\"true\"")
        },
    )
    .await;
    let page = get(&router, &operation).await.body;
    assert!(page.contains("25 job(s) changed of 25 expected"), "{page}");
    assert!(page.contains("in 3 batch(es)"), "{page}");
    assert_eq!(
        db.count("SELECT count(*) FROM jobq_jobs WHERE queue = 'bulk' AND state = 'available'")
            .await,
        25
    );
    assert_eq!(
        state_of(&db.pool, other).await,
        "discarded",
        "a job outside the filter changed"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn throughput_counts_what_finished_in_each_bucket() {
    let db = TestDb::new("web_throughput").await;
    for ago in [10, 20, 30] {
        Seed {
            state: "completed",
            ago_secs: ago,
            ..Seed::default()
        }
        .insert(&db.pool)
        .await;
    }
    Seed {
        state: "discarded",
        errors: &["x"],
        ago_secs: 20,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    Seed {
        state: "retryable",
        errors: &["x"],
        ago_secs: 20,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    // Outside the window, and not finished: not counted.
    Seed {
        state: "completed",
        ago_secs: 7200,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    Seed {
        state: "available",
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;
    // Another queue.
    Seed {
        state: "completed",
        queue: "other",
        ago_secs: 10,
        ..Seed::default()
    }
    .insert(&db.pool)
    .await;

    let hour = jobq::admin::throughput(&db.pool, Duration::from_secs(60), 60, Some("default"))
        .await
        .unwrap();
    assert_eq!(hour.len(), 60);
    assert!(
        hour.windows(2)
            .all(|w| (w[1].start - w[0].start).num_seconds() == 60)
    );
    assert!(hour.last().unwrap().start <= chrono::Utc::now());
    assert_eq!(hour.iter().map(|b| b.completed).sum::<i64>(), 3);
    assert_eq!(hour.iter().map(|b| b.failed).sum::<i64>(), 2);
    // Everything happened within the last 31 s: in the last two buckets.
    assert!(hour[..58].iter().all(|b| b.completed == 0 && b.failed == 0));
    let all = jobq::admin::throughput(&db.pool, Duration::from_secs(60), 60, None)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|b| b.completed).sum::<i64>(), 4);
    db.cleanup().await;
}

#[tokio::test]
async fn a_filter_no_index_narrows_searches_a_window_and_says_how_far() {
    let db = TestDb::new("web_window").await;
    // Five old matches, then 30 newer jobs that do not match.
    sqlx::query(
        "INSERT INTO jobq_jobs (kind, queue, args, state, max_attempts, attempt, finalized_at)
         SELECT 'record', 'mail', jsonb_build_object('user_id', CASE WHEN i <= 5 THEN 7 ELSE 8 END),
                'completed', 1, 1, now()
         FROM generate_series(1, 35) AS i ORDER BY i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let router = jobq_web::router(db.pool.clone(), Options::default().search_window(20));
    let args = form_urlencoded::byte_serialize(br#"{"user_id": 7}"#).collect::<String>();
    let page = get(&router, &format!("/jobs?args={args}")).await.body;
    assert!(
        page.contains("0 matching job(s) among the newest 20 (older jobs not searched)"),
        "{page}"
    );
    assert!(page.contains("Searched the newest 20 jobs"), "{page}");
    // The link goes on below the oldest job looked at (the 16th).
    let (first, oldest_looked_at): (i64, i64) =
        sqlx::query_as("SELECT min(id), max(id) - 19 FROM jobq_jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        page.contains(&format!(
            "after={oldest_looked_at}\" id=\"next-page\">Search older jobs"
        )),
        "{page}"
    );
    let older = get(
        &router,
        &format!("/jobs?args={args}&after={oldest_looked_at}"),
    )
    .await
    .body;
    for id in first..first + 5 {
        assert!(
            older.contains(&format!("/jobs/{id}\"")),
            "job {id}: {older}"
        );
    }
    assert!(!older.contains("Searched the newest"), "{older}");
    // Ids are found through their index, however old.
    let by_id = get(&router, &format!("/jobs?id={first}&args={args}"))
        .await
        .body;
    assert!(by_id.contains("1 matching job(s)<"), "{by_id}");
    // With a GIN index of the user's on the arguments, every match is found.
    sqlx::query("CREATE INDEX jobq_jobs_args ON jobq_jobs USING gin (args jsonb_path_ops)")
        .execute(&db.pool)
        .await
        .unwrap();
    let indexed = get(&router, &format!("/jobs?args={args}")).await.body;
    assert!(indexed.contains("5 matching job(s)<"), "{indexed}");
    assert!(!indexed.contains("Searched the newest"), "{indexed}");
    db.cleanup().await;
}

async fn running_in(db: &TestDb, queue: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobq_jobs WHERE state = 'running' AND queue = $1")
        .bind(queue)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_show_with_their_use_and_a_post_sets_or_clears_a_queues_limit() {
    let db = TestDb::new("web_limits").await;
    let worker = jobq_tests::limited::hold_limits(&db).await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let contains = |page: &Response, shown: &[&str]| {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for s in shown {
            assert!(page.body.contains(s), "`{s}` not in:\n{}", page.body);
        }
    };
    let kinds = [
        "held_per_tenant",
        "5 running, at most 2 per tenant",
        "<td class=\"num\">2 of 3</td>",
        "a (2 running), b (2 running), c (1 running)",
        "3/3 started per 1h",
    ];
    let overview = get(&router, "/").await;
    contains(&overview, &["2/2 running · 2/10 started per 1h"]);
    contains(&overview, &kinds);
    contains(
        &get(&router, "/queues/limit_show").await,
        &[&kinds[..], &["Limit: <span class=\"muted\">none</span>"]].concat(),
    );
    let page = get(&router, "/queues/limit_show_q").await;
    contains(
        &page,
        &[
            "Limit: 2/2 running · 2/10 started per 1h, across all workers",
            "name=\"concurrency\" min=\"1\" id=\"limit-concurrency\" value=\"2\"",
            "value=\"10/1h\"",
            "id=\"clear-limit\"",
        ],
    );

    // Raised: a third job starts.
    let session = Session::open(&router, "/").await;
    let post = |body: &str| {
        session
            .post("/queues/limit_show_q/limit")
            .body(session.form(body))
            .unwrap()
    };
    let set = send(&router, post("concurrency=3&rate=")).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
    assert_eq!(
        set.headers[header::LOCATION],
        "/queues/limit_show_q?done=limit"
    );
    wait_until(
        "a third job of limit_show_q to run",
        Duration::from_secs(30),
        || async { running_in(&db, "limit_show_q").await == 3 },
    )
    .await;
    contains(
        &get(&router, "/queues/limit_show_q?done=limit").await,
        &["Limit set", "Limit: 3/3 running, across all workers"],
    );

    // Refused with a clear message, the limit left as it was.
    for (body, says) in [
        ("concurrency=0&rate=", "at least 1"),
        ("concurrency=many&rate=", "not `many`"),
        ("concurrency=&rate=fast", "rate `fast`"),
        ("concurrency=&rate=", "give a concurrency"),
    ] {
        let refused = send(&router, post(body)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(refused.body.contains(says), "{body}: {}", refused.body);
    }
    let cross_site = send(
        &router,
        Request::post("/queues/limit_show_q/limit")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("jobq_csrf={}", session.token))
            .header("sec-fetch-site", "cross-site")
            .body(session.form("clear=yes"))
            .unwrap(),
    )
    .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    let limit = || async {
        sqlx::query_scalar::<_, Option<i32>>(
            "SELECT concurrency_limit FROM jobq_queues WHERE name = 'limit_show_q'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!(limit().await, Some(3));

    // Cleared: every job of the queue runs.
    let cleared = send(&router, post("clear=yes")).await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.body);
    wait_until(
        "all 4 jobs of limit_show_q to run",
        Duration::from_secs(30),
        || async { running_in(&db, "limit_show_q").await == 4 },
    )
    .await;
    assert_eq!(limit().await, None);
    let page = get(&router, "/queues/limit_show_q?done=unlimit").await;
    contains(
        &page,
        &["Limits cleared", "Limit: <span class=\"muted\">none</span>"],
    );
    assert!(!page.body.contains("id=\"clear-limit\""));
    worker.stop().await.unwrap();
    db.cleanup().await;
}

/// A job's page lists what it waits for and what waits for it, each linked,
/// with its kind and state; the overview counts pending jobs, and the jobs
/// list filters on them.
#[tokio::test]
async fn a_jobs_page_lists_its_dependencies_and_dependents_and_pending_is_counted() {
    use jobq_tests::{flow_join, flow_step};
    let db = TestDb::new("web_deps").await;
    let router = jobq_web::router(db.pool.clone(), Options::default());
    let a = flow_step::builder(flow_step::Args {
        value: 1,
        millis: 0,
        fail: false,
    })
    .delay(Duration::from_secs(3600))
    .enqueue(&db.pool)
    .await
    .unwrap();
    let b = flow_join::builder(flow_join::Args {})
        .after(&[a])
        .enqueue(&db.pool)
        .await
        .unwrap();
    let page = get(&router, &format!("/jobs/{b}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    let deps = &body[body
        .find("id=\"dependencies\"")
        .expect("a dependencies table")..];
    assert!(
        deps.contains(&format!("href=\"/jobs/{a}\">{a}</a>"))
            && deps.contains("flow_step")
            && deps.contains("state-scheduled"),
        "{deps}"
    );
    assert!(!body.contains("id=\"dependents\""), "b has no dependents");
    let page = get(&router, &format!("/jobs/{a}")).await;
    let dependents = &page.body[page
        .body
        .find("id=\"dependents\"")
        .expect("a dependents table")..];
    assert!(
        dependents.contains(&format!("href=\"/jobs/{b}\">{b}</a>"))
            && dependents.contains("flow_join")
            && dependents.contains("state-pending"),
        "{dependents}"
    );
    let api = get(&router, &format!("/api/jobs/{b}")).await;
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["dependencies"][0]["state"], "scheduled", "{json}");
    let overview = get(&router, "/").await;
    assert!(
        overview.body.contains("<th class=\"num\">Pending</th>")
            && overview.body.contains("state=pending\">1</a>"),
        "{}",
        overview.body
    );
    let list = get(&router, "/jobs?state=pending").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!("/jobs/{b}")), "{}", list.body);
    assert!(
        !list.body.contains(&format!("/jobs/{a}\"")),
        "{}",
        list.body
    );
    db.cleanup().await;
}
