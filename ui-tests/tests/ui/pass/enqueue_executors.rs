// `enqueue`, `enqueue_many` and `builder(..)...enqueue(..)` accept a
// `&PgPool`, a `&mut PgConnection` and a `&mut Transaction`. The async fns
// below are never called: this only type-checks them.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

#[jobq::job(queue = "email")]
pub async fn send_email(to: String, subject: String) -> Result<(), std::io::Error> {
    let _ = (to, subject);
    Ok(())
}

fn args(i: usize) -> send_email::Args {
    send_email::Args {
        to: format!("user{i}@example.com"),
        subject: "hi".to_owned(),
    }
}

async fn with_pool(pool: &PgPool) -> Result<(), jobq::Error> {
    let id: jobq::JobId = send_email::enqueue(pool, args(0)).await?;
    let ids: Vec<jobq::JobId> = send_email::enqueue_many(pool, (0..3).map(args)).await?;
    let _ = send_email::builder(args(1))
        .delay(Duration::from_secs(60))
        .priority(-1)
        .queue("email-slow")
        .max_attempts(3)
        .enqueue(pool)
        .await?;
    let _ = (id, ids);
    Ok(())
}

async fn with_connection(conn: &mut PgConnection) -> Result<(), jobq::Error> {
    send_email::enqueue(&mut *conn, args(0)).await?;
    send_email::enqueue_many(&mut *conn, vec![args(1), args(2)]).await?;
    send_email::builder(args(3))
        .delay(Duration::from_millis(1))
        .priority(5)
        .queue(String::from("email"))
        .max_attempts(1)
        .enqueue(&mut *conn)
        .await?;
    Ok(())
}

async fn with_transaction(tx: &mut Transaction<'_, Postgres>) -> Result<(), jobq::Error> {
    send_email::enqueue(&mut *tx, args(0)).await?;
    send_email::enqueue_many(&mut *tx, [args(1)]).await?;
    send_email::builder(args(2))
        .delay(Duration::ZERO)
        .priority(0)
        .queue("email")
        .max_attempts(2)
        .enqueue(&mut *tx)
        .await?;
    // The connection inside the transaction works too.
    send_email::enqueue(&mut **tx, args(3)).await?;
    Ok(())
}

async fn begin_and_commit(pool: PgPool) -> Result<(), jobq::Error> {
    let mut tx = pool.begin().await?;
    with_transaction(&mut tx).await?;
    send_email::enqueue(&mut tx, args(4)).await?;
    tx.commit().await?;
    Ok(())
}

// The futures can be spawned on a multi-threaded runtime, whatever the
// executor: pool, connection or transaction.
fn assert_send<T: Send>(_: &T) {}

fn futures_are_send(pool: &PgPool, conn: &mut PgConnection) {
    assert_send(&send_email::enqueue(&mut *conn, args(0)));
    assert_send(&with_connection(conn));
    assert_send(&begin_and_commit(pool.clone()));
    assert_send(&send_email::enqueue(pool, args(0)));
    assert_send(&send_email::enqueue_many(pool, vec![args(0)]));
    assert_send(&send_email::builder(args(0)).enqueue(pool));
    assert_send(&with_pool(pool));
}

fn main() {
    // Referenced, never run: there is no database here.
    let _ = with_pool;
    let _ = with_connection;
    let _ = begin_and_commit;
    let _ = futures_are_send;
}
