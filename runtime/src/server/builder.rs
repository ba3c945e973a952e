//! The server under construction: routes, pages, state and settings.
//!
//! `bind` checks the configuration and the routes and builds the
//! server-wide state (`state.rs`); accepting lives in `listening.rs` and
//! each socket's life in `serve.rs`. This module never touches a socket but
//! the listener it binds.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::admission::Admission;
use super::config::{Config, ConnectRate};
use super::listening::Listening;
use super::metrics::Metrics;
use super::routes::{Endpoint, Page, Route};
use super::shutdown::{Live, Tally, Trigger};
use super::state::Inner;
use super::timers::Timers;
use crate::connection::close::CloseCode;
use crate::connection::message::Bytes;
use crate::connection::policies::Limits;
use crate::connection::registry::Registry;
use crate::error::{Error, Result};
use crate::extensions::Extensions;
use crate::handler::Handler;
use crate::http::normalize_origin;
use crate::net::TrustedProxies;
use crate::rt;

/// A WebSocket server under construction: routes, state and settings.
///
/// Build it with [`Server::new`], add routes and policies with the methods
/// below (the setters are the one way to change a setting), then
/// [`bind`](Self::bind) it and [`run`](Listening::run) it. An invalid
/// setting is an [`Error::Config`] from `bind` naming the setter.
///
/// # Policies at a glance
///
/// Every limit has a default chosen for a production server facing the
/// open internet. Policies that end an upgraded connection go through the
/// same path as [`close()`](crate::Conn::close): the close handler runs
/// and the one `connection closed` event is logged with the code and reason
/// below (`info` when the closing handshake completed, `warn` otherwise).
/// Rejections before the upgrade are logged at `debug` (one line per
/// socket: a flood must not flood the logs) and counted in
/// [`Stats::rejected`](crate::Stats::rejected).
///
/// | setter | default | what the peer gets |
/// | --- | --- | --- |
/// | [`upgrade_timeout`](Self::upgrade_timeout) | 10 s | socket dropped, no response |
/// | [`max_request_bytes`](Self::max_request_bytes) | 8 KiB | HTTP 431 |
/// | [`max_connections`](Self::max_connections) | none | HTTP 503 at accept |
/// | [`max_connections_per_ip`](Self::max_connections_per_ip) | none | HTTP 429 at accept |
/// | [`connect_rate`](Self::connect_rate) | none | HTTP 429 at accept, before the request is read |
/// | [`trusted_proxies`](Self::trusted_proxies) | none | (the two above count the client a trusted proxy names, once it is known) |
/// | [`proxy_protocol`](Self::proxy_protocol) | off | socket dropped without a valid PROXY header |
/// | [`tls`](Self::tls) (feature `tls`) | plain TCP | socket dropped when the TLS handshake fails |
/// | [`allow_origin`](Self::allow_origin) | all | HTTP 403 |
/// | an `upgrade` handler's [`Rejection`](crate::Rejection) | | its status |
/// | [`idle_timeout`](Self::idle_timeout) | none | Close 1001 "Idle timeout" |
/// | [`heartbeat`](Self::heartbeat) (ping interval, pong timeout) | 30 s, 20 s | Ping; if unanswered, socket dropped (handler sees 1006 "Heartbeat timeout") |
/// | [`session_ttl`](Self::session_ttl) | none | Close 1008 "Session expired" |
/// | [`max_message_size`](Self::max_message_size), [`max_frame_size`](Self::max_frame_size) | 16 MiB | Close 1009 "Message too big" |
/// | [`send_queue`](Self::send_queue), [`send_timeout`](Self::send_timeout) | 64, 10 s | Close 1008 "Send queue full" |
/// | [`close_timeout`](Self::close_timeout) | 5 s | socket shut down if our Close is not answered |
/// | graceful shutdown: [`shutdown_close`](Self::shutdown_close), [`drain_timeout`](Self::drain_timeout) | 1001 "Going away", 10 s | Close 1001; dropped at the drain deadline |
///
/// Connection deadlines (the upgrade and close timeouts, and the policy
/// clocks) are checked by one task per server rather than by a runtime
/// timer per socket, on a tick of a sixteenth of the shortest of these
/// timeouts, between 1 and 100 ms: a deadline fires up to one tick late,
/// never early.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use wharf::{Conn, Handler, Message};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
///         conn.send(msg).await
///     }
/// }
///
/// #[async_std::main]
/// async fn main() -> wharf::Result<()> {
///     wharf::Server::new()
///         .route("/echo", Echo)
///         .idle_timeout(Duration::from_secs(300))
///         .max_connections_per_ip(50)
///         .bind("127.0.0.1:9001")
///         .await?
///         .run()
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Default)]
pub struct Server {
    config: Config,
    endpoints: Vec<(String, Endpoint)>,
    fallback: Option<Arc<Route>>,
    state: Extensions,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::config::Cluster>,
}

impl Server {
    /// A server with no routes and every setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new();
    /// # drop(server);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `handler` on WebSocket route `path` (exactly that path; the
    /// query string is ignored when matching).
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf as ws;
    ///
    /// #[ws::on("message")]
    /// async fn echo(_conn: &ws::Conn, msg: ws::Message) -> ws::Message {
    ///     msg
    /// }
    ///
    /// let server = ws::Server::new().route("/echo", ws::handlers![echo]);
    /// # drop(server);
    /// ```
    pub fn route(self, path: impl Into<String>, handler: impl Handler) -> Self {
        self.mount(Route::new(path, handler))
    }

    /// Adds a configured [`Route`] (for example one with subprotocols).
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{Handler, Route, Server};
    ///
    /// struct Chat;
    /// impl Handler for Chat {}
    ///
    /// let server = Server::new().mount(Route::new("/chat", Chat).subprotocols(["chat.v2"]));
    /// # drop(server);
    /// ```
    pub fn mount(mut self, route: Route) -> Self {
        self.endpoints
            .push((route.path.clone(), Endpoint::Ws(Arc::new(route))));
        self
    }

    /// Serves `handler` on every path that no route or page claims (instead
    /// of answering 404). [`Conn::path`](crate::Conn::path) is the path the
    /// client asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{Conn, Handler, Message};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
    ///         conn.send(msg).await
    ///     }
    /// }
    ///
    /// let server = wharf::Server::new().fallback(Echo);
    /// # drop(server);
    /// ```
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Arc::new(Route::new("*", handler)));
        self
    }

    /// Serves a fixed body with `content_type` on `path` to plain HTTP
    /// `GET`/`HEAD` requests (for example an example's page). Wharf is not
    /// an HTTP framework: pages answer `GET` and `HEAD` with `200` and
    /// `Connection: close`, anything else with 405.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().page("/", "text/html; charset=utf-8", "<h1>hello</h1>");
    /// # drop(server);
    /// ```
    pub fn page(
        mut self,
        path: impl Into<String>,
        content_type: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        let page = Page {
            content_type: content_type.into(),
            body: body.into(),
        };
        self.endpoints.push((path.into(), Endpoint::Page(page)));
        self
    }

    /// Registers application state shared by every handler: a database pool,
    /// a room map, counters. Handlers reach it with
    /// [`Conn::state`](crate::Conn::state) (and upgrade handlers with
    /// [`Request::state`](crate::Request::state)); one value per type, a
    /// second call with the same type replaces the first. Wrap what must
    /// change in a `Mutex` or use atomics: handlers of different
    /// connections run concurrently.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::AtomicU64;
    ///
    /// #[derive(Default)]
    /// struct Counters {
    ///     messages: AtomicU64,
    /// }
    ///
    /// let server = wharf::Server::new().state(Counters::default());
    /// # drop(server);
    /// ```
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Time a client has, from the TCP accept, to send its whole HTTP
    /// upgrade request (and have the upgrade handler accept it); after it
    /// the socket is dropped without a response and counted as
    /// [`RejectReason::UpgradeTimeout`](crate::RejectReason::UpgradeTimeout).
    /// Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().upgrade_timeout(std::time::Duration::from_secs(3));
    /// # drop(server);
    /// ```
    pub fn upgrade_timeout(mut self, limit: Duration) -> Self {
        self.config.upgrade_timeout = limit;
        self
    }

    /// Time the peer has to answer the server's Close frame (including the
    /// time to flush messages queued before the close); after it the socket
    /// is shut down and `close()` returns
    /// [`CloseOutcome::TimedOut`](crate::CloseOutcome::TimedOut). Also
    /// bounds the time to flush the echo of a peer's Close and the drain
    /// after a protocol error. Default: 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().close_timeout(std::time::Duration::from_secs(2));
    /// # drop(server);
    /// ```
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.config.close_timeout = limit;
        self
    }

    /// Largest message accepted from a peer, in bytes, after reassembling
    /// fragments; a bigger one closes the connection with **1009 "Message
    /// too big"**. Default: 16 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().max_message_size(64 << 10);
    /// # drop(server);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest single frame payload accepted from a peer, in bytes; a
    /// bigger one closes the connection with **1009**. Default: 16 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().max_frame_size(16 << 10);
    /// # drop(server);
    /// ```
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Messages that may wait in a connection's send queue. `send` waits
    /// for room when it is full, `try_send` fails with
    /// [`Error::QueueFull`]; see [`send_timeout`](Self::send_timeout) for
    /// what happens to a peer that keeps it full. Default: 64.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().send_queue(256);
    /// # drop(server);
    /// ```
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.config.send_queue = messages;
        self
    }

    /// Closes a connection whose peer has sent nothing of its own (no text,
    /// binary or ping frame) for this long, with **1001 "Idle timeout"**.
    /// Pongs answering the server's heartbeat pings do not count: a client
    /// that is alive but silent is still idle. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().idle_timeout(std::time::Duration::from_secs(300));
    /// # drop(server);
    /// ```
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.config.idle_timeout = Some(limit);
        self
    }

    /// Heartbeat: when nothing has been heard from the peer for `interval`,
    /// the server sends a Ping; the peer then has `pong_timeout` to send
    /// anything (its Pong or any other frame). When that passes the peer is
    /// dead: the socket is dropped without a Close frame (a dead peer cannot
    /// read one) and the close handler sees **1006** with reason "Heartbeat
    /// timeout". Default: 30 s and 20 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let server = wharf::Server::new().heartbeat(Duration::from_secs(15), Duration::from_secs(10));
    /// # drop(server);
    /// ```
    pub fn heartbeat(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self.config.pong_timeout = pong_timeout;
        self
    }

    /// The heartbeat's ping interval alone (see [`heartbeat`](Self::heartbeat)),
    /// keeping the pong timeout. Default: 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().ping_interval(std::time::Duration::from_secs(10));
    /// # drop(server);
    /// ```
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self
    }

    /// The heartbeat's pong timeout alone (see [`heartbeat`](Self::heartbeat)),
    /// keeping the ping interval. Default: 20 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().pong_timeout(std::time::Duration::from_secs(5));
    /// # drop(server);
    /// ```
    pub fn pong_timeout(mut self, limit: Duration) -> Self {
        self.config.pong_timeout = limit;
        self
    }

    /// Turns heartbeat pings off (see [`heartbeat`](Self::heartbeat)).
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().no_heartbeat();
    /// # drop(server);
    /// ```
    pub fn no_heartbeat(mut self) -> Self {
        self.config.ping_interval = None;
        self
    }

    /// Maximum age of a connection: when it is reached the connection is
    /// closed with **1008 "Session expired"**, whether or not the peer is
    /// sending. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().session_ttl(std::time::Duration::from_secs(30 * 60));
    /// # drop(server);
    /// ```
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.config.session_ttl = Some(ttl);
        self
    }

    /// Slow consumers: when a connection's send queue has been full for this
    /// long (the peer is not reading what the server sends), it is closed
    /// with **1008 "Send queue full"** (the Close frame waits behind the
    /// queue, so such a close usually ends by the close timeout). Memory per
    /// connection stays bounded by the queue meanwhile. Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().send_timeout(std::time::Duration::from_secs(2));
    /// # drop(server);
    /// ```
    pub fn send_timeout(mut self, limit: Duration) -> Self {
        self.config.send_timeout = limit;
        self
    }

    /// Most sockets the server holds at once (upgraded connections and
    /// requests being read); more are answered with **503** at accept time.
    /// Default: no limit but the process's file descriptors.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().max_connections(10_000);
    /// # drop(server);
    /// ```
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// Most sockets one IP address may hold at once; more are answered with
    /// **429** at accept time. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().max_connections_per_ip(20);
    /// # drop(server);
    /// ```
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.config.max_connections_per_ip = Some(max);
        self
    }

    /// New connections one IP address may open, as a token bucket; a
    /// connection beyond it is answered with **429** at accept time, before
    /// its request is read. A refused attempt still spends a token when one
    /// is left, so a client hammering the server does not earn its way back
    /// in while it does. Default: no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().connect_rate(wharf::ConnectRate::new(5.0, 10));
    /// # drop(server);
    /// ```
    pub fn connect_rate(mut self, rate: ConnectRate) -> Self {
        self.config.connect_rate = Some(rate);
        self
    }

    /// Allows browser pages from `origin` (`scheme://host[:port]`) to
    /// connect. Once one origin is allowed, a request with any other
    /// `Origin` header is answered with **403**; requests without an
    /// `Origin` header (non-browser clients) are always allowed. Origins
    /// are compared as browsers serialize them: scheme and host without
    /// case, a default port (`:443` for https, `:80` for http) the same as
    /// none, a trailing `/` ignored. Default: every origin is allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new()
    ///     .allow_origin("https://chat.example.com")
    ///     .allow_origin("http://localhost:8000");
    /// # drop(server);
    /// ```
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.allowed_origins.push(origin.into());
        self
    }

    /// The Close frame every connection gets at a graceful shutdown.
    /// Default: 1001 "Going away"; 1012 (Service restart) suits a deploy.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().shutdown_close(wharf::CloseCode::SERVICE_RESTART, "Deploying");
    /// # drop(server);
    /// ```
    pub fn shutdown_close(mut self, code: impl Into<CloseCode>, reason: &str) -> Self {
        self.config.shutdown_code = code.into();
        self.config.shutdown_reason = reason.to_owned();
        self
    }

    /// How long a graceful shutdown waits for the closing handshakes; the
    /// connections still open then are dropped. Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().drain_timeout(std::time::Duration::from_secs(30));
    /// # drop(server);
    /// ```
    pub fn drain_timeout(mut self, limit: Duration) -> Self {
        self.config.drain_timeout = limit;
        self
    }

    /// How long a connect or message handler may keep running once its
    /// connection's socket has closed, and how long the close handler may
    /// run at all; then its future is dropped (logged at `warn` and counted
    /// in [`Stats::handlers_abandoned`](crate::Stats::handlers_abandoned)),
    /// the close handler runs, and everything the connection held is
    /// released. A handler blocked on a channel or a database call cannot
    /// hold a connection, its data and its place in a graceful shutdown
    /// forever. Default: 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().handler_grace(std::time::Duration::from_secs(2));
    /// # drop(server);
    /// ```
    pub fn handler_grace(mut self, limit: Duration) -> Self {
        self.config.handler_grace = limit;
        self
    }

    /// Largest HTTP upgrade request head (request line and headers), in
    /// bytes (256 B to 1 MiB); a bigger one is answered with **431**.
    /// Default: 8 KiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().max_request_bytes(16 << 10);
    /// # drop(server);
    /// ```
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.config.max_request_bytes = bytes;
        self
    }

    /// Received messages that may wait while the message handler is busy.
    /// When this many are waiting, or their payloads add up to the
    /// [`max_message_size`](Self::max_message_size), the server stops
    /// reading from that connection (TCP backpressure) until the handler
    /// catches up; so one connection's inbound memory stays under about
    /// twice the message limit. While reading is paused, the peer's pings
    /// and Close wait too; a `close()` from the server drops the waiting
    /// messages and resumes reading to complete its handshake. Default: 16.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().inbound_queue(4);
    /// # drop(server);
    /// ```
    pub fn inbound_queue(mut self, messages: usize) -> Self {
        self.config.inbound_queue = messages;
        self
    }

    /// Bytes read from the socket at a time into each connection's read
    /// buffer, which is allocated for the life of the connection (at most
    /// 16 MiB). Default: [`DEFAULT_READ_BUFFER_SIZE`](crate::DEFAULT_READ_BUFFER_SIZE),
    /// 1 KiB, which keeps an idle connection near 3 KiB (tungstenite's own
    /// default of 128 KiB costs that much memory for every idle
    /// connection). A message larger than the buffer takes one read system
    /// call per buffer's worth, so a server that receives large messages
    /// should raise it: at 1 KiB an echoed 1 MiB message costs the server
    /// about 1.7 times the CPU it does at 4 KiB (figures on
    /// [`DEFAULT_READ_BUFFER_SIZE`](crate::DEFAULT_READ_BUFFER_SIZE)).
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().read_buffer_size(16 << 10);
    /// # drop(server);
    /// ```
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Serves the counters as Prometheus text on `path`, to plain `GET`
    /// requests: on the public port, where **anyone who can reach the port
    /// can read them**, unless [`metrics_addr`](Self::metrics_addr) moves
    /// them to a listener of their own. Default: not served.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new().metrics("/metrics");
    /// # drop(server);
    /// ```
    pub fn metrics(mut self, path: impl Into<String>) -> Self {
        self.config.metrics_path = Some(path.into());
        self
    }

    /// Serves the counters as Prometheus text on a listener of their own
    /// at `addr` (for example `127.0.0.1:9100`, reachable only from the
    /// host), and no longer on the public port. It answers `GET` on the
    /// [`metrics`](Self::metrics) path (404 on any other), or on every path
    /// when no path was set; other methods get 405. It speaks plain
    /// HTTP/1.1 (no TLS, no PROXY header), reads requests under the
    /// [`upgrade_timeout`](Self::upgrade_timeout) and
    /// [`max_request_bytes`](Self::max_request_bytes), serves at most 64
    /// at once, and stays up while a graceful shutdown drains. It binds
    /// with [`bind`](Self::bind), which fails if it cannot;
    /// [`Listening::metrics_addr`] reports where. Default: none.
    ///
    /// `addr` is resolved when this is called (numeric addresses never
    /// block); one that does not resolve is an [`Error::Config`] from
    /// `bind`.
    ///
    /// # Examples
    ///
    /// ```
    /// // GET http://127.0.0.1:9100/metrics; the public port has no /metrics.
    /// let server = wharf::Server::new().metrics("/metrics").metrics_addr("127.0.0.1:9100");
    /// # drop(server);
    /// ```
    pub fn metrics_addr(mut self, addr: impl ToSocketAddrs) -> Self {
        let resolved = addr
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|err| format!("cannot resolve the address: {err}"));
        self.config.metrics_addr = Some(resolved);
        self
    }

    /// Trusts the proxies at these addresses (`10.0.0.7`, `::1`) or CIDR
    /// ranges (`10.0.0.0/8`, `2001:db8::/32`) to say who their clients
    /// are; a second call adds to the list. Bits past a range's prefix are
    /// ignored; an entry that is neither is an [`Error::Config`] from
    /// [`bind`](Self::bind).
    ///
    /// For a connection whose TCP peer is a trusted proxy, the client's
    /// address comes from the [PROXY protocol](Self::proxy_protocol)
    /// header when that is on, and from the request's `Forwarded` header
    /// (RFC 7239 `for=`) or, without one, `X-Forwarded-For`: the rightmost
    /// address that is not itself a trusted proxy. An entry that hides the
    /// client (`unknown`, an obfuscated `_name`, anything unparsable) leaves
    /// the proxy's own address. From any other peer these headers are
    /// ignored, so a client cannot choose its own address.
    ///
    /// The client address is what [`Conn::peer_addr`](crate::Conn::peer_addr)
    /// and [`Request::peer_addr`](crate::Request::peer_addr) report, what
    /// the logs and the close event name, and what
    /// [`max_connections_per_ip`](Self::max_connections_per_ip) and
    /// [`connect_rate`](Self::connect_rate) count
    /// ([`tcp_peer_addr`](crate::Conn::tcp_peer_addr) keeps the proxy's).
    /// Those per-IP checks run at accept for direct clients; for a
    /// connection from a trusted proxy they run once the client's address
    /// is known (after the PROXY header, or after the request head, before
    /// any route or upgrade handler runs) and answer 429 then. A trusted
    /// proxy is never limited as one client: connections that name no other
    /// client are held to [`max_connections`](Self::max_connections) only.
    /// Default: none (every peer is its own client).
    ///
    /// # Examples
    ///
    /// ```
    /// let server = wharf::Server::new()
    ///     .trusted_proxies(["10.0.0.0/8", "fd00::/8"])
    ///     .max_connections_per_ip(20);
    /// # drop(server);
    /// ```
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.config
            .trusted_proxies
            .extend(proxies.into_iter().map(Into::into));
        self
    }

    /// Expects every connection to start with a PROXY protocol header
    /// (HAProxy's version 1 or 2, as HAProxy and AWS NLB send it), read
    /// before the TLS handshake and the HTTP request, within the
    /// [`upgrade_timeout`](Self::upgrade_timeout). A connection without
    /// one, or with a malformed, truncated or oversized one (over 4 KiB,
    /// TLVs included), is dropped without a response and counted as
    /// [`RejectReason::ProxyProtocol`](crate::RejectReason::ProxyProtocol).
    /// The client address it names is believed only from a
    /// [trusted proxy](Self::trusted_proxies), which this needs (otherwise
    /// an [`Error::Config`] from [`bind`](Self::bind)); from another peer
    /// the header is read and ignored. A `LOCAL` header (a load balancer's
    /// health check) or `UNKNOWN` addresses leave the proxy's own address.
    /// Default: off.
    ///
    /// # Examples
    ///
    /// ```
    /// // Behind an AWS NLB with proxy protocol v2 on, in a VPC of 10.0.0.0/16.
    /// let server = wharf::Server::new().trusted_proxies(["10.0.0.0/16"]).proxy_protocol(true);
    /// # drop(server);
    /// ```
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.config.proxy_protocol = on;
        self
    }

    /// Serves every connection over TLS (`wss://`, and `https://` for
    /// pages) with `config`; the `tls` feature. The TLS handshake runs
    /// inside the [`upgrade_timeout`](Self::upgrade_timeout); a peer that
    /// sends plaintext HTTP or anything else but a TLS handshake is dropped
    /// without a response and counted as
    /// [`RejectReason::Tls`](crate::RejectReason::Tls). Refusals at accept
    /// time (the connection limits and the connect rate) drop the socket
    /// without a response too, rather than spend a TLS handshake on a
    /// client being turned away. The closing handshake ends as over TCP,
    /// one layer down: the Close frames, then TLS `close_notify`, then the
    /// server closes TCP. Default: plain TCP.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let tls = wharf::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
    /// let listening = wharf::Server::new().tls(tls).bind("0.0.0.0:8443").await?;
    /// # drop(listening); Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::net::tls::TlsConfig) -> Self {
        self.config.tls = Some(config);
        self
    }

    /// Makes this server a node of `cluster` (the `cluster` feature): every
    /// [`Selector`](crate::Selector) operation reaches the members on every
    /// node sharing the cluster's Redis and namespace, and connection ids
    /// are unique across them. [`bind`](Self::bind) connects to Redis and
    /// fails with [`Error::Cluster`] when it cannot; a graceful shutdown
    /// leaves the cluster. See [`Cluster`](crate::Cluster) for what crosses
    /// Redis, the delivery guarantee and the failure behaviour.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new()
    ///     .cluster(wharf::Cluster::new("redis://127.0.0.1:6379").namespace("chat"))
    ///     .bind("127.0.0.1:8081")
    ///     .await?;
    /// # drop(listening); Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, cluster: crate::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Checks the routes and settings and binds the listener.
    ///
    /// `addr` is resolved with the standard library (numeric addresses never
    /// block); port 0 picks a free port, which
    /// [`Listening::local_addr`] reports. Fails with [`Error::Config`] when
    /// two endpoints share a path or a setting cannot work, and with
    /// [`Error::Io`] when the address cannot be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
    /// tracing::info!(addr = %listening.local_addr(), "ready");
    /// # Ok(()) }
    /// ```
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<Listening> {
        self.config.validate()?;
        let origins = self
            .config
            .allowed_origins
            .iter()
            .map(|origin| {
                normalize_origin(origin).ok_or_else(|| {
                    Error::config(
                        "allow_origin",
                        format!("{origin:?} is not an origin like https://host[:port]"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut endpoints = HashMap::with_capacity(self.endpoints.len());
        for (path, endpoint) in self.endpoints {
            if !path.starts_with('/') {
                return Err(Error::config(
                    "route",
                    format!("path {path:?} must start with '/'"),
                ));
            }
            if endpoints.contains_key(&path) {
                return Err(Error::config(
                    "route",
                    format!("two endpoints for path {path:?}"),
                ));
            }
            if let Endpoint::Ws(route) = &endpoint {
                check_route(&path, route)?;
            }
            endpoints.insert(path, endpoint);
        }
        if let Some(route) = &self.fallback {
            check_route("the fallback", route)?;
        }
        let proxies = TrustedProxies::parse(&self.config.trusted_proxies)
            .map_err(|reason| Error::config("trusted_proxies", reason))?;
        if let (Some(path), None) = (&self.config.metrics_path, &self.config.metrics_addr) {
            if endpoints.contains_key(path) {
                return Err(Error::config(
                    "metrics",
                    format!("the path {path:?} is also a route or page"),
                ));
            }
        }
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )));
        }
        let registry = Registry::default();
        #[cfg(feature = "cluster")]
        let cluster = match &self.cluster {
            // Boxed: connecting to Redis is a large future, and `bind`'s
            // callers hold this one.
            Some(cluster) => Some(
                Box::pin(crate::cluster::link::join(
                    cluster,
                    &registry,
                    self.config.close_timeout,
                ))
                .await?,
            ),
            None => None,
        };
        #[cfg(feature = "cluster")]
        let id_base = cluster
            .as_ref()
            .map_or(0, |node| u64::from(node.number) << 48);
        #[cfg(not(feature = "cluster"))]
        let id_base = 0;
        let listener = match rt::bind(addrs).await {
            Ok(listener) => listener,
            Err(err) => {
                #[cfg(feature = "cluster")]
                if let Some(node) = &cluster {
                    node.shutdown(Duration::from_secs(2)).await;
                }
                return Err(err.into());
            }
        };
        let local_addr = listener.local_addr()?;
        let metrics = match &self.config.metrics_addr {
            Some(Ok(addrs)) => {
                let listener = rt::bind(addrs.clone()).await?;
                let addr = listener.local_addr()?;
                Some((listener, addr))
            }
            _ => None,
        };
        let config = &self.config;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_size)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_frame_size));
        let inner = Arc::new(Inner {
            limits: Limits {
                close_timeout: config.close_timeout,
                inbound_queue: config.inbound_queue,
                inbound_bytes: config.max_message_size,
                idle_timeout: config.idle_timeout,
                ping_interval: config.ping_interval,
                pong_timeout: config.pong_timeout,
                session_ttl: config.session_ttl,
                send_timeout: config.send_timeout,
                handler_grace: config.handler_grace,
            },
            admission: Arc::new(Admission::new(config)),
            origins,
            proxies,
            metrics: Metrics::default(),
            trigger: Trigger::default(),
            live: Live::default(),
            timers: Timers::start(config.shortest_timeout()),
            tally: Tally::default(),
            rejecting: AtomicUsize::new(0),
            config: self.config,
            ws_config,
            endpoints,
            fallback: self.fallback,
            registry,
            next_id: AtomicU64::new(1),
            id_base,
            #[cfg(feature = "cluster")]
            cluster,
            state: Arc::new(self.state),
        });
        tracing::info!(addr = %local_addr, tls = inner.is_tls(), "wharf listening");
        if let Some((_, addr)) = &metrics {
            tracing::info!(addr = %addr, "metrics listening");
        }
        Ok(Listening::new(listener, local_addr, metrics, inner))
    }
}

fn check_route(path: &str, route: &Route) -> Result<()> {
    route.handler.check().map_err(|err| match err {
        Error::Config { setting, reason } => {
            Error::config(setting, format!("route {path}: {reason}"))
        }
        other => other,
    })
}
