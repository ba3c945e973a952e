//! Admission: who may connect at all. The per-IP connection rate and the
//! per-IP and overall connection limits answer at accept time (429, 503)
//! before reading a byte of the request; the Origin allow-list answers 403;
//! a route's upgrade handler may refuse with its own status. Every refused
//! socket is counted in the server's stats by reason.
//!
//! Clients from a second address bind their socket to 127.0.0.2 (the whole
//! 127.0.0.0/8 range is loopback on Linux) before connecting.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{ConnectRate, Handler, RejectReason, Rejection, Request, Server};
use wharf_test_support::*;

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const THIRD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// An upgrade request for `path` with extra header lines.
fn request_with(path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = upgrade_request(path);
    request.truncate(request.len() - 2); // the blank line
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Sends `request` on a fresh connection from `from`; returns the response
/// head and the stream (positioned after the head).
async fn exchange_from(from: IpAddr, server: &TestServer, request: &str) -> (String, TcpStream) {
    let mut stream = connect_from(from, server.addr).await;
    within("write request", stream.write_all(request.as_bytes()))
        .await
        .expect("write request");
    let head = read_response_head(&mut stream)
        .await
        .expect("a response head");
    (head, stream)
}

/// Connects from `from` and sends nothing: an accept-time refusal must
/// arrive anyway, before any request. Returns the head; checks the server
/// then ends the stream.
async fn refused_without_request(from: IpAddr, server: &TestServer) -> String {
    let mut stream = connect_from(from, server.addr).await;
    let head = read_response_head(&mut stream)
        .await
        .expect("a refusal sent before any request");
    wait_until_dropped(&mut stream, STEP).await;
    head
}

fn has_header(head: &str, name: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

/// A tungstenite client connected from `from`, checked with one echo.
async fn ws_from(from: IpAddr, server: &TestServer, path: &str) -> Client {
    let tcp = connect_from(from, server.addr).await;
    let (mut client, _) = within(
        "websocket handshake",
        async_tungstenite::client_async(server.url(path), tcp),
    )
    .await
    .unwrap_or_else(|err| panic!("upgrade from {from} refused: {err}"));
    assert_echo(&mut client, "hello").await;
    client
}

/// Closes a tungstenite client with 1000 and waits for the end of the
/// stream.
async fn close_client(mut client: Client) {
    within("client close", client.close(None))
        .await
        .expect("send the Close");
    loop {
        match within("end of stream", client.next()).await {
            Some(Ok(WsMessage::Close(_))) => {}
            None => return,
            other => panic!("expected the echo of our Close, got {other:?}"),
        }
    }
}

/// Upgrades from `from`, retrying while the answer is `refusal` (a slot
/// freed by a closed connection is released just after its close handler
/// returns, which the test cannot observe). Returns the upgraded peer and
/// how many refusals came first.
async fn upgrade_eventually(from: IpAddr, server: &TestServer, refusal: u16) -> (RawPeer, u64) {
    let mut refused = 0;
    loop {
        let (head, stream) = exchange_from(from, server, &upgrade_request("/")).await;
        match status(&head) {
            101 => return (RawPeer::upgraded(stream), refused),
            code if code == refusal && refused < 1000 => {
                refused += 1;
                async_std::task::sleep(Duration::from_millis(1)).await;
            }
            _ => panic!("expected 101 once a slot was free, got {head}"),
        }
    }
}

/// Starts `server` with a recording echo on `/`.
async fn start_recording(server: Server) -> (TestServer, Recorded) {
    let (echo, recorded) = recording_echo();
    (start(server.route("/", echo)).await, recorded)
}

#[async_std::test]
async fn connections_beyond_the_rate_are_refused_with_429_per_ip() {
    // A burst of 3, refilled at one token every 100 s: nothing refills
    // during the test.
    let (running, recorded) =
        start_recording(Server::new().connect_rate(ConnectRate::new(0.01, 3))).await;
    let server = &running;

    // A client that connects and disconnects in a loop: the burst is served.
    for _ in 0..3 {
        assert_serves_fresh_client(server, "/").await;
    }
    // Beyond it: 429 with Retry-After, sent before the request was even
    // written (no upgrade work).
    for _ in 0..2 {
        let head = refused_without_request(HOME, server).await;
        assert_eq!(status(&head), 429, "{head}");
        assert!(has_header(&head, "Retry-After"), "{head}");
    }
    // Another address has its own bucket.
    let other = ws_from(OTHER, server, "/").await;
    close_client(other).await;

    recorded.assert_all_closed().await;
    assert_eq!(recorded.tally.connects(), 4);
    let stats = running.handle.stats();
    assert_eq!(stats.rejections, vec![(RejectReason::RateLimited, 2)]);
    assert_eq!(stats.rejected(RejectReason::RateLimited), 2);
    assert_eq!(stats.accepted, 6);
}

#[async_std::test]
async fn connections_beyond_the_per_ip_limit_are_refused_with_429() {
    let (running, recorded) = start_recording(Server::new().max_connections_per_ip(2)).await;
    let server = &running;

    let first = ws_from(HOME, server, "/").await;
    let _second = ws_from(HOME, server, "/").await;
    let head = refused_without_request(HOME, server).await;
    assert_eq!(status(&head), 429, "{head}");
    assert!(has_header(&head, "Retry-After"), "{head}");

    // The limit is per address.
    let other = ws_from(OTHER, server, "/").await;

    // Once one of the two ends, the address may connect again.
    close_client(first).await;
    recorded.next_closed().await;
    let (peer, retries) = upgrade_eventually(HOME, server, 429).await;
    peer.close_cleanly().await;
    close_client(other).await;

    assert_eq!(
        running.handle.stats().rejections,
        vec![(RejectReason::PerIpLimit, 1 + retries)]
    );
}

#[async_std::test]
async fn connections_beyond_max_connections_are_refused_with_503() {
    let (running, recorded) = start_recording(Server::new().max_connections(2)).await;
    let server = &running;

    let first = ws_from(HOME, server, "/").await;
    let _second = ws_from(OTHER, server, "/").await;
    // The overall limit counts every address.
    for from in [THIRD, HOME] {
        let head = refused_without_request(from, server).await;
        assert_eq!(status(&head), 503, "{head}");
    }

    close_client(first).await;
    recorded.next_closed().await;
    let (peer, retries) = upgrade_eventually(THIRD, server, 503).await;
    peer.close_cleanly().await;

    assert_eq!(
        running.handle.stats().rejections,
        vec![(RejectReason::MaxConnections, 2 + retries)]
    );
    eventually("one connection left", || running.handle.stats().active == 1).await;
}

/// A default port or a trailing slash is the same origin, in the list and
/// in the request: `https://chat.example:443` is `https://chat.example`.
#[async_std::test]
async fn a_default_port_is_the_same_origin() {
    let (running, recorded) = start_recording(
        Server::new()
            .allow_origin("https://chat.example:443/")
            .allow_origin("http://LOCALHOST"),
    )
    .await;
    let server = &running;
    for (origin, expected) in [
        ("https://chat.example", 101),
        ("https://chat.example:443", 101),
        ("https://CHAT.example/", 101),
        ("http://localhost:80", 101),
        ("http://localhost", 101),
        ("https://chat.example:8443", 403),
        ("http://chat.example", 403),
        ("null", 403),
        ("not an origin", 403),
    ] {
        let request = request_with("/", &[("Origin", origin)]);
        let (head, mut stream) = exchange_from(HOME, server, &request).await;
        assert_eq!(status(&head), expected, "{origin}: {head}");
        if expected == 101 {
            RawPeer::upgraded(stream).close_cleanly().await;
        } else {
            wait_until_dropped(&mut stream, STEP).await;
        }
    }
    recorded.assert_all_closed().await;
    assert_eq!(running.handle.stats().rejected(RejectReason::Origin), 4);
}

#[async_std::test]
async fn only_allowed_origins_may_upgrade() {
    let (running, recorded) = start_recording(Server::new().allow_origin("http://a.example")).await;
    let server = &running;

    let upgrade = |headers: &'static [(&'static str, &'static str)]| {
        let request = request_with("/", headers);
        async move {
            let (head, stream) = exchange_from(HOME, server, &request).await;
            (status(&head), head, stream)
        }
    };

    // Allowed: the listed origin (compared without case), and no Origin at
    // all (not a browser).
    for headers in [
        &[("Origin", "http://a.example")][..],
        &[("Origin", "HTTP://A.Example")][..],
        &[][..],
    ] {
        let (code, head, stream) = upgrade(headers).await;
        assert_eq!(code, 101, "{headers:?}: {head}");
        RawPeer::upgraded(stream).close_cleanly().await;
    }

    // Rejected: another host, another port, two Origin headers.
    for headers in [
        &[("Origin", "http://b.example")][..],
        &[("Origin", "http://a.example:8080")][..],
        &[
            ("Origin", "http://a.example"),
            ("Origin", "http://b.example"),
        ][..],
    ] {
        let (code, head, mut stream) = upgrade(headers).await;
        assert_eq!(code, 403, "{headers:?}: {head}");
        wait_until_dropped(&mut stream, STEP).await;
    }

    recorded.assert_all_closed().await;
    assert_eq!(recorded.tally.connects(), 3);
    assert_eq!(
        running.handle.stats().rejections,
        vec![(RejectReason::Origin, 3)]
    );
}

/// Lets in only requests with `?token=secret`.
struct Gatekeeper {
    connects: Arc<AtomicUsize>,
}

impl Handler for Gatekeeper {
    async fn on_upgrade(&self, req: &Request) -> Result<(), Rejection> {
        match req.query("token") {
            Some("secret") => Ok(()),
            Some("legacy") => Err(Rejection::new(451, "not here\n")),
            // Not an error status: answered as 500.
            Some("confused") => Err(Rejection::new(200, "ok?\n")),
            _ => {
                Err(Rejection::unauthorized("token required\n")
                    .header("WWW-Authenticate", "Bearer"))
            }
        }
    }

    async fn on_connect(&self, _conn: &wharf::Conn) -> wharf::Result<()> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_std::test]
async fn the_upgrade_handler_refuses_with_its_own_status() {
    let connects = Arc::new(AtomicUsize::new(0));
    let running = start(Server::new().route(
        "/",
        Gatekeeper {
            connects: Arc::clone(&connects),
        },
    ))
    .await;
    let server = &running;

    let response = http_exchange(server.addr, &upgrade_request("/")).await;
    assert_eq!(http_status(&response), Some(401), "{response}");
    assert!(has_header(&response, "WWW-Authenticate"), "{response}");
    assert!(response.ends_with("\r\n\r\ntoken required\n"), "{response}");

    let response = http_exchange(server.addr, &upgrade_request("/?token=legacy")).await;
    assert_eq!(http_status(&response), Some(451), "{response}");
    let response = http_exchange(server.addr, &upgrade_request("/?token=confused")).await;
    assert_eq!(http_status(&response), Some(500), "{response}");

    // A path without a route is a different reason.
    let response = http_exchange(server.addr, &upgrade_request("/nowhere")).await;
    assert_eq!(http_status(&response), Some(404), "{response}");

    let (head, stream) = exchange_from(HOME, server, &upgrade_request("/?token=secret")).await;
    assert_eq!(status(&head), 101, "{head}");
    let mut peer = RawPeer::upgraded(stream);
    eventually("connect handler", || connects.load(Ordering::SeqCst) == 1).await;
    peer.send_close(1000, b"").await;
    assert_eq!(peer.read_until_close().await.code, Some(1000));

    // The refused requests never reached the connect handler.
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert_eq!(
        running.handle.stats().rejections,
        vec![(RejectReason::Handler, 3), (RejectReason::NotFound, 1)]
    );
}

#[async_std::test]
async fn a_refused_address_does_not_delay_others() {
    // While one address is refused, every other is served: the refusal
    // costs no request reading and holds no slot.
    let (running, recorded) =
        start_recording(Server::new().connect_rate(ConnectRate::new(0.01, 1))).await;
    let server = &running;
    let first = ws_from(HOME, server, "/").await;
    for _ in 0..20 {
        let head = refused_without_request(HOME, server).await;
        assert_eq!(status(&head), 429, "{head}");
    }
    // A refused socket that keeps writing is still answered and closed.
    let mut stream = connect_from(HOME, server.addr).await;
    let _ = within("write", stream.write_all(upgrade_request("/").as_bytes())).await;
    let mut response = Vec::new();
    let _ = within("response", stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert_eq!(http_status(&response), Some(429), "{response}");

    let other = ws_from(OTHER, server, "/").await;
    close_client(other).await;
    close_client(first).await;
    recorded.assert_all_closed().await;
    assert_eq!(
        running.handle.stats().rejected(RejectReason::RateLimited),
        21
    );
}

#[async_std::test]
async fn the_rate_refills_over_time() {
    // One connection at once, ten a second: after the burst, the next is
    // admitted once a tenth of a second has refilled a token.
    let (running, _recorded) =
        start_recording(Server::new().connect_rate(ConnectRate::new(10.0, 1))).await;
    let server = &running;
    let started = Instant::now();
    let first = ws_from(HOME, server, "/").await;
    let head = refused_without_request(HOME, server).await;
    assert_eq!(status(&head), 429, "{head}");

    let (peer, retries) = upgrade_eventually(HOME, server, 429).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100),
        "a token refilled after only {elapsed:?}"
    );
    peer.close_cleanly().await;
    close_client(first).await;
    assert_eq!(
        running.handle.stats().rejections,
        vec![(RejectReason::RateLimited, 1 + retries)]
    );
}
