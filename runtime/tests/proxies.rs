//! Clients behind trusted proxies: the client address from `Forwarded`,
//! `X-Forwarded-For` and PROXY protocol headers (v1, v2), what it drives
//! (`Conn::peer_addr`, the per-IP cap, the connect rate, the close
//! handler), and what is ignored or refused: the same headers from an
//! untrusted peer, and PROXY headers that are missing, truncated,
//! malformed or oversized.
//!
//! 127.0.0.1 plays the proxy (it is in the trusted list); a client from
//! 127.0.0.2 is a direct, untrusted peer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::WriteExt;
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::{Closed, Conn, ConnectRate, Error, Handler, Message, RejectReason, Server};
use wharf_test_support::*;

const PROXY: &str = "127.0.0.1";
const DIRECT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// What a connection reported: its client address and its TCP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    client: SocketAddr,
    tcp: SocketAddr,
}

/// Echoes; reports each connection's addresses at connect and at close.
struct Report {
    opened: Sender<Seen>,
    closed: Sender<(Seen, Closed)>,
}

impl Handler for Report {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let seen = Seen {
            client: conn.peer_addr(),
            tcp: conn.tcp_peer_addr(),
        };
        let _ = self.opened.send(seen).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        let seen = Seen {
            client: conn.peer_addr(),
            tcp: conn.tcp_peer_addr(),
        };
        let _ = self.closed.send((seen, closed.clone())).await;
    }
}

struct Setup {
    server: TestServer,
    opened: Receiver<Seen>,
    closed: Receiver<(Seen, Closed)>,
}

async fn start_with(configure: impl FnOnce(Server) -> Server) -> Setup {
    let (opened_tx, opened) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = Server::new().fallback(Report {
        opened: opened_tx,
        closed: closed_tx,
    });
    Setup {
        server: start(configure(server)).await,
        opened,
        closed,
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A WebSocket client through "the proxy" (127.0.0.1) with `headers`.
async fn via_proxy(setup: &Setup, headers: &[(&'static str, &str)]) -> Client {
    connect_with_headers(&setup.server, "/", headers).await
}

/// The answer to an upgrade with `headers`, over a fresh connection from
/// 127.0.0.1.
async fn answer_via_proxy(setup: &Setup, headers: &[&str]) -> String {
    http_exchange_allowing_reset(setup.server.addr, upgrade_request_with("/", headers)).await
}

#[async_std::test]
async fn three_clients_behind_one_proxy_are_three_clients_and_one_address_hits_the_cap() {
    let setup = start_with(|s| s.trusted_proxies([PROXY]).max_connections_per_ip(1)).await;
    let mut clients = Vec::new();
    for n in 1..=3 {
        let xff = format!("203.0.113.{n}");
        let mut client = via_proxy(&setup, &[("x-forwarded-for", &xff)]).await;
        assert_echo(&mut client, "hello").await;
        let seen = next_event(&setup.opened).await;
        assert_eq!(seen.client, addr(&format!("203.0.113.{n}:0")));
        assert_eq!(seen.tcp, client.get_ref().local_addr().unwrap());
        clients.push(client);
    }
    // A fourth from an address already present: refused, after its
    // request was read, before any upgrade work.
    let answer = answer_via_proxy(&setup, &["X-Forwarded-For: 203.0.113.2"]).await;
    assert_eq!(status(&answer), 429, "{answer}");
    assert_eq!(setup.server.stats().rejected(RejectReason::PerIpLimit), 1);
    assert_eq!(setup.server.stats().active, 3);
    // Its place is free once that client leaves.
    drop(clients.remove(1));
    let (seen, _) = within("close", setup.closed.recv()).await.unwrap();
    assert_eq!(seen.client, addr("203.0.113.2:0"), "the close handler");
    let mut again = via_proxy(&setup, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_echo(&mut again, "back").await;
}

#[async_std::test]
async fn the_connect_rate_counts_the_forwarded_client_never_the_proxy() {
    let setup = start_with(|s| {
        s.trusted_proxies([PROXY])
            .connect_rate(ConnectRate::new(0.001, 2))
    })
    .await;
    for _ in 0..2 {
        let mut client = via_proxy(&setup, &[("x-forwarded-for", "198.51.100.1")]).await;
        assert_echo(&mut client, "x").await;
        assert_eq!(
            next_event(&setup.opened).await.client,
            addr("198.51.100.1:0")
        );
    }
    let answer = answer_via_proxy(&setup, &["X-Forwarded-For: 198.51.100.1"]).await;
    assert_eq!(status(&answer), 429, "{answer}");
    assert_eq!(setup.server.stats().rejected(RejectReason::RateLimited), 1);
    // Another client through the same proxy is not held back.
    let mut other = via_proxy(&setup, &[("x-forwarded-for", "198.51.100.2")]).await;
    assert_echo(&mut other, "y").await;
    assert_eq!(
        next_event(&setup.opened).await.client,
        addr("198.51.100.2:0")
    );
    // Nor is the proxy's own traffic (no forwarding header), however much.
    for _ in 0..5 {
        let mut own = via_proxy(&setup, &[]).await;
        assert_echo(&mut own, "z").await;
        assert_eq!(next_event(&setup.opened).await.client.ip(), ip(PROXY));
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[async_std::test]
async fn a_proxy_is_not_capped_as_one_client() {
    let setup = start_with(|s| s.trusted_proxies([PROXY]).max_connections_per_ip(1)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut own = via_proxy(&setup, &[]).await;
        assert_echo(&mut own, "held").await;
        held.push(own);
    }
    // Hidden clients fall back to the proxy, which is not capped either.
    let mut hidden = via_proxy(&setup, &[("forwarded", "for=_hidden")]).await;
    assert_echo(&mut hidden, "hidden").await;
    assert_eq!(setup.server.stats().rejected(RejectReason::PerIpLimit), 0);
}

#[async_std::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let setup = start_with(|s| s.trusted_proxies(["10.0.0.0/8"]).max_connections_per_ip(1)).await;
    let mut client = via_proxy(&setup, &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_echo(&mut client, "spoof?").await;
    let seen = next_event(&setup.opened).await;
    assert_eq!(seen.client, client.get_ref().local_addr().unwrap());
    assert_eq!(seen.client, seen.tcp);
    // The cap holds for 127.0.0.1 whatever it claims, at accept.
    let answer = answer_via_proxy(
        &setup,
        &[
            "X-Forwarded-For: 203.0.113.10",
            "Forwarded: for=203.0.113.11",
        ],
    )
    .await;
    assert_eq!(status(&answer), 429, "{answer}");
}

#[async_std::test]
async fn forwarded_header_forms_and_ipv6() {
    let setup = start_with(|s| s.trusted_proxies([PROXY, "::1"])).await;
    let cases: &[(&[(&'static str, &str)], &str)] = &[
        (
            &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")],
            "[2001:db8:cafe::17]:4711",
        ),
        (
            &[("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43")],
            "192.0.2.60:0",
        ),
        (
            &[("forwarded", "for=192.0.2.43, for=\"[2001:db8::2]\"")],
            "[2001:db8::2]:0",
        ),
        (
            &[("forwarded", "for=192.0.2.43, for=127.0.0.1")],
            "192.0.2.43:0",
        ),
        (
            &[("x-forwarded-for", "2001:db8::5, 127.0.0.1")],
            "[2001:db8::5]:0",
        ),
        (
            &[
                ("x-forwarded-for", "203.0.113.1"),
                ("forwarded", "for=198.51.100.4"),
            ],
            "198.51.100.4:0",
        ),
    ];
    for (headers, expected) in cases {
        let mut client = via_proxy(&setup, headers).await;
        assert_echo(&mut client, "ok").await;
        let seen = next_event(&setup.opened).await;
        assert_eq!(seen.client, addr(expected), "{headers:?}");
    }
    // unknown and obfuscated: the proxy's own address.
    for value in ["for=unknown", "for=_gazonk", "for=\"_x:_y\""] {
        let mut client = via_proxy(&setup, &[("forwarded", value)]).await;
        let local = client.get_ref().local_addr().unwrap();
        assert_echo(&mut client, "ok").await;
        assert_eq!(next_event(&setup.opened).await.client, local, "{value}");
    }
}

#[async_std::test]
async fn a_trusted_ipv6_proxy_on_an_ipv6_listener() {
    let (opened_tx, opened) = unbounded();
    let (closed_tx, _closed) = unbounded();
    init_tracing();
    let listening = within(
        "bind [::1]",
        Server::new()
            .fallback(Report {
                opened: opened_tx,
                closed: closed_tx,
            })
            .trusted_proxies(["::1/128"])
            .max_connections_per_ip(1)
            .bind("[::1]:0"),
    )
    .await;
    let Ok(listening) = listening else {
        return; // no IPv6 loopback on this machine
    };
    let server_addr = listening.local_addr();
    async_std::task::spawn(listening.run());
    let mut clients = Vec::new();
    for client in ["2001:db8::1", "2001:db8::2"] {
        let tcp = TcpStream::connect(server_addr).await.unwrap();
        let mut ws = upgrade_on(tcp, server_addr, "/", &[("x-forwarded-for", client)]).await;
        within("send", ws.send(WsMessage::text("v6")))
            .await
            .unwrap();
        within("echo", ws.next()).await.unwrap().unwrap();
        let seen = next_event(&opened).await;
        assert_eq!(seen.client, SocketAddr::new(ip(client), 0));
        assert!(seen.tcp.ip().is_loopback() && seen.tcp.is_ipv6());
        clients.push(ws);
    }
    let mut tcp = TcpStream::connect(server_addr).await.unwrap();
    within(
        "write",
        tcp.write_all(upgrade_request_with("/", &["X-Forwarded-For: 2001:db8::1"]).as_bytes()),
    )
    .await
    .unwrap();
    let head = read_response_head(&mut tcp).await.unwrap_or_default();
    assert_eq!(status(&head), 429, "{head}");
}

#[async_std::test]
async fn direct_clients_keep_their_accept_time_checks_shared_with_proxied_ones() {
    let setup = start_with(|s| s.trusted_proxies([PROXY]).max_connections_per_ip(1)).await;
    let tcp = connect_from(DIRECT, setup.server.addr).await;
    let mut direct = upgrade_on(
        tcp,
        setup.server.addr,
        "/",
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    within("send", direct.send(WsMessage::text("direct")))
        .await
        .unwrap();
    within("echo", direct.next()).await.unwrap().unwrap();
    let seen = next_event(&setup.opened).await;
    assert_eq!(seen.client.ip(), DIRECT, "its own claim is ignored");
    // A second from 127.0.0.2: refused at accept, before its request.
    let mut second = connect_from(DIRECT, setup.server.addr).await;
    let head = read_response_head(&mut second).await.unwrap_or_default();
    assert_eq!(status(&head), 429, "{head}");
    // The proxy naming 127.0.0.2 as its client: the same client, refused.
    let answer = answer_via_proxy(&setup, &["X-Forwarded-For: 127.0.0.2"]).await;
    assert_eq!(status(&answer), 429, "{answer}");
    assert_eq!(setup.server.stats().rejected(RejectReason::PerIpLimit), 2);
}

// The PROXY protocol.

fn proxy_server(s: Server) -> Server {
    s.trusted_proxies([PROXY])
        .proxy_protocol(true)
        .upgrade_timeout(Duration::from_secs(5))
}

/// A WebSocket client whose connection starts with `prefix`.
async fn with_prefix(setup: &Setup, prefix: &[u8]) -> Client {
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    send_prefix(&mut tcp, prefix).await;
    upgrade_on(tcp, setup.server.addr, "/", &[]).await
}

#[async_std::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let setup = start_with(proxy_server).await;
    let dest = setup.server.addr;
    let v6_dest = addr("[2001:db8::80]:443");
    let cases = [
        (
            proxy_v1(addr("198.51.100.7:4711"), dest),
            "198.51.100.7:4711",
        ),
        (
            proxy_v1(addr("[2001:db8::7]:4712"), v6_dest),
            "[2001:db8::7]:4712",
        ),
        (
            proxy_v2(addr("192.0.2.9:1234"), dest, &[]),
            "192.0.2.9:1234",
        ),
        (
            proxy_v2(addr("[2001:db8::9]:1235"), v6_dest, &[]),
            "[2001:db8::9]:1235",
        ),
        // TLVs (a NOOP of three bytes, an AWS-style one) are skipped.
        (
            proxy_v2(
                addr("192.0.2.10:1"),
                dest,
                &[0x04, 0, 3, 1, 2, 3, 0xea, 0, 2, 9, 9],
            ),
            "192.0.2.10:1",
        ),
    ];
    for (header, expected) in cases {
        let mut client = with_prefix(&setup, &header).await;
        assert_echo(&mut client, "proxied").await;
        let seen = next_event(&setup.opened).await;
        assert_eq!(seen.client, addr(expected));
        assert_eq!(seen.tcp, client.get_ref().local_addr().unwrap());
    }
    // LOCAL (a health check) and UNKNOWN: the proxy's own connection.
    let local = proxy_v2_raw(0x20, 0x00, &[]);
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut client = with_prefix(&setup, &header).await;
        assert_echo(&mut client, "own").await;
        let seen = next_event(&setup.opened).await;
        assert_eq!(seen.client, seen.tcp);
    }
    assert_eq!(
        setup.server.stats().rejected(RejectReason::ProxyProtocol),
        0
    );
}

#[async_std::test]
async fn bad_proxy_headers_drop_the_socket_and_are_counted() {
    let setup = start_with(proxy_server).await;
    let dest = setup.server.addr;
    let v1 = proxy_v1(addr("198.51.100.7:4711"), dest);
    let v2 = proxy_v2(addr("192.0.2.9:1234"), dest, &[]);
    let mut oversized = proxy_v2_raw(0x21, 0x11, &vec![0u8; 5000]);
    oversized.truncate(16); // the length alone says it is too long
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "missing: a plain request",
            upgrade_request("/").into_bytes(),
            false,
        ),
        ("truncated v1", v1[..20].to_vec(), true),
        ("truncated v2", v2[..22].to_vec(), true),
        (
            "malformed v1",
            b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n".to_vec(),
            false,
        ),
        (
            "malformed v2 version",
            proxy_v2_raw(0x31, 0x11, &[0; 12]),
            false,
        ),
        (
            "v1 without its LF",
            [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat(),
            false,
        ),
        ("oversized v2", oversized, false),
        (
            "a signature cut short",
            PROXY_V2_SIGNATURE[..8].to_vec(),
            true,
        ),
    ];
    let count = cases.len() as u64;
    for (what, bytes, then_close) in cases {
        let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
        let _ = within("write", tcp.write_all(&bytes)).await;
        if then_close {
            tcp.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let got = wait_until_dropped(&mut tcp, STEP).await;
        assert_eq!(got, 0, "{what}: no answer");
    }
    eventually("every refusal counted", || {
        setup.server.stats().rejected(RejectReason::ProxyProtocol) == count
    })
    .await;
    // A peer that leaves without a byte is not a refusal.
    drop(TcpStream::connect(setup.server.addr).await.unwrap());
    let mut client = with_prefix(&setup, &proxy_v1(addr("198.51.100.8:1"), dest)).await;
    assert_echo(&mut client, "still serving").await;
    assert_eq!(
        setup.server.stats().rejected(RejectReason::ProxyProtocol),
        count
    );
    assert_eq!(
        setup.server.stats().rejected(RejectReason::UpgradeTimeout),
        0
    );
}

#[async_std::test]
async fn a_stalled_proxy_header_is_cut_at_the_upgrade_timeout() {
    let setup = start_with(|s| proxy_server(s).upgrade_timeout(Duration::from_millis(300))).await;
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    within("write", tcp.write_all(b"PROXY TCP4 1.2.3.4"))
        .await
        .unwrap();
    wait_until_dropped(&mut tcp, STEP).await;
    assert_eq!(
        setup.server.stats().rejected(RejectReason::UpgradeTimeout),
        1
    );
}

#[async_std::test]
async fn a_proxy_header_from_an_untrusted_peer_is_read_and_ignored() {
    let setup = start_with(proxy_server).await;
    let mut tcp = connect_from(DIRECT, setup.server.addr).await;
    send_prefix(
        &mut tcp,
        &proxy_v1(addr("198.51.100.7:4711"), setup.server.addr),
    )
    .await;
    let mut client = upgrade_on(tcp, setup.server.addr, "/", &[]).await;
    within("send", client.send(WsMessage::text("hi")))
        .await
        .unwrap();
    within("echo", client.next()).await.unwrap().unwrap();
    let seen = next_event(&setup.opened).await;
    assert_eq!(seen.client.ip(), DIRECT);
}

#[async_std::test]
async fn the_per_ip_cap_applies_to_the_proxy_protocol_client_before_its_request() {
    let setup = start_with(|s| proxy_server(s).max_connections_per_ip(1)).await;
    let header = proxy_v2(addr("192.0.2.77:1000"), setup.server.addr, &[]);
    let mut held = with_prefix(&setup, &header).await;
    assert_echo(&mut held, "first").await;
    // The same client again: refused right after the header, with a 429.
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    send_prefix(&mut tcp, &header).await;
    let head = read_response_head(&mut tcp).await.unwrap_or_default();
    assert_eq!(status(&head), 429, "{head}");
    assert_eq!(setup.server.stats().rejected(RejectReason::PerIpLimit), 1);
}

#[async_std::test]
async fn a_proxy_chain_proxy_protocol_then_x_forwarded_for() {
    // A TCP balancer (127.0.0.1) in front of an HTTP proxy (10.0.0.5),
    // both trusted.
    let setup = start_with(|s| proxy_server(s).trusted_proxies(["10.0.0.0/8"])).await;
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    send_prefix(&mut tcp, &proxy_v1(addr("10.0.0.5:999"), setup.server.addr)).await;
    let mut client = upgrade_on(
        tcp,
        setup.server.addr,
        "/",
        &[("x-forwarded-for", "203.0.113.50")],
    )
    .await;
    within("send", client.send(WsMessage::text("chain")))
        .await
        .unwrap();
    within("echo", client.next()).await.unwrap().unwrap();
    assert_eq!(
        next_event(&setup.opened).await.client,
        addr("203.0.113.50:0")
    );
}

#[async_std::test]
async fn proxy_protocol_before_tls() {
    let cert = TestCert::new();
    let setup = start_with(|s| proxy_server(s).tls(cert.server_config())).await;
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    send_prefix(
        &mut tcp,
        &proxy_v2(addr("192.0.2.200:4242"), setup.server.addr, &[]),
    )
    .await;
    let tls = within("tls handshake", tls_handshake(tcp, &cert))
        .await
        .expect("TLS after the PROXY header");
    let mut client = upgrade_on(tls, setup.server.addr, "/", &[]).await;
    within("send", client.send(WsMessage::text("wss")))
        .await
        .unwrap();
    within("echo", client.next()).await.unwrap().unwrap();
    assert_eq!(
        next_event(&setup.opened).await.client,
        addr("192.0.2.200:4242")
    );
}

#[async_std::test]
async fn the_settings_are_checked_at_bind() {
    let err = Server::new()
        .proxy_protocol(true)
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                setting: "proxy_protocol",
                ..
            }
        ),
        "{err}"
    );
    let err = Server::new()
        .trusted_proxies(["10.0.0.0/8", "proxy.example"])
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting: "trusted_proxies", reason } if reason.contains("proxy.example")),
        "{err}"
    );
    // A second call adds to the list.
    let setup = start_with(|s| s.trusted_proxies(["10.0.0.0/8"]).trusted_proxies([PROXY])).await;
    let mut client = via_proxy(&setup, &[("x-forwarded-for", "192.0.2.1")]).await;
    assert_echo(&mut client, "listed").await;
    assert_eq!(next_event(&setup.opened).await.client, addr("192.0.2.1:0"));
}
