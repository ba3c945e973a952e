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
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_util::AsyncWriteExt;

use crate::close::CloseOutcome;
use crate::config::Config;
use crate::conn::{Conn, ConnId, ConnInfo, Shared};
use crate::driver::{Driver, Limits};
use crate::error::{Error, Result};
use crate::handler::{DynHandler, Handler};
use crate::handshake::{self as http, Head, Refusal};
use crate::message::Bytes;
use crate::registry::Registry;
use crate::rt::{self, TcpListener, TcpStream};

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
    Ws(Route),
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
///         .await
/// }
/// ```
#[derive(Debug, Default)]
pub struct Server {
    config: Config,
    endpoints: Vec<(String, Endpoint)>,
    fallback: Option<Route>,
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
            .push((route.path.clone(), Endpoint::Ws(route)));
        self
    }

    /// Serves `handler` on every path that no route or page claims (instead
    /// of answering 404). [`Handle::path`](crate::Handle::path) is the path the client asked for.
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Route::new("*", handler));
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
            endpoints.insert(path, endpoint);
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
            },
            config: self.config,
            ws_config,
            endpoints,
            fallback: self.fallback,
            registry: Registry::default(),
            next_id: AtomicU64::new(1),
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
    fallback: Option<Route>,
    registry: Registry,
    next_id: AtomicU64,
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

    /// Accepts connections until the future is dropped. Each connection runs
    /// in its own task and finishes its life (handshake, handlers, close)
    /// even if this future is dropped.
    ///
    /// A failed `accept` (for example too many open files) is logged and
    /// retried after a short pause rather than ending the server.
    pub async fn run(self) -> Result<()> {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let inner = Arc::clone(&self.inner);
                    rt::spawn(serve(inner, stream, peer));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying");
                    rt::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// What to do with a socket once its request head is read.
enum Decision<'a> {
    Upgrade(&'a Route, Box<http::Request>, http::Upgrade, Vec<u8>),
    Page(&'a Page, bool),
    Refuse(Refusal),
}

fn decide(inner: &Inner, head: Head) -> Option<Decision<'_>> {
    let (request, rest) = match head {
        Head::Complete(request, rest) => (request, rest),
        Head::TooLarge => return Some(Decision::Refuse(Refusal::HeadersTooLarge)),
        Head::Malformed => return Some(Decision::Refuse(Refusal::BadRequest("Bad request\n"))),
        Head::Eof => return None,
    };
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
    Some(match http::check_upgrade(&request, &route.subprotocols) {
        Ok(upgrade) => Decision::Upgrade(route, Box::new(request), upgrade, rest),
        Err(refusal) => Decision::Refuse(refusal),
    })
}

/// One accepted socket, from the first byte to the close handler.
async fn serve(inner: Arc<Inner>, mut stream: TcpStream, peer: SocketAddr) {
    // Small frames (echoes, Close frames) must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let head = http::read_head(&mut stream, inner.config.max_request_bytes).await;
        let decision = decide(&inner, head.ok()?)?;
        if let Decision::Upgrade(_, _, upgrade, _) = &decision {
            stream
                .write_all(&http::switching_protocols(upgrade))
                .await
                .ok()?;
        }
        Some(decision)
    };
    let decision = match rt::timeout(inner.config.handshake_timeout, handshake).await {
        Some(Some(decision)) => decision,
        Some(None) => return,
        None => {
            tracing::debug!(%peer, "handshake timed out; dropping the socket");
            return;
        }
    };
    match decision {
        Decision::Refuse(refusal) => {
            tracing::debug!(%peer, status = refusal.status(), "refused before upgrade");
            http::refuse(stream, refusal).await;
        }
        Decision::Page(page, with_body) => {
            let mut response = http::response(200, "OK", &[], &page.body, &page.content_type);
            if !with_body {
                // HEAD: the head GET would send, Content-Length included.
                response.truncate(response.len() - page.body.len());
            }
            http::send_and_close(stream, &response).await;
        }
        Decision::Upgrade(route, request, upgrade, rest) => {
            let ws = WebSocketStream::from_partially_read(
                stream,
                rest,
                Role::Server,
                Some(inner.ws_config),
            )
            .await;
            let info = ConnInfo {
                id: ConnId(inner.next_id.fetch_add(1, Ordering::Relaxed)),
                peer,
                path: Arc::from(request.path.as_str()),
                query: request
                    .query
                    .as_deref()
                    .map(http::parse_query)
                    .unwrap_or_default(),
                headers: request.headers,
                subprotocol: upgrade.subprotocol,
            };
            run_connection(&inner, route, ws, info).await;
        }
    }
}

async fn run_connection(
    inner: &Inner,
    route: &Route,
    ws: WebSocketStream<TcpStream>,
    info: ConnInfo,
) {
    let shared = Arc::new(Shared::new(info, inner.config.send_queue));
    let conn = Conn::new(shared, inner.registry.clone());
    inner.registry.insert(conn.handle());
    tracing::debug!(id = %conn.id(), peer = %conn.peer_addr(), path = %conn.path(), "connection open");
    let guard = Release(&conn);
    let closed = Driver::new(&conn, &*route.handler, ws, inner.limits)
        .run()
        .await;
    route.handler.close(&conn, &closed).await;
    drop(guard);
}

/// Releases a connection's server-side state when its task ends, including
/// when a handler panics or the task is dropped mid-way: `close()` callers
/// are released, the registry entry and per-connection data are dropped.
struct Release<'a>(&'a Conn);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let conn = self.0;
        // The driver normally ended the connection (and left the registry)
        // already; only a task cut short still has both to do.
        if conn.shared.finish(CloseOutcome::PeerGone) {
            conn.registry().remove(conn.id());
        }
        let data = std::mem::take(&mut *conn.extensions());
        drop(data);
    }
}
