//! A web dashboard for [jobq](https://docs.rs/jobq): queues, jobs, workers
//! and cron jobs, with the actions an operator needs (retry, cancel, delete,
//! run now, one job or everything a filter matches; pause and resume a
//! queue; enqueue a job).
//!
//! [`router`] returns an [`axum::Router`]: nest it under any prefix of your
//! app, behind your own authentication middleware. Pages are rendered on the
//! server; the little JavaScript there is (live updates by polling, paused
//! while the tab is hidden) and the stylesheet are embedded in the binary, so
//! the dashboard works offline and needs no Node build.
//!
//! ```no_run
//! use axum::Router;
//!
//! # async fn run(pool: sqlx::PgPool) -> std::io::Result<()> {
//! let app = Router::new()
//!     // .route("/", ...) your own routes
//!     .nest("/jobs", jobq_web::router(pool, jobq_web::Options::default()));
//!     // .layer(your_auth_layer): the dashboard has no authentication of its own
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! # Safe by default
//!
//! Job arguments and error messages are text an attacker may control: every
//! page escapes them (the templates are compiled with auto-escaping), and a
//! `Content-Security-Policy` forbids inline script, so even a missed escape
//! could not run one. Every change of state is a `POST` that must come from
//! the dashboard's own origin (`Sec-Fetch-Site`, else `Origin`) and carry
//! the CSRF token of its form; no `GET` changes anything. Bulk actions ask
//! for a confirmation that shows how many jobs they will touch, and run in
//! bounded batches. [`Options::read_only`] hides every action and refuses
//! them all.
//!
//! The dashboard does not authenticate anyone: put it behind your own
//! middleware, or serve it read-only.

mod actions;
mod assets;
mod chart;
mod context;
mod error;
mod filter;
mod json;
mod operations;
mod security;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use sqlx::PgPool;

/// How the dashboard behaves. `Options::default()` serves every view and
/// action, refreshes live views every 5 seconds and counts exactly up to
/// 10,000 matching jobs.
#[derive(Clone, Debug)]
pub struct Options {
    read_only: bool,
    poll_interval: Duration,
    exact_count_limit: i64,
    page_size: i64,
    batch_size: i64,
    search_window: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_only: false,
            poll_interval: Duration::from_secs(5),
            exact_count_limit: 10_000,
            page_size: 50,
            batch_size: 1_000,
            search_window: jobq::admin::SEARCH_WINDOW,
        }
    }
}

impl Options {
    /// Hides every action and refuses every `POST` with 403 Forbidden:
    /// the dashboard only shows. Default: `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How often live views refresh while their tab is visible; zero turns
    /// live updates off. Default: 5 seconds. Sub-second values are rounded
    /// up to a second.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Up to how many matching jobs the job list counts exactly; above it,
    /// the count is PostgreSQL's estimate, labelled as one, so a page stays
    /// fast on a table of millions of rows. Default: 10,000.
    pub fn exact_count_limit(mut self, limit: u32) -> Self {
        self.exact_count_limit = i64::from(limit.max(1));
        self
    }

    /// Jobs per page of the job list, at least 1. Default: 50.
    pub fn page_size(mut self, size: u16) -> Self {
        self.page_size = i64::from(size.max(1));
        self
    }

    /// Jobs per statement of a bulk action, at least 1: each batch is a
    /// short transaction, so a bulk action over millions of jobs never
    /// holds their locks for long. Default: 1,000.
    pub fn batch_size(mut self, size: u32) -> Self {
        self.batch_size = i64::from(size.max(1));
        self
    }

    /// How many jobs the job list reads at most, per page and for its count,
    /// when no index narrows the filter (arguments, kinds, queues and
    /// finished states: see [`jobq::admin::list_jobs`]); the page then says
    /// how far it searched and links to older jobs. Default: 100,000, which
    /// keeps a page under 200 ms on a table of 10 million jobs.
    pub fn search_window(mut self, jobs: u32) -> Self {
        self.search_window = i64::from(jobs.max(1));
        self
    }

    /// Whether [`Options::read_only`] is on.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub pool: PgPool,
    pub options: Options,
    pub operations: operations::Registry,
    pub charts: chart::Cache,
}

pub(crate) type Shared = Arc<App>;

/// The largest request body the dashboard reads (an enqueue form's JSON
/// arguments, a bulk action's ids).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The dashboard: nest it under any prefix (`Router::nest("/admin/jobs",
/// jobq_web::router(pool, options))`), or serve it alone. It reads and
/// writes jobq's tables through `pool`, which must hold jobq's schema
/// (`jobq::migrate`).
///
/// The router has no authentication: wrap it in your own middleware.
pub fn router(pool: PgPool, options: Options) -> Router {
    let app: Shared = Arc::new(App {
        pool,
        options,
        operations: operations::Registry::default(),
        charts: chart::Cache::default(),
    });
    Router::new()
        .route("/", get(views::overview::page))
        .route("/jobs", get(views::jobs::page))
        .route("/jobs/{id}", get(views::job::page))
        .route("/api/jobs", get(views::jobs::json))
        .route("/api/jobs/{id}", get(views::job::json))
        .route("/queues", get(views::queues::list))
        .route("/queues/{name}", get(views::queues::page))
        .route("/workers", get(views::workers::page))
        .route("/cron", get(views::cron::page))
        .route("/enqueue", get(views::enqueue::page).post(actions::enqueue))
        .route("/operations/{id}", get(operations::page))
        .route("/jobs/{id}/{action}", post(actions::one))
        .route("/actions/selected", post(actions::selected))
        .route("/actions/filter", post(actions::filter))
        .route("/queues/{name}/{action}", post(actions::queue))
        .route("/assets/{file}", get(assets::serve))
        .fallback(error::not_found)
        // Inside the guard: it runs with the guard's base path and token.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            error::as_page,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            security::guard,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}
