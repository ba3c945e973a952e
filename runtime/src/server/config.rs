//! Server settings and their documented defaults.
//!
//! Plain data written by the setters on [`Server`](crate::Server) (the one
//! way to change a setting) and checked here when the server binds; acting
//! on the settings lives in the modules that own the behaviour (`http/`,
//! `server/`, `connection/driver.rs`). The user-facing documentation of each
//! setting is on its setter.

use std::net::SocketAddr;
use std::time::Duration;

use crate::connection::close::CloseCode;
use crate::error::{Error, Result};

/// Every setting of a [`Server`](crate::Server), with its default. The
/// setters on `Server` are the one way to change them (each field's doc
/// names its setter); [`Config::validate`] checks them when the server
/// binds.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Time a client has, from the TCP accept, to send its whole HTTP upgrade
    /// request; after it the socket is dropped without a response.
    /// Default: 10 s.
    pub(crate) upgrade_timeout: Duration,
    /// Time the peer has to answer the server's Close frame (including the
    /// time to flush messages queued before the close, and our Close itself,
    /// which a peer that answers without reading may still hold up); after
    /// it the socket is shut down and `close()` returns
    /// [`CloseOutcome::TimedOut`](crate::CloseOutcome::TimedOut).
    /// Also bounds the time to flush the echo of a peer's Close and the
    /// drain after a protocol error. Default: 5 s.
    pub(crate) close_timeout: Duration,
    /// Largest message accepted from a peer, in bytes, after reassembling
    /// fragments; a bigger one closes the connection with 1009.
    /// Default: 16 MiB.
    pub(crate) max_message_size: usize,
    /// Largest single frame payload accepted from a peer, in bytes; a bigger
    /// one closes the connection with 1009. Default: 16 MiB.
    pub(crate) max_frame_size: usize,
    /// Largest HTTP upgrade request head (request line and headers), in
    /// bytes (256 B to 1 MiB); a bigger one is answered with 431.
    /// Default: 8 KiB.
    pub(crate) max_request_bytes: usize,
    /// Messages that may wait in a connection's send queue. `send` waits for
    /// room when it is full, `try_send` fails with
    /// [`Error::QueueFull`](crate::Error::QueueFull). Default: 64.
    pub(crate) send_queue: usize,
    /// Received messages that may wait while the message handler is busy.
    /// When this many are waiting, or their payloads add up to
    /// `max_message_size` bytes, the server stops reading from that
    /// connection (TCP backpressure) until the handler catches up; so one
    /// connection's inbound memory stays under about twice
    /// `max_message_size`. While reading is paused, the peer's pings and
    /// Close wait too; a `close()` from the server drops the waiting messages
    /// and resumes reading to complete its handshake. Default: 16.
    pub(crate) inbound_queue: usize,
    /// Bytes read from the socket at a time into each connection's read
    /// buffer, which is allocated for the life of the connection (at most
    /// 16 MiB). Default: [`DEFAULT_READ_BUFFER_SIZE`], 1 KiB.
    pub(crate) read_buffer_size: usize,

    /// Closes a connection whose peer has sent nothing of its own (no text,
    /// binary or ping frame) for this long, with **1001 "Idle timeout"**.
    /// Pongs answering the server's heartbeat pings do not count: a client
    /// that is alive but silent is still idle. Default: `None` (no limit).
    pub(crate) idle_timeout: Option<Duration>,
    /// Heartbeat: when nothing has been heard from the peer for this long,
    /// the server sends a Ping. Default: 30 s. `None` turns heartbeats off.
    pub(crate) ping_interval: Option<Duration>,
    /// Heartbeat: after a Ping, time the peer has to send anything (its Pong
    /// or any other frame). When it passes, the peer is dead: the socket is
    /// dropped without a Close frame (a dead peer cannot read one) and the
    /// close handler sees **1006** with reason "Heartbeat timeout".
    /// Default: 20 s.
    pub(crate) pong_timeout: Duration,
    /// Maximum age of a connection: when it is reached the connection is
    /// closed with **1008 "Session expired"**. Default: `None` (no limit).
    pub(crate) session_ttl: Option<Duration>,
    /// Slow consumers: when a connection's send queue has been full for this
    /// long (the peer is not reading what the server sends), it is closed
    /// with **1008 "Send queue full"** (the Close frame waits behind the
    /// queue, so such a close usually ends by the close timeout). Memory per
    /// connection stays bounded by the queue meanwhile. Default: 10 s.
    pub(crate) send_timeout: Duration,
    /// Most sockets the server holds at once (upgraded connections and
    /// requests being read); more are answered with **503** at accept time.
    /// Default: `None` (no limit but the process's file descriptors).
    pub(crate) max_connections: Option<usize>,
    /// Most sockets one IP address may hold at once; more are answered with
    /// **429** at accept time. Default: `None` (no limit).
    pub(crate) max_connections_per_ip: Option<usize>,
    /// New connections one IP address may open, as a token bucket; a
    /// connection beyond it is answered with **429** at accept time, before
    /// its request is read. Default: `None` (no limit).
    pub(crate) connect_rate: Option<ConnectRate>,
    /// Origins (`scheme://host[:port]`, compared without case) allowed to
    /// open WebSocket connections; a request with any other `Origin` header
    /// is answered with **403**. Requests without an `Origin` header
    /// (non-browser clients) are allowed. Default: empty, every origin is
    /// allowed.
    pub(crate) allowed_origins: Vec<String>,
    /// Code of the Close frame sent to every connection on graceful
    /// shutdown. Default: 1001 (Going away). 1012 (Service restart) suits a
    /// deploy.
    pub(crate) shutdown_code: CloseCode,
    /// Reason of that Close frame. Default: "Going away".
    pub(crate) shutdown_reason: String,
    /// How long a graceful shutdown waits for the closing handshakes; the
    /// connections still open then are dropped. Default: 10 s.
    pub(crate) drain_timeout: Duration,
    /// Path on which the server answers a plain `GET` with its counters in
    /// the Prometheus text format. Default: `None` (not served).
    pub(crate) metrics_path: Option<String>,
    /// Where the metrics listener binds (see `Server::metrics_addr`): the
    /// addresses resolved when it was set, or why they could not be.
    /// Default: `None` (metrics on the public port, if a path is set).
    pub(crate) metrics_addr: Option<std::result::Result<Vec<SocketAddr>, String>>,
    /// Addresses and CIDR ranges of the proxies whose word about a
    /// client's address is believed (see `Server::trusted_proxies`).
    /// Default: none.
    pub(crate) trusted_proxies: Vec<String>,
    /// Whether every connection starts with a PROXY protocol header (see
    /// `Server::proxy_protocol`). Default: off.
    pub(crate) proxy_protocol: bool,
    /// TLS for every connection (see `Server::tls`). Default: `None`.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::net::tls::TlsConfig>,
    /// How long a connect or message handler may keep running after the
    /// connection's socket has closed, and a close handler at all, before
    /// its future is dropped (see `Server::handler_grace`). Default: 10 s.
    pub(crate) handler_grace: Duration,
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
    ///
    /// # Examples
    ///
    /// ```
    /// // On average one connection a second per address, bursts of five.
    /// let rate = wharf::ConnectRate::new(1.0, 5);
    /// assert_eq!(rate.burst, 5);
    /// ```
    pub fn new(per_second: f64, burst: u32) -> Self {
        ConnectRate { per_second, burst }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upgrade_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_request_bytes: 8 << 10,
            send_queue: 64,
            inbound_queue: 16,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
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
            metrics_addr: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl Config {
    /// The shortest timeout in use: deadlines are checked on a tick of a
    /// sixteenth of it (see the type's docs).
    pub(crate) fn shortest_timeout(&self) -> Duration {
        [
            Some(self.upgrade_timeout),
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

/// The default of [`Server::read_buffer_size`](crate::Server::read_buffer_size):
/// the bytes each connection reads from its socket at a time, into a
/// buffer it keeps for its life: 1 KiB. Benchmarks that compare Wharf with
/// a bare async-tungstenite server give the bare one this same size.
///
/// It is most of an idle connection's memory (the breakdown is in the
/// docs of `server/serve.rs`): at 1 KiB an idle connection costs about
/// 3.1 KiB of RSS, at 4 KiB (the default before) 3 KiB more, at
/// tungstenite's own 128 KiB over 130 KiB. Small messages fit in one read
/// whatever the size. A large message takes one read system call per
/// `read_buffer_size` bytes (tungstenite never reads more at a time), so
/// a server that receives large messages should raise it. Measured on
/// 2 cores, echo server on one, clients (256 KiB buffers) on the other,
/// medians of 3 runs, server CPU per echoed message:
///
/// | message | 1 KiB buffer | 4 KiB buffer |
/// | --- | ---: | ---: |
/// | 64 KiB, 8 connections | 103 µs, 312 MB/s | 60 µs, 465 MB/s |
/// | 1 MiB, 4 connections | 1616 µs, 503 MB/s | 928 µs, 706 MB/s |
///
/// # Examples
///
/// ```
/// // The bare baseline of the benches is configured like this:
/// let buffer = wharf::DEFAULT_READ_BUFFER_SIZE;
/// assert!(buffer >= 512);
/// ```
pub const DEFAULT_READ_BUFFER_SIZE: usize = 1 << 10;

/// Largest `read_buffer_size`: it is allocated per connection up front.
const MAX_READ_BUFFER: usize = 16 << 20;
/// Largest `max_request_bytes`: a request head is buffered whole.
const MAX_REQUEST_BYTES: usize = 1 << 20;

impl Config {
    /// Rejects settings that cannot work, naming the setter to fix.
    pub(crate) fn validate(&self) -> Result<()> {
        let check = |ok: bool, setting: &'static str, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(setting, reason))
            }
        };
        let positive = |d: Duration, setting: &'static str| {
            check(!d.is_zero(), setting, "must be longer than zero")
        };
        let positive_opt = |d: Option<Duration>, setting: &'static str| match d {
            Some(d) => positive(d, setting),
            None => Ok(()),
        };
        check(self.send_queue > 0, "send_queue", "must be at least 1")?;
        check(
            self.inbound_queue > 0,
            "inbound_queue",
            "must be at least 1",
        )?;
        check(
            (1..=MAX_READ_BUFFER).contains(&self.read_buffer_size),
            "read_buffer_size",
            "must be between 1 byte and 16 MiB",
        )?;
        check(
            (256..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes),
            "max_request_bytes",
            "must be between 256 bytes and 1 MiB",
        )?;
        check(
            self.max_message_size > 0,
            "max_message_size",
            "must be at least 1 byte",
        )?;
        check(
            self.max_frame_size > 0,
            "max_frame_size",
            "must be at least 1 byte",
        )?;
        positive(self.upgrade_timeout, "upgrade_timeout")?;
        positive(self.close_timeout, "close_timeout")?;
        positive(self.pong_timeout, "pong_timeout")?;
        positive(self.send_timeout, "send_timeout")?;
        positive(self.drain_timeout, "drain_timeout")?;
        positive(self.handler_grace, "handler_grace")?;
        positive_opt(self.idle_timeout, "idle_timeout")?;
        positive_opt(self.ping_interval, "ping_interval")?;
        positive_opt(self.session_ttl, "session_ttl")?;
        check(
            self.max_connections != Some(0),
            "max_connections",
            "must be at least 1",
        )?;
        check(
            self.max_connections_per_ip != Some(0),
            "max_connections_per_ip",
            "must be at least 1",
        )?;
        if let Some(rate) = self.connect_rate {
            check(
                rate.per_second.is_finite() && rate.per_second > 0.0 && rate.burst > 0,
                "connect_rate",
                "needs a positive, finite rate and a burst of at least 1",
            )?;
        }
        check(
            crate::connection::close::validate(self.shutdown_code, &self.shutdown_reason).is_ok(),
            "shutdown",
            &format!("close code {} may not be sent", self.shutdown_code),
        )?;
        if let Some(path) = &self.metrics_path {
            check(
                path.starts_with('/'),
                "metrics",
                "the path must start with '/'",
            )?;
        }
        match &self.metrics_addr {
            Some(Err(why)) => return Err(Error::config("metrics_addr", why.as_str())),
            Some(Ok(addrs)) => check(
                !addrs.is_empty(),
                "metrics_addr",
                "the address resolved to nothing",
            )?,
            None => {}
        }
        check(
            !self.proxy_protocol || !self.trusted_proxies.is_empty(),
            "proxy_protocol",
            "needs trusted_proxies: the PROXY header is believed only from them (list the load balancers' range, or 0.0.0.0/0 and ::/0 to believe every peer)",
        )?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.check().map_err(|reason| Error::config("tls", reason))?;
        }
        Ok(())
    }
}
