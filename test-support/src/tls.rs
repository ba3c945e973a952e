//! TLS for the tests: a certificate made at test time (rcgen), the server's
//! `TlsConfig` from its PEM files, and clients over futures-rustls (a
//! WebSocket client, a raw TLS stream, the first bytes of a handshake).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::Message as WsMessage;
use async_tungstenite::WebSocketStream;
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use futures_util::StreamExt;
use wharf::TlsConfig;

use crate::{within, ClosedBy, TestServer};

/// A client's TLS stream over TCP.
pub type TlsStream = futures_rustls::client::TlsStream<TcpStream>;

/// async-tungstenite's client over TLS.
pub type TlsClient = WebSocketStream<TlsStream>;

/// A self-signed certificate for `localhost` and `127.0.0.1`, made at test
/// time, with its key, in PEM files that are removed on drop.
#[derive(Debug)]
pub struct TestCert {
    /// The certificate, DER, for a client's root store.
    pub der: CertificateDer<'static>,
    /// The certificate's PEM file.
    pub cert_path: PathBuf,
    /// The private key's PEM file.
    pub key_path: PathBuf,
}

impl TestCert {
    /// A new certificate and key, written to fresh files in the temporary
    /// directory.
    pub fn new() -> TestCert {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("generate a certificate");
        let stem = format!(
            "wharf-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir();
        let cert_path = dir.join(format!("{stem}-cert.pem"));
        let key_path = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert_path, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, made.signing_key.serialize_pem()).expect("write the key");
        TestCert {
            der: made.cert.der().clone(),
            cert_path,
            key_path,
        }
    }

    /// The server's TLS configuration, read from the PEM files.
    pub fn server_config(&self) -> TlsConfig {
        TlsConfig::from_pem_files(&self.cert_path, &self.key_path).expect("load the PEM files")
    }

    /// A client configuration that trusts this certificate (ring provider,
    /// ALPN `http/1.1`).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("add the root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCert {
    fn default() -> Self {
        TestCert::new()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert_path);
        let _ = std::fs::remove_file(&self.key_path);
    }
}

/// Completes a TLS handshake with `addr` as `localhost` over `tcp`.
pub async fn tls_handshake(tcp: TcpStream, cert: &TestCert) -> std::io::Result<TlsStream> {
    let connector = futures_rustls::TlsConnector::from(cert.client_config());
    let name = ServerName::try_from("localhost").expect("a server name");
    connector.connect(name, tcp).await
}

// The futures of these helpers are boxed: with TLS state inside, a test's
// future grows past what a test thread's stack holds in a debug build.

/// A TCP connection to `addr` and a completed TLS handshake on it.
pub async fn tls_connect(addr: SocketAddr, cert: &TestCert) -> TlsStream {
    Box::pin(within("tls connect", async {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        tls_handshake(tcp, cert).await.expect("tls handshake")
    }))
    .await
}

/// Connects async-tungstenite's client over TLS to `path` (with its query
/// string) on `server`, a TLS listener.
pub async fn connect_wss(server: &TestServer, path: &str, cert: &TestCert) -> TlsClient {
    Box::pin(connect_wss_with_headers(server, path, cert, &[])).await
}

/// [`connect_wss`] with extra request headers.
pub async fn connect_wss_with_headers(
    server: &TestServer,
    path: &str,
    cert: &TestCert,
    headers: &[(&'static str, &str)],
) -> TlsClient {
    let tls = tls_connect(server.addr, cert).await;
    Box::pin(within("wss upgrade", async {
        let url = format!("wss://localhost:{}{}", server.addr.port(), path);
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        let (ws, _response) = async_tungstenite::client_async(request, tls)
            .await
            .expect("websocket handshake over TLS");
        ws
    }))
    .await
}

/// Sends `request` over a fresh TLS connection and returns everything the
/// server answers until the TLS stream ends, as text. A reset or a missing
/// `close_notify` after the answer ends it too.
pub async fn tls_http_exchange(addr: SocketAddr, cert: &TestCert, request: &[u8]) -> String {
    let mut tls = tls_connect(addr, cert).await;
    Box::pin(within("https exchange", async {
        tls.write_all(request).await.expect("write the request");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }))
    .await
}

/// How a TLS stream ended after the WebSocket closing handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEnd {
    /// The server sent `close_notify`: the stream ended cleanly.
    CloseNotify,
    /// The stream failed, or ended without `close_notify` (rustls reports
    /// an unexpected EOF): the error.
    Error(String),
}

/// Reads until the server's Close frame, lets the client answer it, and
/// reads on until the TLS stream ends; says how it ended. rustls ends a
/// read with EOF only after the peer's `close_notify`; a TCP close without
/// one is an `UnexpectedEof` error.
pub async fn closed_by_server_tls(client: &mut TlsClient) -> (ClosedBy, TlsEnd) {
    Box::pin(within("server close over TLS", async {
        let mut before = Vec::new();
        let mut close = None;
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Close(frame))) => {
                    close = Some(frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.as_str().to_owned())
                    }));
                }
                Some(Ok(msg @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => before.push(msg),
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    return (ClosedBy { close, before }, TlsEnd::Error(err.to_string()))
                }
                None => return (ClosedBy { close, before }, TlsEnd::CloseNotify),
            }
        }
    }))
    .await
}

/// The first flight of a TLS client (its ClientHello record), as bytes.
pub fn client_hello(cert: &TestCert) -> Vec<u8> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut conn =
        rustls::ClientConnection::new(cert.client_config(), name).expect("a client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write the ClientHello");
    }
    out
}
