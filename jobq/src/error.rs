//! The one error type of jobq's API.

/// Everything that can go wrong when enqueueing, migrating or running a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database said no, or could not be reached. When enqueueing inside a
    /// transaction, the caller's transaction is aborted and should be rolled
    /// back; nothing was written. When jobq's tables are missing, the message
    /// says to migrate.
    #[error("database error: {0}{hint}", hint = unmigrated_hint(.0))]
    Database(#[from] sqlx::Error),

    /// A job's `Args` could not be serialized to JSON (a map with non-string
    /// keys, a `Serialize` impl that fails). Nothing was written.
    #[error("cannot serialize the arguments of job `{job}`: {source}")]
    Serialize {
        /// The job's name.
        job: &'static str,
        /// What serde_json said.
        source: serde_json::Error,
    },

    /// Two linked-in jobs share a stored name (or alias). Rename one with
    /// `#[job(name = "...")]`.
    #[error(
        "two jobs are named `{name}`: {first} and {second}; give one of them `#[job(name = \"...\")]`"
    )]
    DuplicateJob {
        /// The name both use.
        name: String,
        /// Where the first is defined (`module path (file:line)`).
        first: String,
        /// Where the second is defined.
        second: String,
    },

    /// The worker has no job to run: none was registered or linked in.
    #[error(
        "no jobs are registered: the worker found no `#[job]` functions. If your jobs live in \
         another crate that this binary never names, the linker dropped them; add \
         `use my_jobs_crate as _;` to the worker's main.rs"
    )]
    NoJobs,

    /// A job takes `jobq::State<T>` but the worker was not given a `T`.
    #[error(
        "job `{job}` needs state of type `{type_name}`, which the worker was not given; add \
         `.state(value)` with a `{type_name}` to the Worker"
    )]
    MissingState {
        /// The job's name.
        job: &'static str,
        /// The missing type, as `std::any::type_name` spells it.
        type_name: &'static str,
    },

    /// The worker's configuration is not usable; the message says why.
    #[error("invalid worker configuration: {0}")]
    Config(String),

    /// A job cannot be enqueued as asked; the message says why: an invalid
    /// queue name, `max_attempts` below 1, `unique_states` without every
    /// unfinished state, a `run_at` before 4714 BC (PostgreSQL's earliest
    /// time), a `delay` that ends past the latest time chrono holds (the
    /// year 262142). Found before anything is sent to the database: nothing
    /// was written, and a transaction the enqueue rode in is still usable.
    #[error("cannot enqueue: {0}")]
    Enqueue(String),

    /// A queue cannot be paused or resumed as asked: its name is invalid.
    /// Nothing was written.
    #[error("cannot change the queue: {0}")]
    Queue(String),

    /// A job's result was asked for as the result of another kind of job:
    /// `my_job::result(db, id)` (or `wait`, `JobContext::result_of`) with
    /// the id of a job that is not a `my_job`.
    #[error("job {id} is a `{found}` job, not a `{expected}` job: its result is not this type")]
    WrongKind {
        /// The job asked for.
        id: i64,
        /// The job type whose result was asked for.
        expected: &'static str,
        /// The stored name of the job with that id.
        found: String,
    },

    /// A job's stored result does not decode as the job's result type: the
    /// type changed since the job ran.
    #[error("cannot decode the result of job {id} (`{job}`): {source}")]
    DecodeResult {
        /// The job's id.
        id: i64,
        /// The job's name.
        job: &'static str,
        /// What serde_json said.
        source: serde_json::Error,
    },

    /// An admin request cannot be done as asked (see [`crate::admin`]); the
    /// message says why. Nothing was changed.
    #[error("{0}")]
    Admin(String),

    /// A migration failed to apply.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's version number.
        version: i64,
        /// The migration's file name.
        name: &'static str,
        /// What PostgreSQL said.
        source: sqlx::Error,
    },

    /// The database holds jobq migrations newer than this build knows: a newer
    /// jobq ran against it. Upgrade this binary.
    #[error(
        "the database has jobq schema version {found}, newer than the {known} this build knows; \
         upgrade jobq"
    )]
    SchemaTooNew {
        /// The newest version recorded in the database.
        found: i64,
        /// The newest version this build ships.
        known: i64,
    },
}

/// A hint for the most common first-run and upgrade mistakes: jobq's tables
/// are missing (PostgreSQL's `undefined_table` on a `jobq_` relation)
/// because the database was never migrated, or a column or function of
/// jobq's is (`undefined_column`, `undefined_function`) because this build
/// is newer than the schema.
fn unmigrated_hint(error: &sqlx::Error) -> &'static str {
    let Some(e) = error.as_database_error() else {
        return "";
    };
    match e.code().as_deref() {
        Some("42P01") if e.message().contains("\"jobq_") => {
            "; this database has no jobq schema (or an old one): run `jobq::migrate(&pool)` \
             or `jobq migrate` against it first"
        }
        Some("42703" | "42883") if e.message().contains("jobq_") => {
            "; this database's jobq schema is older than this build of jobq: run \
             `jobq::migrate(&pool)` or `jobq migrate` against it"
        }
        _ => "",
    }
}

/// `Result` with jobq's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
