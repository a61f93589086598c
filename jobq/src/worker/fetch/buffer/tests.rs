//! The buffer's bookkeeping, without a database or a runtime: `Instant`s
//! are passed in, offsets from a fixed start stand for the clock.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Holdings, MAX_BUFFERED, Room, StartRate};
use crate::store::{ClaimedJob, SUSPECT_LOST_ATTEMPTS};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn job(id: i64, lost_attempts: i32) -> ClaimedJob {
    ClaimedJob {
        id,
        kind: "k".into(),
        args: "null".into(),
        attempt: 1 + lost_attempts,
        lost_attempts,
        max_attempts: 3,
        priority: 0,
        scheduled_at: Utc::now(),
        #[cfg(feature = "opentelemetry")]
        trace_context: None,
    }
}

#[test]
fn the_start_rate_sizes_the_prefetch() {
    let t0 = Instant::now();
    let mut rate = StartRate::new(t0);
    assert_eq!(rate.prefetch(), 0);
    // Within the window nothing is measured yet.
    rate.record(50, t0 + ms(50));
    assert_eq!(rate.prefetch(), 0);
    // 100 jobs in 100 ms: 1000/s, so 200 ms of work is 200 jobs.
    rate.record(50, t0 + ms(100));
    assert_eq!(rate.prefetch(), 200);
    // Smoothed: 3000/s measured next gives 2000/s.
    rate.record(300, t0 + ms(200));
    assert_eq!(rate.prefetch(), 400);
    // Capped.
    rate.record(1_000_000, t0 + ms(300));
    assert_eq!(rate.prefetch(), 1000);
    rate.reset(t0 + ms(300));
    assert_eq!(rate.prefetch(), 0);
}

#[test]
fn a_claim_is_worth_it_for_an_idle_slot_or_a_buffer_down_to_a_quarter() {
    let mut held = Holdings::new(4);
    let t0 = Instant::now();
    assert_eq!(
        held.room(4),
        Room {
            free: 8,
            worth_claiming: true,
            buffered: false
        }
    );
    // Every slot busy, a quarter of the capacity free: wait for more room.
    let _running = held.slots.clone().try_acquire_many_owned(4).unwrap();
    held.buffer_claimed(vec![job(1, 0), job(2, 0), job(3, 0)], 0, t0);
    assert_eq!(
        held.room(4),
        Room {
            free: 1,
            worth_claiming: false,
            buffered: true
        }
    );
    // The slots busy, the buffer empty: claim.
    held.buffer.clear();
    assert_eq!(held.room(4).free, 4);
    assert!(held.room(4).worth_claiming);
    // No room at all.
    held.buffer_claimed(vec![job(4, 0), job(5, 0), job(6, 0), job(7, 0)], 0, t0);
    assert_eq!(held.room(4).free, 0);
    assert!(!held.room(4).worth_claiming);
    // A prefetch of 400: 101 buffered jobs are enough to wait on, 100 are a
    // quarter of it, so the claim takes the other three quarters.
    held.buffer.clear();
    held.buffer_claimed((10..111).map(|id| job(id, 0)).collect(), 0, t0);
    assert_eq!(held.room(400).free, 299);
    assert!(!held.room(400).worth_claiming);
    held.buffer.pop_back();
    assert_eq!(held.room(400).free, 300);
    assert!(held.room(400).worth_claiming);
}

#[test]
fn an_idle_slot_is_worth_a_claim_of_one() {
    let held = Holdings::new(4);
    let _running = held.slots.clone().try_acquire_many_owned(3).unwrap();
    assert_eq!(
        held.room(0),
        Room {
            free: 1,
            worth_claiming: true,
            buffered: false
        }
    );
}

#[test]
fn jobs_claimed_under_an_older_lease_go_back_unstarted() {
    let mut held = Holdings::new(4);
    held.buffer_claimed(vec![job(1, 0)], 1, Instant::now());
    held.buffer_claimed(vec![job(2, 0)], 2, Instant::now());
    assert!(held.take_next(2).is_none());
    assert_eq!(held.take_next(2).map(|j| j.id), Some(2));
    assert_eq!(held.returning.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
    assert!(held.take_next(2).is_none());
}

#[test]
fn jobs_buffered_too_long_all_go_back() {
    let t0 = Instant::now();
    let mut held = Holdings::new(1);
    held.buffer_claimed(vec![job(1, 0), job(2, 0)], 0, t0);
    held.buffer_claimed(vec![job(3, 0)], 0, t0 + MAX_BUFFERED);
    assert!(!held.expire(t0 + MAX_BUFFERED));
    assert!(held.expire(t0 + MAX_BUFFERED + ms(1)));
    assert!(held.buffer.is_empty());
    assert_eq!(held.returning.len(), 3);
    let handed: Vec<i64> = held.drain_all().iter().map(|j| j.id).collect();
    assert_eq!(handed, [1, 2, 3]);
    assert!(held.returning.is_empty());
}

#[test]
fn a_suspect_needs_every_slot() {
    let mut held = Holdings::new(8);
    assert_eq!(held.slots_needed(), 1);
    held.buffer_claimed(
        vec![job(1, SUSPECT_LOST_ATTEMPTS), job(2, 0)],
        0,
        Instant::now(),
    );
    assert!(held.suspect_first());
    assert_eq!(held.slots_needed(), 8);
    held.buffer.pop_front();
    assert_eq!(held.slots_needed(), 1);
    held.buffer.clear();
    held.buffer_claimed(vec![job(3, SUSPECT_LOST_ATTEMPTS - 1)], 0, Instant::now());
    assert_eq!(held.slots_needed(), 1);
}
