//! The HTTP side of a connection: what is refused before any upgrade (and
//! with which status), static pages, the fallback route, configuration
//! errors, the handshake timeout, and what the upgrade request tells the
//! handlers (path, query, headers, peer, subprotocol, id).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::future::join_all;
use futures_util::StreamExt;
use wharf::http::HeaderMap;
use wharf::{Conn, ConnId, Error, Handler, Message, Route, Server};
use wharf_test_support::*;

// ---- handlers ----

/// What a connect handler saw of the request that opened its connection.
#[derive(Debug, Clone)]
struct Seen {
    id: ConnId,
    path: String,
    peer: SocketAddr,
    token: Option<String>,
    pairs: Vec<(String, String)>,
    headers: HeaderMap,
    subprotocol: Option<String>,
}

/// Reports every connection it accepts and echoes messages.
struct Recorder {
    seen: Sender<Seen>,
}

impl Handler for Recorder {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let seen = Seen {
            id: conn.id(),
            path: conn.path().to_owned(),
            peer: conn.peer_addr(),
            token: conn.query("token").map(str::to_owned),
            pairs: conn.query_pairs().to_vec(),
            headers: conn.headers().clone(),
            subprotocol: conn.subprotocol().map(str::to_owned),
        };
        let _ = self.seen.send(seen).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }
}

fn recorder() -> (Recorder, Receiver<Seen>) {
    let (seen, rx) = unbounded();
    (Recorder { seen }, rx)
}

/// Answers every message with its tag, to tell routes apart.
struct Tag(&'static str);

impl Handler for Tag {
    async fn on_message(&self, conn: &Conn, _msg: Message) -> wharf::Result<()> {
        conn.text(self.0).await
    }
}

// ---- raw HTTP helpers ----

/// The headers of a valid upgrade request (the key is RFC 6455's sample).
const UPGRADE: &[(&str, &str)] = &[
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
];

/// An HTTP/1.1 request head.
fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out
}

/// The valid upgrade headers without `name`.
fn upgrade_without(name: &str) -> Vec<(&'static str, &'static str)> {
    UPGRADE
        .iter()
        .copied()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .collect()
}

/// The valid upgrade headers with `name` set to `value` (added if absent).
fn upgrade_with<'a>(name: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers: Vec<(&str, &str)> = upgrade_without(name);
    headers.push((name, value));
    headers
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn parse(raw: &str) -> Response {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head in {raw:?}"));
        assert!(
            head.starts_with("HTTP/1.1 "),
            "not an HTTP/1.1 response: {raw:?}"
        );
        let status = head[9..12]
            .parse()
            .unwrap_or_else(|_| panic!("bad status line in {raw:?}"));
        Response {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Every value of header `name` (case-insensitive).
    fn headers(&self, name: &str) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers(name);
        assert!(values.len() <= 1, "header {name} repeated in {}", self.head);
        values.first().copied()
    }

    /// Whether comma-separated header `name` lists `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Checks that `Content-Length` matches the body received.
    fn assert_length_matches(&self) {
        let len: usize = self
            .header("Content-Length")
            .unwrap_or_else(|| panic!("no Content-Length in {}", self.head))
            .parse()
            .expect("numeric Content-Length");
        assert_eq!(len, self.body.len(), "Content-Length vs body in {self:?}");
    }
}

/// Sends `bytes` and reads the response head; unless it is a 101, also
/// reads the body up to the end of the stream (the server closes after
/// every other answer). Returns the socket for further use after a 101.
async fn send_request(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> (TcpStream, Response) {
    within("http exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream
            .write_all(bytes.as_ref())
            .await
            .expect("write request");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // One byte at a time, so nothing after the head is consumed.
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read response head");
            assert!(
                n > 0,
                "closed before a complete response head: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let mut response = Response::parse(&String::from_utf8_lossy(&head));
        if response.status != 101 {
            let mut body = Vec::new();
            stream.read_to_end(&mut body).await.expect("read body");
            response.body = String::from_utf8_lossy(&body).into_owned();
        }
        (stream, response)
    })
    .await
}

/// The answer to `bytes`.
async fn answer(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> Response {
    send_request(addr, bytes).await.1
}

/// Sends `raw` and returns the answer, which must be a refusal.
async fn refused(server: &TestServer, raw: &str) -> Response {
    let response = answer(server.addr, raw).await;
    assert_ne!(response.status, 101, "upgraded instead of refused: {raw:?}");
    response.assert_length_matches();
    assert!(
        response.has_token("Connection", "close"),
        "a refusal closes the connection: {response:?}"
    );
    response
}

/// Performs an upgrade by hand; returns the socket and the response.
async fn raw_upgrade(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> (TcpStream, Response) {
    send_request(addr, bytes).await
}

/// Asserts no connect handler ran (the answer was given before any upgrade,
/// so nothing can still be on its way).
fn assert_no_connection(seen: &Receiver<Seen>) {
    if let Ok(seen) = seen.try_recv() {
        panic!("a connection was upgraded: {seen:?}");
    }
}

async fn ws_server() -> (TestServer, Receiver<Seen>) {
    let (handler, seen) = recorder();
    (start(Server::new().route("/ws", handler)).await, seen)
}

// ---- refusals before the upgrade ----

#[async_std::test]
async fn unknown_path_is_404_before_any_upgrade() {
    let (server, seen) = ws_server().await;
    for path in ["/nope", "/ws/", "/wsx", "/WS", "/ws/deeper?x=1"] {
        let response = refused(&server, &request("GET", path, UPGRADE)).await;
        assert_eq!(response.status, 404, "{path}: {response:?}");
        assert!(
            response.header("Sec-WebSocket-Accept").is_none(),
            "{response:?}"
        );
    }
    assert_no_connection(&seen);
    // The query string is not part of the route.
    let response = refused(&server, &request("GET", "/nope?to=/ws", UPGRADE)).await;
    assert_eq!(response.status, 404);
    let (_stream, response) = raw_upgrade(server.addr, &request("GET", "/ws?to=/x", UPGRADE)).await;
    assert_eq!(response.status, 101, "{response:?}");
}

#[async_std::test]
async fn plain_get_on_a_websocket_route_is_426() {
    let (server, seen) = ws_server().await;
    let response = refused(
        &server,
        &request(
            "GET",
            "/ws",
            &[("Host", "127.0.0.1"), ("Accept", "text/html")],
        ),
    )
    .await;
    assert_eq!(response.status, 426, "{response:?}");
    assert!(
        response.has_token("Upgrade", "websocket"),
        "426 must name the protocol to upgrade to: {response:?}"
    );
    assert!(!response.body.is_empty(), "426 explains itself");
    assert!(response.body.len() < 256, "short body: {:?}", response.body);
    assert_no_connection(&seen);
}

/// RFC 7230 section 6.7: "When Upgrade is sent, the sender MUST also send a
/// Connection header field that contains an "upgrade" connection option".
#[async_std::test]
async fn upgrade_required_lists_upgrade_in_connection() {
    let (server, _seen) = ws_server().await;
    let response = refused(&server, &request("GET", "/ws", &[("Host", "127.0.0.1")])).await;
    assert_eq!(response.status, 426);
    assert!(
        response.has_token("Connection", "upgrade"),
        "a response with Upgrade must list 'upgrade' in Connection: {response:?}"
    );
}

#[async_std::test]
async fn wrong_websocket_version_is_426_with_version_13() {
    let (server, seen) = ws_server().await;
    for version in ["8", "12", "14", "13, 8"] {
        let raw = request(
            "GET",
            "/ws",
            &upgrade_with("Sec-WebSocket-Version", version),
        );
        let response = refused(&server, &raw).await;
        assert_eq!(response.status, 426, "version {version}: {response:?}");
        assert_eq!(
            response.header("Sec-WebSocket-Version"),
            Some("13"),
            "{response:?}"
        );
    }
    assert_no_connection(&seen);
}

#[async_std::test]
async fn post_with_upgrade_headers_is_405() {
    let (server, seen) = ws_server().await;
    for method in ["POST", "PUT", "DELETE"] {
        let response = refused(&server, &request(method, "/ws", UPGRADE)).await;
        assert_eq!(response.status, 405, "{method}: {response:?}");
        // RFC 7231 6.5.5: a 405 MUST carry Allow.
        assert!(response.has_token("Allow", "GET"), "{response:?}");
    }
    assert_no_connection(&seen);
}

#[async_std::test]
async fn defective_upgrade_requests_are_400() {
    let (server, seen) = ws_server().await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing key", upgrade_without("Sec-WebSocket-Key")),
        ("empty key", upgrade_with("Sec-WebSocket-Key", "")),
        (
            "key not base64",
            upgrade_with("Sec-WebSocket-Key", "not a websocket key!!"),
        ),
        // Base64 of 15 bytes, then of 17: a key must be 16 bytes.
        (
            "short key",
            upgrade_with("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"),
        ),
        (
            "long key",
            upgrade_with("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA="),
        ),
        ("missing Connection", upgrade_without("Connection")),
        (
            "Connection without upgrade",
            upgrade_with("Connection", "keep-alive"),
        ),
    ];
    for (what, headers) in cases {
        let response = refused(&server, &request("GET", "/ws", &headers)).await;
        assert_eq!(response.status, 400, "{what}: {response:?}");
        assert!(!response.body.is_empty(), "{what}: a 400 says why");
    }
    // HTTP/1.0 cannot upgrade (RFC 6455 4.1: "at least 1.1").
    let raw = request("GET", "/ws", UPGRADE).replacen("HTTP/1.1", "HTTP/1.0", 1);
    let response = answer(server.addr, &raw).await;
    assert_eq!(response.status, 400, "HTTP/1.0: {response:?}");
    assert_no_connection(&seen);
}

/// RFC 7230 section 5.4: "A server MUST respond with a 400 (Bad Request)
/// status code to any HTTP/1.1 request message that lacks a Host header
/// field and to any request message that contains more than one Host header
/// field"; RFC 6455 4.2.1 lists Host among the required fields.
#[async_std::test]
async fn upgrade_without_exactly_one_host_is_400() {
    let (server, seen) = ws_server().await;
    let response = refused(&server, &request("GET", "/ws", &upgrade_without("Host"))).await;
    assert_eq!(response.status, 400, "no Host: {response:?}");
    let mut headers = UPGRADE.to_vec();
    headers.push(("Host", "example.com"));
    let response = refused(&server, &request("GET", "/ws", &headers)).await;
    assert_eq!(response.status, 400, "two Host fields: {response:?}");
    assert_no_connection(&seen);
}

#[async_std::test]
async fn header_tokens_and_names_are_case_insensitive() {
    let (server, seen) = ws_server().await;
    // Firefox sends `Connection: keep-alive, Upgrade`.
    let headers = [
        ("host", "127.0.0.1"),
        ("UPGRADE", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("SEC-WEBSOCKET-VERSION", "13"),
    ];
    let (_stream, response) = raw_upgrade(server.addr, &request("GET", "/ws", &headers)).await;
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(
        response.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    );
    assert!(response.has_token("Upgrade", "websocket"));
    assert!(response.has_token("Connection", "upgrade"));
    within("connect handler", seen.recv()).await.unwrap();
}

#[async_std::test]
async fn request_head_over_the_limit_is_431() {
    let (server, seen) = ws_server().await;
    // The documented default of `Server::max_request_bytes`: 8 KiB.

    let pad = "a".repeat(9 << 10);
    let mut headers = UPGRADE.to_vec();
    headers.push(("X-Pad", &pad));
    let response = refused(&server, &request("GET", "/ws", &headers)).await;
    assert_eq!(response.status, 431, "{response:?}");

    // Many small headers that add up past the limit.
    let names: Vec<String> = (0..400).map(|i| format!("X-Header-{i}")).collect();
    let mut headers = UPGRADE.to_vec();
    headers.extend(names.iter().map(|n| (n.as_str(), "value")));
    let response = refused(&server, &request("GET", "/ws", &headers)).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_no_connection(&seen);

    // Just under the limit is served.
    let pad = "a".repeat(7 << 10);
    let mut headers = UPGRADE.to_vec();
    headers.push(("X-Pad", &pad));
    let raw = request("GET", "/ws", &headers);
    assert!(raw.len() < 8 << 10);
    let (_stream, response) = raw_upgrade(server.addr, &raw).await;
    assert_eq!(response.status, 101, "{response:?}");
    let seen = within("connect handler", seen.recv()).await.unwrap();
    assert_eq!(seen.headers.get("x-pad").unwrap().len(), 7 << 10);
}

#[async_std::test]
async fn max_request_bytes_is_configurable() {
    let (handler, seen) = recorder();
    let server = start(Server::new().max_request_bytes(1024).route("/ws", handler)).await;
    let pad = "a".repeat(1100);
    let mut headers = UPGRADE.to_vec();
    headers.push(("X-Pad", &pad));
    let response = refused(&server, &request("GET", "/ws", &headers)).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_no_connection(&seen);
    // A normal request still fits.
    let (_stream, response) = raw_upgrade(server.addr, &request("GET", "/ws", UPGRADE)).await;
    assert_eq!(response.status, 101);
}

#[async_std::test]
async fn bytes_that_are_not_http_are_400() {
    let (server, seen) = ws_server().await;
    let inputs: [&[u8]; 4] = [
        b"hello world\r\n\r\n",
        // The start of a TLS ClientHello (someone speaking wss:// to ws://).
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /ws HTTP/9.9\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ];
    for input in inputs {
        let response = answer(server.addr, input).await;
        assert_eq!(response.status, 400, "{input:?}: {response:?}");
        response.assert_length_matches();
    }
    assert_no_connection(&seen);
}

// ---- pages and the fallback ----

#[async_std::test]
async fn static_page_answers_get_and_head() {
    const BODY: &str = "<!doctype html><title>chat</title><p>hello</p>\n";
    let (handler, _seen) = recorder();
    let server = start(Server::new().route("/ws", handler).page(
        "/",
        "text/html; charset=utf-8",
        BODY,
    ))
    .await;

    let get = answer(server.addr, &request("GET", "/", &[("Host", "127.0.0.1")])).await;
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.body, BODY);
    get.assert_length_matches();
    assert_eq!(get.header("Content-Type"), Some("text/html; charset=utf-8"));

    let head = answer(server.addr, &request("HEAD", "/", &[("Host", "127.0.0.1")])).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.body, "", "HEAD has no body");
    assert_eq!(
        head.header("Content-Length"),
        Some(BODY.len().to_string().as_str()),
        "HEAD reports the length GET would send"
    );
    assert_eq!(
        head.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );

    let post = answer(server.addr, &request("POST", "/", &[("Host", "127.0.0.1")])).await;
    assert_eq!(post.status, 405, "{post:?}");

    // A page path with a query string is the same page.
    let get = answer(
        server.addr,
        &request("GET", "/?v=2", &[("Host", "127.0.0.1")]),
    )
    .await;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, BODY);
}

#[async_std::test]
async fn fallback_serves_every_unclaimed_path() {
    let (handler, seen) = recorder();
    let server = start(
        Server::new()
            .route("/exact", Tag("route"))
            .page("/page", "text/plain", "page")
            .fallback(handler),
    )
    .await;

    for path in ["/", "/anything", "/deep/er/path", "/exact/sub"] {
        let mut client = connect(&server, &format!("{path}?token=t")).await;
        let seen = within("connect handler", seen.recv()).await.unwrap();
        assert_eq!(seen.path, path, "the path the client asked for");
        assert_eq!(seen.token.as_deref(), Some("t"));
        within("send", client.send(WsMessage::text("echo")))
            .await
            .unwrap();
        let reply = within("reply", client.next()).await.unwrap().unwrap();
        assert_eq!(reply, WsMessage::text("echo"), "fallback handler on {path}");
    }

    // Routes and pages keep their paths.
    let mut client = connect(&server, "/exact").await;
    within("send", client.send(WsMessage::text("x")))
        .await
        .unwrap();
    let reply = within("reply", client.next()).await.unwrap().unwrap();
    assert_eq!(reply, WsMessage::text("route"));
    let page = answer(
        server.addr,
        &request("GET", "/page", &[("Host", "127.0.0.1")]),
    )
    .await;
    assert_eq!((page.status, page.body.as_str()), (200, "page"));
    assert_no_connection(&seen);
}

// ---- configuration errors ----

#[async_std::test]
async fn bind_rejects_inconsistent_routes() {
    let cases: Vec<(&str, Server)> = vec![
        (
            "two routes on one path",
            Server::new().route("/a", Tag("1")).route("/a", Tag("2")),
        ),
        (
            "a mounted route and a route",
            Server::new()
                .mount(Route::new("/a", Tag("1")).subprotocols(["p"]))
                .route("/a", Tag("2")),
        ),
        (
            "a route and a page",
            Server::new()
                .route("/a", Tag("1"))
                .page("/a", "text/plain", "x"),
        ),
        (
            "two pages",
            Server::new()
                .page("/", "text/plain", "x")
                .page("/", "text/plain", "y"),
        ),
        (
            "route without a slash",
            Server::new().route("chat", Tag("1")),
        ),
        ("empty route path", Server::new().route("", Tag("1"))),
        (
            "page without a slash",
            Server::new().page("index.html", "text/html", "x"),
        ),
    ];
    for (what, server) in cases {
        let result = within("bind", server.bind("127.0.0.1:0")).await;
        match result {
            Err(Error::Config { setting, reason }) => {
                assert_eq!(setting, "route", "{what}: {reason}");
                assert!(!reason.is_empty(), "{what}");
            }
            other => panic!("{what}: expected Error::Config, got {other:?}"),
        }
    }
    // Distinct paths bind.
    let ok = within(
        "bind",
        Server::new()
            .route("/a", Tag("1"))
            .route("/b", Tag("2"))
            .page("/", "text/plain", "x")
            .bind("127.0.0.1:0"),
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

// ---- the handshake timeout ----

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// How late after the timeout the drop may come on a loaded test machine.
const LATE: Duration = Duration::from_secs(3);

/// Connects, writes `trickle` (all at once, or a byte every `pace`), and
/// returns how long after the connect the server dropped the socket; fails
/// if the server answered.
async fn time_until_dropped(addr: SocketAddr, trickle: Vec<u8>, pace: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = within("tcp connect", TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    let mut writer = stream.clone();
    let writing = async_std::task::spawn(async move {
        // Pacing a slow client, not waiting for an event: bounded by the
        // length of `trickle`.
        for chunk in trickle.chunks(if pace.is_zero() {
            trickle.len().max(1)
        } else {
            1
        }) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
            if !pace.is_zero() {
                async_std::task::sleep(pace).await;
            }
        }
    });
    let mut buf = [0u8; 256];
    let read = within_for(
        HANDSHAKE_TIMEOUT + LATE,
        "dropped by the server",
        stream.read(&mut buf),
    )
    .await;
    let elapsed = started.elapsed();
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!(
            "expected the socket to be dropped, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
    within("writer", writing).await;
    elapsed
}

#[async_std::test]
async fn silent_and_slow_clients_are_dropped_after_the_handshake_timeout() {
    let (handler, seen) = recorder();
    let server = start(
        Server::new()
            .upgrade_timeout(HANDSHAKE_TIMEOUT)
            .route("/ws", handler),
    )
    .await;
    // An upgraded connection made first must outlive the handshake timeout.
    let mut upgraded = connect(&server, "/ws").await;
    within("connect handler", seen.recv()).await.unwrap();

    let half = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".to_vec();
    // A whole request, one byte every 40 ms: about 6 s to send in full,
    // so the timeout (total, not per read) must cut it off.
    let slow = request("GET", "/ws", UPGRADE).into_bytes();
    let times = join_all([
        time_until_dropped(server.addr, Vec::new(), Duration::ZERO),
        time_until_dropped(server.addr, half, Duration::ZERO),
        time_until_dropped(server.addr, slow, Duration::from_millis(40)),
    ])
    .await;
    for (what, elapsed) in ["silent", "half request", "trickling"].iter().zip(times) {
        // The server's clock starts at accept, after our connect began.
        assert!(
            elapsed >= HANDSHAKE_TIMEOUT,
            "{what} client dropped after {elapsed:?}, before the {HANDSHAKE_TIMEOUT:?} timeout"
        );
        assert!(
            elapsed < HANDSHAKE_TIMEOUT + LATE,
            "{what} client dropped only after {elapsed:?}"
        );
    }
    assert_no_connection(&seen);

    // The upgraded connection is still served, well past the timeout.
    within("send", upgraded.send(WsMessage::text("still here")))
        .await
        .unwrap();
    let echo = within("echo", upgraded.next()).await.unwrap().unwrap();
    assert_eq!(echo, WsMessage::text("still here"));
    // And new clients still get in.
    let _client = connect(&server, "/ws").await;
    within("connect handler", seen.recv()).await.unwrap();
}

// ---- what the handlers see ----

#[async_std::test]
async fn request_data_reaches_the_handlers() {
    let (handler, seen) = recorder();
    let server = start(Server::new().route("/q", handler)).await;
    let url = server
        .url("/q?token=s%20e+c&name=%C3%A9t%C3%A9&empty=&flag&token=second&a%26b=c%3Dd&pct=100%25");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Wharf-Test", HeaderValue::from_static("hello"));
    req.headers_mut()
        .append("X-Multi", HeaderValue::from_static("one"));
    req.headers_mut()
        .append("X-Multi", HeaderValue::from_static("two"));
    let tcp = within("tcp connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let (_client, response) = within("handshake", async_tungstenite::client_async(req, tcp))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);

    let seen = within("connect handler", seen.recv()).await.unwrap();
    assert_eq!(seen.path, "/q");
    assert_eq!(seen.token.as_deref(), Some("s e c"), "first value, decoded");
    let pairs: Vec<(&str, &str)> = seen
        .pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("token", "s e c"),
            ("name", "été"),
            ("empty", ""),
            ("flag", ""),
            ("token", "second"),
            ("a&b", "c=d"),
            ("pct", "100%"),
        ]
    );
    assert_eq!(seen.headers.get("x-wharf-test").unwrap(), "hello");
    let multi: Vec<&str> = seen
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(
        seen.headers.get("host").unwrap(),
        &server.addr.to_string(),
        "Host as the client sent it"
    );
    assert_eq!(seen.headers.get("sec-websocket-version").unwrap(), "13");
    assert_eq!(seen.peer.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(seen.peer, local, "peer_addr is the client's socket");
    assert_eq!(seen.subprotocol, None);
}

#[async_std::test]
async fn without_a_query_there_are_no_pairs() {
    let (handler, seen) = recorder();
    let server = start(Server::new().route("/q", handler)).await;
    let _a = connect(&server, "/q").await;
    let seen_a = within("connect handler", seen.recv()).await.unwrap();
    assert!(seen_a.pairs.is_empty());
    assert_eq!(seen_a.token, None);
    let _b = connect(&server, "/q?").await;
    let seen_b = within("connect handler", seen.recv()).await.unwrap();
    assert_eq!(seen_b.path, "/q");
    assert!(seen_b.pairs.is_empty());
}

/// `/p` speaks two subprotocols, `/plain` none; both report to one channel.
async fn subprotocol_server() -> (TestServer, Receiver<Seen>) {
    let (with, seen) = recorder();
    let plain = Recorder {
        seen: with.seen.clone(),
    };
    let server = start(
        Server::new()
            .mount(Route::new("/p", with).subprotocols(["chat.v2", "chat.v1"]))
            .route("/plain", plain),
    )
    .await;
    (server, seen)
}

#[async_std::test]
async fn subprotocol_is_the_first_offered_that_the_route_supports() {
    let (server, seen) = subprotocol_server().await;

    // async-tungstenite's client, offering two the route knows.
    for (offer, chosen) in [
        ("chat.v1, chat.v2", "chat.v1"),
        ("chat.v2, chat.v1", "chat.v2"),
        ("mqtt, chat.v2", "chat.v2"),
    ] {
        let mut req = server.url("/p").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(offer));
        let tcp = within("tcp connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        let (_client, response) = within("handshake", async_tungstenite::client_async(req, tcp))
            .await
            .unwrap_or_else(|e| panic!("offer {offer}: {e}"));
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            chosen,
            "offer {offer}"
        );
        let seen = within("connect handler", seen.recv()).await.unwrap();
        assert_eq!(seen.subprotocol.as_deref(), Some(chosen), "offer {offer}");
    }

    // The offer split over two header lines (RFC 6455 11.3.4).
    let mut headers = UPGRADE.to_vec();
    headers.push(("Sec-WebSocket-Protocol", "mqtt"));
    headers.push(("Sec-WebSocket-Protocol", "chat.v1"));
    let (_stream, response) = raw_upgrade(server.addr, &request("GET", "/p", &headers)).await;
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(response.header("Sec-WebSocket-Protocol"), Some("chat.v1"));
    let got = within("connect handler", seen.recv()).await.unwrap();
    assert_eq!(got.subprotocol.as_deref(), Some("chat.v1"));
}

#[async_std::test]
async fn no_common_subprotocol_upgrades_without_one() {
    let (server, seen) = subprotocol_server().await;
    let cases = [
        ("/p", Some("mqtt, chat.v3")),
        // Matching is exact: no prefix or case folding.
        ("/p", Some("chat, CHAT.V1")),
        ("/p", None),
        ("/plain", Some("chat.v1")),
    ];
    for (path, offer) in cases {
        let mut headers = UPGRADE.to_vec();
        if let Some(offer) = offer {
            headers.push(("Sec-WebSocket-Protocol", offer));
        }
        let (_stream, response) = raw_upgrade(server.addr, &request("GET", path, &headers)).await;
        assert_eq!(response.status, 101, "{path} {offer:?}: {response:?}");
        assert_eq!(
            response.header("Sec-WebSocket-Protocol"),
            None,
            "{path} {offer:?}: no protocol in common, none in the 101"
        );
        let got = within("connect handler", seen.recv()).await.unwrap();
        assert_eq!(got.path, path);
        assert_eq!(got.subprotocol, None, "{path} {offer:?}");
    }
}

#[async_std::test]
async fn a_frame_sent_right_behind_the_request_is_not_lost() {
    let (server, seen) = ws_server().await;
    let mut bytes = request("GET", "/ws", UPGRADE).into_bytes();
    bytes.extend(frame(OP_TEXT, true, b"eager", true));
    let (stream, response) = raw_upgrade(server.addr, &bytes).await;
    assert_eq!(response.status, 101);
    within("connect handler", seen.recv()).await.unwrap();
    let mut stream = stream;
    let mut echo = [0u8; 7];
    within("echo", stream.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"\x81\x05eager");
}

#[async_std::test]
async fn ids_are_unique_across_connections() {
    let (server, seen) = ws_server().await;
    let mut ids = HashSet::new();
    // Sequential connections, each closed before the next: ids are not
    // reused once a connection is gone.
    for _ in 0..20 {
        let mut client = connect(&server, "/ws").await;
        let got = within("connect handler", seen.recv()).await.unwrap();
        assert!(ids.insert(got.id), "id {} reused", got.id);
        within("close", client.close(None)).await.unwrap();
        while within("drain", client.next()).await.is_some() {}
    }
    // Concurrent connections.
    let clients = join_all((0..30).map(|_| connect(&server, "/ws"))).await;
    for _ in 0..clients.len() {
        let got = within("connect handler", seen.recv()).await.unwrap();
        assert!(ids.insert(got.id), "id {} shared", got.id);
    }
    assert_eq!(ids.len(), 50);
    // The registry knows them by the same ids.
    eventually("only the concurrent ones live", || {
        server.registry.count() == 30
    })
    .await;
    let live: HashSet<ConnId> = server.registry.handles().iter().map(|h| h.id()).collect();
    assert_eq!(live.len(), 30);
    assert!(live.is_subset(&ids));
    drop(clients);
}
