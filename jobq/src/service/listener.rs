//! A LISTEN connection that comes back: [`listen`] connects and LISTENs,
//! backing off through an outage (one log line when it starts, one when it
//! ends), until it succeeds or is stopped. The worker's listener and the
//! waits' hub (`result::hub`) both start, and start again after a lost
//! connection, through it.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::Outage;

/// A listener on `pool` LISTENing on `channels`, once it connects; `None`
/// when `stop` fires first. Failures back off as `outage` says; the caller
/// marks the outage recovered once it has done what a new connection needs.
pub(crate) async fn listen(
    pool: &PgPool,
    channels: &[&str],
    outage: &mut Outage,
    stop: &CancellationToken,
) -> Option<PgListener> {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen_all(channels.iter().copied()).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let failed = tokio::select! {
            _ = stop.cancelled() => return None,
            l = connected => match l {
                Ok(l) => return Some(l),
                Err(e) => e,
            },
        };
        let wait = outage.failed(&failed);
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
