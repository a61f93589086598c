//! The `jobq` command line: look at jobq's queues and jobs, and act on them,
//! from a terminal or a deploy script.
//!
//! ```text
//! jobq migrate                      # apply jobq's schema
//! jobq migrate status               # exit 3 while a migration is pending
//! jobq status                       # per queue: waiting, running, lag, throughput; warnings
//! jobq jobs list --state discarded --kind send_email
//! jobq jobs show 42
//! jobq jobs retry --state discarded --kind send_email --yes
//! jobq queues pause email
//! jobq queues limit email --concurrency 50 --rate 100/1m
//! jobq workers
//! jobq cron list
//! jobq prune --dry-run
//! jobq dashboard                    # the web dashboard on 127.0.0.1:8080
//! ```
//!
//! Every command reads `--database-url` or `DATABASE_URL`. Reads take
//! `--json` and then print one JSON document on stdout. Errors are one line
//! on stderr and exit 1; a usage error exits 2; `jobq migrate status` exits
//! 3 while a migration is pending.
//!
//! # In your own binary
//!
//! A deploy that ships one binary can offer the same commands, with
//! [`run_from`]: `my-worker jobq status`.
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     // `my-worker jobq status` runs `jobq status`.
//!     if std::env::args().nth(1).as_deref() == Some("jobq") {
//!         return jobq_cli::run_from(std::env::args_os().skip(1)).await;
//!     }
//!     // ... run the worker ...
//!     ExitCode::SUCCESS
//! }
//! ```
//!
//! [`run_from`] takes the arguments after the program's name, the first of
//! them naming the command line itself (`jobq`, shown in help and errors).
//! With a clap parser of your own, nest [`Cli`] as a subcommand and call
//! [`Cli::run`].

#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// `println!` to stdout that ends the program quietly when stdout is
/// closed (`jobq jobs list | head`), instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` as [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

mod cmd;
mod filter;
mod output;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub use cmd::cron::CronCommand;
pub use cmd::jobs::JobsCommand;
pub use cmd::migrate::MigrateCommand;
pub use cmd::queues::QueuesCommand;
pub use filter::FilterArgs;

/// The `jobq` command line's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "jobq",
    version,
    about = "Look at jobq's queues and jobs, and act on them",
    long_about = "Look at jobq's queues and jobs in PostgreSQL, and act on them.\n\n\
                  Reads print a table, or one JSON document with --json. Errors are one line \
                  on stderr and exit 1; `jobq migrate status` exits 3 while a migration is \
                  pending."
)]
pub struct Cli {
    /// The database, as a postgres:// URL.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A command of [`Cli`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply jobq's schema migrations, print their SQL, or say which are pending.
    Migrate(MigrateCommand),
    /// Per queue: jobs waiting and running, lag, throughput, pause, workers;
    /// and warnings.
    Status(cmd::status::StatusArgs),
    /// List, show, retry, cancel, delete or run jobs now.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// List, pause or resume queues.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Live workers: heartbeat, queues, running jobs.
    Workers(cmd::workers::WorkersArgs),
    /// Cron jobs: schedule, zone, next tick, latest run.
    #[command(subcommand)]
    Cron(CronCommand),
    /// What the workers' pruner would delete now (with --dry-run).
    Prune(cmd::prune::PruneArgs),
    /// Serve the web dashboard (loopback by default) until ctrl-c.
    Dashboard(cmd::dashboard::DashboardArgs),
}

/// Why a command failed: one line for stderr, and the exit code.
#[derive(Debug)]
pub struct Error {
    message: String,
    code: u8,
}

impl Error {
    /// A failure with `message`, exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            code: 1,
        }
    }

    /// The same, with exit code `code`.
    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// The exit code: 1, or 3 for a pending migration (`jobq migrate status`).
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line, whatever the cause said.
        f.write_str(&self.message.replace(['\n', '\r'], " "))
    }
}

impl std::error::Error for Error {}

impl From<jobq::Error> for Error {
    fn from(e: jobq::Error) -> Self {
        match e {
            jobq::Error::Database(e) => database_error(&e),
            e => Error::new(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        database_error(&e)
    }
}

/// A database error in words: PostgreSQL's message, or how the connection
/// failed.
fn database_error(e: &sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(d) => Error::new(format!("the database said: {}", d.message())),
        sqlx::Error::Io(io) => Error::new(format!("cannot reach the database: {io}")),
        sqlx::Error::PoolTimedOut => Error::new("cannot reach the database: timed out connecting"),
        e => Error::new(format!("database error: {e}")),
    }
}

/// The result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Parses `args` (the first naming the program, as `std::env::args_os`
/// gives them) and runs the command: prints its output, or the error on one
/// line of stderr, and returns the exit code.
pub async fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobq: {e}");
            ExitCode::from(e.code())
        }
    }
}

impl Cli {
    /// Runs the command on a pool of its own, from `--database-url` or
    /// `DATABASE_URL`.
    pub async fn run(self) -> Result<()> {
        if let Command::Migrate(m) = &self.command
            && !m.needs_database()
        {
            m.print_sql();
            return Ok(());
        }
        // The dashboard serves several pages at once; commands run one
        // statement at a time.
        let connections = if matches!(self.command, Command::Dashboard(_)) {
            10
        } else {
            2
        };
        let pool = connect(self.database_url.as_deref(), connections).await?;
        let result = self.command.run(&pool).await;
        pool.close().await;
        result
    }

    /// Runs the command on `pool` (a worker binary's own), ignoring
    /// `--database-url`.
    pub async fn run_with(self, pool: &PgPool) -> Result<()> {
        self.command.run(pool).await
    }
}

impl Command {
    async fn run(self, pool: &PgPool) -> Result<()> {
        if !matches!(self, Command::Migrate(_)) {
            cmd::migrate::require_current(pool).await?;
        }
        match self {
            Command::Migrate(c) => c.run(pool).await,
            Command::Status(c) => c.run(pool).await,
            Command::Jobs(c) => c.run(pool).await,
            Command::Queues(c) => c.run(pool).await,
            Command::Workers(c) => c.run(pool).await,
            Command::Cron(c) => c.run(pool).await,
            Command::Prune(c) => c.run(pool).await,
            Command::Dashboard(c) => c.run(pool).await,
        }
    }
}

/// A small pool of `connections` on `url`.
async fn connect(url: Option<&str>, connections: u32) -> Result<PgPool> {
    let url = url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
        Error::new("no database: pass --database-url postgres://... or set DATABASE_URL")
    })?;
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| Error::new(format!("--database-url is not a PostgreSQL URL: {e}")))?;
    let place = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    // One connection first, so that a refused or failed connection says
    // why at once (a pool would retry until its timeout).
    let first = options.connect().await.map_err(|e| {
        let why = match &e {
            sqlx::Error::Io(io) => io.to_string(),
            sqlx::Error::Database(d) => d.message().to_owned(),
            e => e.to_string(),
        };
        Error::new(format!("cannot connect to the database at {place}: {why}"))
    })?;
    let _ = first.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect_lazy_with(options))
}
