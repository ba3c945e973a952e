//! The server: routes, the accept loop, and the path from a TCP socket to a
//! running connection driver.
//!
//! This module decides what happens to each accepted socket (404, 426, a
//! static page, or an upgrade) and owns the server-wide state: routes,
//! configuration, the registry and the id counter. It never reads or writes
//! WebSocket frames; once the 101 is written the socket belongs to the
//! driver.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_util::future::{self, Either};
use futures_util::AsyncWriteExt;

use crate::admission::{Admission, Permit};
use crate::close::{self, CloseCode, CloseOutcome};
use crate::config::{Config, ConnectRate};
use crate::conn::{Conn, ConnId, ConnInfo, Shared};
use crate::driver::{Driver, Limits};
use crate::error::{Error, Result};
use crate::extensions::Extensions;
use crate::handler::{DynHandler, Handler};
use crate::handshake::{self as http, Head, Refusal};
use crate::message::Bytes;
use crate::metrics::{Metrics, Refused, Stats};
use crate::registry::Registry;
use crate::rt::{self, TcpListener, TcpStream};
use crate::shutdown::{self, Live, ShutdownSummary, Tally, Trigger};
use crate::timers::Timers;
use crate::upgrade::{Rejection, Request};

/// A WebSocket route: a path, its handler, and the subprotocols it speaks.
///
/// # Examples
///
/// ```
/// use wharf::{Handler, Route, Server};
///
/// struct Chat;
/// impl Handler for Chat {}
///
/// let server = Server::new().mount(Route::new("/chat", Chat).subprotocols(["chat.v2", "chat.v1"]));
/// # drop(server);
/// ```
pub struct Route {
    path: String,
    handler: Arc<dyn DynHandler>,
    subprotocols: Vec<String>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("path", &self.path)
            .field("subprotocols", &self.subprotocols)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// A route serving `handler` at exactly `path` (no prefix matching; the
    /// query string is ignored when matching).
    pub fn new(path: impl Into<String>, handler: impl Handler) -> Self {
        Route {
            path: path.into(),
            handler: Arc::new(handler),
            subprotocols: Vec::new(),
        }
    }

    /// Subprotocols this route accepts. The handshake picks the first one in
    /// the client's `Sec-WebSocket-Protocol` list that appears here; with
    /// none in common the upgrade proceeds without a subprotocol (RFC 6455
    /// 4.2.2) and [`Conn::subprotocol`] is `None`.
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }
}

/// A fixed HTTP response served on a path (for example the page of a chat
/// example). Wharf is not an HTTP framework: pages answer `GET` and `HEAD`
/// with `200` and `Connection: close`, anything else with 405.
#[derive(Debug, Clone)]
struct Page {
    content_type: String,
    body: Bytes,
}

#[derive(Debug)]
enum Endpoint {
    Ws(Arc<Route>),
    Page(Page),
}

/// A WebSocket server under construction: routes and settings.
///
/// # Examples
///
/// ```no_run
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
}

impl Server {
    /// A server with no routes and the default [`Config`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `handler` on WebSocket route `path`.
    pub fn route(self, path: impl Into<String>, handler: impl Handler) -> Self {
        self.mount(Route::new(path, handler))
    }

    /// Adds a configured [`Route`].
    pub fn mount(mut self, route: Route) -> Self {
        self.endpoints
            .push((route.path.clone(), Endpoint::Ws(Arc::new(route))));
        self
    }

    /// Serves `handler` on every path that no route or page claims (instead
    /// of answering 404). [`Handle::path`](crate::Handle::path) is the path the client asked for.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Arc::new(Route::new("*", handler)));
        self
    }

    /// Serves a fixed body with `content_type` on `path` to plain HTTP
    /// `GET`/`HEAD` requests.
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
    /// [`Request::state`]); one value per type, a second call with the same
    /// type replaces the first. Wrap what must change in a `Mutex` or use
    /// atomics: handlers of different connections run concurrently.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, limit: Duration) -> Self {
        self.config.handshake_timeout = limit;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.config.close_timeout = limit;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::send_queue`].
    pub fn send_queue(mut self, messages: usize) -> Self {
        self.config.send_queue = messages;
        self
    }

    /// Sets [`Config::idle_timeout`]: close with 1001 "Idle timeout" after
    /// this long without a frame the peer sent on its own.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.config.idle_timeout = Some(limit);
        self
    }

    /// Sets [`Config::ping_interval`] and [`Config::pong_timeout`]: ping a
    /// quiet peer every `interval`, drop it (1006) when it has not answered
    /// `pong_timeout` after a ping.
    pub fn heartbeat(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.config.ping_interval = Some(interval);
        self.config.pong_timeout = pong_timeout;
        self
    }

    /// Sets [`Config::pong_timeout`] alone.
    pub fn pong_timeout(mut self, limit: Duration) -> Self {
        self.config.pong_timeout = limit;
        self
    }

    /// Turns heartbeat pings off ([`Config::ping_interval`] = `None`).
    pub fn no_heartbeat(mut self) -> Self {
        self.config.ping_interval = None;
        self
    }

    /// Sets [`Config::session_ttl`]: close with 1008 "Session expired" once
    /// a connection is this old.
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.config.session_ttl = Some(ttl);
        self
    }

    /// Sets [`Config::send_timeout`]: close with 1008 "Send queue full" when
    /// the send queue has been full this long.
    pub fn send_timeout(mut self, limit: Duration) -> Self {
        self.config.send_timeout = limit;
        self
    }

    /// Sets [`Config::max_connections`] (503 beyond it).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// Sets [`Config::max_connections_per_ip`] (429 beyond it).
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.config.max_connections_per_ip = Some(max);
        self
    }

    /// Sets [`Config::connect_rate`] (429 beyond it).
    pub fn connect_rate(mut self, rate: ConnectRate) -> Self {
        self.config.connect_rate = Some(rate);
        self
    }

    /// Adds an origin to [`Config::allowed_origins`]; once one is added,
    /// any other `Origin` is answered with 403.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.config.allowed_origins.push(origin.into());
        self
    }

    /// Sets the Close frame of a graceful shutdown
    /// ([`Config::shutdown_code`], [`Config::shutdown_reason`]) and its drain
    /// deadline ([`Config::drain_timeout`]).
    pub fn shutdown(mut self, code: impl Into<CloseCode>, reason: &str, drain: Duration) -> Self {
        self.config.shutdown_code = code.into();
        self.config.shutdown_reason = reason.to_owned();
        self.config.drain_timeout = drain;
        self
    }

    /// Sets [`Config::drain_timeout`] alone.
    pub fn drain_timeout(mut self, limit: Duration) -> Self {
        self.config.drain_timeout = limit;
        self
    }

    /// Sets [`Config::max_request_bytes`].
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.config.max_request_bytes = bytes;
        self
    }

    /// Sets [`Config::inbound_queue`].
    pub fn inbound_queue(mut self, messages: usize) -> Self {
        self.config.inbound_queue = messages;
        self
    }

    /// Sets [`Config::read_buffer_size`].
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Serves the counters as Prometheus text on `path`
    /// ([`Config::metrics_path`]), to plain `GET` requests on the same port.
    pub fn metrics(mut self, path: impl Into<String>) -> Self {
        self.config.metrics_path = Some(path.into());
        self
    }

    /// Checks the routes and settings and binds the listener.
    ///
    /// `addr` is resolved with the standard library (numeric addresses never
    /// block); port 0 picks a free port, which
    /// [`Listening::local_addr`] reports. Fails with [`Error::Config`] when
    /// two endpoints share a path or a setting cannot work.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> Result<Listening> {
        self.config.validate()?;
        let mut endpoints = HashMap::with_capacity(self.endpoints.len());
        for (path, endpoint) in self.endpoints {
            if !path.starts_with('/') {
                return Err(Error::Config(format!(
                    "route path {path:?} must start with '/'"
                )));
            }
            if endpoints.contains_key(&path) {
                return Err(Error::Config(format!("two endpoints for path {path:?}")));
            }
            if let Endpoint::Ws(route) = &endpoint {
                check_route(&path, route)?;
            }
            endpoints.insert(path, endpoint);
        }
        if let Some(route) = &self.fallback {
            check_route("the fallback", route)?;
        }
        if let Some(path) = &self.config.metrics_path {
            if endpoints.contains_key(path) {
                return Err(Error::Config(format!(
                    "the metrics path {path:?} is also a route or page"
                )));
            }
        }
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(Error::Config("the address resolved to nothing".into()));
        }
        let listener = rt::bind(addrs).await?;
        let local_addr = listener.local_addr()?;
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
            },
            admission: Arc::new(Admission::new(config)),
            origins: config
                .allowed_origins
                .iter()
                .map(|o| normalize_origin(o))
                .collect(),
            metrics: Metrics::default(),
            trigger: Trigger::default(),
            live: Live::default(),
            timers: Timers::start(config.shortest_timeout()),
            tally: Tally::default(),
            refusing: AtomicUsize::new(0),
            config: self.config,
            ws_config,
            endpoints,
            fallback: self.fallback,
            registry: Registry::default(),
            next_id: AtomicU64::new(1),
            state: Arc::new(self.state),
        });
        tracing::info!(addr = %local_addr, "wharf listening");
        Ok(Listening {
            listener,
            local_addr,
            inner,
        })
    }
}

/// Server-wide state shared by every connection task.
#[derive(Debug)]
struct Inner {
    config: Config,
    limits: Limits,
    ws_config: WebSocketConfig,
    endpoints: HashMap<String, Endpoint>,
    fallback: Option<Arc<Route>>,
    registry: Registry,
    next_id: AtomicU64,
    state: Arc<Extensions>,
    admission: Arc<Admission>,
    /// `allowed_origins`, normalized.
    origins: Vec<String>,
    metrics: Metrics,
    trigger: Trigger,
    /// Connection tasks, for the drain.
    live: Live,
    /// Every connection's deadlines.
    timers: Arc<Timers>,
    /// How connections ended during a drain.
    tally: Tally,
    /// Refusal responses being written at accept time; see `refuse_early`.
    refusing: AtomicUsize,
}

/// Lower case, without a trailing slash: how origins are compared.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn check_route(path: &str, route: &Route) -> Result<()> {
    route.handler.check().map_err(|err| match err {
        Error::Config(why) => Error::Config(format!("route {path}: {why}")),
        other => other,
    })
}

/// A bound server, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Listening {
    listener: TcpListener,
    local_addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Listening {
    /// The address the listener is bound to (with the real port when bound
    /// to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The registry of live connections; clones stay valid while the server
    /// runs.
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// A clonable handle to the running server: counters, registry and the
    /// shutdown trigger.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            inner: Arc::clone(&self.inner),
            local_addr: self.local_addr,
        }
    }

    /// Starts a graceful shutdown when the process receives SIGINT (Ctrl-C)
    /// or SIGTERM. Call before [`run`](Self::run); a second signal during
    /// the drain does not cut it short (the drain is bounded anyway).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> wharf::Result<()> {
    /// let summary = wharf::Server::new()
    ///     .bind("127.0.0.1:8080")
    ///     .await?
    ///     .shutdown_on_signals()
    ///     .run()
    ///     .await?;
    /// tracing::info!(clean = summary.clean, dropped = summary.dropped, "bye");
    /// # Ok(()) }
    /// ```
    pub fn shutdown_on_signals(self) -> Self {
        let handle = self.handle();
        rt::spawn(async move {
            match rt::termination_signal().await {
                Ok(()) => {
                    tracing::info!("termination signal received; shutting down");
                    handle.shutdown();
                }
                Err(err) => tracing::error!(error = %err, "cannot listen for termination signals"),
            }
        });
        self
    }

    /// Accepts connections until a graceful shutdown is triggered (see
    /// [`ServerHandle::shutdown`] and [`shutdown_on_signals`](Self::shutdown_on_signals)),
    /// then drains and returns how the connections ended.
    ///
    /// The shutdown stops accepting at once (the listener is closed, and
    /// requests already being read are answered with 503), closes every
    /// connection with [`Config::shutdown_code`] and
    /// [`Config::shutdown_reason`] (1001 "Going away" by default) after what
    /// was queued before it, waits for the closing handshakes up to
    /// [`Config::drain_timeout`], then drops the connections still open.
    ///
    /// Admission limits are applied here, per accepted socket, before its
    /// request is read: [`Config::max_connections`] (503),
    /// [`Config::max_connections_per_ip`] and [`Config::connect_rate`] (429).
    /// A failed `accept` (for example too many open files) is logged and
    /// retried after a short pause rather than ending the server.
    ///
    /// Dropping this future stops accepting without closing anything; each
    /// connection still finishes its own life.
    pub async fn run(self) -> Result<ShutdownSummary> {
        let Listening {
            listener,
            local_addr,
            inner,
        } = self;
        {
            let mut stop = Box::pin(inner.trigger.fired());
            loop {
                let accepted =
                    match future::select(stop.as_mut(), Box::pin(listener.accept())).await {
                        Either::Left(((), _)) => break,
                        Either::Right((accepted, _)) => accepted,
                    };
                match accepted {
                    Ok((stream, peer)) => admit(&inner, stream, peer),
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed; retrying");
                        rt::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        drop(listener);
        tracing::info!(addr = %local_addr, "stopped accepting; draining");
        let config = &inner.config;
        let (code, reason) = close::validate(config.shutdown_code, &config.shutdown_reason)?;
        Ok(shutdown::drain(
            &inner.live,
            &inner.tally,
            code,
            &reason,
            config.drain_timeout,
        )
        .await)
    }
}

/// A clonable handle to a bound server, valid while it runs: its counters,
/// its registry, and the graceful-shutdown trigger.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> wharf::Result<()> {
/// let listening = wharf::Server::new().bind("127.0.0.1:0").await?;
/// let handle = listening.handle();
/// let server = async_std::task::spawn(listening.run());
/// // ... later, for a deploy:
/// handle.shutdown();
/// let summary = server.await?;
/// assert_eq!(summary.dropped, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
}

impl ServerHandle {
    /// Starts a graceful shutdown; see [`Listening::run`]. Idempotent.
    pub fn shutdown(&self) {
        self.inner.trigger.fire();
    }

    /// Whether a shutdown has been triggered.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.trigger.is_fired()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.inner.metrics.snapshot()
    }

    /// The registry of live connections.
    pub fn registry(&self) -> Registry {
        self.inner.registry.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Refusal responses written at accept time at once; beyond this, refused
/// sockets are closed without a response so a flood cannot pile up tasks.
const MAX_REFUSING: usize = 256;

/// Applies the accept-time limits to a new socket and starts serving it.
fn admit(inner: &Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    inner.metrics.accepted();
    match inner.admission.admit(peer.ip()) {
        Ok(permit) => rt::spawn(serve(Arc::clone(inner), stream, peer, permit)),
        Err(why) => {
            inner.metrics.refused(why);
            tracing::debug!(%peer, reason = %why, "refused at accept");
            refuse_early(inner, stream, why);
        }
    }
}

/// Answers a socket refused at accept time, without reading its request.
fn refuse_early(inner: &Arc<Inner>, stream: TcpStream, why: Refused) {
    if inner.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        inner.refusing.fetch_sub(1, Ordering::Relaxed);
        return; // dropping the stream closes it
    }
    let refusal = match why {
        Refused::MaxConnections => Refusal::Unavailable("Server full\n"),
        _ => Refusal::TooManyRequests,
    };
    let inner = Arc::clone(inner);
    rt::spawn(async move {
        http::refuse(stream, refusal).await;
        inner.refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What to do with a socket once its request head is read.
enum Decision<'a> {
    Upgrade(&'a Arc<Route>, Box<http::Request>, http::Upgrade, Vec<u8>),
    /// The upgrade handler accepted and the 101 is written.
    Accepted(&'a Arc<Route>, Box<Request>, http::Upgrade, Vec<u8>),
    Page(&'a Page, bool),
    Metrics,
    Refuse(Refusal),
    Reject(Rejection),
}

fn decide(inner: &Inner, head: Head) -> Option<Decision<'_>> {
    let (request, rest) = match head {
        Head::Complete(request, rest) => (request, rest),
        Head::TooLarge => return Some(Decision::Refuse(Refusal::HeadersTooLarge)),
        Head::Malformed => return Some(Decision::Refuse(Refusal::BadRequest("Bad request\n"))),
        Head::Eof => return None,
    };
    if inner.config.metrics_path.as_deref() == Some(request.path.as_str()) {
        return Some(match request.method.as_str() {
            "GET" => Decision::Metrics,
            _ => Decision::Refuse(Refusal::MethodNotAllowed),
        });
    }
    let route = match inner.endpoints.get(&request.path) {
        Some(Endpoint::Ws(route)) => route,
        Some(Endpoint::Page(page)) => {
            return Some(match request.method.as_str() {
                "GET" => Decision::Page(page, true),
                "HEAD" => Decision::Page(page, false),
                _ => Decision::Refuse(Refusal::MethodNotAllowed),
            })
        }
        None => match &inner.fallback {
            Some(route) => route,
            None => return Some(Decision::Refuse(Refusal::NotFound)),
        },
    };
    let upgrade = match http::check_upgrade(&request, &route.subprotocols) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return Some(Decision::Refuse(refusal)),
    };
    if !origin_allowed(inner, &request) {
        return Some(Decision::Refuse(Refusal::Forbidden));
    }
    if inner.trigger.is_fired() {
        return Some(Decision::Refuse(Refusal::Unavailable(
            "Server shutting down\n",
        )));
    }
    Some(Decision::Upgrade(route, Box::new(request), upgrade, rest))
}

/// Whether the request's `Origin` may connect: always when no list is
/// configured or the request has no `Origin` (not a browser).
fn origin_allowed(inner: &Inner, request: &http::Request) -> bool {
    if inner.origins.is_empty() {
        return true;
    }
    let mut origins = request.headers.get_all("origin").iter();
    match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(origin), None) => origin
            .to_str()
            .is_ok_and(|o| inner.origins.contains(&normalize_origin(o))),
        // Two Origin headers: no browser sends that.
        (Some(_), Some(_)) => false,
    }
}

/// The metric a refusal before the upgrade is counted under.
fn refused_reason(refusal: Refusal) -> Refused {
    match refusal {
        Refusal::NotFound => Refused::NotFound,
        Refusal::HeadersTooLarge => Refused::TooLarge,
        Refusal::Forbidden => Refused::Origin,
        Refusal::Unavailable(_) => Refused::ShuttingDown,
        Refusal::TooManyRequests => Refused::RateLimited,
        Refusal::BadRequest(_) | Refusal::MethodNotAllowed | Refusal::UpgradeRequired => {
            Refused::BadRequest
        }
    }
}

/// One accepted socket, from the first byte to the close handler.
async fn serve(inner: Arc<Inner>, mut stream: TcpStream, peer: SocketAddr, permit: Permit) {
    // Small frames (echoes, Close frames) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let head = http::read_head(&mut stream, inner.config.max_request_bytes).await;
        let decision = decide(&inner, head.ok()?)?;
        let Decision::Upgrade(route, request, upgrade, rest) = decision else {
            return Some(decision);
        };
        let request = Box::new(Request {
            peer,
            query: request
                .query
                .as_deref()
                .map(http::parse_query)
                .unwrap_or_default(),
            path: request.path,
            headers: request.headers,
            extensions: Default::default(),
            state: Arc::clone(&inner.state),
        });
        if let Err(rejection) = route.handler.upgrade(&request).await {
            return Some(Decision::Reject(rejection));
        }
        stream
            .write_all(&http::switching_protocols(&upgrade))
            .await
            .ok()?;
        Some(Decision::Accepted(route, request, upgrade, rest))
    };
    let decision = match inner
        .timers
        .timeout(inner.config.handshake_timeout, handshake)
        .await
    {
        Some(Some(decision)) => decision,
        Some(None) => return,
        None => {
            inner.metrics.refused(Refused::HandshakeTimeout);
            tracing::debug!(%peer, "handshake timed out; dropping the socket");
            return;
        }
    };
    match decision {
        Decision::Refuse(refusal) => {
            inner.metrics.refused(refused_reason(refusal));
            tracing::debug!(%peer, status = refusal.status(), "refused before upgrade");
            http::refuse(stream, refusal).await;
        }
        Decision::Metrics => {
            let body = inner.metrics.snapshot().to_prometheus();
            let response = http::response(
                200,
                "OK",
                &[],
                body.as_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            );
            http::send_and_close(stream, &response).await;
        }
        Decision::Reject(rejection) => {
            inner.metrics.refused(Refused::Rejected);
            if rejection.status() != rejection.requested_status() {
                tracing::warn!(%peer, status = rejection.requested_status(), "upgrade handler rejected with a status outside 400-599; sending 500");
            }
            tracing::debug!(%peer, status = rejection.status(), "upgrade rejected by the route's handler");
            http::send_and_close(stream, &http::rejection(&rejection)).await;
        }
        Decision::Page(page, with_body) => {
            let mut response = http::response(200, "OK", &[], &page.body, &page.content_type);
            if !with_body {
                // HEAD: the head GET would send, Content-Length included.
                response.truncate(response.len() - page.body.len());
            }
            http::send_and_close(stream, &response).await;
        }
        // Only `Accepted` leaves the handshake future.
        Decision::Upgrade(..) => {}
        Decision::Accepted(route, request, upgrade, rest) => {
            let ws = WebSocketStream::from_partially_read(
                stream,
                rest,
                Role::Server,
                Some(inner.ws_config),
            )
            .await;
            let Request {
                path,
                query,
                headers,
                extensions,
                ..
            } = *request;
            let info = ConnInfo {
                id: ConnId(inner.next_id.fetch_add(1, Ordering::Relaxed)),
                peer,
                path: Arc::from(path),
                query,
                headers,
                subprotocol: upgrade.subprotocol,
            };
            let extensions = extensions.into_inner().unwrap_or_else(|p| p.into_inner());
            // The connection gets a task of its own, sized for the
            // connection alone: this task's state machine also holds the
            // handshake's, and an idle connection would carry both.
            rt::spawn(connection_task(
                Arc::clone(&inner),
                Arc::clone(route),
                ws,
                info,
                extensions,
                permit,
            ));
        }
    }
}

/// The task of one upgraded connection: from the registry to the close
/// handler.
///
/// The connection is set up before the task's future exists, so that the
/// future holds it once (an `async fn` would also keep its arguments):
/// after the read buffer, the task is most of an idle connection's memory.
fn connection_task(
    inner: Arc<Inner>,
    route: Arc<Route>,
    ws: WebSocketStream<TcpStream>,
    info: ConnInfo,
    extensions: Extensions,
    permit: Permit,
) -> impl Future<Output = ()> + Send + 'static {
    let shared = Arc::new(Shared::new(info, inner.config.send_queue, extensions));
    let conn = Conn::new(shared, inner.registry.clone(), Arc::clone(&inner.state));
    inner.live.insert(conn.handle());
    inner.registry.insert(conn.handle());
    inner.metrics.opened();
    if inner.trigger.is_fired() {
        // Upgraded while the drain began: it may have missed this one.
        let config = &inner.config;
        if let Ok((code, reason)) = close::validate(config.shutdown_code, &config.shutdown_reason) {
            conn.shared.request_close(code, reason);
        }
    }
    tracing::debug!(id = %conn.id(), peer = %conn.peer_addr(), path = %conn.path(), "connection open");
    async move {
        // The permit holds the socket's place in the limits until the end.
        let _permit = permit;
        let guard = Release(&inner, &conn);
        let (closed, dropped) = Driver::new(
            &conn,
            &*route.handler,
            &inner.metrics,
            &inner.timers,
            ws,
            inner.limits,
        )
        .await;
        if inner.trigger.is_fired() {
            inner.tally.record(closed.outcome, dropped);
        }
        route.handler.close(&conn, &closed).await;
        drop(guard);
    }
}

/// Releases a connection's server-side state when its task ends, including
/// when a handler panics or the task is dropped mid-way: `close()` callers
/// are released, the registry entry and per-connection data are dropped,
/// and a drain waiting for the task is told.
struct Release<'a>(&'a Inner, &'a Conn);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let Release(inner, conn) = *self;
        // The driver normally ended the connection (and left the registry)
        // already; only a task cut short still has both to do.
        conn.registry().remove(conn.id());
        let _ = conn.shared.finish(CloseOutcome::PeerGone);
        conn.shared.clear_waker();
        let data = std::mem::take(&mut *conn.extensions());
        drop(data);
        inner.live.remove(conn.id());
    }
}
