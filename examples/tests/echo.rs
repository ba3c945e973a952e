//! The `echo` example: echo and `kick` on any path, its command line, and
//! each policy flag wired through to the server.

#[allow(dead_code, unreachable_pub)]
#[path = "../echo.rs"]
mod echo;

use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use echo::{app, Options};
use wharf::test::TestServer;
use wharf_test_support::{within, RawPeer, OP_CLOSE, OP_PING};

/// Parses a command line the way `cargo run --example echo -- ARGS` would.
fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Options, clap::Error> {
    Options::try_parse_from(std::iter::once("echo").chain(args))
}

/// Starts the echo example with the flags in `args`.
async fn start_with(args: &[&str]) -> TestServer {
    let options = parse(args.iter().copied()).expect("flags");
    TestServer::start(app(&options)).await
}

#[async_std::test]
async fn echoes_text_and_binary_on_any_path() {
    let server = start_with(&[]).await;
    for path in ["/", "/echo", "/any/path?x=1"] {
        let mut client = server.connect(path).await.expect("upgrade");
        client.send_text("hello").await;
        client.expect_text("hello").await;
        client.send_binary([0u8, 1, 2]).await;
        client.expect_binary([0u8, 1, 2]).await;
        assert!(client.close(1000, "").await.is_clean());
    }
}

#[async_std::test]
async fn kick_closes_with_1008_session_expired() {
    let server = start_with(&[]).await;
    let mut client = server.connect("/").await.expect("upgrade");
    client.send_text("before").await;
    client.expect_text("before").await;
    client.send_text("kick").await;
    client.expect_close(1008, "Session expired").await;
}

// ---- the command line ----

#[test]
fn without_flags_it_keeps_the_defaults_and_a_64_mib_limit() {
    let options = parse([]).unwrap();
    assert_eq!(
        options,
        Options {
            addr: "127.0.0.1:9001".into(),
            idle_timeout: None,
            ping_interval: None,
            pong_timeout: None,
            session_ttl: None,
            max_message: 64 << 20,
            max_conns: None,
            max_conns_per_ip: None,
            connect_rate: None,
            origins: Vec::new(),
            drain: None,
            metrics: None,
            metrics_addr: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    );
}

#[test]
fn every_flag_is_read() {
    let options = parse([
        "--addr=127.0.0.1:7000",
        "--idle-timeout-ms=1",
        "--ping-interval-ms=2",
        "--pong-timeout-ms=3",
        "--session-ttl-ms=4",
        "--max-message=5",
        "--max-conns=6",
        "--max-conns-per-ip=7",
        "--connect-rate=8",
        "--origin=http://a.test",
        "--origin=https://b.test:8443",
        "--drain-ms=9",
        "--metrics=/metrics",
        "--metrics-addr=127.0.0.1:9100",
        "--tls-cert=cert.pem",
        "--tls-key=key.pem",
        "--trusted-proxy=10.0.0.0/8",
        "--trusted-proxy=::1",
        "--proxy-protocol",
    ])
    .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(
        options,
        Options {
            addr: "127.0.0.1:7000".into(),
            idle_timeout: Some(ms(1)),
            ping_interval: Some(ms(2)),
            pong_timeout: Some(ms(3)),
            session_ttl: Some(ms(4)),
            max_message: 5,
            max_conns: Some(6),
            max_conns_per_ip: Some(7),
            connect_rate: Some(8),
            origins: vec!["http://a.test".into(), "https://b.test:8443".into()],
            drain: Some(ms(9)),
            metrics: Some("/metrics".into()),
            metrics_addr: Some("127.0.0.1:9100".into()),
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into()],
            proxy_protocol: true,
        }
    );
}

#[test]
fn bad_command_lines_are_refused_with_status_2() {
    // Each mistake, and what the message must name.
    let cases: &[(&[&str], &[&str])] = &[
        (&["--bogus", "1"], &["--bogus"]),
        (&["9001"], &["9001"]),
        (&["--max-message"], &["--max-message"]),
        (
            &["--max-message", "1k"],
            &["--max-message", "1k", "at least 1"],
        ),
        (&["--max-conns", "0"], &["--max-conns", "0", "at least 1"]),
        (
            &["--idle-timeout-ms", "-1"],
            &["--idle-timeout-ms", "-1", "at least 1"],
        ),
        (
            &["--connect-rate", "5000000000"],
            &["--connect-rate", "5000000000", "at least 1"],
        ),
        (
            &["--origin", "localhost:8000"],
            &["--origin", "localhost:8000", "http://localhost:8000"],
        ),
        (&["--metrics", "metrics"], &["--metrics", "metrics", "'/'"]),
        (
            &["--metrics-addr", "localhost"],
            &["--metrics-addr", "localhost", "HOST:PORT"],
        ),
        (&["--tls-cert", "cert.pem"], &["--tls-key"]),
        (&["--tls-key", "key.pem"], &["--tls-cert"]),
        (&["--proxy-protocol"], &["--trusted-proxy"]),
    ];
    for (args, names) in cases {
        let err = parse(args.iter().copied()).unwrap_err();
        let message = err.to_string();
        for name in *names {
            assert!(
                message.contains(name),
                "{args:?}: {message:?} does not name {name:?}"
            );
        }
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
    let help = parse(["--help"]).unwrap_err();
    assert_eq!(help.kind(), ErrorKind::DisplayHelp);
    assert_eq!(help.exit_code(), 0);
    assert!(help.to_string().contains("--max-conns-per-ip"), "{help}");
}

// ---- each policy flag reaches the server ----

#[async_std::test]
async fn max_message_closes_a_bigger_message_with_1009() {
    let server = start_with(&["--max-message", "1024"]).await;
    let mut client = server.connect("/").await.expect("upgrade");
    let fits = "x".repeat(1024);
    client.send_text(&fits).await;
    client.expect_text(fits).await;
    client.send_text("x".repeat(1025)).await;
    client.expect_close(1009, "Message too big").await;
}

#[async_std::test]
async fn origin_refuses_other_origins_with_403() {
    let server = start_with(&[
        "--origin",
        "http://good.test",
        "--origin",
        "http://also-good.test:8000",
    ])
    .await;
    let evil = server.client("/").origin("http://evil.test");
    let refusal = evil.expect_rejected(403).await;
    assert!(!refusal.headers().contains_key("sec-websocket-accept"));
    for origin in ["http://good.test", "http://also-good.test:8000"] {
        let good = server.client("/").origin(origin);
        let mut client = good.connect().await.expect("upgrade");
        client.send_text(origin).await;
        client.expect_text(origin).await;
    }
}

#[async_std::test]
async fn max_conns_per_ip_refuses_the_next_one_with_429() {
    let server = start_with(&["--max-conns-per-ip", "1"]).await;
    let mut first = server.connect("/").await.expect("upgrade");
    server.client("/").expect_rejected(429).await;
    first.send_text("still here").await;
    first.expect_text("still here").await;
}

#[async_std::test]
async fn max_conns_refuses_the_next_one_with_503() {
    let server = start_with(&["--max-conns", "1"]).await;
    let _first = server.connect("/").await.expect("upgrade");
    server.client("/").expect_rejected(503).await;
}

#[async_std::test]
async fn connect_rate_refuses_a_burst_beyond_it_with_429() {
    let server = start_with(&["--connect-rate", "1"]).await;
    let _first = server.connect("/").await.expect("upgrade");
    // The bucket held one token and refills one a second.
    server.client("/").expect_rejected(429).await;
}

#[async_std::test]
async fn idle_timeout_closes_a_silent_client_with_1001() {
    // Five minutes, passed on the server's clock.
    let server = start_with(&["--idle-timeout-ms", "300000"]).await;
    let mut client = server.connect("/").await.expect("upgrade");
    server.advance(Duration::from_secs(300));
    client.expect_close(1001, "Idle timeout").await;
}

#[async_std::test]
async fn session_ttl_closes_at_the_deadline_with_1008() {
    let server = start_with(&["--session-ttl-ms", "1800000"]).await;
    let mut client = server.connect("/").await.expect("upgrade");
    server.advance(Duration::from_secs(29 * 60));
    client.expect_no_message(Duration::from_millis(20)).await;
    server.advance(Duration::from_secs(60));
    client.expect_close(1008, "Session expired").await;
}

#[async_std::test]
async fn heartbeat_pings_then_drops_a_peer_that_never_answers() {
    let server = start_with(&["--ping-interval-ms", "50", "--pong-timeout-ms", "50"]).await;
    let mut peer = RawPeer::connect_to(server.addr(), "/").await;
    let ping = peer.read_frame().await.expect("a ping");
    assert_eq!(ping.opcode, OP_PING);
    // No pong: the server drops the socket without a Close frame.
    assert_eq!(peer.read_frame().await, None);
}

#[async_std::test]
async fn drain_ms_bounds_the_graceful_shutdown() {
    let server = start_with(&["--drain-ms", "200"]).await;
    let mut polite = server.connect("/").await.expect("upgrade");
    // This peer never answers the server's Close.
    let mut silent = RawPeer::connect_to(server.addr(), "/").await;
    let reading =
        async_std::task::spawn(async move { polite.expect_close(1001, "Going away").await });
    let summary = server.shutdown().await;
    assert_eq!(summary.clean, 1, "{summary:?}");
    assert_eq!(summary.dropped, 1, "{summary:?}");
    // The default close timeout is 5 s: the 200 ms drain cut it short.
    assert!(summary.duration < Duration::from_secs(4), "{summary:?}");
    within("the polite client's close", reading).await;
    let close = silent.read_frame().await.expect("a Close frame");
    assert_eq!(close.opcode, OP_CLOSE);
    assert_eq!(&close.payload[..2], 1001u16.to_be_bytes());
}

#[async_std::test]
async fn metrics_serves_prometheus_counters() {
    let server = start_with(&["--metrics", "/metrics"]).await;
    let mut client = server.connect("/").await.expect("upgrade");
    client.send_text("count me").await;
    client.expect_text("count me").await;
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status(), 200, "{metrics}");
    let body = metrics.body();
    assert!(body.contains("\nwharf_connections_active 1\n"), "{body}");
    assert!(
        body.contains("\nwharf_messages_received_total 1\n"),
        "{body}"
    );
}

#[async_std::test]
async fn without_metrics_the_path_is_not_served() {
    let server = start_with(&[]).await;
    // Every path is the echo route: a plain GET is told to upgrade.
    assert_eq!(server.get("/metrics").await.status(), 426);
}

// ---- the deployment flags ----

/// TLS, proxies and the metrics listener, with the raw and TLS clients of
/// Wharf's own test support: the kit's client speaks plain TCP and sends no
/// PROXY header.
mod deployment {
    use async_tungstenite::tungstenite::Message as WsMessage;
    use futures_util::StreamExt;
    use wharf_test_support::*;

    use super::{app, echo, parse};

    /// Starts the echo example with the flags in `args`, on the support
    /// crate's server.
    async fn start_raw(args: &[&str]) -> TestServer {
        let options = parse(args.iter().copied()).expect("flags");
        start(app(&options)).await
    }

    #[async_std::test]
    async fn metrics_addr_serves_the_counters_there_and_not_on_the_public_port() {
        let server = start_raw(&["--metrics", "/metrics", "--metrics-addr", "127.0.0.1:0"]).await;
        let get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        let public = http_exchange_allowing_reset(server.addr, get).await;
        assert_eq!(
            status(&public),
            426,
            "the echo route, not the metrics: {public}"
        );
        let metrics = server.handle.metrics_addr().expect("a metrics listener");
        let scrape = http_exchange(metrics, get).await;
        assert_eq!(status(&scrape), 200, "{scrape}");
        assert!(
            scrape.contains("wharf_connections_accepted_total"),
            "{scrape}"
        );
    }

    #[async_std::test]
    async fn tls_cert_and_key_serve_wss() {
        let cert = TestCert::new();
        let args = [
            "--tls-cert",
            cert.cert_path.to_str().unwrap(),
            "--tls-key",
            cert.key_path.to_str().unwrap(),
        ];
        let options = parse(args).expect("flags");
        let server = start(echo::with_tls(app(&options), &options).expect("the PEM files")).await;
        let mut client = connect_wss(&server, "/", &cert).await;
        within("send", client.send(WsMessage::text("secure")))
            .await
            .unwrap();
        match within("echo", client.next()).await {
            Some(Ok(WsMessage::Text(text))) => assert_eq!(text.as_str(), "secure"),
            other => panic!("expected the echo, got {other:?}"),
        }
        // A missing file is an error naming it, not a panic.
        let options = parse(["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "k.pem"]).unwrap();
        let err = echo::with_tls(app(&options), &options).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[async_std::test]
    async fn trusted_proxy_keys_the_per_ip_cap_on_the_forwarded_client() {
        let server = start_raw(&["--trusted-proxy", "127.0.0.1", "--max-conns-per-ip", "1"]).await;
        let mut ann =
            connect_with_headers(&server, "/", &[("x-forwarded-for", "203.0.113.1")]).await;
        let mut bob =
            connect_with_headers(&server, "/", &[("x-forwarded-for", "203.0.113.2")]).await;
        assert_echo(&mut ann, "ann").await;
        assert_echo(&mut bob, "bob").await;
        let again = http_exchange_allowing_reset(
            server.addr,
            upgrade_request_with("/", &["X-Forwarded-For: 203.0.113.1"]),
        )
        .await;
        assert_eq!(status(&again), 429, "{again}");
    }

    #[async_std::test]
    async fn proxy_protocol_reads_the_header_first() {
        let server = start_raw(&["--trusted-proxy", "127.0.0.1", "--proxy-protocol"]).await;
        let mut tcp = async_std::net::TcpStream::connect(server.addr)
            .await
            .unwrap();
        let header = proxy_v1("198.51.100.7:4711".parse().unwrap(), server.addr);
        send_prefix(&mut tcp, &header).await;
        let mut client = upgrade_on(tcp, server.addr, "/", &[]).await;
        within("send", client.send(WsMessage::text("via a balancer")))
            .await
            .unwrap();
        assert!(matches!(
            within("echo", client.next()).await,
            Some(Ok(WsMessage::Text(_)))
        ));
        // Without the header: dropped.
        let plain = http_exchange_allowing_reset(server.addr, upgrade_request("/")).await;
        assert!(plain.is_empty(), "{plain}");
    }
}
