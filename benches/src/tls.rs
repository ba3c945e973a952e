//! The churn cycle over TLS: a self-signed certificate for `localhost`
//! made when the bench starts (rcgen, ECDSA P-256), the server's
//! `TlsConfig`, and async-tungstenite clients over futures-rustls with the
//! ring provider, TLS 1.3, and no session resumption (each cycle is a full
//! handshake, the cost a new client brings).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_std::net::TcpStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::TlsConnector;
use futures_util::StreamExt;

use crate::client::{client_config, CYCLE_MESSAGE};
use crate::BenchResult;

/// A client over TLS.
pub type TlsClient = WebSocketStream<futures_rustls::client::TlsStream<TcpStream>>;

/// The server's and the clients' sides of one certificate.
#[derive(Clone)]
pub struct Tls {
    /// For `Server::tls`.
    pub server: wharf::TlsConfig,
    /// For the clients' connector.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// A fresh certificate and both configurations.
    pub fn new() -> BenchResult<Tls> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let mut roots = RootCertStore::empty();
        roots.add(cert)?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Tls {
            server: wharf::TlsConfig::from_rustls(Arc::new(server)),
            client: Arc::new(client),
        })
    }
}

/// Connects over TLS to `addr` and upgrades on `path`.
pub async fn connect(addr: SocketAddr, path: &str, tls: &Tls) -> BenchResult<TlsClient> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    let stream = TlsConnector::from(Arc::clone(&tls.client))
        .connect(name, stream)
        .await?;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, _) =
        async_tungstenite::client_async_with_config(url, stream, Some(client_config())).await?;
    Ok(ws)
}

/// One churn cycle over TLS, the client closing: connect, TLS handshake,
/// upgrade, one echo of [`CYCLE_MESSAGE`], the closing handshake, and the
/// end of the stream.
pub async fn cycle(addr: SocketAddr, tls: &Tls) -> BenchResult<()> {
    let mut client = Box::pin(connect(addr, crate::ECHO_PATH, tls)).await?;
    let msg = Message::text(CYCLE_MESSAGE);
    client.send(msg.clone()).await?;
    match client.next().await {
        Some(Ok(reply)) if reply == msg => {}
        other => return Err(format!("expected the echo, got {other:?}").into()),
    }
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    client.close(Some(frame)).await?;
    while let Some(msg) = client.next().await {
        msg?;
    }
    Ok(())
}

/// [`crate::client::churn`] over TLS (client close): `cycles` cycles,
/// `concurrency` at a time; returns the elapsed time.
pub async fn churn(
    addr: SocketAddr,
    tls: &Tls,
    concurrency: usize,
    cycles: u64,
) -> BenchResult<Duration> {
    crate::client::run_cycles(concurrency, cycles, || cycle(addr, tls)).await
}
