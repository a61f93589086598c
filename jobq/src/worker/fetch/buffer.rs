//! What a producer holds between claims and starts: the buffered jobs, the
//! claims whose answer was lost, the slots of the running jobs, and the
//! start rate the buffer is sized by. No I/O here: the driver in
//! [`super`] spawns, hands back and claims.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::store::{self, Backend, ClaimedJob};

/// How much work, in time at the current start rate, the buffer holds.
/// Each claim's cost grows with the claims running beside it (each passes
/// over the rows the others hold), so many worker processes claim better
/// in few large batches: 200 ms rather than 50 ms took 16 processes at
/// concurrency 4 from 11-18k to 31-38k jobs/s (`scripts/bench`'s
/// `process_16proc_c4`, with the claim passing over rows other claims
/// hold; either change alone gained little).
pub(super) const PREFETCH_HORIZON: Duration = Duration::from_millis(200);
/// The buffer is refilled when it holds this share of the prefetch or less:
/// a quarter, so a claim takes about 150 ms of work while the last 50 ms
/// keep the slots busy. With 16 worker processes at concurrency 4 claiming
/// at once, claims made at half the prefetch (claims of 100 ms of work) ran
/// 34.8k-44.1k jobs/s against 42.6k-55.7k at a quarter, in five alternated
/// rounds of `scripts/bench`'s `process_16proc_c4`; each claim costs more
/// the more claims run beside it, so fewer, larger ones do better. The
/// buffer's bound stays [`PREFETCH_HORIZON`]: only the refill point moved.
const LOW_WATER: usize = 4;
/// The most jobs one claim takes (and the buffer holds beyond the slots).
const MAX_PREFETCH: usize = 1000;
/// How often the start rate is re-measured.
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// The longest a claimed job waits in the buffer before it is handed back
/// for any worker to claim: the start rate the buffer was sized by no
/// longer holds (the queue's jobs got slower). Well under the time a
/// cancellation request for a buffered job is remembered.
pub(super) const MAX_BUFFERED: Duration = Duration::from_secs(2);

/// Jobs started per second, measured over [`RATE_WINDOW`]s, smoothed.
pub(super) struct StartRate {
    per_s: f64,
    since: Instant,
    started: usize,
}

impl StartRate {
    /// No rate measured yet: the buffer holds nothing beyond the free slots.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            per_s: 0.0,
            since: now,
            started: 0,
        }
    }

    /// Counts `n` jobs started by `now`.
    pub(super) fn record(&mut self, n: usize, now: Instant) {
        self.started += n;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            let measured = self.started as f64 / elapsed.as_secs_f64();
            // Smoothed, except out of idleness: a backlog met at start-up or
            // after a quiet spell is claimed in full batches at once.
            self.per_s = if self.per_s < 1.0 {
                measured
            } else {
                (self.per_s + measured) / 2.0
            };
            self.started = 0;
            self.since = now;
        }
    }

    /// Forgets the measured rate: the buffer holds nothing beyond the free
    /// slots until the rate is measured again.
    pub(super) fn reset(&mut self, now: Instant) {
        *self = Self::new(now);
    }

    /// How many jobs beyond the free slots to hold.
    pub(super) fn prefetch(&self) -> usize {
        ((self.per_s * PREFETCH_HORIZON.as_secs_f64()) as usize).min(MAX_PREFETCH)
    }
}

/// A claimed job waiting in the buffer for a slot.
pub(super) struct Buffered {
    pub(super) job: ClaimedJob,
    /// The lease epoch read before the claim (see
    /// [`Lease`](crate::worker::heartbeat::Lease)).
    pub(super) epoch: u64,
    /// When the claim's answer arrived.
    pub(super) since: Instant,
}

/// A claim whose answer never arrived: it may still commit on its session.
pub(super) struct LostClaim {
    /// The claim's stamp.
    pub(super) at: DateTime<Utc>,
    /// The session it ran on, when known.
    pub(super) backend: Option<Backend>,
}

/// How much a claim may take now, and whether it is worth making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Room {
    /// How many jobs a claim may take: the capacity (slots plus prefetch)
    /// not taken by running or buffered jobs.
    pub(super) free: usize,
    /// Whether to claim now: a slot would otherwise sit idle, or the buffer
    /// is down to a quarter of the prefetch (about 50 ms of work), so claims
    /// come in batches of about three quarters of it (see [`LOW_WATER`]).
    pub(super) worth_claiming: bool,
    /// Whether jobs wait in the buffer for a slot.
    pub(super) buffered: bool,
}

/// What a producer holds, kept outside its loop so that a panic in the loop
/// loses none of it: the buffered jobs, the claims whose answer was lost,
/// the slots of the running jobs, and jobs to hand back.
pub(super) struct Holdings {
    pub(super) buffer: VecDeque<Buffered>,
    pub(super) lost_claims: Vec<LostClaim>,
    pub(super) slots: Arc<Semaphore>,
    /// Jobs not to start after all (the lease was lost since their claim,
    /// or they waited too long): handed back untouched.
    pub(super) returning: Vec<ClaimedJob>,
    concurrency: usize,
}

impl Holdings {
    /// Nothing held, `concurrency` free slots.
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            buffer: VecDeque::new(),
            lost_claims: Vec::new(),
            slots: Arc::new(Semaphore::new(concurrency)),
            returning: Vec::new(),
            concurrency,
        }
    }

    /// Whether the first buffered job is suspected of killing its worker
    /// (see [`store::SUSPECT_LOST_ATTEMPTS`]): it runs alone, on every slot.
    pub(super) fn suspect_first(&self) -> bool {
        self.buffer
            .front()
            .is_some_and(|b| b.job.lost_attempts >= store::SUSPECT_LOST_ATTEMPTS)
    }

    /// The slots the first buffered job needs: one, or every slot for a
    /// suspect, which waits for every running job to end and holds every
    /// slot while it runs, so that if it kills the worker, it is alone.
    pub(super) fn slots_needed(&self) -> u32 {
        if self.suspect_first() {
            u32::try_from(self.concurrency).unwrap_or(u32::MAX)
        } else {
            1
        }
    }

    /// Takes the first buffered job to start, unless the worker's lease
    /// epoch moved since it was claimed: then it is set to go back, not
    /// started, and `None` returned.
    pub(super) fn take_next(&mut self, epoch: u64) -> Option<ClaimedJob> {
        let next = self.buffer.pop_front()?;
        if next.epoch != epoch {
            self.returning.push(next.job);
            return None;
        }
        Some(next.job)
    }

    /// Buffers the jobs of a claim made under `epoch`, answered at `now`.
    pub(super) fn buffer_claimed(&mut self, jobs: Vec<ClaimedJob>, epoch: u64, now: Instant) {
        self.buffer.extend(jobs.into_iter().map(|job| Buffered {
            job,
            epoch,
            since: now,
        }));
    }

    /// Sets every buffered job to go back once the first has waited longer
    /// than [`MAX_BUFFERED`]; returns whether it did (the start rate the
    /// buffer was sized by no longer holds).
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let stale = self
            .buffer
            .front()
            .is_some_and(|b| now.saturating_duration_since(b.since) > MAX_BUFFERED);
        if stale {
            self.returning.extend(self.buffer.drain(..).map(|b| b.job));
        }
        stale
    }

    /// Sets every buffered job to go back (the producer stops or restarts).
    pub(super) fn drain_all(&mut self) -> Vec<ClaimedJob> {
        let buffered = self.buffer.drain(..).map(|b| b.job);
        self.returning.drain(..).chain(buffered).collect()
    }

    /// The room for a claim when `prefetch` jobs beyond the slots are wanted.
    pub(super) fn room(&self, prefetch: usize) -> Room {
        let running = self.concurrency - self.slots.available_permits();
        let capacity = self.concurrency + prefetch;
        let free = capacity.saturating_sub(running + self.buffer.len());
        let idle_slot = running < self.concurrency && self.buffer.is_empty();
        let low = self.buffer.len() * LOW_WATER <= prefetch;
        Room {
            free,
            worth_claiming: free > 0 && (idle_slot || low),
            buffered: !self.buffer.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests;
