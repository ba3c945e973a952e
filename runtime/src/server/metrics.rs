//! Server-wide counters: what came in, what was rejected and why, how
//! connections ended.
//!
//! Counters are atomics bumped on the hot path (per accepted socket, per
//! batch of messages), except the table of closes by code and initiator,
//! which takes a lock once per connection end. The backpressure gauges move
//! only when a connection's state changes (reading paused or resumed, send
//! queue filled or drained), never per frame. This module only counts and
//! renders; it never decides anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::connection::close::{CloseCode, CloseOutcome, Initiator};
use crate::http::RejectReason;

/// The live counters of one server.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    active: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    closed: Mutex<BTreeMap<(u16, Initiator), u64>>,
    close_timeouts: AtomicU64,
    handlers_abandoned: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// Connections whose reading is paused for a full inbox.
    reads_paused: AtomicU64,
    /// Connections whose send queue is full.
    send_queues_full: AtomicU64,
}

/// Moves a gauge one up or one down. The driver reports each change once,
/// so every step down follows a step up.
fn step(gauge: &AtomicU64, up: bool) {
    if up {
        gauge.fetch_add(1, Relaxed);
    } else {
        gauge.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self, why: RejectReason) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn opened(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, code: CloseCode, initiator: Initiator, outcome: CloseOutcome) {
        self.active.fetch_sub(1, Relaxed);
        if outcome == CloseOutcome::TimedOut {
            self.close_timeouts.fetch_add(1, Relaxed);
        }
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        *closed.entry((code.as_u16(), initiator)).or_default() += 1;
    }

    pub(crate) fn handler_abandoned(&self) {
        self.handlers_abandoned.fetch_add(1, Relaxed);
    }

    pub(crate) fn messages(&self, received: u64, sent: u64) {
        if received > 0 {
            self.messages_in.fetch_add(received, Relaxed);
        }
        if sent > 0 {
            self.messages_out.fetch_add(sent, Relaxed);
        }
    }

    pub(crate) fn reading_paused(&self, paused: bool) {
        step(&self.reads_paused, paused);
    }

    pub(crate) fn send_queue_full(&self, full: bool) {
        step(&self.send_queues_full, full);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            accepted: self.accepted.load(Relaxed),
            active: self.active.load(Relaxed),
            rejections: RejectReason::ALL
                .iter()
                .map(|&why| (why, self.rejected[why as usize].load(Relaxed)))
                .filter(|&(_, n)| n > 0)
                .collect(),
            closes: self
                .closed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(&(code, initiator), &count)| (CloseCode::from(code), initiator, count))
                .collect(),
            close_timeouts: self.close_timeouts.load(Relaxed),
            handlers_abandoned: self.handlers_abandoned.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            reads_paused: self.reads_paused.load(Relaxed),
            send_queues_full: self.send_queues_full.load(Relaxed),
            cluster: None,
        }
    }
}

/// A snapshot of a server's counters, from
/// [`ServerHandle::stats`](crate::ServerHandle::stats). Counters start at
/// zero when the server binds and only grow, except the gauges `active`,
/// `reads_paused` and `send_queues_full`, which say how many connections
/// are in that state right now.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> wharf::Result<()> {
/// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
/// let stats = listening.handle().stats();
/// tracing::info!(open = stats.active, rate_limited = stats.rejected(wharf::RejectReason::RateLimited));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// TCP connections accepted (before any admission check).
    pub accepted: u64,
    /// WebSocket connections open now (upgraded, not yet ended).
    pub active: u64,
    /// Sockets answered with an HTTP error (or dropped before the
    /// upgrade), by reason; reasons never seen are left out. See
    /// [`rejected`](Self::rejected) for one reason's count.
    pub rejections: Vec<(RejectReason, u64)>,
    /// Connection ends by close code and initiator; a dropped stream counts
    /// as 1006 with [`Initiator::Abnormal`]. See [`closed`](Self::closed)
    /// for one pair's count.
    pub closes: Vec<(CloseCode, Initiator, u64)>,
    /// Closing handshakes that hit the close timeout.
    pub close_timeouts: u64,
    /// Handlers dropped for running past
    /// [`Server::handler_grace`](crate::Server::handler_grace): connect and
    /// message handlers still running that long after their socket closed,
    /// and close handlers still running that long after they started.
    pub handlers_abandoned: u64,
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Text and binary messages written.
    pub messages_out: u64,
    /// Connections whose reading is paused right now because their inbox
    /// is full: the message handler is behind, so the server stops reading
    /// from that peer until it catches up (inbound backpressure; see
    /// [`Server::inbound_queue`](crate::Server::inbound_queue)). A gauge.
    pub reads_paused: u64,
    /// Connections whose send queue is full right now: the peer reads more
    /// slowly than the application sends, so `send` waits and `try_send`
    /// fails with [`Error::QueueFull`](crate::Error::QueueFull) (see
    /// [`Server::send_queue`](crate::Server::send_queue) and, for a queue
    /// that stays full, [`Server::send_timeout`](crate::Server::send_timeout)).
    /// A connection that ends with a full queue leaves this gauge. A gauge.
    pub send_queues_full: u64,
    /// The cluster link's state and counters; `None` without a cluster
    /// (see [`Server::cluster`](crate::Server#method.cluster)).
    pub cluster: Option<ClusterStats>,
}

/// The state and counters of a server's link to its cluster's Redis, in
/// [`Stats::cluster`]. Counters count envelopes (one per send, close
/// request or answer) since the server bound.
///
/// # Examples
///
/// ```
/// fn report(stats: &wharf::Stats) {
///     if let Some(link) = &stats.cluster {
///         tracing::info!(up = link.up, dropped = link.dropped, invalid = link.invalid, "cluster link");
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Whether the link to Redis is up now: cross-node operations work.
    pub up: bool,
    /// Envelopes published to Redis.
    pub published: u64,
    /// Messages received on the node's subscribed channels (its own
    /// envelopes and invalid ones included).
    pub received: u64,
    /// Cross-node operations dropped: sent while the link was down or the
    /// publisher's queue full, too large, or lost with a failed session.
    pub dropped: u64,
    /// Received messages that were not a valid envelope for the channel
    /// they came on (another client's, truncated, oversized): ignored.
    pub invalid: u64,
    /// Times the link came back after being down.
    pub reconnects: u64,
}

impl Stats {
    /// Sockets rejected for `why`.
    ///
    /// # Examples
    ///
    /// ```
    /// fn report(stats: &wharf::Stats) {
    ///     let flood = stats.rejected(wharf::RejectReason::RateLimited);
    ///     tracing::info!(flood, "rate-limited connection attempts");
    /// }
    /// ```
    pub fn rejected(&self, why: RejectReason) -> u64 {
        self.rejections
            .iter()
            .find(|(r, _)| *r == why)
            .map_or(0, |(_, n)| *n)
    }

    /// Connections that ended with `code`, started by `initiator`.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{CloseCode, Initiator};
    ///
    /// fn report(stats: &wharf::Stats) {
    ///     let expired = stats.closed(CloseCode::POLICY_VIOLATION, Initiator::Server);
    ///     let dropped = stats.closed(CloseCode::ABNORMAL, Initiator::Abnormal);
    ///     tracing::info!(expired, dropped, "connection ends");
    /// }
    /// ```
    pub fn closed(&self, code: impl Into<CloseCode>, initiator: Initiator) -> u64 {
        let code = code.into();
        self.closes
            .iter()
            .find(|(c, i, _)| *c == code && *i == initiator)
            .map_or(0, |(_, _, n)| *n)
    }

    /// The counters in the Prometheus text exposition format (version
    /// 0.0.4), as served on [`Server::metrics`](crate::Server::metrics).
    ///
    /// # Examples
    ///
    /// ```
    /// let text = wharf::Stats::default().to_prometheus();
    /// assert!(text.contains("wharf_connections_active 0"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let single = |value: u64| [(String::new(), value)];
        family(
            "wharf_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            &single(self.accepted),
        );
        family(
            "wharf_connections_active",
            "gauge",
            "WebSocket connections open.",
            &single(self.active),
        );
        let rejected: Vec<_> = self
            .rejections
            .iter()
            .map(|(why, n)| (format!("{{reason=\"{why}\"}}"), *n))
            .collect();
        family(
            "wharf_connections_rejected_total",
            "counter",
            "Sockets answered with an HTTP error (or dropped) instead of an upgrade, by reason.",
            &rejected,
        );
        let closed: Vec<_> = self
            .closes
            .iter()
            .map(|(code, initiator, n)| {
                let labels = format!("{{code=\"{}\",initiator=\"{initiator}\"}}", code.as_u16());
                (labels, *n)
            })
            .collect();
        family(
            "wharf_connections_closed_total",
            "counter",
            "WebSocket connections ended, by close code and initiator.",
            &closed,
        );
        family(
            "wharf_close_timeouts_total",
            "counter",
            "Closing handshakes that hit the close timeout.",
            &single(self.close_timeouts),
        );
        family(
            "wharf_handlers_abandoned_total",
            "counter",
            "Handlers dropped for running past the handler grace.",
            &single(self.handlers_abandoned),
        );
        family(
            "wharf_messages_received_total",
            "counter",
            "Text and binary messages received.",
            &single(self.messages_in),
        );
        family(
            "wharf_messages_sent_total",
            "counter",
            "Text and binary messages sent.",
            &single(self.messages_out),
        );
        family(
            "wharf_connections_reads_paused",
            "gauge",
            "WebSocket connections whose reading is paused because their inbox is full.",
            &single(self.reads_paused),
        );
        family(
            "wharf_connections_send_queue_full",
            "gauge",
            "WebSocket connections whose send queue is full.",
            &single(self.send_queues_full),
        );
        if let Some(link) = &self.cluster {
            family(
                "wharf_cluster_up",
                "gauge",
                "Whether the link to the cluster's Redis is up (1) or down (0).",
                &single(u64::from(link.up)),
            );
            for (name, help, value) in [
                (
                    "wharf_cluster_published_total",
                    "Envelopes published to the cluster's Redis.",
                    link.published,
                ),
                (
                    "wharf_cluster_received_total",
                    "Messages received on the cluster's channels.",
                    link.received,
                ),
                (
                    "wharf_cluster_dropped_total",
                    "Cross-node operations dropped (link down, queue full, too large).",
                    link.dropped,
                ),
                (
                    "wharf_cluster_invalid_total",
                    "Received messages that were not valid envelopes; ignored.",
                    link.invalid,
                ),
                (
                    "wharf_cluster_reconnects_total",
                    "Times the cluster link came back after being down.",
                    link.reconnects,
                ),
            ] {
                family(name, "counter", help, &single(value));
            }
        }
        out
    }
}
