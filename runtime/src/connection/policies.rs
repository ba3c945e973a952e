//! The open connection's policy clocks: idle timeout, heartbeat, session
//! lifetime and slow consumer.
//!
//! One deadline serves them all: it is set to the earliest, and when it
//! passes each policy is checked against the clock and the deadline moved
//! on. Reads only record the time, so a busy connection never touches the
//! server's timers. This module only keeps time and decides; the driver
//! sends the pings and performs the closes. It never reads a clock itself:
//! every instant comes from the driver, read from the server's clock.

use std::time::{Duration, Instant};

use super::close::CloseCode;

/// Per-connection settings: the policies' limits and the driver's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) close_timeout: Duration,
    pub(crate) inbound_queue: usize,
    /// Payload bytes the inbox may hold before reading pauses.
    pub(crate) inbound_bytes: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Duration,
    pub(crate) session_ttl: Option<Duration>,
    pub(crate) send_timeout: Duration,
    /// How long a handler may run once the socket is closed.
    pub(crate) handler_grace: Duration,
}

/// What the policy clocks decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Close with this code and reason (idle, session, slow consumer).
    Close(CloseCode, &'static str),
    /// The peer did not answer the heartbeat: drop the socket.
    Dead,
}

/// The clocks of one open connection.
#[derive(Debug)]
pub(crate) struct Policies {
    /// When the policies must next be checked; `None` when not computed.
    armed: Option<Instant>,
    /// Last frame of any kind from the peer.
    heard: Instant,
    /// Last frame the peer sent on its own (data or ping).
    active: Instant,
    /// When our outstanding ping was sent.
    ping_sent: Option<Instant>,
    /// A ping is due and waits for room in the socket.
    pub(crate) ping_due: bool,
    /// Since when the send queue has been full.
    full_since: Option<Instant>,
}

impl Policies {
    /// Clocks starting at `now`, the connection's start.
    pub(crate) fn new(now: Instant) -> Self {
        Policies {
            armed: None,
            heard: now,
            active: now,
            ping_sent: None,
            ping_due: false,
            full_since: None,
        }
    }

    /// The peer sent a frame at `now`; `active` when it sent it on its own
    /// (data or ping) rather than answering our ping.
    pub(crate) fn heard(&mut self, now: Instant, active: bool) {
        self.heard = now;
        if active {
            self.active = now;
        }
        if self.ping_sent.is_some() {
            // Answered: the next ping is due an interval from now, which may
            // be earlier than the pong deadline the clocks are set for.
            self.armed = None;
        }
    }

    /// Records whether the send queue is full at `now`; true when it just
    /// filled (its clock starts, so the deadline must be recomputed).
    pub(crate) fn queue_full(&mut self, full: bool, now: Instant) -> bool {
        match (full, self.full_since) {
            (true, None) => {
                self.full_since = Some(now);
                true
            }
            (false, Some(_)) => {
                self.full_since = None;
                false
            }
            _ => false,
        }
    }

    /// Whether the clocks must be checked at `now`: their deadline passed
    /// or was never computed.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.armed.is_none_or(|at| now >= at)
    }

    /// The deadline to be woken at, once computed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.armed
    }

    /// Checks every clock at `now`; the first that ran out decides. Marks a
    /// heartbeat ping due when one should be sent.
    pub(crate) fn check(
        &mut self,
        limits: &Limits,
        started: Instant,
        now: Instant,
    ) -> Option<Verdict> {
        // Whether `after` has passed since `from`; never for a duration too
        // long to add to an instant.
        let due =
            |from: Instant, after: Duration| from.checked_add(after).is_some_and(|at| now >= at);
        if limits.session_ttl.is_some_and(|ttl| due(started, ttl)) {
            return Some(Verdict::Close(
                CloseCode::POLICY_VIOLATION,
                "Session expired",
            ));
        }
        if self
            .full_since
            .is_some_and(|since| due(since, limits.send_timeout))
        {
            return Some(Verdict::Close(
                CloseCode::POLICY_VIOLATION,
                "Send queue full",
            ));
        }
        if limits
            .idle_timeout
            .is_some_and(|idle| due(self.active, idle))
        {
            return Some(Verdict::Close(CloseCode::GOING_AWAY, "Idle timeout"));
        }
        if let Some(interval) = limits.ping_interval {
            match self.ping_sent {
                Some(sent) if self.heard < sent => {
                    if due(sent, limits.pong_timeout) {
                        return Some(Verdict::Dead);
                    }
                }
                _ => {
                    self.ping_sent = None;
                    if due(self.heard, interval) {
                        self.ping_due = true;
                        self.ping_sent = Some(now);
                    }
                }
            }
        }
        None
    }

    /// Sets the deadline to the earliest instant at which a clock may run
    /// out.
    pub(crate) fn plan(&mut self, limits: &Limits, started: Instant) {
        let heartbeat = limits
            .ping_interval
            .and_then(|interval| match self.ping_sent {
                Some(sent) if self.heard < sent => sent.checked_add(limits.pong_timeout),
                _ => self.heard.checked_add(interval),
            });
        self.armed = [
            limits.session_ttl.and_then(|ttl| started.checked_add(ttl)),
            self.full_since
                .and_then(|since| since.checked_add(limits.send_timeout)),
            limits
                .idle_timeout
                .and_then(|idle| self.active.checked_add(idle)),
            heartbeat,
        ]
        .into_iter()
        .flatten()
        .min();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            close_timeout: Duration::from_secs(5),
            inbound_queue: 16,
            inbound_bytes: 1 << 20,
            idle_timeout: Some(Duration::from_secs(60)),
            ping_interval: Some(Duration::from_secs(10)),
            pong_timeout: Duration::from_secs(5),
            session_ttl: Some(Duration::from_secs(3600)),
            send_timeout: Duration::from_secs(10),
            handler_grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_quiet_peer_is_pinged_then_declared_dead() {
        let (limits, t0) = (limits(), Instant::now());
        let mut p = Policies::new(t0);
        p.plan(&limits, t0);
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(p.check(&limits, t0, t1), None);
        assert!(p.ping_due);
        p.plan(&limits, t0);
        assert_eq!(p.deadline(), Some(t1 + Duration::from_secs(5)));
        assert_eq!(
            p.check(&limits, t0, t1 + Duration::from_secs(5)),
            Some(Verdict::Dead)
        );
    }

    #[test]
    fn an_answer_moves_the_next_ping_and_does_not_count_as_activity() {
        let (limits, t0) = (limits(), Instant::now());
        let mut p = Policies::new(t0);
        let t1 = t0 + Duration::from_secs(10);
        p.check(&limits, t0, t1);
        p.heard(t1 + Duration::from_secs(1), false);
        assert!(p.is_due(t1), "an answer asks for a new plan");
        p.plan(&limits, t0);
        assert_eq!(p.deadline(), Some(t1 + Duration::from_secs(11)));
        // Only answers for a minute: idle.
        let t2 = t0 + Duration::from_secs(60);
        p.heard(t2, false);
        assert_eq!(
            p.check(&limits, t0, t2),
            Some(Verdict::Close(CloseCode::GOING_AWAY, "Idle timeout"))
        );
    }

    #[test]
    fn durations_too_long_for_an_instant_never_run_out() {
        let mut limits = limits();
        limits.session_ttl = Some(Duration::MAX);
        limits.idle_timeout = Some(Duration::MAX);
        limits.ping_interval = Some(Duration::MAX);
        let t0 = Instant::now();
        let mut p = Policies::new(t0);
        assert_eq!(p.check(&limits, t0, t0 + Duration::from_secs(86_400)), None);
        p.plan(&limits, t0);
        assert_eq!(p.deadline(), None);
    }
}
