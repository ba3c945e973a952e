//! The test client: async-tungstenite's client behind calls that each wait
//! under a timeout and fail the test with what was expected and what
//! arrived instead.
//!
//! Every receive goes through `next_until`, which answers pings, skips
//! pongs and turns the stream into [`Received`] events. The methods that
//! assert are plain functions returning futures, not `async fn`s, so that
//! `#[track_caller]` works: the caller's line is read before the future
//! starts and opens every failure message.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use async_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use futures_util::{SinkExt, StreamExt};

use super::received::{CloseFrame, CloseReport, Received};
use crate::connection::close::CloseCode;
use crate::connection::handle::{ConnId, Handle};
use crate::connection::message::{Bytes, Message};
use crate::connection::registry::Registry;
use crate::http::HeaderMap;
use crate::rt::{self, TcpStream};

/// The payload of the ping a client sends right after its upgrade.
const HELLO: &[u8] = b"wharf-test";

/// What one read of the stream came to.
enum Next {
    Got(Received),
    /// Nothing arrived in time.
    Nothing,
    /// The server broke the protocol (or the stream failed oddly).
    Broken(String),
}

/// What a raw read of the stream came to: [`Next`], or our ping's answer.
enum Frame {
    Next(Next),
    Pong,
}

/// A WebSocket client connected to a [`TestServer`](super::TestServer).
///
/// Every receive waits at most the client's timeout
/// ([`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT) unless set on the server,
/// the builder or with [`set_timeout`](Self::set_timeout)). The `expect_*`
/// and `recv_*` calls panic, as `assert!` does, with a message that starts
/// with the line of the test that made the call and names what was
/// expected and what arrived instead:
///
/// ```text
/// expect_close at tests/auth.rs:12:12, on /?token=nope: expected Close 1008 "Invalid authentication", got the text "hello"
/// ```
///
/// Pings from the server are answered by the client itself and never
/// show up. Dropping a client drops its TCP connection without a Close
/// frame, as a crashed client would (the server's close handler sees
/// 1006); [`close`](Self::close) ends it properly.
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
/// let server = TestServer::start(ws::Server::new().route("/", ws::handlers![echo])).await;
/// let mut client = server.connect("/").await.expect("upgrade");
/// client.send_text("hi").await;
/// client.expect_text("hi").await;
/// client.close(1000, "bye").await;
/// # });
/// ```
pub struct TestClient {
    ws: WebSocketStream<TcpStream>,
    path: String,
    local_addr: SocketAddr,
    headers: HeaderMap,
    subprotocol: Option<String>,
    timeout: Duration,
    registry: Registry,
    /// The server's id for this connection, found once it answered.
    id: Option<ConnId>,
    /// The server's handle on it, to wait for its end in `close`.
    server_side: Option<Handle>,
    /// Events read before the test asked for them (while connecting).
    pending: VecDeque<Received>,
    /// The server's Close, once read.
    close_received: Option<CloseFrame>,
    /// Our Close went out.
    close_sent: bool,
    /// The stream has ended.
    ended: bool,
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("path", &self.path)
            .field("local_addr", &self.local_addr)
            .field("subprotocol", &self.subprotocol)
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("close_received", &self.close_received)
            .field("close_sent", &self.close_sent)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Where a call came from and what it was, for failure messages.
#[derive(Clone, Copy)]
struct Call {
    op: &'static str,
    at: &'static Location<'static>,
}

impl Call {
    #[track_caller]
    fn here(op: &'static str) -> Self {
        Call {
            op,
            at: Location::caller(),
        }
    }
}

impl TestClient {
    /// A client on an open WebSocket; waits (until `deadline`) for the
    /// server's answer to a ping, so that once this returns the server's
    /// connection has started: its clocks run and it is in the registry.
    #[allow(clippy::too_many_arguments)] // one call site, in `server.rs`
    pub(super) async fn start(
        ws: WebSocketStream<TcpStream>,
        path: String,
        local_addr: SocketAddr,
        headers: HeaderMap,
        subprotocol: Option<String>,
        timeout: Duration,
        registry: Registry,
        deadline: Instant,
    ) -> Result<TestClient, String> {
        let mut client = TestClient {
            ws,
            path,
            local_addr,
            headers,
            subprotocol,
            timeout,
            registry,
            id: None,
            server_side: None,
            pending: VecDeque::new(),
            close_received: None,
            close_sent: false,
            ended: false,
        };
        // Any frame from the server comes from its connection's driver,
        // which started the connection's clocks when it was created, after
        // the registry entry: once one arrives, both are in place.
        let _ = client
            .ws
            .send(WsMessage::Ping(Bytes::from_static(HELLO)))
            .await;
        loop {
            let limit = deadline.saturating_duration_since(Instant::now());
            match rt::timeout(limit, client.read_frame()).await {
                None => {
                    return Err(format!(
                        "the server did not answer a ping within {timeout:?} after its 101"
                    ))
                }
                Some(Frame::Pong) => break,
                Some(Frame::Next(Next::Got(received))) => {
                    let done = !matches!(received, Received::Text(_) | Received::Binary(_));
                    client.pending.push_back(received);
                    if done {
                        break;
                    }
                }
                Some(Frame::Next(Next::Broken(err))) => return Err(err),
                Some(Frame::Next(Next::Nothing)) => unreachable!("read_frame never times out"),
            }
        }
        client.server_side = client
            .registry
            .handles()
            .into_iter()
            .find(|handle| handle.peer_addr() == client.local_addr);
        client.id = client.server_side.as_ref().map(Handle::id);
        Ok(client)
    }

    /// The path (with its query string) this client connected to.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/chat?name=ann").await.expect("upgrade");
    /// assert_eq!(client.path(), "/chat?name=ann");
    /// # });
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The subprotocol the server picked in its `101`, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf as ws;
    /// use ws::test::TestServer;
    ///
    /// # #[ws::on("message")] async fn echo(_c: &ws::Conn, m: ws::Message) -> ws::Message { m }
    /// let route = ws::Route::new("/", ws::handlers![echo]).subprotocols(["chat.v2"]);
    /// let server = TestServer::start(ws::Server::new().mount(route)).await;
    /// let client = server.client("/").subprotocol("chat.v1").subprotocol("chat.v2").connect().await.expect("upgrade");
    /// assert_eq!(client.subprotocol(), Some("chat.v2"));
    /// # });
    /// ```
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The headers of the server's `101 Switching Protocols`.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/").await.expect("upgrade");
    /// assert_eq!(client.response_headers()["upgrade"], "websocket");
    /// # });
    /// ```
    pub fn response_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The client's own address: what the server sees as
    /// [`Conn::peer_addr`](crate::Conn::peer_addr).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/").await.expect("upgrade");
    /// assert!(client.local_addr().ip().is_loopback());
    /// # });
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How long each receive waits.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/").await.expect("upgrade");
    /// assert_eq!(client.timeout(), wharf::test::DEFAULT_TIMEOUT);
    /// # });
    /// ```
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long each receive (and send, and close) of this client
    /// waits before failing.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.set_timeout(std::time::Duration::from_secs(30)); // a slow handler
    /// # });
    /// ```
    pub fn set_timeout(&mut self, limit: Duration) {
        self.timeout = limit;
    }

    /// The server's [`Handle`] on this client's connection: the one its
    /// handlers see as [`Conn::handle`](crate::Conn::handle), to send or
    /// close from the test as another task of the application would.
    ///
    /// The connection is found by the client's address, so this works
    /// while the server sees that address as the peer's.
    ///
    /// # Panics
    ///
    /// When the server no longer has the connection (it has ended).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// let handle = client.handle();
    /// async_std::task::spawn(async move { handle.close(4000, "Kicked").await });
    /// client.expect_close(4000, "Kicked").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn handle(&self) -> Handle {
        let call = Call::here("handle");
        match self.id.and_then(|id| self.registry.get(id)) {
            Some(handle) => handle,
            None => self.fail(
                call,
                format_args!("the server has no live connection for this client (it has ended)"),
            ),
        }
    }

    /// Joins this client's connection to `group` on the server, as a
    /// handler's [`Conn::join`](crate::Conn::join) would, so the test can
    /// assert what a send to the group delivers.
    ///
    /// # Panics
    ///
    /// When the server no longer has the connection, or refuses the group
    /// (an invalid name, too many groups), saying which.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut ann = server.connect("/").await.expect("upgrade");
    /// let mut bob = server.connect("/").await.expect("upgrade");
    /// ann.join("room:lobby");
    /// assert_eq!(server.registry().group("room:lobby").send("news"), 1);
    /// ann.expect_text("news").await;
    /// bob.expect_no_message(std::time::Duration::from_millis(20)).await;
    /// # });
    /// ```
    #[track_caller]
    pub fn join(&self, group: &str) {
        let call = Call::here("join");
        let Some(id) = self.id.filter(|id| self.registry.get(*id).is_some()) else {
            self.fail(
                call,
                format_args!(
                    "cannot join {group:?}: the server has no live connection for this client"
                ),
            )
        };
        if let Err(err) = self.registry.join(id, group) {
            self.fail(
                call,
                format_args!("the server refused to join {group:?}: {err}"),
            );
        }
    }

    /// Takes this client's connection out of `group`; whether it was a
    /// member (false once the connection has ended).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/").await.expect("upgrade");
    /// client.join("room:lobby");
    /// assert!(client.leave("room:lobby"));
    /// assert!(!client.leave("room:lobby"));
    /// # });
    /// ```
    pub fn leave(&self, group: &str) -> bool {
        self.id.is_some_and(|id| self.registry.leave(id, group))
    }

    /// The groups this client's connection is in on the server, joined by
    /// the test or by the application's handlers (empty once it ended).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let client = server.connect("/").await.expect("upgrade");
    /// client.join("user:42");
    /// assert_eq!(client.groups(), ["user:42"]);
    /// # });
    /// ```
    pub fn groups(&self) -> Vec<String> {
        self.id
            .map(|id| self.registry.groups(id))
            .unwrap_or_default()
    }

    /// Sends a message ([`Message`], or anything that converts into one:
    /// `&str`, `String`, `Vec<u8>`, ...).
    ///
    /// # Panics
    ///
    /// When it cannot be sent within the timeout, or the connection is
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send(wharf::Message::text("hi")).await;
    /// client.expect_text("hi").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn send(&mut self, msg: impl Into<Message>) -> impl Future<Output = ()> + '_ {
        let call = Call::here("send");
        let frame = match msg.into() {
            Message::Text(text) => WsMessage::Text(text.0),
            Message::Binary(data) => WsMessage::Binary(data),
        };
        Box::pin(self.send_frame(call, frame))
    }

    /// Sends a text message.
    ///
    /// # Panics
    ///
    /// When it cannot be sent within the timeout, or the connection is
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_text("hello").await;
    /// client.expect_text("hello").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn send_text(&mut self, text: impl AsRef<str>) -> impl Future<Output = ()> + '_ {
        let call = Call::here("send_text");
        let frame = WsMessage::Text(Utf8Bytes::from(text.as_ref()));
        Box::pin(self.send_frame(call, frame))
    }

    /// Sends a binary message.
    ///
    /// # Panics
    ///
    /// When it cannot be sent within the timeout, or the connection is
    /// closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_binary([0u8, 1, 2]).await;
    /// client.expect_binary([0u8, 1, 2]).await;
    /// # });
    /// ```
    #[track_caller]
    pub fn send_binary(&mut self, data: impl AsRef<[u8]>) -> impl Future<Output = ()> + '_ {
        let call = Call::here("send_binary");
        let frame = WsMessage::Binary(Bytes::copy_from_slice(data.as_ref()));
        Box::pin(self.send_frame(call, frame))
    }

    /// Sends `value` as a JSON text message (with the `json` feature).
    ///
    /// # Panics
    ///
    /// When `value` does not serialize, when it cannot be sent within the
    /// timeout, or the connection is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_json(&serde_json::json!({ "x": 1 })).await;
    /// client.expect_text(r#"{"x":1}"#).await;
    /// # });
    /// ```
    #[cfg(feature = "json")]
    #[track_caller]
    pub fn send_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> impl Future<Output = ()> + '_ + use<'_, T> {
        let call = Call::here("send_json");
        let text = serde_json::to_string(value).unwrap_or_else(|err| {
            self.fail(
                call,
                format_args!("the value does not serialize to JSON: {err}"),
            )
        });
        Box::pin(self.send_frame(call, WsMessage::Text(Utf8Bytes::from(text))))
    }

    /// Receives the next thing the server sent: a message, its Close, or
    /// the end of the stream.
    ///
    /// # Panics
    ///
    /// When nothing arrives within the timeout, or the server breaks the
    /// protocol.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf::test::Received;
    ///
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_text("ping?").await;
    /// match client.recv().await {
    ///     Received::Text(text) => assert_eq!(text, "ping?"),
    ///     other => panic!("expected the echo, got {other}"),
    /// }
    /// # });
    /// ```
    #[track_caller]
    pub fn recv(&mut self) -> impl Future<Output = Received> + '_ {
        let call = Call::here("recv");
        Box::pin(async move { self.expect(call, "a message, a Close or EOF", Some).await })
    }

    /// Receives the next message, which must be a text message, and
    /// returns its text.
    ///
    /// # Panics
    ///
    /// When anything else arrives first (a binary message, a Close, EOF),
    /// or nothing within the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_text("what time is it").await;
    /// let answer = client.recv_text().await;
    /// assert!(answer.contains("time"));
    /// # });
    /// ```
    #[track_caller]
    pub fn recv_text(&mut self) -> impl Future<Output = String> + '_ {
        let call = Call::here("recv_text");
        Box::pin(async move {
            self.expect(call, "a text message", |received| match received {
                Received::Text(text) => Some(text),
                _ => None,
            })
            .await
        })
    }

    /// Receives the next message, which must be a binary message, and
    /// returns its bytes.
    ///
    /// # Panics
    ///
    /// When anything else arrives first, or nothing within the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_binary(vec![7u8; 1000]).await;
    /// assert_eq!(client.recv_binary().await.len(), 1000);
    /// # });
    /// ```
    #[track_caller]
    pub fn recv_binary(&mut self) -> impl Future<Output = Bytes> + '_ {
        let call = Call::here("recv_binary");
        Box::pin(async move {
            self.expect(call, "a binary message", |received| match received {
                Received::Binary(data) => Some(data),
                _ => None,
            })
            .await
        })
    }

    /// Receives the next message, which must be JSON for `T` (in a text or
    /// a binary message), and returns it (with the `json` feature).
    ///
    /// # Panics
    ///
    /// When the next message is not JSON for `T`, anything else arrives
    /// first, or nothing within the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_text(r#"{"x": 1, "y": 2}"#).await;
    /// let value: serde_json::Value = client.recv_json().await;
    /// assert_eq!(value["y"], 2);
    /// # });
    /// ```
    #[cfg(feature = "json")]
    #[track_caller]
    pub fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> impl Future<Output = T> + '_ {
        let call = Call::here("recv_json");
        Box::pin(async move { self.next_json(call).await.0 })
    }

    /// Receives messages until a text message satisfies `wanted`, and
    /// returns that text; the messages before it are skipped (a broadcast
    /// from another member may come first).
    ///
    /// # Panics
    ///
    /// When a Close or EOF arrives first, or no such text within the
    /// timeout (counted once, for the whole search); the message lists the
    /// last messages skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// for line in ["* ann joined", "ann: hi"] {
    ///     client.send_text(line).await;
    /// }
    /// assert_eq!(client.recv_text_until(|t| !t.starts_with('*')).await, "ann: hi");
    /// # });
    /// ```
    #[track_caller]
    pub fn recv_text_until<'a, F>(&'a mut self, mut wanted: F) -> impl Future<Output = String> + 'a
    where
        F: FnMut(&str) -> bool + 'a,
    {
        let call = Call::here("recv_text_until");
        Box::pin(async move {
            let deadline = self.deadline();
            let mut skipped: VecDeque<Received> = VecDeque::new();
            let mut count = 0usize;
            loop {
                let next = self.next_until(deadline).await;
                match next {
                    Next::Got(Received::Text(text)) if wanted(&text) => return text,
                    Next::Got(received @ (Received::Text(_) | Received::Binary(_))) => {
                        count += 1;
                        if skipped.len() == 5 {
                            skipped.pop_front();
                        }
                        skipped.push_back(received);
                    }
                    other => {
                        let mut got = self.describe(&other);
                        if count > 0 {
                            let last: Vec<String> = skipped.iter().map(|r| r.to_string()).collect();
                            got = format!(
                                "{got}, after skipping {count} messages (the last: {})",
                                last.join(", ")
                            );
                        }
                        self.fail(
                            call,
                            format_args!(
                                "expected a text message matching the condition, got {got}"
                            ),
                        )
                    }
                }
            }
        })
    }

    /// Asserts that the next message is the text `expected`.
    ///
    /// # Panics
    ///
    /// When anything else arrives first (another text, a binary message, a
    /// Close, EOF) or nothing within the timeout, naming what did.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_text("hi").await;
    /// client.expect_text("hi").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn expect_text(&mut self, expected: impl Into<String>) -> impl Future<Output = ()> + '_ {
        let call = Call::here("expect_text");
        let expected = Received::Text(expected.into());
        Box::pin(async move {
            let wanted = expected.to_string();
            self.expect(call, &wanted, |received| {
                (received == expected).then_some(())
            })
            .await
        })
    }

    /// Asserts that the next message is the binary message `expected`.
    ///
    /// # Panics
    ///
    /// When anything else arrives first or nothing within the timeout,
    /// naming what did.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_binary(b"\x00\x01").await;
    /// client.expect_binary(b"\x00\x01").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn expect_binary(&mut self, expected: impl AsRef<[u8]>) -> impl Future<Output = ()> + '_ {
        let call = Call::here("expect_binary");
        let expected = Received::Binary(Bytes::copy_from_slice(expected.as_ref()));
        Box::pin(async move {
            let wanted = expected.to_string();
            self.expect(call, &wanted, |received| {
                (received == expected).then_some(())
            })
            .await
        })
    }

    /// Asserts that the next message is JSON equal to `expected` once read
    /// as a `T` (with the `json` feature). `serde_json::Value` compares
    /// whole documents; a typed `T` compares what it reads.
    ///
    /// # Panics
    ///
    /// When the next message is other JSON, not JSON for `T`, or not a
    /// message, or nothing arrives within the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use serde_json::json;
    ///
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.send_json(&json!({ "move": [1, 2] })).await;
    /// client.expect_json(&json!({ "move": [1, 2] })).await;
    /// # });
    /// ```
    #[cfg(feature = "json")]
    #[track_caller]
    pub fn expect_json<'a, T>(&'a mut self, expected: &'a T) -> impl Future<Output = ()> + 'a
    where
        T: serde::de::DeserializeOwned + PartialEq + fmt::Debug,
    {
        let call = Call::here("expect_json");
        Box::pin(async move {
            let (value, received) = self.next_json::<T>(call).await;
            if value != *expected {
                self.fail(
                    call,
                    format_args!("expected the JSON {expected:?}, got {value:?} ({received})"),
                );
            }
        })
    }

    /// Asserts that the server closes the connection with `code` and
    /// `reason`: the next thing to arrive is its Close frame (the client
    /// answers it), and the server then closes the TCP connection.
    ///
    /// # Panics
    ///
    /// When anything else arrives first (a message, another Close, EOF
    /// without a Close), nothing within the timeout, or the server keeps
    /// the TCP connection open after the handshake.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use wharf as ws;
    /// use ws::test::TestServer;
    ///
    /// #[ws::on("connect")]
    /// async fn check_token(conn: &ws::Conn) -> ws::Result<()> {
    ///     if conn.query("token") != Some("secret") {
    ///         conn.close(ws::CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let server = TestServer::start(ws::Server::new().route("/", ws::handlers![check_token])).await;
    /// let mut client = server.connect("/?token=nope").await.expect("upgrade");
    /// client.expect_close(1008, "Invalid authentication").await;
    /// # });
    /// ```
    #[track_caller]
    pub fn expect_close(
        &mut self,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> impl Future<Output = ()> + '_ {
        let call = Call::here("expect_close");
        let expected = CloseFrame::new(code, reason);
        Box::pin(async move {
            let wanted = expected.to_string();
            self.expect(call, &wanted, |received| match received {
                Received::Close(frame) if frame == expected => Some(()),
                _ => None,
            })
            .await;
            let deadline = self.deadline();
            match self.next_until(deadline).await {
                Next::Got(Received::Eof) => {}
                Next::Nothing => self.fail(
                    call,
                    format_args!(
                        "got {wanted} as expected, but the server did not close the TCP connection within {:?} after it",
                        self.timeout
                    ),
                ),
                other => {
                    let got = self.describe(&other);
                    self.fail(
                        call,
                        format_args!("got {wanted} as expected, then {got} instead of the end of the stream"),
                    )
                }
            }
        })
    }

    /// Asserts that nothing arrives for `quiet`: no message, no Close, and
    /// the connection stays open.
    ///
    /// # Panics
    ///
    /// When anything arrives within `quiet`, naming it.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// use std::time::Duration;
    ///
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// client.expect_no_message(Duration::from_millis(50)).await; // nothing unprompted
    /// # });
    /// ```
    #[track_caller]
    pub fn expect_no_message(&mut self, quiet: Duration) -> impl Future<Output = ()> + '_ {
        let call = Call::here("expect_no_message");
        Box::pin(async move {
            let started = Instant::now();
            let deadline = started.checked_add(quiet).unwrap_or(started);
            match self.next_until(deadline).await {
                Next::Nothing => {}
                other => {
                    let got = self.describe(&other);
                    self.fail(
                        call,
                        format_args!(
                            "expected nothing for {quiet:?}, got {got} after {:?}",
                            started.elapsed()
                        ),
                    )
                }
            }
        })
    }

    /// Closes the connection from the client's side: sends a Close with
    /// `code` and `reason`, waits for the server's answer (data messages
    /// it sent before reading our Close are collected), then for the
    /// server to close the TCP connection, and then for the server to have
    /// released the connection (so it has left the registry and its
    /// groups, and counts no longer include it), each within the timeout;
    /// and reports how it went. It does not panic: assert on the report.
    ///
    /// If the server had closed first (its Close was received), nothing
    /// is sent and the report's `answer` is the server's Close.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().fallback(wharf::handlers![echo])).await;
    /// let mut client = server.connect("/").await.expect("upgrade");
    /// let report = client.close(1000, "bye").await;
    /// assert!(report.is_clean(), "{report:?}");
    /// # });
    /// ```
    pub fn close(
        &mut self,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> impl Future<Output = CloseReport> + '_ {
        let frame = WsCloseFrame {
            code: WsCloseCode::from(code.into().as_u16()),
            reason: Utf8Bytes::from(reason),
        };
        Box::pin(async move {
            let deadline = self.deadline();
            let mut report = CloseReport {
                answer: None,
                received: Vec::new(),
                tcp_closed: false,
            };
            if self.close_received.is_none() && !self.ended && !self.close_sent {
                let limit = deadline.saturating_duration_since(Instant::now());
                match rt::timeout(limit, self.ws.close(Some(frame))).await {
                    None => return report,
                    Some(Ok(())) => self.close_sent = true,
                    // The socket failed: the server is gone.
                    Some(Err(_)) => {
                        self.ended = true;
                        report.tcp_closed = true;
                        return report;
                    }
                }
            }
            loop {
                match self.next_until(deadline).await {
                    Next::Got(Received::Close(frame)) => {
                        report.answer = Some(frame);
                        break;
                    }
                    Next::Got(Received::Eof) => {
                        report.answer = self.close_received.clone();
                        report.tcp_closed = true;
                        self.server_released().await;
                        return report;
                    }
                    Next::Got(data) => report.received.push(data),
                    Next::Nothing | Next::Broken(_) => return report,
                }
            }
            let deadline = self.deadline();
            report.tcp_closed = matches!(self.next_until(deadline).await, Next::Got(Received::Eof));
            if report.tcp_closed {
                self.server_released().await;
            }
            report
        })
    }

    /// Waits, within the timeout, until the server's side of this
    /// connection has ended: the TCP end comes before the server takes
    /// the connection out of its registry.
    async fn server_released(&self) {
        if let Some(handle) = &self.server_side {
            let _ = rt::timeout(self.timeout, handle.closed()).await;
        }
    }

    /// When a wait starting now runs out.
    fn deadline(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.timeout).unwrap_or(now)
    }

    /// Receives the next event and hands it to `pick`; fails naming
    /// `expected` and what arrived when `pick` declines it.
    async fn expect<T>(
        &mut self,
        call: Call,
        expected: &str,
        pick: impl FnOnce(Received) -> Option<T>,
    ) -> T {
        let deadline = self.deadline();
        let next = self.next_until(deadline).await;
        let got = self.describe(&next);
        if let Next::Got(received) = next {
            if let Some(out) = pick(received) {
                return out;
            }
        }
        self.fail(call, format_args!("expected {expected}, got {got}"))
    }

    /// The next message read as JSON for `T`, with how it arrived.
    #[cfg(feature = "json")]
    async fn next_json<T: serde::de::DeserializeOwned>(&mut self, call: Call) -> (T, Received) {
        let expected = format!("JSON for {}", std::any::type_name::<T>());
        let received = self
            .expect(call, &expected, |received| match received {
                Received::Text(_) | Received::Binary(_) => Some(received),
                _ => None,
            })
            .await;
        let parsed = match &received {
            Received::Text(text) => serde_json::from_str(text),
            Received::Binary(data) => serde_json::from_slice(data),
            _ => unreachable!("picked a message"),
        };
        match parsed {
            Ok(value) => (value, received),
            Err(err) => self.fail(
                call,
                format_args!("expected {expected}, got {received}, which is not: {err}"),
            ),
        }
    }

    /// How a failure message shows what arrived.
    fn describe(&self, next: &Next) -> String {
        match next {
            Next::Got(Received::Eof) => match &self.close_received {
                Some(frame) => format!("EOF (the connection had ended with {frame})"),
                None => Received::Eof.to_string(),
            },
            Next::Got(received) => received.to_string(),
            Next::Nothing => format!("nothing within {:?}", self.timeout),
            Next::Broken(err) => format!("a broken stream ({err})"),
        }
    }

    /// Fails the test: the call, where it was made, the client, and `what`.
    fn fail(&self, call: Call, what: fmt::Arguments<'_>) -> ! {
        panic!("{} at {}, on {}: {what}", call.op, call.at, self.path)
    }

    /// Sends `frame` under the timeout, failing the test if it cannot be.
    async fn send_frame(&mut self, call: Call, frame: WsMessage) {
        if self.close_sent {
            self.fail(call, format_args!("cannot send after close()"));
        }
        let what = match &frame {
            WsMessage::Text(text) => Received::Text(text.as_str().to_owned()),
            WsMessage::Binary(data) => Received::Binary(data.clone()),
            _ => unreachable!("only data messages are sent this way"),
        };
        match rt::timeout(self.timeout, self.ws.send(frame)).await {
            Some(Ok(())) => {}
            Some(Err(err)) => {
                let state = match &self.close_received {
                    Some(close) => format!(" (the server had closed the connection: {close})"),
                    None => String::new(),
                };
                self.fail(call, format_args!("{what} could not be sent: {err}{state}"))
            }
            None => self.fail(
                call,
                format_args!(
                    "{what} was not sent within {:?} (the server is not reading)",
                    self.timeout
                ),
            ),
        }
    }

    /// The next event, waiting until `deadline` at most.
    async fn next_until(&mut self, deadline: Instant) -> Next {
        if let Some(received) = self.pending.pop_front() {
            return Next::Got(received);
        }
        if self.ended {
            return Next::Got(Received::Eof);
        }
        let limit = deadline.saturating_duration_since(Instant::now());
        let read = async {
            loop {
                match self.read_frame().await {
                    Frame::Next(next) => return next,
                    // An answer to the ping sent when connecting, late.
                    Frame::Pong => {}
                }
            }
        };
        rt::timeout(limit, read).await.unwrap_or(Next::Nothing)
    }

    /// Reads the stream up to the next event. Pings are answered (the
    /// next read flushes tungstenite's pong); the server's Close is
    /// answered at once.
    async fn read_frame(&mut self) -> Frame {
        loop {
            let item = self.ws.next().await;
            let err = match item {
                Some(Ok(WsMessage::Text(text))) => {
                    return Frame::Next(Next::Got(Received::Text(text.as_str().to_owned())))
                }
                Some(Ok(WsMessage::Binary(data))) => {
                    return Frame::Next(Next::Got(Received::Binary(data)))
                }
                Some(Ok(WsMessage::Pong(payload))) if payload == HELLO => return Frame::Pong,
                Some(Ok(WsMessage::Close(frame))) => {
                    let frame = CloseFrame::from_ws(frame);
                    if !self.close_sent {
                        // The server closed first: tungstenite queued the
                        // echo; send it now rather than on the next read.
                        let _ = self.ws.flush().await;
                    }
                    self.close_received = Some(frame.clone());
                    return Frame::Next(Next::Got(Received::Close(frame)));
                }
                Some(Ok(_)) => continue,
                None => None,
                Some(Err(err)) => Some(err),
            };
            self.ended = true;
            return Frame::Next(match err {
                None
                | Some(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Io(_)
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => Next::Got(Received::Eof),
                Some(err) => Next::Broken(err.to_string()),
            });
        }
    }
}
