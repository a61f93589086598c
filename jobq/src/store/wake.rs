//! The per-queue wake locks that let an enqueue notify only a queue a
//! producer sleeps on.

use sqlx::PgConnection;

use super::WAKE_LOCK_CLASS;

/// What [`take_wake_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WakeLock {
    /// This session holds the queue's wake lock: every enqueue from now on
    /// notifies, and every earlier one that did not has committed.
    Held,
    /// Another producer holds it and sleeps: enqueues notify it, and the
    /// notification reaches every listener.
    Covered,
    /// An enqueue that did not notify is still open; poll until it ends.
    Busy,
}

/// Takes the wake lock of `queue` for a producer about to sleep, waiting at
/// most `wait` for open enqueues to end.
///
/// NOTIFY takes a database-wide lock from before commit until the commit is
/// flushed, so notifying transactions cannot share a disk flush and
/// concurrent enqueues queue behind each other. So an enqueue notifies only
/// when a producer sleeps on the queue. A producer that found nothing holds
/// the queue's wake lock exclusively (a session lock) while it sleeps; an
/// enqueue tries the same lock shared, for the rest of its transaction, and
/// notifies only when it cannot get it. No snapshot is involved, so this
/// holds under every isolation level:
/// - an enqueue that got the shared lock (and so did not notify) holds it
///   until it commits or rolls back, so the producer gets the lock only
///   after that, and the claim it makes next sees the job;
/// - while the producer holds the lock, or waits for it, every enqueue's
///   try fails and it notifies.
///
/// The producer therefore claims once more after [`WakeLock::Held`], and
/// sleeps only if that claim comes back short.
pub(crate) async fn take_wake_lock(
    conn: &mut PgConnection,
    queue: &str,
    wait: std::time::Duration,
) -> sqlx::Result<WakeLock> {
    // The timeout is local to this statement's transaction; it is set
    // before the lock because target lists are evaluated in order.
    let taken = sqlx::query(
        "SELECT set_config('lock_timeout', $3, true), pg_advisory_lock($1, hashtext($2))",
    )
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .bind(format!("{}ms", wait.as_millis().max(1)))
    .execute(&mut *conn)
    .await;
    match taken {
        Ok(_) => return Ok(WakeLock::Held),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {}
        Err(e) => return Err(e),
    }
    let covered: bool = sqlx::query_scalar(
        "SELECT EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = $1::oid AND objid = hashtext($2)::oid AND objsubid = 2
              AND pid <> pg_backend_pid())",
    )
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .fetch_one(conn)
    .await?;
    Ok(if covered {
        WakeLock::Covered
    } else {
        WakeLock::Busy
    })
}

/// Releases the wake lock of `queue` held by this session (its producer has
/// work again, polls, or stops). With `notify`, tells the queue's other
/// producers, which may have slept on this one's lock, to look again.
pub(crate) async fn release_wake_lock(
    conn: &mut PgConnection,
    queue: &str,
    notify: bool,
) -> sqlx::Result<()> {
    sqlx::query(concat!(
        "SELECT pg_advisory_unlock($1, hashtext($2)),
                CASE WHEN $3 THEN pg_notify('",
        insert_channel!(),
        "', $2)::text END"
    ))
    .bind(WAKE_LOCK_CLASS)
    .bind(queue)
    .bind(notify)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn enqueues_try_the_lock_sleeping_producers_hold() {
        let expr = notify_if_asleep!("queue");
        assert!(
            expr.contains(&format!("({}, hashtext(queue))", super::WAKE_LOCK_CLASS)),
            "{expr}"
        );
    }
}
