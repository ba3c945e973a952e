//! Server settings and their documented defaults.
//!
//! Plain data: reading and validating settings lives here, acting on them
//! lives in the modules that own the behaviour (`http/`, `server/builder.rs`, `connection/driver.rs`).

use std::time::Duration;

use crate::connection::close::CloseCode;
use crate::error::{Error, Result};

/// Limits and timeouts of a [`Server`](crate::Server).
///
/// Every field has a default chosen for a production server facing the open
/// internet; change them with the setters on [`Server`](crate::Server) or by
/// building a `Config` and passing it to [`Server::config`](crate::Server::config).
///
/// # Policies at a glance
///
/// Policies that end an upgraded connection go through the same path as
/// [`close()`](crate::Handle::close): the close handler runs and the one
/// `connection closed` event is logged with the code and reason below
/// (`info` when the handshake completed, `warn` otherwise). Refusals before
/// the upgrade are logged at `debug` (one line per socket: a flood must not
/// flood the logs) and counted in [`Stats::refused`](crate::Stats::refused).
///
/// | policy | default | what the peer gets |
/// | --- | --- | --- |
/// | [`handshake_timeout`](Self::handshake_timeout) | 10 s | socket dropped, no response |
/// | [`max_request_bytes`](Self::max_request_bytes) | 8 KiB | HTTP 431 |
/// | [`max_connections`](Self::max_connections) | none | HTTP 503 at accept |
/// | [`max_connections_per_ip`](Self::max_connections_per_ip) | none | HTTP 429 at accept |
/// | [`connect_rate`](Self::connect_rate) | none | HTTP 429 at accept, before the request is read |
/// | [`allowed_origins`](Self::allowed_origins) | all | HTTP 403 |
/// | an `upgrade` handler's [`Rejection`](crate::Rejection) | | its status |
/// | [`idle_timeout`](Self::idle_timeout) | none | Close 1001 "Idle timeout" |
/// | [`ping_interval`](Self::ping_interval), [`pong_timeout`](Self::pong_timeout) | 30 s, 20 s | Ping; if unanswered, socket dropped (handler sees 1006 "Heartbeat timeout") |
/// | [`session_ttl`](Self::session_ttl) | none | Close 1008 "Session expired" |
/// | [`max_message_size`](Self::max_message_size), [`max_frame_size`](Self::max_frame_size) | 16 MiB | Close 1009 "Message too big" |
/// | [`send_queue`](Self::send_queue), [`send_timeout`](Self::send_timeout) | 64, 10 s | Close 1008 "Send queue full" |
/// | [`close_timeout`](Self::close_timeout) | 5 s | socket shut down if our Close is not answered |
/// | graceful shutdown: [`shutdown_code`](Self::shutdown_code), [`drain_timeout`](Self::drain_timeout) | 1001 "Going away", 10 s | Close 1001; dropped at the drain deadline |
/// | [`handler_grace`](Self::handler_grace) | 10 s | nothing (its socket is closed); a handler still running this long after is dropped |
///
/// Connection deadlines (handshake, close, the handler grace and the policy clocks) are
/// checked by one task per server rather than by a runtime timer per
/// socket, on a tick of a sixteenth of the shortest of these timeouts,
/// between 1 and 100 ms: a deadline fires up to one tick late, never early.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let config = wharf::Config::default();
/// assert_eq!(config.close_timeout, Duration::from_secs(5));
///
/// let server = wharf::Server::new().close_timeout(Duration::from_secs(2));
/// # drop(server);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Time a client has, from the TCP accept, to send its whole HTTP upgrade
    /// request; after it the socket is dropped without a response.
    /// Default: 10 s.
    pub handshake_timeout: Duration,
    /// Time the peer has to answer the server's Close frame (including the
    /// time to flush messages queued before the close, and our Close itself,
    /// which a peer that answers without reading may still hold up); after
    /// it the socket is shut down and `close()` returns
    /// [`CloseOutcome::TimedOut`](crate::CloseOutcome::TimedOut).
    /// Also bounds the time to flush the echo of a peer's Close and the
    /// drain after a protocol error. Default: 5 s.
    pub close_timeout: Duration,
    /// Largest message accepted from a peer, in bytes, after reassembling
    /// fragments; a bigger one closes the connection with 1009.
    /// Default: 16 MiB.
    pub max_message_size: usize,
    /// Largest single frame payload accepted from a peer, in bytes; a bigger
    /// one closes the connection with 1009. Default: 16 MiB.
    pub max_frame_size: usize,
    /// Largest HTTP upgrade request head (request line and headers), in
    /// bytes (256 B to 1 MiB); a bigger one is answered with 431.
    /// Default: 8 KiB.
    pub max_request_bytes: usize,
    /// Messages that may wait in a connection's send queue. `send` waits for
    /// room when it is full, `try_send` fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull). Default: 64.
    pub send_queue: usize,
    /// Received messages that may wait while the message handler is busy.
    /// When this many are waiting, or their payloads add up to
    /// `max_message_size` bytes, the server stops reading from that
    /// connection (TCP backpressure) until the handler catches up; so one
    /// connection's inbound memory stays under about twice
    /// `max_message_size`. While reading is paused, the peer's pings and
    /// Close wait too; a `close()` from the server drops the waiting messages
    /// and resumes reading to complete its handshake. Default: 16.
    pub inbound_queue: usize,
    /// Bytes read from the socket at a time into each connection's read
    /// buffer, which is allocated for the life of the connection (at most
    /// 16 MiB).
    /// Default: 4 KiB (tungstenite's own default of 128 KiB costs that much
    /// memory for every idle connection).
    pub read_buffer_size: usize,

    /// Closes a connection whose peer has sent nothing of its own (no text,
    /// binary or ping frame) for this long, with **1001 "Idle timeout"**.
    /// Pongs answering the server's heartbeat pings do not count: a client
    /// that is alive but silent is still idle. Default: `None` (no limit).
    pub idle_timeout: Option<Duration>,
    /// Heartbeat: when nothing has been heard from the peer for this long,
    /// the server sends a Ping. Default: 30 s. `None` turns heartbeats off.
    pub ping_interval: Option<Duration>,
    /// Heartbeat: after a Ping, time the peer has to send anything (its Pong
    /// or any other frame). When it passes, the peer is dead: the socket is
    /// dropped without a Close frame (a dead peer cannot read one) and the
    /// close handler sees **1006** with reason "Heartbeat timeout".
    /// Default: 20 s.
    pub pong_timeout: Duration,
    /// Maximum age of a connection: when it is reached the connection is
    /// closed with **1008 "Session expired"**. Default: `None` (no limit).
    pub session_ttl: Option<Duration>,
    /// Slow consumers: when a connection's send queue has been full for this
    /// long (the peer is not reading what the server sends), it is closed
    /// with **1008 "Send queue full"** (the Close frame waits behind the
    /// queue, so such a close usually ends by the close timeout). Memory per
    /// connection stays bounded by the queue meanwhile. Default: 10 s.
    pub send_timeout: Duration,
    /// Most sockets the server holds at once (upgraded connections and
    /// requests being read); more are answered with **503** at accept time.
    /// Default: `None` (no limit but the process's file descriptors).
    pub max_connections: Option<usize>,
    /// Most sockets one IP address may hold at once; more are answered with
    /// **429** at accept time. Default: `None` (no limit).
    pub max_connections_per_ip: Option<usize>,
    /// New connections one IP address may open, as a token bucket; a
    /// connection beyond it is answered with **429** at accept time, before
    /// its request is read. Default: `None` (no limit).
    pub connect_rate: Option<ConnectRate>,
    /// Origins (`scheme://host[:port]`, compared without case) allowed to
    /// open WebSocket connections; a request with any other `Origin` header
    /// is answered with **403**. Requests without an `Origin` header
    /// (non-browser clients) are allowed. Default: empty, every origin is
    /// allowed.
    pub allowed_origins: Vec<String>,
    /// Code of the Close frame sent to every connection on graceful
    /// shutdown. Default: 1001 (Going away). 1012 (Service restart) suits a
    /// deploy.
    pub shutdown_code: CloseCode,
    /// Reason of that Close frame. Default: "Going away".
    pub shutdown_reason: String,
    /// How long a graceful shutdown waits for the closing handshakes; the
    /// connections still open then are dropped. Default: 10 s.
    pub drain_timeout: Duration,
    /// How long a connect or message handler may keep running after the
    /// connection's socket has closed; then its future is dropped (logged
    /// at `warn` with the connection id, counted in
    /// [`Stats::handlers_abandoned`](crate::Stats::handlers_abandoned)),
    /// messages received but not yet handled are dropped with it, and the
    /// close handler runs. The close handler is bounded the same way: it
    /// may run this long, then its future is dropped (logged and counted
    /// alike) and the connection's data is released. A handler stuck on a
    /// channel or a lock thus cannot hold a connection, its data and its
    /// place in a graceful shutdown's drain forever. Default: 10 s.
    pub handler_grace: Duration,
    /// Path on which the server answers a plain `GET` with its counters in
    /// the Prometheus text format. Default: `None` (not served).
    pub metrics_path: Option<String>,
}

/// A per-IP connection rate: `per_second` new connections on average, with
/// bursts of up to `burst` at once (a token bucket that starts full).
///
/// # Examples
///
/// ```
/// let rate = wharf::ConnectRate::new(10.0, 20);
/// let server = wharf::Server::new().connect_rate(rate);
/// # drop(server);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectRate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: the largest burst allowed.
    pub burst: u32,
}

impl ConnectRate {
    /// `per_second` connections a second, bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Self {
        ConnectRate { per_second, burst }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_request_bytes: 8 << 10,
            send_queue: 64,
            inbound_queue: 16,
            read_buffer_size: 4 << 10,
            idle_timeout: None,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(20),
            session_ttl: None,
            send_timeout: Duration::from_secs(10),
            max_connections: None,
            max_connections_per_ip: None,
            connect_rate: None,
            allowed_origins: Vec::new(),
            shutdown_code: CloseCode::GOING_AWAY,
            shutdown_reason: "Going away".to_owned(),
            drain_timeout: Duration::from_secs(10),
            handler_grace: Duration::from_secs(10),
            metrics_path: None,
        }
    }
}

impl Config {
    /// The shortest timeout in use: deadlines are checked on a tick of a
    /// sixteenth of it (see the type's docs).
    pub(crate) fn shortest_timeout(&self) -> Duration {
        [
            Some(self.handshake_timeout),
            Some(self.close_timeout),
            Some(self.send_timeout),
            Some(self.handler_grace),
            self.idle_timeout,
            self.ping_interval,
            self.ping_interval.map(|_| self.pong_timeout),
            self.session_ttl,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.close_timeout)
    }
}

/// Largest `read_buffer_size`: it is allocated per connection up front.
const MAX_READ_BUFFER: usize = 16 << 20;
/// Largest `max_request_bytes`: a request head is buffered whole.
const MAX_REQUEST_BYTES: usize = 1 << 20;

impl Config {
    /// Rejects settings that cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |why: &str| Err(Error::Config(why.to_owned()));
        if self.send_queue == 0 {
            return fail("send_queue must be at least 1");
        }
        if self.inbound_queue == 0 {
            return fail("inbound_queue must be at least 1");
        }
        if self.read_buffer_size == 0 || self.read_buffer_size > MAX_READ_BUFFER {
            return fail("read_buffer_size must be between 1 byte and 16 MiB");
        }
        if !(256..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return fail("max_request_bytes must be between 256 bytes and 1 MiB");
        }
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        if self.close_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.pong_timeout.is_zero()
            || self.send_timeout.is_zero()
            || self.drain_timeout.is_zero()
            || self.handler_grace.is_zero()
            || zero(self.idle_timeout)
            || zero(self.ping_interval)
            || zero(self.session_ttl)
        {
            return fail("timeouts must be longer than zero");
        }
        if self.max_connections == Some(0) || self.max_connections_per_ip == Some(0) {
            return fail("connection limits must be at least 1");
        }
        if let Some(rate) = self.connect_rate {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0 {
                return fail("connect_rate needs a positive rate and a burst of at least 1");
            }
        }
        crate::connection::close::validate(self.shutdown_code, &self.shutdown_reason).map_err(
            |_| {
                Error::Config(format!(
                    "shutdown_code {} may not be sent",
                    self.shutdown_code
                ))
            },
        )?;
        if let Some(path) = &self.metrics_path {
            if !path.starts_with('/') {
                return fail("metrics_path must start with '/'");
            }
        }
        for origin in &self.allowed_origins {
            if !origin.contains("://") {
                return Err(Error::Config(format!(
                    "allowed origin {origin:?} must look like scheme://host[:port]"
                )));
            }
        }
        Ok(())
    }
}
