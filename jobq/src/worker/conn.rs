//! A connection a service keeps between statements, of its own: opened with
//! the pool's settings but not taken from the pool, so jobs that hold every
//! pooled connection cannot starve the worker's claims, results or
//! heartbeat. A held connection also saves sqlx's ping before and after each
//! pooled use. After an error it is dropped and a fresh one is opened on the
//! next use.
//!
//! Every statement on it is bounded twice: by the server
//! (`statement_timeout`, and TCP keepalives so that the server drops the
//! session of a vanished worker and its locks with it) and by the client
//! ([`bounded`]), so a half-open connection, whose statement would
//! otherwise wait for an answer for ever, fails like any lost connection.

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::store::{self, Backend};

/// How long the client waits for any answer: the server's own limit on a
/// statement (`statement_timeout` in [`SESSION_SETTINGS`], 30 s), plus room
/// for the answer to travel.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// Server settings of every service connection: a statement runs 30 s at
/// most, a transaction left open is ended after 60 s, and a client gone
/// without a word is found out within about a minute.
///
/// JIT compilation is off: the service statements are short, and compiling
/// one costs more than it could save. The producer's claim runs as a
/// generic plan, whose cost grows with the rows waiting, so past about
/// 75,000 waiting jobs PostgreSQL compiled it on every call: 24 ms of a
/// 26 ms claim (`scripts/bench`'s history figure, 10 million rows).
const SESSION_SETTINGS: [(&str, &str); 6] = [
    ("jit", "off"),
    ("statement_timeout", "30s"),
    ("idle_in_transaction_session_timeout", "60s"),
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
];

/// Runs `fut`, a statement on a service connection, for at most
/// [`CLIENT_TIMEOUT`]; past it, the statement fails as an I/O time-out, which
/// every service treats as a lost connection.
pub(crate) async fn bounded<T>(fut: impl Future<Output = sqlx::Result<T>>) -> sqlx::Result<T> {
    match tokio::time::timeout(CLIENT_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from the database within {CLIENT_TIMEOUT:?}"),
        ))),
    }
}

/// The options of a service connection: the pool's, with [`SESSION_SETTINGS`].
pub(crate) fn service_options(pool: &PgPool) -> PgConnectOptions {
    let options = (*pool.connect_options()).clone();
    options.options(SESSION_SETTINGS)
}

pub(crate) struct HeldConn {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    /// The server session of the connection, held or last dropped.
    backend: Option<Backend>,
}

impl HeldConn {
    pub(crate) fn new(pool: PgPool) -> Self {
        HeldConn {
            options: service_options(&pool),
            conn: None,
            backend: None,
        }
    }

    /// A held connection whose prepared statements always use their generic
    /// plan (`plan_cache_mode = force_generic_plan`): for the producer, whose
    /// claim PostgreSQL would otherwise plan afresh on every call (its
    /// custom plans look cheaper to it), about 0.4 ms of a 0.8 ms claim of
    /// 16 jobs. The claim is written to run well as a generic plan (see
    /// `CLAIM_SQL`): 0.3-0.4 ms so.
    pub(crate) fn generic_plans(pool: PgPool) -> Self {
        let mut held = HeldConn::new(pool);
        held.options = held
            .options
            .options([("plan_cache_mode", "force_generic_plan")]);
        held
    }

    /// The held connection, opened if there is none.
    pub(crate) async fn get(&mut self) -> sqlx::Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = bounded(PgConnection::connect_with(&self.options)).await?;
            self.backend = Some(bounded(store::backend(&mut conn)).await?);
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// Drops the connection after an error; the next use opens a fresh one.
    pub(crate) fn discard(&mut self) {
        // Dropped, not closed: closing would wait on a connection that may
        // be dead.
        self.conn = None;
    }

    /// The server session of the connection last held, if any: after
    /// [`discard`](Self::discard), the one that may still be running a
    /// statement the client gave up on.
    pub(crate) fn backend(&self) -> Option<Backend> {
        self.backend
    }
}
