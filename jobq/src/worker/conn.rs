//! A connection a service keeps between statements: a pooled statement costs
//! sqlx a ping before (by default) and after each use, a round trip apiece;
//! a held one costs neither. After an error it is dropped and a fresh one is
//! taken on the next use.

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

pub(crate) struct HeldConn {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl HeldConn {
    pub(crate) fn new(pool: PgPool) -> Self {
        HeldConn { pool, conn: None }
    }

    /// The held connection, taken from the pool if there is none.
    pub(crate) async fn get(&mut self) -> sqlx::Result<&mut PgConnection> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        Ok(self.conn.as_deref_mut().expect("just set"))
    }

    /// Drops the connection after an error; the next use takes a fresh one.
    pub(crate) fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
