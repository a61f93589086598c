//! A production-shaped worker for the example jobs: every job linked in, until
//! SIGTERM or ctrl-c.
//!
//! `DATABASE_URL=postgres://... cargo run -p jobq-examples --bin worker`
//!
//! The same binary carries the `jobq` command line, so a deploy that ships
//! only this binary can look at its queues:
//! `worker jobq status`, `worker jobq jobs retry --state discarded --yes`.

// The jobs live in the library crate; naming it keeps the linker from
// dropping their registrations (see jobq's docs on the linker pitfall).
use jobq_examples as _;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    // `worker jobq <command>`: the `jobq` command line, with its own exit
    // code and one-line errors.
    if std::env::args().nth(1).as_deref() == Some("jobq") {
        return Ok(jobq_cli::run_from(std::env::args_os().skip(1)).await);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let pool = sqlx::PgPool::connect(&std::env::var("DATABASE_URL")?).await?;
    jobq::migrate(&pool).await?;
    for def in jobq::registry()?.jobs() {
        tracing::info!(job = def.name, queue = def.queue, cron = ?def.cron, "registered");
    }
    jobq::Worker::new(pool)
        .state(jobq_examples::Mailer::default())
        .queue("email", 20)
        .queue("media", 4)
        .queue("billing", 4)
        .queue("default", 4)
        .run()
        .await?;
    Ok(std::process::ExitCode::SUCCESS)
}
