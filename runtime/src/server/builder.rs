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
use crate::rt;

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
    /// [`Request::state`](crate::Request::state)); one value per type, a second call with the same
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

    /// Sets [`Config::handler_grace`]: how long a handler may keep running
    /// once its connection's socket has closed (and a close handler at all)
    /// before its future is dropped.
    pub fn handler_grace(mut self, limit: Duration) -> Self {
        self.config.handler_grace = limit;
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
                handler_grace: config.handler_grace,
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
        Ok(Listening::new(listener, local_addr, inner))
    }
}

fn check_route(path: &str, route: &Route) -> Result<()> {
    route.handler.check().map_err(|err| match err {
        Error::Config(why) => Error::Config(format!("route {path}: {why}")),
        other => other,
    })
}
