//! Every transition of the producer's protocol, without a database or a
//! runtime: `Instant`s are passed in, offsets from a fixed start stand for
//! the clock. The integration tests cover the real thing. Over 400 lines
//! because each transition has a test of its own.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use super::super::buffer::Room;
use super::{
    Action, ClaimReport, FAST_POLL, FAST_WAKE, FAST_WAKES, FIRST_RECHECK, MAX_RECHECK, Phase,
    Producer, QUIET_POLLS,
};
use crate::store::WakeLock;

const POLL: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A room worth a claim of `free` jobs, with nothing buffered.
fn room(free: usize) -> Room {
    Room {
        free,
        worth_claiming: true,
        buffered: false,
    }
}

/// No room worth a claim.
fn full(buffered: bool) -> Room {
    Room {
        free: 0,
        worth_claiming: false,
        buffered,
    }
}

fn got(asked: usize, got: usize) -> ClaimReport {
    ClaimReport {
        asked,
        got,
        promoted: 0,
        next_due: None,
    }
}

/// A producer at `t0` whose last claim came back empty without the wake
/// lock: it is about to take it.
fn drained(t0: Instant) -> Producer {
    let mut p = Producer::new(POLL, t0);
    p.on_claim(got(10, 0), t0);
    p
}

/// A producer at `t0` that holds the wake lock and sleeps on it.
fn asleep_on_lock(t0: Instant) -> Producer {
    let mut p = drained(t0);
    p.on_wake_lock(Ok(WakeLock::Held), t0);
    p.on_claim(got(10, 0), t0);
    assert!(p.holds_wake_lock());
    p
}

/// A producer at `t0` that saw a fast stream of notifications, and the
/// instant of the last one.
fn fast(t0: Instant) -> (Producer, Instant) {
    let mut p = asleep_on_lock(t0);
    let mut now = t0 + ms(100);
    p.on_notified(now);
    for _ in 0..FAST_WAKES {
        now += FAST_WAKE / 2;
        p.on_notified(now);
    }
    (p, now)
}

#[test]
fn a_new_producer_claims_at_once() {
    let t0 = Instant::now();
    let p = Producer::new(POLL, t0);
    assert_eq!(p.phase(), Phase::Claiming);
    assert_eq!(p.next_action(room(16)), Action::Claim { room: 16 });
}

#[test]
fn a_claiming_producer_without_room_waits_for_a_slot() {
    let p = Producer::new(POLL, Instant::now());
    assert_eq!(
        p.next_action(full(true)),
        Action::Wait {
            until: None,
            slot: true
        }
    );
}

#[test]
fn a_full_claim_claims_again() {
    let t0 = Instant::now();
    let mut p = Producer::new(POLL, t0);
    p.on_claim(got(10, 10), t0);
    assert_eq!(p.phase(), Phase::Claiming);
    assert_eq!(p.next_action(room(5)), Action::Claim { room: 5 });
}

#[test]
fn only_a_full_claim_says_the_queue_has_a_backlog() {
    let t0 = Instant::now();
    let mut p = Producer::new(POLL, t0);
    assert!(!p.backlog(), "no claim yet");
    p.on_claim(got(10, 10), t0);
    assert!(p.backlog());
    // Short, even with due jobs promoted: the next claim reads every row.
    p.on_claim(
        ClaimReport {
            asked: 10,
            got: 9,
            promoted: 5,
            next_due: None,
        },
        t0,
    );
    assert!(!p.backlog());
}

#[test]
fn a_short_claim_that_promoted_due_jobs_claims_again() {
    let t0 = Instant::now();
    let mut p = Producer::new(POLL, t0);
    p.on_claim(
        ClaimReport {
            promoted: 3,
            ..got(10, 2)
        },
        t0,
    );
    assert_eq!(p.phase(), Phase::Claiming);
}

#[test]
fn a_short_claim_takes_the_wake_lock_before_sleeping() {
    let t0 = Instant::now();
    let p = drained(t0);
    assert_eq!(p.phase(), Phase::TakingWakeLock);
    assert_eq!(p.next_action(room(10)), Action::TakeWakeLock);
}

#[test]
fn with_the_wake_lock_it_claims_once_more() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    p.on_wake_lock(Ok(WakeLock::Held), t0 + ms(1));
    assert!(p.holds_wake_lock());
    assert_eq!(p.next_action(room(10)), Action::Claim { room: 10 });
}

#[test]
fn a_short_claim_under_the_wake_lock_sleeps_the_poll_interval() {
    let t0 = Instant::now();
    let p = asleep_on_lock(t0);
    assert_eq!(p.phase(), Phase::Sleeping { until: t0 + POLL });
    assert_eq!(
        p.next_action(full(false)),
        Action::Wait {
            until: Some(t0 + POLL),
            slot: false
        }
    );
    // Buffered jobs wake it when a slot frees.
    assert_eq!(
        p.next_action(full(true)),
        Action::Wait {
            until: Some(t0 + POLL),
            slot: true
        }
    );
}

#[test]
fn a_sleep_ends_when_the_next_job_is_due() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    p.on_wake_lock(Ok(WakeLock::Held), t0);
    let answered = t0 + ms(3);
    p.on_claim(
        ClaimReport {
            next_due: Some(ms(250)),
            ..got(10, 0)
        },
        answered,
    );
    assert_eq!(
        p.phase(),
        Phase::Sleeping {
            until: answered + ms(250)
        }
    );
}

#[test]
fn a_next_due_time_past_the_poll_interval_does_not_lengthen_the_sleep() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    p.on_wake_lock(Ok(WakeLock::Held), t0);
    p.on_claim(
        ClaimReport {
            next_due: Some(POLL * 10),
            ..got(10, 0)
        },
        t0,
    );
    assert_eq!(p.phase(), Phase::Sleeping { until: t0 + POLL });
}

#[test]
fn covered_by_another_producer_it_sleeps_without_the_lock() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    let now = t0 + ms(5);
    p.on_wake_lock(Ok(WakeLock::Covered), now);
    assert!(!p.holds_wake_lock());
    // Measured from after the round trip.
    assert_eq!(p.phase(), Phase::Sleeping { until: now + POLL });
}

#[test]
fn an_open_enqueue_is_polled_for_with_a_doubling_recheck() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    let mut now = t0;
    let mut expected = FIRST_RECHECK;
    for _ in 0..10 {
        p.on_wake_lock(Ok(WakeLock::Busy), now);
        assert_eq!(
            p.phase(),
            Phase::Sleeping {
                until: now + expected
            }
        );
        now += expected;
        p.on_timer();
        assert_eq!(p.next_action(room(10)), Action::Claim { room: 10 });
        p.on_claim(got(10, 0), now);
        assert_eq!(p.phase(), Phase::TakingWakeLock);
        expected = (expected * 2).min(MAX_RECHECK);
    }
    assert_eq!(expected, MAX_RECHECK);
    // Taking the lock at last ends the rechecks.
    p.on_wake_lock(Ok(WakeLock::Held), now);
    p.on_claim(got(10, 0), now);
    assert_eq!(p.phase(), Phase::Sleeping { until: now + POLL });
}

#[test]
fn the_recheck_never_outlasts_the_next_due_job() {
    let t0 = Instant::now();
    let mut p = Producer::new(POLL, t0);
    p.on_claim(
        ClaimReport {
            next_due: Some(Duration::ZERO),
            ..got(10, 0)
        },
        t0,
    );
    p.on_wake_lock(Ok(WakeLock::Busy), t0 + ms(1));
    assert_eq!(p.phase(), Phase::Sleeping { until: t0 + ms(1) });
}

#[test]
fn a_wake_lock_error_drops_the_lock_and_retries_after_the_outage_wait() {
    let t0 = Instant::now();
    let mut p = drained(t0);
    p.on_wake_lock(Err(ms(400)), t0);
    assert!(!p.holds_wake_lock());
    assert_eq!(
        p.phase(),
        Phase::Sleeping {
            until: t0 + ms(400)
        }
    );
    p.on_timer();
    p.on_claim(got(10, 0), t0 + ms(400));
    assert_eq!(p.next_action(room(10)), Action::TakeWakeLock);
}

#[test]
fn a_full_claim_under_the_wake_lock_lets_it_go_and_notifies() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    p.on_notified(t0 + ms(10));
    p.on_claim(got(10, 10), t0 + ms(11));
    // Claims while there is room, with the lock still held...
    assert_eq!(p.next_action(room(10)), Action::Claim { room: 10 });
    // ...and lets it go once it has to wait, so the jobs it took start first.
    assert_eq!(
        p.next_action(full(true)),
        Action::ReleaseWakeLock { notify: true }
    );
    p.on_wake_lock_released(t0 + ms(12));
    assert!(!p.holds_wake_lock());
    assert_eq!(
        p.next_action(full(true)),
        Action::Wait {
            until: None,
            slot: true
        }
    );
}

#[test]
fn a_short_claim_after_a_full_one_keeps_the_wake_lock() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    p.on_notified(t0 + ms(10));
    p.on_claim(got(10, 10), t0 + ms(11));
    p.on_claim(got(10, 3), t0 + ms(12));
    assert!(p.holds_wake_lock());
    assert!(matches!(p.phase(), Phase::Sleeping { .. }));
}

#[test]
fn notifications_rescans_and_timers_wake_a_sleeper() {
    let t0 = Instant::now();
    for wake in [
        Producer::on_timer as fn(&mut Producer),
        Producer::on_rescan,
        |p: &mut Producer| p.on_notified(Instant::now()),
    ] {
        let mut p = asleep_on_lock(t0);
        wake(&mut p);
        assert_eq!(p.phase(), Phase::Claiming);
        assert!(p.holds_wake_lock());
    }
}

#[test]
fn a_fast_stream_of_notifications_turns_to_polling() {
    let t0 = Instant::now();
    let (mut p, now) = fast(t0);
    assert_eq!(p.phase(), Phase::Claiming);
    p.on_claim(got(10, 1), now);
    assert_eq!(
        p.phase(),
        Phase::FastPolling {
            until: now + FAST_POLL
        }
    );
    // The lock goes first, without a notification: nobody slept on it.
    assert_eq!(
        p.next_action(room(10)),
        Action::ReleaseWakeLock { notify: false }
    );
    let released = now + ms(1);
    p.on_wake_lock_released(released);
    // The poll is counted from after the round trip.
    assert_eq!(
        p.next_action(full(false)),
        Action::Wait {
            until: Some(released + FAST_POLL),
            slot: false
        }
    );
    p.on_timer();
    assert_eq!(p.phase(), Phase::Claiming);
}

#[test]
fn notifications_spaced_out_do_not_count_as_a_fast_stream() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    let mut now = t0;
    for _ in 0..10 {
        now += FAST_WAKE;
        p.on_notified(now);
        p.on_claim(got(10, 1), now);
        assert!(matches!(p.phase(), Phase::Sleeping { .. }));
    }
}

#[test]
fn quiet_polls_end_the_fast_stream() {
    let t0 = Instant::now();
    let (mut p, mut now) = fast(t0);
    p.on_claim(got(10, 1), now);
    p.on_wake_lock_released(now);
    for _ in 1..QUIET_POLLS {
        now += FAST_POLL;
        p.on_timer();
        p.on_claim(got(10, 0), now);
        assert!(matches!(p.phase(), Phase::FastPolling { .. }));
    }
    now += FAST_POLL;
    p.on_timer();
    p.on_claim(got(10, 0), now);
    // Back to sleeping on NOTIFY, which needs the lock again.
    assert_eq!(p.next_action(room(10)), Action::TakeWakeLock);
}

#[test]
fn a_fast_stream_starts_afresh_after_quiet_polls() {
    let t0 = Instant::now();
    let (mut p, mut now) = fast(t0);
    for _ in 0..QUIET_POLLS {
        p.on_claim(got(10, 0), now);
    }
    // One more quick notification is a fast stream again: the count of
    // empty claims started over.
    now += FAST_WAKE / 2;
    p.on_notified(now);
    p.on_claim(got(10, 0), now);
    assert!(matches!(p.phase(), Phase::FastPolling { .. }));
}

#[test]
fn a_failed_claim_backs_off_without_the_lock() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    p.on_notified(t0 + ms(10));
    p.on_failure(ms(200), t0 + ms(20));
    assert!(!p.holds_wake_lock());
    assert_eq!(
        p.next_action(room(10)),
        Action::Pause {
            until: t0 + ms(220)
        }
    );
    p.on_timer();
    assert_eq!(p.next_action(room(10)), Action::Claim { room: 10 });
}

#[test]
fn an_abandoned_claim_drops_the_lock_with_its_session() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    p.on_notified(t0 + ms(10));
    p.on_claim_lost();
    assert!(!p.holds_wake_lock());
    p.on_stop();
    assert_eq!(p.next_action(room(10)), Action::Stop);
}

#[test]
fn stopping_lets_the_wake_lock_go_with_a_notification_then_ends() {
    let t0 = Instant::now();
    let mut p = asleep_on_lock(t0);
    p.on_stop();
    assert_eq!(
        p.next_action(room(10)),
        Action::ReleaseWakeLock { notify: true }
    );
    p.on_wake_lock_released(t0);
    assert_eq!(p.next_action(room(10)), Action::Stop);
}

#[test]
fn nothing_wakes_a_stopping_producer() {
    let t0 = Instant::now();
    let mut p = Producer::new(POLL, t0);
    p.on_stop();
    p.on_notified(t0);
    p.on_rescan();
    p.on_timer();
    p.on_failure(ms(100), t0);
    p.on_wake_lock(Ok(WakeLock::Busy), t0);
    assert_eq!(p.phase(), Phase::Stopping);
    assert_eq!(p.next_action(room(10)), Action::Stop);
}

#[test]
fn claim_stamps_are_microseconds_and_strictly_increase() {
    let mut p = Producer::new(POLL, Instant::now());
    let at =
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::nanoseconds(1_500);
    let first = p.stamp(at);
    assert_eq!(first, at - chrono::Duration::nanoseconds(500));
    let second = p.stamp(at);
    assert_eq!(second, first + chrono::Duration::microseconds(1));
    // A clock that went back does not repeat a stamp either.
    let third = p.stamp(at - chrono::Duration::seconds(1));
    assert_eq!(third, second + chrono::Duration::microseconds(1));
}
