//! Graceful shutdown: the trigger, and the drain that closes every
//! connection and reports how each ended.
//!
//! The drain asks every live connection to close through the ordinary
//! `close()` path (so each end is logged, counted and runs its close
//! handler), waits for the handshakes and close handlers up to the drain
//! deadline, then drops the connections still open (and handlers still
//! running). It never waits past the deadline plus a short grace for the
//! dropped connections' close handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::connection::close::{CloseCode, CloseOutcome, CloseSummary};
use crate::connection::handle::{ConnId, Handle};
use crate::rt;

/// The shutdown trigger shared by a server's handles.
#[derive(Debug, Default)]
pub(crate) struct Trigger {
    fired: AtomicBool,
    event: Event,
}

impl Trigger {
    /// Fires the trigger; later calls do nothing.
    pub(crate) fn fire(&self) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            self.event.notify(usize::MAX);
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the trigger has fired.
    pub(crate) async fn fired(&self) {
        wait_until(&self.event, || self.is_fired()).await;
    }
}

/// Resolves once `ready` holds, re-checking whenever `event` is notified.
/// `ready` is checked again after listening, so a notification between
/// the first check and the listener is not lost.
async fn wait_until(event: &Event, ready: impl Fn() -> bool) {
    loop {
        if ready() {
            return;
        }
        let listener = event.listen();
        if ready() {
            return;
        }
        listener.await;
    }
}

/// Every connection task from its upgrade until its close handler has
/// returned: what a drain waits for, and what it aborts at the deadline.
/// Unlike the registry, it still lists a connection whose socket is closed
/// while a handler of it runs.
///
/// An upgrade takes a [`Seat`] before its last look at the shutdown
/// trigger, and its connection fills the seat once listed; a drain waits for
/// the seats too. So no upgrade can pass that look, then slip into the list
/// after a drain found it empty: either the upgrade sees the trigger fired
/// and is refused, or the drain (which starts after the trigger fires)
/// sees its seat.
#[derive(Debug, Default)]
pub(crate) struct Live {
    tasks: Mutex<Tasks>,
    /// Notified when the last task leaves and no seat is taken.
    empty: Event,
}

#[derive(Debug, Default)]
struct Tasks {
    by_id: HashMap<ConnId, Handle>,
    /// Seats taken and not yet filled or given up.
    seats: usize,
}

impl Tasks {
    fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.seats == 0
    }
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds a place for an upgrade about to complete; see [`Seat`].
    pub(crate) fn reserve(&self) -> Seat<'_> {
        self.lock().seats += 1;
        Seat {
            live: self,
            filled: false,
        }
    }

    pub(crate) fn remove(&self, id: ConnId) {
        let (removed, now_empty) = {
            let mut tasks = self.lock();
            (tasks.by_id.remove(&id), tasks.is_empty())
        };
        drop(removed);
        if now_empty {
            self.empty.notify(usize::MAX);
        }
    }

    fn handles(&self) -> Vec<Handle> {
        self.lock().by_id.values().cloned().collect()
    }

    async fn wait_empty(&self) {
        wait_until(&self.empty, || self.lock().is_empty()).await;
    }
}

/// A place in [`Live`] held for an upgrade between its last shutdown check
/// and its connection's listing: a drain waits for it. Dropping it unfilled
/// (a refused or failed upgrade) gives the place up.
#[derive(Debug)]
pub(crate) struct Seat<'a> {
    live: &'a Live,
    filled: bool,
}

impl Seat<'_> {
    /// The upgrade completed: its connection task takes the place.
    pub(crate) fn fill(mut self, handle: Handle) {
        let mut tasks = self.live.lock();
        tasks.by_id.insert(handle.id(), handle);
        tasks.seats -= 1;
        self.filled = true;
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        let now_empty = {
            let mut tasks = self.live.lock();
            tasks.seats -= 1;
            tasks.is_empty()
        };
        if now_empty {
            self.live.empty.notify(usize::MAX);
        }
    }
}

/// How connections that ended during a drain ended, counted by their tasks.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    clean: AtomicUsize,
    timed_out: AtomicUsize,
    peer_gone: AtomicUsize,
    dropped: AtomicUsize,
}

impl Tally {
    /// Counts one connection end; `dropped` when the drain deadline cut it.
    pub(crate) fn record(&self, outcome: CloseOutcome, dropped: bool) {
        let counter = match outcome {
            _ if dropped => &self.dropped,
            CloseOutcome::Clean => &self.clean,
            CloseOutcome::TimedOut => &self.timed_out,
            CloseOutcome::PeerGone => &self.peer_gone,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// After the drain deadline, how long the dropped connections' close
/// handlers get before `run()` returns.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Closes every live connection with `code` and `reason` (already
/// validated) and waits up to `limit` for their handshakes and close
/// handlers; then drops the rest and gives their close handlers
/// [`ABORT_GRACE`]. Connections that upgrade meanwhile are closed too by
/// their own task (the server refuses new upgrades while draining, but one
/// may be between its last shutdown check and its listing: the drain waits
/// for its [`Seat`]).
pub(crate) async fn drain(
    live: &Live,
    tally: &Tally,
    code: CloseCode,
    reason: &str,
    limit: Duration,
) -> CloseSummary {
    let started = Instant::now();
    let handles = live.handles();
    tracing::info!(
        connections = handles.len(),
        code = code.as_u16(),
        reason,
        drain_ms = limit.as_millis() as u64,
        "closing every connection"
    );
    for handle in &handles {
        handle.shared.request_close(code, reason.to_owned());
    }
    drop(handles);
    if rt::timeout(limit, live.wait_empty()).await.is_none() {
        let stuck = live.handles();
        tracing::warn!(
            connections = stuck.len(),
            "drain deadline passed; dropping the rest"
        );
        for handle in &stuck {
            handle.shared.abort();
        }
        drop(stuck);
        if rt::timeout(ABORT_GRACE, live.wait_empty()).await.is_none() {
            tracing::warn!("close handlers still running after the drain; returning anyway");
        }
    }
    let summary = CloseSummary {
        clean: tally.clean.load(Ordering::Relaxed),
        timed_out: tally.timed_out.load(Ordering::Relaxed),
        peer_gone: tally.peer_gone.load(Ordering::Relaxed),
        dropped: tally.dropped.load(Ordering::Relaxed),
        unanswered: 0,
        duration: started.elapsed(),
    };
    tracing::info!(
        clean = summary.clean,
        timed_out = summary.timed_out,
        peer_gone = summary.peer_gone,
        dropped = summary.dropped,
        duration_ms = summary.duration.as_millis() as u64,
        "shutdown complete"
    );
    summary
}
