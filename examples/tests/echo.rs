//! The `echo` example: echo and `kick` on any path, its command line, and
//! each policy flag wired through to the server.

#[allow(dead_code, unreachable_pub)]
#[path = "../echo.rs"]
mod echo;

use std::time::Duration;

use async_tungstenite::tungstenite::Message as WsMessage;
use clap::error::ErrorKind;
use clap::Parser;
use echo::{app, Options};
use futures_util::StreamExt;
use wharf_test_support::*;

/// Parses a command line the way `cargo run --example echo -- ARGS` would.
fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Options, clap::Error> {
    Options::try_parse_from(std::iter::once("echo").chain(args))
}

/// Starts the echo example with the flags in `args`.
async fn start_with(args: &[&str]) -> TestServer {
    let options = parse(args.iter().copied()).expect("flags");
    start(app(&options)).await
}

#[async_std::test]
async fn echoes_text_and_binary_on_any_path() {
    let server = start_with(&[]).await;
    for path in ["/", "/echo", "/any/path?x=1"] {
        let mut client = connect(&server, path).await;
        send_text(&mut client, "hello").await;
        assert_eq!(next_text(&mut client).await, "hello");
        within(
            "send binary",
            client.send(WsMessage::binary(vec![0u8, 1, 2])),
        )
        .await
        .unwrap();
        match within("binary echo", client.next()).await {
            Some(Ok(WsMessage::Binary(data))) => assert_eq!(&data[..], [0, 1, 2]),
            other => panic!("expected the binary echo, got {other:?}"),
        }
        within("client close", client.close(None)).await.unwrap();
    }
}

#[async_std::test]
async fn kick_closes_with_1008_session_expired() {
    let server = start_with(&[]).await;
    let mut client = connect(&server, "/").await;
    send_text(&mut client, "before").await;
    assert_eq!(next_text(&mut client).await, "before");
    send_text(&mut client, "kick").await;
    let closed = closed_by_server(&mut client).await;
    assert_eq!(closed.close, Some((1008, "Session expired".into())));
    assert!(closed.before.is_empty(), "{:?}", closed.before);
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
    let mut client = connect(&server, "/").await;
    let fits = "x".repeat(1024);
    send_text(&mut client, &fits).await;
    assert_eq!(next_text(&mut client).await, fits);
    send_text(&mut client, &"x".repeat(1025)).await;
    let closed = closed_by_server(&mut client).await;
    assert_eq!(closed.close.map(|(code, _)| code), Some(1009));
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
    let response = http_exchange_allowing_reset(
        server.addr,
        &upgrade_request_with("/", &["Origin: http://evil.test"]),
    )
    .await;
    assert_eq!(status(&response), 403, "{response}");
    assert!(!response.contains("Sec-WebSocket-Accept"), "{response}");
    for origin in ["http://good.test", "http://also-good.test:8000"] {
        let mut client = connect_with_headers(&server, "/", &[("Origin", origin)]).await;
        send_text(&mut client, origin).await;
        assert_eq!(next_text(&mut client).await, origin);
    }
}

#[async_std::test]
async fn max_conns_per_ip_refuses_the_next_one_with_429() {
    let server = start_with(&["--max-conns-per-ip", "1"]).await;
    let mut first = connect(&server, "/").await;
    let response = http_exchange_allowing_reset(server.addr, &upgrade_request("/")).await;
    assert_eq!(status(&response), 429, "{response}");
    send_text(&mut first, "still here").await;
    assert_eq!(next_text(&mut first).await, "still here");
}

#[async_std::test]
async fn max_conns_refuses_the_next_one_with_503() {
    let server = start_with(&["--max-conns", "1"]).await;
    let _first = connect(&server, "/").await;
    let response = http_exchange_allowing_reset(server.addr, &upgrade_request("/")).await;
    assert_eq!(status(&response), 503, "{response}");
}

#[async_std::test]
async fn connect_rate_refuses_a_burst_beyond_it_with_429() {
    let server = start_with(&["--connect-rate", "1"]).await;
    let _first = connect(&server, "/").await;
    // The bucket held one token and refills one a second.
    let response = http_exchange_allowing_reset(server.addr, &upgrade_request("/")).await;
    assert_eq!(status(&response), 429, "{response}");
}

#[async_std::test]
async fn idle_timeout_closes_a_silent_client_with_1001() {
    let server = start_with(&["--idle-timeout-ms", "100"]).await;
    let mut client = connect(&server, "/").await;
    expect_close(&mut client, 1001, "Idle timeout").await;
}

#[async_std::test]
async fn session_ttl_closes_at_the_deadline_with_1008() {
    let server = start_with(&["--session-ttl-ms", "100"]).await;
    let mut client = connect(&server, "/").await;
    expect_close(&mut client, 1008, "Session expired").await;
}

#[async_std::test]
async fn heartbeat_pings_then_drops_a_peer_that_never_answers() {
    let server = start_with(&["--ping-interval-ms", "50", "--pong-timeout-ms", "50"]).await;
    let mut peer = RawPeer::connect(&server, "/").await;
    let ping = peer.read_frame().await.expect("a ping");
    assert_eq!(ping.opcode, OP_PING);
    // No pong: the server drops the socket without a Close frame.
    assert_eq!(peer.read_frame().await, None);
}

#[async_std::test]
async fn drain_ms_bounds_the_graceful_shutdown() {
    let server = start_with(&["--drain-ms", "200"]).await;
    let mut polite = connect(&server, "/").await;
    // This peer never answers the server's Close.
    let mut silent = RawPeer::connect(&server, "/").await;
    let reading = async_std::task::spawn(async move { closed_by_server(&mut polite).await });
    let summary = server.shutdown().await;
    assert_eq!(summary.clean, 1, "{summary:?}");
    assert_eq!(summary.dropped, 1, "{summary:?}");
    // The default close timeout is 5 s: the 200 ms drain cut it short.
    assert!(summary.duration < Duration::from_secs(4), "{summary:?}");
    let closed = within("the polite client's close", reading).await;
    assert_eq!(closed.close, Some((1001, "Going away".into())));
    let close = silent.read_frame().await.expect("a Close frame");
    assert_eq!(close.opcode, OP_CLOSE);
    assert_eq!(&close.payload[..2], 1001u16.to_be_bytes());
}

#[async_std::test]
async fn metrics_serves_prometheus_counters() {
    let server = start_with(&["--metrics", "/metrics"]).await;
    let mut client = connect(&server, "/").await;
    send_text(&mut client, "count me").await;
    assert_eq!(next_text(&mut client).await, "count me");
    let response = http_exchange_allowing_reset(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(
        response.contains("\nwharf_connections_active 1\n"),
        "{response}"
    );
    assert!(
        response.contains("\nwharf_messages_received_total 1\n"),
        "{response}"
    );
}

#[async_std::test]
async fn without_metrics_the_path_is_not_served() {
    let server = start_with(&[]).await;
    let response = http_exchange_allowing_reset(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    // Every path is the echo route: a plain GET is told to upgrade.
    assert_eq!(status(&response), 426, "{response}");
}

// ---- the deployment flags ----

#[async_std::test]
async fn metrics_addr_serves_the_counters_there_and_not_on_the_public_port() {
    let server = start_with(&["--metrics", "/metrics", "--metrics-addr", "127.0.0.1:0"]).await;
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
    let server = start_with(&["--trusted-proxy", "127.0.0.1", "--max-conns-per-ip", "1"]).await;
    let mut ann = connect_with_headers(&server, "/", &[("x-forwarded-for", "203.0.113.1")]).await;
    let mut bob = connect_with_headers(&server, "/", &[("x-forwarded-for", "203.0.113.2")]).await;
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
    let server = start_with(&["--trusted-proxy", "127.0.0.1", "--proxy-protocol"]).await;
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
