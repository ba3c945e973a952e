//! The server under test: the user's [`Server`] bound to 127.0.0.1:0 and
//! run in the background, and the builder of its clients.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::{Duration, Instant};

use super::client::TestClient;
use super::upgrade::{self, HttpResponse, UpgradeRejected, Upgraded};
use super::DEFAULT_TIMEOUT;
use crate::connection::close::CloseSummary;
use crate::connection::registry::Registry;
use crate::error::Result;
use crate::http::{HeaderName, HeaderValue};
use crate::rt::{self, JoinHandle};
use crate::server::builder::Server;
use crate::server::listening::ServerHandle;
use crate::server::metrics::Stats;

/// A Wharf application running for a test: the [`Server`] it was given,
/// bound to 127.0.0.1 on a free port and run in the background.
///
/// Its clients ([`connect`](Self::connect), [`client`](Self::client))
/// wait for each step at most [`DEFAULT_TIMEOUT`] unless
/// [`set_timeout`](Self::set_timeout) says otherwise.
///
/// Dropping it starts the server's graceful shutdown, as
/// [`ServerHandle::shutdown`] does, without waiting for it: the listener
/// closes, and every connection still open is closed with the
/// [`shutdown_close`](Server::shutdown_close) code and reason (1001 "Going
/// away" by default); clients the test still holds see that Close. The
/// drain then runs on in the background, bounded by the
/// [`drain_timeout`](Server::drain_timeout).
/// [`shutdown`](Self::shutdown) does the same and waits for the summary.
///
/// # Examples
///
/// ```
/// # async_std::task::block_on(async {
/// use wharf as ws;
/// use ws::test::TestServer;
///
/// #[ws::on("message")]
/// async fn echo(_conn: &ws::Conn, msg: ws::Message) -> ws::Message {
///     msg
/// }
///
/// fn app() -> ws::Server {
///     ws::Server::new().route("/echo", ws::handlers![echo])
/// }
///
/// let server = TestServer::start(app()).await;
/// let mut client = server.connect("/echo").await.expect("upgrade");
/// client.send_text("hi").await;
/// client.expect_text("hi").await;
/// assert_eq!(server.stats().active, 1);
/// # });
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
    registry: Registry,
    /// The task running `Listening::run`, until `shutdown` takes it.
    run: Option<JoinHandle<Result<CloseSummary>>>,
    timeout: Duration,
}

impl TestServer {
    /// Binds `server` to 127.0.0.1:0 (a free port) and runs it in a
    /// background task. The server is used as written: its routes, state
    /// and policies.
    ///
    /// # Panics
    ///
    /// When the server cannot bind, for example because of a setting that
    /// cannot work (`Error::Config`, named in the message).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use std::time::Duration;
    /// use wharf::test::TestServer;
    ///
    /// let app = wharf::Server::new().idle_timeout(Duration::from_secs(300));
    /// let server = TestServer::start(app).await;
    /// assert!(server.addr().ip().is_loopback());
    /// # });
    /// ```
    #[track_caller]
    pub fn start(server: Server) -> impl Future<Output = TestServer> {
        let at = Location::caller();
        Box::pin(async move {
            let listening = match rt::timeout(DEFAULT_TIMEOUT, server.bind("127.0.0.1:0")).await {
                Some(Ok(listening)) => listening,
                Some(Err(err)) => {
                    panic!("TestServer::start at {at}: the server did not bind: {err}")
                }
                None => panic!(
                    "TestServer::start at {at}: binding 127.0.0.1:0 took over {DEFAULT_TIMEOUT:?}"
                ),
            };
            let addr = listening.local_addr();
            let handle = listening.handle();
            let registry = listening.registry();
            let run = rt::spawn_joinable(listening.run());
            TestServer {
                addr,
                handle,
                registry,
                run: Some(run),
                timeout: DEFAULT_TIMEOUT,
            }
        })
    }

    /// Where the server listens: 127.0.0.1 and the port it was given.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_ne!(server.addr().port(), 0);
    /// # });
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ws://` URL of `path` (with its query string), for a client of
    /// your own.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let url = server.url("/chat?name=ann");
    /// assert_eq!(url, format!("ws://{}/chat?name=ann", server.addr()));
    /// # });
    /// ```
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The server's registry of live connections: count them, look one up,
    /// send to a group or a route, close.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/room").await.expect("upgrade");
    /// assert_eq!(server.registry().count(), 1);
    /// server.registry().route("/room").send("news");
    /// client.expect_text("news").await;
    /// # });
    /// ```
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// A snapshot of the server's counters and gauges.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_eq!(server.get("/nowhere").await.status(), 404);
    /// assert_eq!(server.stats().active, 0);
    /// # });
    /// ```
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// The running server's handle, as the application would hold it.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert!(!server.handle().is_shutting_down());
    /// # });
    /// ```
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// How long its clients wait for each step.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_eq!(server.timeout(), wharf::test::DEFAULT_TIMEOUT);
    /// # });
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long the clients connected from now on wait for each step
    /// (connecting, each receive, send and close).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use std::time::Duration;
    ///
    /// let mut server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// server.set_timeout(Duration::from_secs(20)); // a slow CI machine
    /// # });
    /// ```
    pub fn set_timeout(&mut self, limit: Duration) {
        self.timeout = limit;
    }

    /// Moves the server's clock forward by `by`: every deadline it keeps
    /// (the `session_ttl`, `idle_timeout`, `heartbeat`, `send_timeout`,
    /// `close_timeout`, `upgrade_timeout` and `handler_grace` clocks) sees
    /// that much more time pass, and what falls due acts at once. A test
    /// of a 30-minute session takes milliseconds.
    ///
    /// Time that handlers read themselves (`std::time::Instant::now()`)
    /// does not move, nor do the graceful shutdown's `drain_timeout` and
    /// the `connect_rate` bucket, which run on real time.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use std::time::Duration;
    /// use wharf::test::TestServer;
    ///
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// let app = wharf::Server::new()
    ///     .fallback(wharf::handlers![echo])
    ///     .session_ttl(Duration::from_secs(30 * 60));
    /// let server = TestServer::start(app).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// server.advance(Duration::from_secs(29 * 60));
    /// client.send_text("still in").await;
    /// client.expect_text("still in").await;
    /// server.advance(Duration::from_secs(60));
    /// client.expect_close(1008, "Session expired").await;
    /// # });
    /// ```
    pub fn advance(&self, by: Duration) {
        self.handle.inner().timers.advance(by);
    }

    /// Connects a client to `path` (with its query string): the upgrade
    /// request, then the `101`. An HTTP answer instead of the `101` is the
    /// error, with its status, headers and body.
    ///
    /// When this returns, the server's connection has started (its connect
    /// handler is running or done, and its clocks run), and what the server
    /// sent first waits in the client to be received.
    ///
    /// # Panics
    ///
    /// When the server gives no HTTP answer within the timeout, closes
    /// without one, or answers something that is not HTTP.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().route("/chat", wharf::handlers![echo])).await;
    /// let client = server.connect("/chat?name=ann").await.expect("upgrade");
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert_eq!(err.status(), 404);
    /// # drop(client);
    /// # });
    /// ```
    #[track_caller]
    pub fn connect(
        &self,
        path: &str,
    ) -> impl Future<Output = std::result::Result<TestClient, UpgradeRejected>> + use<> {
        let builder = self.client(path);
        Box::pin(builder.connect_at(Location::caller()))
    }

    /// A client builder for `path`, for request headers, an `Origin`,
    /// subprotocols or a timeout of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server
    ///     .client("/")
    ///     .header("Authorization", "Bearer secret")
    ///     .origin("http://localhost:8000")
    ///     .connect()
    ///     .await
    ///     .expect("upgrade");
    /// # drop(client);
    /// # });
    /// ```
    pub fn client(&self, path: &str) -> ClientBuilder {
        ClientBuilder {
            addr: self.addr,
            registry: self.registry.clone(),
            path: path.to_owned(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            timeout: self.timeout,
        }
    }

    /// Sends a plain HTTP `GET` of `path` and returns the whole response:
    /// a page, the metrics, or the answer a WebSocket route gives a
    /// request without an upgrade (426).
    ///
    /// # Panics
    ///
    /// When the server gives no HTTP answer within the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf::test::TestServer;
    ///
    /// let server = TestServer::start(wharf::Server::new().metrics("/metrics")).await;
    /// let metrics = server.get("/metrics").await;
    /// assert_eq!(metrics.status(), 200);
    /// assert!(metrics.body().contains("wharf_connections_active 0"));
    /// # });
    /// ```
    #[track_caller]
    pub fn get(&self, path: &str) -> impl Future<Output = HttpResponse> + '_ + use<'_> {
        let at = Location::caller();
        let path = path.to_owned();
        Box::pin(async move {
            match rt::timeout(self.timeout, upgrade::get(self.addr, &path)).await {
                Some(Ok(response)) => response,
                Some(Err(err)) => panic!("get at {at}, on {path}: {err}"),
                None => panic!(
                    "get at {at}, on {path}: no answer within {:?}",
                    self.timeout
                ),
            }
        })
    }

    /// Starts a graceful shutdown and waits for its summary: the listener
    /// closes, every connection gets the shutdown Close (1001 "Going away"
    /// by default) and the closing handshakes run, up to the
    /// [`drain_timeout`](Server::drain_timeout).
    ///
    /// # Panics
    ///
    /// When the drain does not finish within the drain timeout plus the
    /// server's timeout, or `run()` failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// let reading = async_std::task::spawn(async move {
    ///     client.expect_close(1001, "Going away").await;
    /// });
    /// let summary = server.shutdown().await;
    /// assert_eq!(summary.clean, 1);
    /// reading.await;
    /// # });
    /// ```
    #[track_caller]
    pub fn shutdown(mut self) -> impl Future<Output = CloseSummary> {
        let at = Location::caller();
        let run = self.run.take();
        let handle = self.handle.clone();
        let limit = handle
            .inner()
            .config
            .drain_timeout
            .saturating_add(self.timeout);
        drop(self);
        Box::pin(async move {
            handle.shutdown();
            let Some(run) = run else {
                unreachable!("only shutdown takes the run task, and it takes the server");
            };
            match rt::timeout(limit, run).await {
                Some(Ok(summary)) => summary,
                Some(Err(err)) => panic!("TestServer::shutdown at {at}: run() failed: {err}"),
                None => panic!("TestServer::shutdown at {at}: the drain took over {limit:?}"),
            }
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// A client about to connect, with what its upgrade request carries:
/// from [`TestServer::client`].
///
/// # Examples
///
/// ```
/// # async_std::task::block_on(async {
/// use wharf as ws;
/// use ws::test::TestServer;
///
/// # #[ws::on("message")] async fn echo(_c: &ws::Conn, m: ws::Message) -> ws::Message { m }
/// let app = ws::Server::new().fallback(ws::handlers![echo]).allow_origin("https://good.test");
/// let server = TestServer::start(app).await;
/// let err = server.client("/").origin("https://evil.test").connect().await.unwrap_err();
/// assert_eq!(err.status(), 403);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    addr: SocketAddr,
    registry: Registry,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    timeout: Duration,
}

impl ClientBuilder {
    /// Adds a request header. A header named like one of the upgrade's own
    /// (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`) replaces it, to test how the server
    /// answers a wrong one.
    ///
    /// # Panics
    ///
    /// When `name` or `value` is not a valid header name or value.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let err = server.client("/").header("Sec-WebSocket-Version", "8").connect().await.unwrap_err();
    /// assert_eq!(err.status(), 426);
    /// assert_eq!(err.header("sec-websocket-version"), Some("13"));
    /// # });
    /// ```
    #[track_caller]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let parsed = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        );
        match parsed {
            (Ok(name), Ok(value)) => self.headers.push((name, value)),
            _ => panic!("header: {name:?}: {value:?} is not a valid header"),
        }
        self
    }

    /// Sends `Origin: origin`, as a browser does.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo]).allow_origin("http://good.test")).await;
    /// let client = server.client("/").origin("http://good.test").connect().await.expect("upgrade");
    /// # drop(client);
    /// # });
    /// ```
    #[track_caller]
    pub fn origin(self, origin: &str) -> Self {
        self.header("Origin", origin)
    }

    /// Offers subprotocol `protocol`; call again to offer several, in the
    /// order of preference. The server's pick is
    /// [`TestClient::subprotocol`]; unlike a browser, the client does not
    /// refuse a `101` that picks none.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf as ws;
    ///
    /// # #[ws::on("message")] async fn echo(_c: &ws::Conn, m: ws::Message) -> ws::Message { m }
    /// let route = ws::Route::new("/", ws::handlers![echo]).subprotocols(["v2"]);
    /// let server = ws::test::TestServer::start(ws::Server::new().mount(route)).await;
    /// let client = server.client("/").subprotocol("v3").connect().await.expect("upgrade");
    /// assert_eq!(client.subprotocol(), None); // none in common
    /// # });
    /// ```
    pub fn subprotocol(mut self, protocol: &str) -> Self {
        self.subprotocols.push(protocol.to_owned());
        self
    }

    /// How long this client waits for each step, instead of the server's
    /// [`timeout`](TestServer::timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use std::time::Duration;
    ///
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.client("/").timeout(Duration::from_millis(200)).connect().await.expect("upgrade");
    /// assert_eq!(client.timeout(), Duration::from_millis(200));
    /// # });
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Connects: see [`TestServer::connect`].
    ///
    /// # Panics
    ///
    /// When the server gives no HTTP answer within the timeout, closes
    /// without one, or answers something that is not HTTP.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.client("/").connect().await.expect("upgrade");
    /// client.send_text("hi").await;
    /// client.expect_text("hi").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn connect(self) -> impl Future<Output = std::result::Result<TestClient, UpgradeRejected>> {
        Box::pin(self.connect_at(Location::caller()))
    }

    /// Connects and asserts that the server refuses the upgrade with
    /// `status`; returns the refusal, to look at its headers and body.
    ///
    /// # Panics
    ///
    /// When the upgrade succeeds, or is refused with another status,
    /// naming what happened.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let refusal = server.client("/nowhere").expect_rejected(404).await;
    /// assert!(!refusal.body().is_empty());
    /// # });
    /// ```
    #[track_caller]
    pub fn expect_rejected(self, status: u16) -> impl Future<Output = UpgradeRejected> {
        let at = Location::caller();
        let path = self.path.clone();
        let connecting = self.connect_at(at);
        Box::pin(async move {
            match connecting.await {
                Err(refusal) if refusal.status() == status => refusal,
                Err(refusal) => panic!(
                    "expect_rejected at {at}, on {path}: expected a {status} answer to the upgrade, got {}",
                    refusal.into_response()
                ),
                Ok(_) => panic!(
                    "expect_rejected at {at}, on {path}: expected a {status} answer to the upgrade, got 101 Switching Protocols"
                ),
            }
        })
    }

    async fn connect_at(
        self,
        at: &'static Location<'static>,
    ) -> std::result::Result<TestClient, UpgradeRejected> {
        let ClientBuilder {
            addr,
            registry,
            path,
            headers,
            subprotocols,
            timeout,
        } = self;
        let started = Instant::now();
        let deadline = started.checked_add(timeout).unwrap_or(started);
        let opened = rt::timeout(
            timeout,
            upgrade::upgrade(addr, &path, &headers, &subprotocols),
        )
        .await;
        let (ws, headers, subprotocol, local_addr) = match opened {
            Some(Ok(Upgraded::Open {
                ws,
                headers,
                subprotocol,
                local_addr,
            })) => (ws, headers, subprotocol, local_addr),
            Some(Ok(Upgraded::Rejected(refusal))) => return Err(refusal),
            Some(Err(err)) => panic!("connect at {at}, on {path}: {err}"),
            None => {
                panic!("connect at {at}, on {path}: no answer to the upgrade within {timeout:?}")
            }
        };
        let client = TestClient::start(
            ws,
            path.clone(),
            local_addr,
            headers,
            subprotocol,
            timeout,
            registry,
            deadline,
        )
        .await;
        match client {
            Ok(client) => Ok(client),
            Err(err) => panic!("connect at {at}, on {path}: {err}"),
        }
    }
}
