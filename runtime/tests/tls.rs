//! TLS (`wss://`): real async-tungstenite clients over futures-rustls
//! against a TLS listener with a certificate made at test time. The
//! closing handshake is the same as over TCP, then `close_notify`; a peer
//! that does not speak TLS, or stalls in the handshake, is dropped and
//! counted; the configuration is checked and reloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use async_tungstenite::tungstenite::Message as WsMessage;
use futures_util::StreamExt;
use wharf::rustls;
use wharf::{
    CloseCode, CloseOutcome, Closed, Conn, Error, Handler, Initiator, Message, RejectReason,
    Server, TlsConfig,
};
use wharf_test_support::*;

/// Echoes; the text `close` makes the server close with 4000 "bye now".
struct Echo {
    closed: Sender<Closed>,
    outcomes: Sender<CloseOutcome>,
}

impl Handler for Echo {
    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        if msg.as_text() == Some("close") {
            let outcome = conn.close(CloseCode::from(4000), "bye now").await?;
            let _ = self.outcomes.send(outcome).await;
            return Ok(());
        }
        conn.send(msg).await
    }

    async fn on_close(&self, _conn: &Conn, closed: &Closed) {
        let _ = self.closed.send(closed.clone()).await;
    }
}

struct Setup {
    server: TestServer,
    cert: TestCert,
    closed: Receiver<Closed>,
    outcomes: Receiver<CloseOutcome>,
}

async fn start_tls(configure: impl FnOnce(Server) -> Server) -> Setup {
    let cert = TestCert::new();
    let (closed_tx, closed) = unbounded();
    let (outcomes_tx, outcomes) = unbounded();
    let server = Server::new()
        .fallback(Echo {
            closed: closed_tx,
            outcomes: outcomes_tx,
        })
        .page("/page", "text/plain", "a page over https\n")
        .tls(cert.server_config());
    let server = start(configure(server)).await;
    Setup {
        server,
        cert,
        closed,
        outcomes,
    }
}

#[async_std::test]
async fn wss_echo_then_a_server_close_with_its_code_reason_and_close_notify() {
    let setup = start_tls(|s| s).await;
    let mut client = connect_wss(&setup.server, "/echo", &setup.cert).await;
    assert_echo_tls(&mut client, "over tls").await;
    within("send", client.send(WsMessage::text("close")))
        .await
        .unwrap();
    let (closed, end) = closed_by_server_tls(&mut client).await;
    assert_eq!(closed.close, Some((4000, "bye now".to_owned())));
    assert!(closed.before.is_empty(), "{:?}", closed.before);
    assert_eq!(
        end,
        TlsEnd::CloseNotify,
        "the TLS stream must end with close_notify"
    );
    // Then the server closes TCP: the socket under TLS reads EOF.
    let mut rest = Vec::new();
    let tcp = client.get_mut().get_mut().0;
    let read = within("tcp end", tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");

    assert_eq!(
        next_event(&setup.outcomes).await,
        CloseOutcome::Clean,
        "close() over TLS"
    );
    let seen = next_event(&setup.closed).await;
    assert_eq!(
        (seen.code, seen.reason.as_str()),
        (CloseCode::from(4000), "bye now")
    );
    assert_eq!(seen.initiator, Initiator::Server);
    assert!(seen.clean);
}

async fn assert_echo_tls(client: &mut TlsClient, text: &str) {
    within("send", client.send(WsMessage::text(text)))
        .await
        .unwrap();
    match within("echo", client.next()).await {
        Some(Ok(WsMessage::Text(echo))) => assert_eq!(echo.as_str(), text),
        other => panic!("expected the echo, got {other:?}"),
    }
}

#[async_std::test]
async fn a_client_close_over_tls_is_echoed_then_close_notify() {
    let setup = start_tls(|s| s).await;
    let mut client = connect_wss(&setup.server, "/", &setup.cert).await;
    assert_echo_tls(&mut client, "hi").await;
    let bye = async_tungstenite::tungstenite::protocol::CloseFrame {
        code: WsCloseCode::Normal,
        reason: "done".into(),
    };
    within("client close", client.close(Some(bye)))
        .await
        .unwrap();
    let (closed, end) = closed_by_server_tls(&mut client).await;
    assert_eq!(closed.close, Some((1000, "done".to_owned())), "the echo");
    assert_eq!(end, TlsEnd::CloseNotify);
    let seen = next_event(&setup.closed).await;
    assert_eq!(seen.initiator, Initiator::Client);
    assert!(seen.clean);
    assert_eq!(seen.outcome, CloseOutcome::Clean);
}

#[async_std::test]
async fn alpn_is_http_1_1() {
    let setup = start_tls(|s| s).await;
    let tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    let mut config = (*setup.cert.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = futures_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within("handshake", connector.connect(name, tcp))
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[async_std::test]
async fn pages_and_refusals_are_served_over_tls() {
    let setup = start_tls(|s| s).await;
    let addr = setup.server.addr;
    let page = tls_http_exchange(
        addr,
        &setup.cert,
        b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&page), 200, "{page}");
    assert!(page.ends_with("a page over https\n"), "{page}");
    let plain = tls_http_exchange(
        addr,
        &setup.cert,
        b"GET /chat HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&plain), 426, "{plain}");
}

#[async_std::test]
async fn plaintext_http_on_the_tls_port_is_dropped_and_counted() {
    let setup = start_tls(|s| s).await;
    let addr = setup.server.addr;
    let answer = http_exchange_allowing_reset(addr, upgrade_request("/")).await;
    assert!(
        !answer.starts_with("HTTP/"),
        "no HTTP answer in plaintext: {answer:?}"
    );
    eventually("the refusal counted", || {
        setup.server.stats().rejected(RejectReason::Tls) == 1
    })
    .await;
    // Nothing stuck: a TLS client is served as before.
    let mut client = connect_wss(&setup.server, "/", &setup.cert).await;
    assert_echo_tls(&mut client, "still here").await;
}

#[async_std::test]
async fn garbage_on_the_tls_port_is_dropped_and_counted() {
    let setup = start_tls(|s| s).await;
    let addr = setup.server.addr;
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may reset while this is written: it gave up on the bytes.
    let _ = within("write garbage", tcp.write_all(&garbage)).await;
    wait_until_dropped(&mut tcp, STEP).await;
    // A ClientHello record header announcing more than a record may hold.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = within("write", tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff])).await;
    wait_until_dropped(&mut tcp, STEP).await;
    eventually("both refusals counted", || {
        setup.server.stats().rejected(RejectReason::Tls) == 2
    })
    .await;
    assert_eq!(setup.server.stats().active, 0);
}

#[async_std::test]
async fn a_handshake_that_stalls_is_cut_at_the_upgrade_timeout() {
    let limit = Duration::from_millis(400);
    let setup = start_tls(|s| s.upgrade_timeout(limit)).await;
    let hello = client_hello(&setup.cert);
    // The server's clock starts at its accept, after this.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    within(
        "half a ClientHello",
        tcp.write_all(&hello[..hello.len() / 2]),
    )
    .await
    .unwrap();
    wait_until_dropped(&mut tcp, STEP).await;
    let took = started.elapsed();
    assert!(took >= limit, "dropped after {took:?}, before the timeout");
    assert_eq!(
        setup.server.stats().rejected(RejectReason::UpgradeTimeout),
        1
    );
    assert_eq!(setup.server.stats().rejected(RejectReason::Tls), 0);
    // A whole ClientHello and then silence: the same.
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    within("a ClientHello", tcp.write_all(&hello))
        .await
        .unwrap();
    let mut server_flight = vec![0u8; 16 << 10];
    let n = within("the server's answer", tcp.read(&mut server_flight))
        .await
        .unwrap();
    assert!(n > 0 && server_flight[0] == 0x16, "a handshake record");
    wait_until_dropped(&mut tcp, STEP).await;
    eventually("the second timeout counted", || {
        setup.server.stats().rejected(RejectReason::UpgradeTimeout) == 2
    })
    .await;
}

#[async_std::test]
async fn a_protocol_error_over_tls_drains_after_close_notify() {
    let setup = start_tls(|s| s.close_timeout(Duration::from_secs(5))).await;
    let mut tls = tls_connect(setup.server.addr, &setup.cert).await;
    within("upgrade", tls.write_all(upgrade_request("/").as_bytes()))
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        within("101", tls.read_exact(&mut byte)).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // An unmasked frame from a client: a protocol error (1002).
    within("bad frame", tls.write_all(&[0x81, 0x02, b'h', b'i']))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = within("to the end", tls.read_to_end(&mut rest)).await;
    // EOF (not an error): the server sent close_notify after its Close.
    assert!(read.is_ok(), "no close_notify: {read:?}");
    assert_eq!(rest.first(), Some(&0x88), "a Close frame: {rest:?}");
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1002);
    // The server is still draining: it ends when this client closes.
    drop(tls);
    let seen = next_event(&setup.closed).await;
    assert_eq!(seen.code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(seen.outcome, CloseOutcome::PeerGone);
}

#[async_std::test]
async fn refusals_at_accept_drop_the_socket_without_a_tls_handshake() {
    let setup = start_tls(|s| s.max_connections(1)).await;
    let mut held = connect_wss(&setup.server, "/", &setup.cert).await;
    assert_echo_tls(&mut held, "holding the one place").await;
    let mut tcp = TcpStream::connect(setup.server.addr).await.unwrap();
    let got = wait_until_dropped(&mut tcp, STEP).await;
    assert_eq!(got, 0, "nothing in plaintext on a TLS port");
    assert_eq!(
        setup.server.stats().rejected(RejectReason::MaxConnections),
        1
    );
}

#[async_std::test]
async fn pem_files_that_do_not_work_are_config_errors_naming_the_file() {
    let cert = TestCert::new();
    let missing = std::env::temp_dir().join("wharf-no-such-file.pem");
    let err = TlsConfig::from_pem_files(&missing, &cert.key_path).unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting: "tls", reason } if reason.contains("wharf-no-such-file.pem")),
        "{err}"
    );
    // The key where the certificate belongs, and the other way around.
    let err = TlsConfig::from_pem_files(&cert.key_path, &cert.key_path).unwrap_err();
    assert!(matches!(err, Error::Config { setting: "tls", .. }), "{err}");
    let err = TlsConfig::from_pem_files(&cert.cert_path, &cert.cert_path).unwrap_err();
    assert!(matches!(err, Error::Config { setting: "tls", .. }), "{err}");
    // A key that is not the certificate's.
    let other = TestCert::new();
    let err = TlsConfig::from_pem_files(&cert.cert_path, &other.key_path).unwrap_err();
    assert!(matches!(err, Error::Config { setting: "tls", .. }), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}

#[async_std::test]
async fn a_rustls_config_without_http_1_1_is_refused_at_bind() {
    let cert = TestCert::new();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = vec![cert.der.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key_path).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = TlsConfig::from_rustls(Arc::new(config.clone()));
    let err = Server::new()
        .tls(tls)
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { setting: "tls", .. }), "{err}");
    // Without ALPN, Wharf offers http/1.1 and serves.
    config.alpn_protocols.clear();
    let (closed, _) = unbounded();
    let (outcomes, _) = unbounded();
    let server = start(
        Server::new()
            .fallback(Echo { closed, outcomes })
            .tls(TlsConfig::from_rustls(Arc::new(config))),
    )
    .await;
    let mut client = connect_wss(&server, "/", &cert).await;
    assert_echo_tls(&mut client, "from_rustls").await;
}

use rustls::pki_types::pem::PemObject;

#[async_std::test]
async fn a_reload_serves_the_new_certificate_to_new_handshakes() {
    let first = TestCert::new();
    // The application keeps a clone of what it gave the server.
    let config = first.server_config();
    let (closed, _) = unbounded();
    let (outcomes, _) = unbounded();
    let server = start(
        Server::new()
            .fallback(Echo { closed, outcomes })
            .tls(config.clone()),
    )
    .await;
    let mut before = connect_wss(&server, "/", &first).await;
    assert_echo_tls(&mut before, "first certificate").await;

    let second = TestCert::new();
    config
        .reload_pem_files(&second.cert_path, &second.key_path)
        .expect("reload");
    let mut after = connect_wss(&server, "/", &second).await;
    assert_echo_tls(&mut after, "second certificate").await;
    // A client that trusts only the first certificate now fails.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    assert!(within("handshake", tls_handshake(tcp, &first))
        .await
        .is_err());
    // The connection opened before the reload is untouched.
    assert_echo_tls(&mut before, "still the first session").await;
    // A reload that fails keeps the current configuration.
    let err = config
        .reload_pem_files(&second.cert_path, &first.key_path)
        .unwrap_err();
    assert!(matches!(err, Error::Config { setting: "tls", .. }), "{err}");
    let mut again = connect_wss(&server, "/", &second).await;
    assert_echo_tls(&mut again, "second still").await;
}
