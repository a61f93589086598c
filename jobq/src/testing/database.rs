//! [`TestDatabase`]: a fresh, migrated database for one test, dropped after.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// A database of its own for one test, on the server of `DATABASE_URL`, with
/// jobq's migrations applied; dropped when the guard is dropped (or by
/// [`close`](Self::close)), whether the test passed or not.
///
/// ```no_run
/// # #[jobq::job] async fn ping() -> Result<(), std::io::Error> { Ok(()) }
/// #[tokio::test]
/// async fn ping_is_enqueued() {
///     let db = jobq::testing::TestDatabase::new().await;
///     ping::enqueue(db.pool(), ping::Args {}).await.unwrap();
///     jobq::testing::assert_enqueued::<ping::Job>(db.pool(), |_| true).await;
/// }
/// # fn main() {}
/// ```
///
/// Each is named `jobq_test_` and 16 random hex digits, so tests run in
/// parallel, each in its own database. `DATABASE_URL` names a server and a
/// database the test's user can connect to and create databases from
/// (`postgres://postgres@localhost/postgres`, say); that database is left
/// alone. Dropping needs PostgreSQL 13 or later (`DROP DATABASE ... WITH
/// (FORCE)`, which ends the sessions still open on it).
///
/// # Panics
///
/// The constructors panic when `DATABASE_URL` is unset or does not parse,
/// or when the database cannot be created or migrated: they are for tests.
pub struct TestDatabase {
    pool: PgPool,
    url: String,
    name: String,
    server: PgConnectOptions,
    dropped: bool,
}

impl TestDatabase {
    /// Creates and migrates a fresh database on the server of
    /// `DATABASE_URL`.
    pub async fn new() -> TestDatabase {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "jobq::testing::TestDatabase: DATABASE_URL is not set; set it to a PostgreSQL \
                 server where the tests may create databases, such as \
                 postgres://postgres@localhost:5432/postgres"
            )
        });
        TestDatabase::on_server(&url).await
    }

    /// Creates and migrates a fresh database on the server of `url`
    /// (`postgres://user@host:port/dbname`; `dbname`, a database to connect
    /// to first, is left alone).
    pub async fn on_server(url: &str) -> TestDatabase {
        let server = PgConnectOptions::from_str(url).unwrap_or_else(|e| {
            panic!("jobq::testing::TestDatabase: the server URL does not parse: {e}")
        });
        let name = format!("jobq_test_{:016x}", fastrand::u64(..));
        let mut admin = match server.connect().await {
            Ok(c) => c,
            Err(e) => fail(&name, "connect to the server to create", &e),
        };
        // The name is ours: letters, digits and `_`.
        let create = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut admin)
            .await
        {
            fail(&name, "create", &e);
        }
        let _ = admin.close().await;
        let options = server.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let db = TestDatabase {
            pool: PgPoolOptions::new().connect_lazy_with(options),
            url,
            name,
            server,
            dropped: false,
        };
        if let Err(e) = crate::migrate(&db.pool).await {
            // `db` is dropped on the way out, and its database with it.
            panic!(
                "jobq::testing::TestDatabase: cannot migrate database `{}`: {e}",
                db.name
            );
        }
        db
    }

    /// A pool on the test's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The test's database's URL, for a worker in another process.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test's database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pool and drops the database now, without blocking the
    /// runtime as dropping the guard does. A failure to drop it is printed
    /// to stderr, not raised: the test's result does not depend on it.
    pub async fn close(mut self) {
        self.pool.close().await;
        if let Err(e) = drop_database(&self.server, &self.name).await {
            eprintln!(
                "jobq::testing::TestDatabase: could not drop database `{}`: {e}",
                self.name
            );
        }
        self.dropped = true;
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDatabase {
    /// Drops the database, on a thread of its own with a runtime of its own:
    /// `Drop` cannot await, and the test's runtime may be a single thread,
    /// the one running this.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&server, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        let error = match dropped {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => "the thread dropping it panicked".to_owned(),
        };
        eprintln!(
            "jobq::testing::TestDatabase: could not drop database `{}`: {error}",
            self.name
        );
    }
}

/// Panics: database `name` could not be made.
fn fail(name: &str, what: &str, e: &dyn fmt::Display) -> ! {
    panic!("jobq::testing::TestDatabase: cannot {what} database `{name}`: {e}")
}

/// Drops database `name` on `server`, ending the sessions still open on it.
async fn drop_database(server: &PgConnectOptions, name: &str) -> sqlx::Result<()> {
    let mut admin = server.connect().await?;
    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut admin)
        .await?;
    admin.close().await
}
