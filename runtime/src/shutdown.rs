//! Graceful shutdown: the trigger, and the drain that closes every
//! connection and reports how each ended.
//!
//! The drain asks every live connection to close through the ordinary
//! `close()` path (so each end is logged, counted and runs its close
//! handler), waits for the handshakes up to the drain deadline, then drops
//! the connections still open. It never waits past the deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_util::future::join_all;

use crate::close::{CloseCode, CloseOutcome};
use crate::registry::Registry;
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
        loop {
            if self.is_fired() {
                return;
            }
            let listener = self.event.listen();
            if self.is_fired() {
                return;
            }
            listener.await;
        }
    }
}

/// How the connections open at a graceful shutdown ended, returned by
/// [`Listening::run`](crate::Listening::run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Closing handshakes that completed.
    pub clean: usize,
    /// Peers that did not answer the Close frame within the close timeout.
    pub timed_out: usize,
    /// Peers whose stream failed during the handshake.
    pub peer_gone: usize,
    /// Connections still open at the drain deadline, dropped without
    /// finishing their handshake.
    pub dropped: usize,
    /// How long the drain took.
    pub duration: Duration,
}

impl ShutdownSummary {
    /// Every connection the shutdown ended.
    pub fn total(&self) -> usize {
        self.clean + self.timed_out + self.peer_gone + self.dropped
    }
}

#[derive(Default)]
struct Counts {
    clean: AtomicUsize,
    timed_out: AtomicUsize,
    peer_gone: AtomicUsize,
}

/// Closes every connection in `registry` with `code` and `reason` (already
/// validated) and waits up to `limit`; connections that upgrade meanwhile
/// are closed too (the server refuses new upgrades while draining, but one
/// may be between its 101 and the registry).
pub(crate) async fn drain(
    registry: &Registry,
    code: CloseCode,
    reason: &str,
    limit: Duration,
) -> ShutdownSummary {
    let started = Instant::now();
    let deadline = started + limit;
    let counts = Counts::default();
    let mut dropped = 0;
    loop {
        let handles = registry.handles();
        if handles.is_empty() {
            break;
        }
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
        let wait_all = join_all(handles.iter().map(|handle| async {
            let counter = match handle.shared.outcome().await {
                CloseOutcome::Clean => &counts.clean,
                CloseOutcome::TimedOut => &counts.timed_out,
                CloseOutcome::PeerGone => &counts.peer_gone,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let left = deadline.saturating_duration_since(Instant::now());
        if rt::timeout(left, wait_all).await.is_none() {
            dropped += registry
                .handles()
                .iter()
                .filter(|handle| handle.shared.abort())
                .count();
            break;
        }
    }
    let summary = ShutdownSummary {
        clean: counts.clean.into_inner(),
        timed_out: counts.timed_out.into_inner(),
        peer_gone: counts.peer_gone.into_inner(),
        dropped,
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
