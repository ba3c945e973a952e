//! Coarse deadlines: one sweeper task per server instead of one runtime
//! timer per socket.
//!
//! Every connection has deadlines (the upgrade timeout, the heartbeat and
//! other policy clocks, the close timeout), and most of them never fire.
//! A runtime timer costs a wakeup of the reactor thread each time one is
//! armed; at thousands of connections a second that was a large share of a
//! short connection's cost. Here a deadline is an entry in a sorted map,
//! and one sweeper task sleeps until the earliest entry, then wakes the
//! owners of every entry that is due. Setting a deadline touches the
//! runtime only when it is earlier than the sweeper's planned wakeup.
//!
//! To batch nearby deadlines the sweeper wakes at most once per `tick` (a
//! sixteenth of the server's shortest timeout, between 1 and 100 ms), so a
//! deadline fires up to one tick late, never early: owners compare the
//! clock themselves when woken. With no deadlines the sweeper sleeps.
//!
//! Deadlines are instants of the server's [`Clock`], which owners read
//! too. In `test-util` builds a test can move that clock forward
//! ([`Timers::advance`]); the sweeper then fires what became due at once.
//!
//! This module never decides what a deadline means; it only wakes.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::rt::{self, Clock};

/// The shortest and longest tick.
const MIN_TICK: Duration = Duration::from_millis(1);
const MAX_TICK: Duration = Duration::from_millis(100);

/// The deadlines by time. There is no index by key: every owner knows
/// the one deadline it set and names it to replace or cancel it, which
/// saves an idle connection the hash-map entry such an index costs.
#[derive(Debug, Default)]
struct Table {
    by_time: BTreeMap<(Instant, u64), Waker>,
    /// When the sweeper will next wake; `None` while it waits for a
    /// deadline to be set.
    planned: Option<Instant>,
}

impl Table {
    fn remove(&mut self, key: u64, at: Instant) {
        self.by_time.remove(&(at, key));
    }

    /// Removes every deadline up to `now` and returns their wakers.
    fn take_due(&mut self, now: Instant) -> Vec<Waker> {
        let later = self.by_time.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.by_time, later)
            .into_values()
            .collect()
    }
}

/// The deadlines of one server.
#[derive(Debug)]
pub(crate) struct Timers {
    /// What every deadline is read against.
    clock: Clock,
    tick: Duration,
    next_key: AtomicU64,
    table: Mutex<Table>,
    /// Wakes the sweeper early: a deadline before its plan, or the end.
    replan: Event,
}

impl Timers {
    /// Timers whose tick suits `shortest`, the shortest timeout in use,
    /// with their sweeper running until the last reference is dropped.
    pub(crate) fn start(shortest: Duration) -> Arc<Self> {
        let timers = Arc::new(Timers {
            clock: Clock::default(),
            tick: (shortest / 16).clamp(MIN_TICK, MAX_TICK),
            next_key: AtomicU64::new(1),
            table: Mutex::default(),
            replan: Event::new(),
        });
        rt::spawn(sweep(Arc::downgrade(&timers)));
        timers
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock deadlines are read against.
    #[cfg(feature = "test-util")]
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Moves the clock forward by `by` and lets the sweeper fire what is
    /// now due. Under the table's lock, so a sweeper planning its sleep
    /// either sees the new time or is already listening for this call.
    #[cfg(feature = "test-util")]
    pub(crate) fn advance(&self, by: Duration) {
        let _table = self.lock();
        self.clock.advance(by);
        self.replan.notify(usize::MAX);
    }

    /// A key for one owner's deadline.
    pub(crate) fn key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Wakes `waker` once `at` has passed; replaces `key`'s `previous`
    /// deadline (the one its owner set last, if it did and has not seen it
    /// fire).
    pub(crate) fn set(&self, key: u64, previous: Option<Instant>, at: Instant, waker: &Waker) {
        let mut table = self.lock();
        if let Some(previous) = previous {
            table.remove(key, previous);
        }
        table.by_time.insert((at, key), waker.clone());
        if table.planned.is_none_or(|planned| at < planned) {
            table.planned = Some(at);
            self.replan.notify(1);
        }
    }

    /// Forgets `key`'s deadline `at` (nothing when it fired already).
    pub(crate) fn cancel(&self, key: u64, at: Instant) {
        self.lock().remove(key, at);
    }

    /// Wakes the owners of every deadline up to `now`.
    #[cfg(test)]
    fn fire(&self, now: Instant) {
        let due = self.lock().take_due(now);
        for waker in due {
            waker.wake();
        }
    }

    /// Runs `future` for at most `limit`; `None` when the limit ran out
    /// first (up to one tick late).
    pub(crate) async fn timeout<F: Future>(&self, limit: Duration, future: F) -> Option<F::Output> {
        // A limit too long to add to an instant never runs out.
        let Some(at) = self.clock.now().checked_add(limit) else {
            return Some(future.await);
        };
        let key = self.key();
        let _cancel = Cancel(self, key, at);
        let mut future = pin!(future);
        let mut armed: Option<Waker> = None;
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if self.clock.now() >= at {
                return Poll::Ready(None);
            }
            if !armed.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let previous = armed.is_some().then_some(at);
                self.set(key, previous, at, cx.waker());
                armed = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// Cancels a deadline (its key and instant) when its owner goes away.
pub(crate) struct Cancel<'t>(pub(crate) &'t Timers, pub(crate) u64, pub(crate) Instant);

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        self.0.cancel(self.1, self.2);
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        // The sweeper waits on `replan` without a reference: let it see the
        // end.
        self.replan.notify(usize::MAX);
    }
}

/// The sweeper: wakes due owners, then sleeps until the earliest deadline
/// (at least one tick) or until an earlier one is set; ends with the server.
async fn sweep(timers: Weak<Timers>) {
    loop {
        let Some(strong) = timers.upgrade() else {
            return;
        };
        let (due, replanned, nap) = {
            let mut table = strong.lock();
            // Read under the lock: a clock moved after this read notifies
            // the listener below (see `advance`).
            let now = strong.clock.now();
            let due = table.take_due(now);
            let earliest = table.by_time.keys().next().map(|(at, _)| *at);
            let tick = now.checked_add(strong.tick);
            let planned = match (earliest, tick) {
                (Some(at), Some(tick)) => Some(at.max(tick)),
                (at, _) => at,
            };
            table.planned = planned;
            // Listening under the lock: a `set` after it is not missed.
            (
                due,
                strong.replan.listen(),
                planned.map(|at| at.saturating_duration_since(now)),
            )
        };
        // Woken outside the lock: an owner may set its next deadline.
        for waker in due {
            waker.wake();
        }
        drop(strong);
        match nap {
            Some(nap) => {
                let _ = rt::timeout(nap, replanned).await;
            }
            None => replanned.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn timers() -> Timers {
        Timers {
            clock: Clock::default(),
            tick: MAX_TICK,
            next_key: AtomicU64::new(1),
            table: Mutex::default(),
            replan: Event::new(),
        }
    }

    #[test]
    fn only_due_deadlines_fire_and_each_once() {
        let timers = timers();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let now = Instant::now();
        timers.set(1, None, now, &waker);
        timers.set(2, None, now + Duration::from_secs(60), &waker);
        timers.fire(now);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        timers.fire(now);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(timers.lock().by_time.len(), 1);
    }

    #[test]
    fn set_replaces_and_cancel_forgets() {
        let timers = timers();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        timers.set(7, None, later, &waker);
        timers.set(7, Some(later), now, &waker);
        assert_eq!(timers.lock().by_time.len(), 1);
        timers.cancel(7, now);
        timers.fire(now + Duration::from_secs(120));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert!(timers.lock().by_time.is_empty());
    }
}
