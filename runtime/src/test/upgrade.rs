//! The client side of the opening handshake (RFC 6455 section 4.1), and
//! plain HTTP requests: what the test client writes before any frame, and
//! how it reads the server's answer.
//!
//! The request is written and the answer read here rather than by
//! tungstenite's client, so that a refused upgrade keeps its whole body
//! and headers, any header can be sent (even a wrong one, to test a
//! refusal), and a server that picks no subprotocol is reported rather than
//! refused. Once the `101` is read, the socket goes to async-tungstenite.
//! This module never reads a frame.

use std::fmt;
use std::net::SocketAddr;

use async_tungstenite::tungstenite::handshake::client::generate_key;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_util::{AsyncReadExt, AsyncWriteExt};

use crate::http::{HeaderMap, HeaderName, HeaderValue};
use crate::rt::TcpStream;

/// Largest response head the client reads.
const MAX_HEAD: usize = 64 << 10;

/// A server's HTTP answer, read whole: head and body.
///
/// [`TestServer::get`](super::TestServer::get) returns one.
///
/// # Examples
///
/// ```
/// # async_std::task::block_on(async {
/// use wharf::test::TestServer;
///
/// let server = TestServer::start(wharf::Server::new().page("/", "text/plain", "hello")).await;
/// let page = server.get("/").await;
/// assert_eq!(page.status(), 200);
/// assert_eq!(page.header("content-type"), Some("text/plain"));
/// assert_eq!(page.body(), "hello");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct HttpResponse {
    status: u16,
    reason: String,
    headers: HeaderMap,
    body: String,
}

impl HttpResponse {
    /// The status code.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_eq!(server.get("/nowhere").await.status(), 404);
    /// # });
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase of the status line (`"Not Found"`).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_eq!(server.get("/nowhere").await.reason(), "Not Found");
    /// # });
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Every header of the response.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let response = server.get("/nowhere").await;
    /// assert!(response.headers().contains_key("content-length"));
    /// # });
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive), if it is
    /// present and text.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// assert_eq!(server.get("/nowhere").await.header("Connection"), Some("close"));
    /// # });
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body, decoded as UTF-8 (invalid bytes replaced).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new().page("/", "text/plain", "hi")).await;
    /// assert_eq!(server.get("/").await.body(), "hi");
    /// # });
    /// ```
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.reason)?;
        if !self.body.is_empty() {
            write!(f, " with the body {:?}", self.body)?;
        }
        Ok(())
    }
}

/// The server answered an upgrade request with an HTTP response instead
/// of a `101`: what [`TestServer::connect`](super::TestServer::connect)
/// returns as its error. It carries the status, headers and body.
///
/// # Examples
///
/// ```
/// # async_std::task::block_on(async {
/// use wharf as ws;
/// use ws::test::TestServer;
/// use ws::{Rejection, Request};
///
/// #[ws::on("upgrade")]
/// async fn deny(_req: &Request) -> Result<(), Rejection> {
///     Err(Rejection::unauthorized("no token\n"))
/// }
///
/// let server = TestServer::start(ws::Server::new().route("/", ws::handlers![deny])).await;
/// let err = server.connect("/").await.unwrap_err();
/// assert_eq!(err.status(), 401);
/// assert_eq!(err.body(), "no token\n");
/// assert_eq!(err.to_string(), "the upgrade was rejected: HTTP 401 Unauthorized with the body \"no token\\n\"");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct UpgradeRejected {
    response: HttpResponse,
}

impl UpgradeRejected {
    /// The status code (`401`).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert_eq!(err.status(), 404);
    /// # });
    /// ```
    pub fn status(&self) -> u16 {
        self.response.status
    }

    /// The reason phrase of the status line (`"Unauthorized"`).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert_eq!(err.reason(), "Not Found");
    /// # });
    /// ```
    pub fn reason(&self) -> &str {
        &self.response.reason
    }

    /// Every header of the response.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert!(!err.headers().contains_key("sec-websocket-accept"));
    /// # });
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.response.headers
    }

    /// The first value of header `name` (case-insensitive), if it is
    /// present and text.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert_eq!(err.header("connection"), Some("close"));
    /// # });
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.header(name)
    }

    /// The body, decoded as UTF-8 (invalid bytes replaced).
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let err = server.connect("/nowhere").await.unwrap_err();
    /// assert!(!err.body().is_empty());
    /// # });
    /// ```
    pub fn body(&self) -> &str {
        &self.response.body
    }

    /// The whole response.
    ///
    /// # Examples
    ///
    /// ```
    /// # async_std::task::block_on(async {
    /// # let server = wharf::test::TestServer::start(wharf::Server::new()).await;
    /// let response = server.connect("/nowhere").await.unwrap_err().into_response();
    /// assert_eq!(response.status(), 404);
    /// # });
    /// ```
    pub fn into_response(self) -> HttpResponse {
        self.response
    }
}

impl fmt::Display for UpgradeRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the upgrade was rejected: {}", self.response)
    }
}

impl std::error::Error for UpgradeRejected {}

/// What an upgrade request came to.
#[allow(clippy::large_enum_variant)] // made once per connect and taken apart at once
pub(super) enum Upgraded {
    /// A `101`: the WebSocket is open.
    Open {
        ws: WebSocketStream<TcpStream>,
        /// The headers of the `101`.
        headers: HeaderMap,
        /// The subprotocol the server picked, if any.
        subprotocol: Option<String>,
        local_addr: SocketAddr,
    },
    /// Any other answer.
    Rejected(UpgradeRejected),
}

/// Performs the opening handshake of `path` on `addr`: the defaults
/// (`Host`, `Upgrade`, `Connection`, a fresh `Sec-WebSocket-Key`, version
/// 13), then `headers` (a name given there replaces its default), and the
/// offered `subprotocols`. `Err` says what went wrong when the server
/// gave no usable HTTP answer.
pub(super) async fn upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    subprotocols: &[String],
) -> Result<Upgraded, String> {
    let mut request = HeaderMap::new();
    for (name, value) in headers {
        request.append(name.clone(), value.clone());
    }
    let key = generate_key();
    let host = addr.to_string();
    for (name, value) in [
        ("host", host.as_str()),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", key.as_str()),
        ("sec-websocket-version", "13"),
    ] {
        if !request.contains_key(name) {
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.insert(name, value);
        }
    }
    if !subprotocols.is_empty() {
        let offered = HeaderValue::from_str(&subprotocols.join(", "))
            .map_err(|_| format!("the subprotocols {subprotocols:?} are not a valid header"))?;
        request.append("sec-websocket-protocol", offered);
    }
    let key = request
        .get("sec-websocket-key")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mut stream = exchange(addr, path, &request).await?;
    let (head, rest) = read_head(&mut stream).await?;
    if head.status != 101 {
        return Ok(Upgraded::Rejected(UpgradeRejected {
            response: read_body(&mut stream, head, rest).await,
        }));
    }
    let accept = head.headers.get("sec-websocket-accept");
    if accept.map(HeaderValue::as_bytes) != Some(derive_accept_key(&key).as_bytes()) {
        return Err(format!(
            "the server answered 101 with a wrong Sec-WebSocket-Accept ({accept:?})"
        ));
    }
    let subprotocol = head
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let local_addr = stream
        .local_addr()
        .map_err(|e| format!("the socket has no local address: {e}"))?;
    // A test client takes whatever the server sends: no size limits.
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await;
    Ok(Upgraded::Open {
        ws,
        headers: head.headers,
        subprotocol,
        local_addr,
    })
}

/// Sends a `GET` of `path` with `headers` and reads the whole answer.
pub(super) async fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    let mut request = HeaderMap::new();
    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    request.insert("host", host);
    request.insert("connection", HeaderValue::from_static("close"));
    let mut stream = exchange(addr, path, &request).await?;
    let (head, rest) = read_head(&mut stream).await?;
    Ok(read_body(&mut stream, head, rest).await)
}

/// Connects to `addr` and writes `GET path` with `headers`.
async fn exchange(addr: SocketAddr, path: &str, headers: &HeaderMap) -> Result<TcpStream, String> {
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} must start with '/'"));
    }
    let mut bytes = format!("GET {path} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("cannot write the request: {e}"))?;
    Ok(stream)
}

/// A parsed status line and headers.
struct Head {
    status: u16,
    reason: String,
    headers: HeaderMap,
}

/// Reads a response head; returns it with the bytes read past it.
async fn read_head(stream: &mut TcpStream) -> Result<(Head, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => {
                return Err("the server closed the connection without an answer".into())
            }
            Ok(0) => {
                return Err(format!(
                    "the server closed the connection inside its answer's head: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => n,
            Err(e) => return Err(format!("reading the server's answer failed: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut fields);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let mut headers = HeaderMap::new();
                for field in response.headers.iter() {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(field.name.as_bytes()),
                        HeaderValue::from_bytes(field.value),
                    ) {
                        headers.append(name, value);
                    }
                }
                let head = Head {
                    status: response.code.unwrap_or_default(),
                    reason: response.reason.unwrap_or_default().to_owned(),
                    headers,
                };
                return Ok((head, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "the server's answer has a head over {MAX_HEAD} bytes"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "the server's answer is not HTTP ({e}): {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
    }
}

/// Reads the body after `head`: `Content-Length` bytes, or up to the end of
/// the stream. A reset ends the body like the end of the stream does (a
/// server may close before reading the whole request).
async fn read_body(stream: &mut TcpStream, head: Head, mut body: Vec<u8>) -> HttpResponse {
    let length = head
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut chunk = [0u8; 4096];
    while length.is_none_or(|length| body.len() < length) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(length) = length {
        body.truncate(length);
    }
    HttpResponse {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
