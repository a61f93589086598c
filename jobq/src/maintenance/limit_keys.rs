//! Limit keys for old jobs: a job enqueued by a build whose job had no
//! limits yet carries no `limit_key`, so the limited claim, which finds jobs
//! by their key, never takes it. This service gives the waiting ones the key
//! they would have been enqueued with. It also deletes the rate limits' old
//! starts of partitions no claim takes jobs of any more (see
//! [`store::prune_limit_starts`]). Every worker with limited kinds runs
//! it; an advisory lock makes one process at a time do the work
//! ([`Lock::LimitKeys`](crate::store::Lock::LimitKeys)), off the claim path.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::service::{Every, Periodic, Tick};
use crate::store::{self, LimitedKind};

/// How often the waiting jobs of limited kinds are given their keys: a job
/// enqueued without one waits at most about this long (plus the time a
/// worker that runs its queue takes to start).
const INTERVAL: Duration = Duration::from_secs(30);

/// One pass per tick, the first when the worker starts, over the queues the
/// worker runs and the kinds with limits it knows.
#[derive(Clone)]
pub(crate) struct LimitKeys {
    pool: PgPool,
    queues: Vec<String>,
    kinds: Vec<LimitedKind>,
}

impl LimitKeys {
    /// The service for `kinds` (those with limits) in `queues`; `None` when
    /// no kind has a limit, so there is nothing to do.
    pub(crate) fn new(pool: PgPool, queues: Vec<String>, kinds: Vec<LimitedKind>) -> Option<Self> {
        (!kinds.is_empty()).then_some(LimitKeys {
            pool,
            queues,
            kinds,
        })
    }

    /// Every 30 s, give or take a tenth, the first pass at start.
    pub(crate) fn every() -> Every {
        Every {
            jitter: 0.1,
            ..Every::new(INTERVAL).at_start()
        }
    }
}

impl Periodic for LimitKeys {
    const NAME: &'static str = "give old jobs their limit keys and delete old rate starts";

    async fn tick(&mut self, _: &CancellationToken) -> sqlx::Result<Tick> {
        let mut conn = self.pool.acquire().await?;
        let Some(adopted) = store::adopt_limit_keys(&mut conn, &self.queues, &self.kinds).await?
        else {
            return Ok(Tick::Skipped); // another process does it
        };
        if adopted > 0 {
            tracing::info!(
                jobs = adopted,
                "jobs enqueued before their job had limits now count against them"
            );
        }
        let pruned = store::prune_limit_starts(&mut conn, &self.kinds).await?;
        tracing::debug!(rows = pruned, "deleted rate limits' old starts");
        Ok(Tick::Done)
    }
}
