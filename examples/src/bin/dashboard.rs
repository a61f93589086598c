//! Serves the jobq dashboard, nested under `/jobs` of an app of its own,
//! on 127.0.0.1:8080 (or `BIND`), over the database at `DATABASE_URL`:
//!
//! ```sh
//! DATABASE_URL=postgres://localhost/app cargo run -p jobq-examples --bin dashboard
//! # then open http://127.0.0.1:8080/jobs
//! ```
//!
//! The database must hold jobq's schema (`jobq::migrate`, which workers
//! run). `READ_ONLY=1` serves it read-only. The dashboard has no login of its
//! own: in a real app, put your authentication middleware around it.

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let url = std::env::var("DATABASE_URL").map_err(|_| anyhow::anyhow!("set DATABASE_URL"))?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let read_only = std::env::var("READ_ONLY").is_ok_and(|v| v == "1");
    let options = jobq_web::Options::default().read_only(read_only);
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .nest("/jobs", jobq_web::router(pool, options));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    tracing::info!("dashboard on http://{bind}/jobs");
    axum::serve(listener, app).await?;
    Ok(())
}
