//! Clients as a proxy's connections look: PROXY protocol headers built by
//! hand (versions 1 and 2), TCP connections from another loopback address
//! (127.0.0.2 is not 127.0.0.1 to a trusted-proxy list), and a WebSocket
//! client over a stream that already carries such a prefix.

use std::net::{IpAddr, SocketAddr};

use async_std::io::WriteExt;
use async_std::net::TcpStream;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::WebSocketStream;
use futures_util::{AsyncRead, AsyncWrite};

use crate::within;

/// The version 2 signature.
pub const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A version 1 line for a TCP connection from `source` to `dest` (one
/// family for both).
pub fn proxy_v1(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        dest.ip(),
        source.port(),
        dest.port()
    )
    .into_bytes()
}

/// A version 2 `PROXY` block for a TCP connection from `source` to `dest`
/// (one family for both), with `tlvs` appended (raw TLV bytes).
pub fn proxy_v2(source: SocketAddr, dest: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut addresses = Vec::new();
    let family = match (source.ip(), dest.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addresses.extend(s.octets());
            addresses.extend(d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            addresses.extend(s.octets());
            addresses.extend(d.octets());
            0x21
        }
        _ => panic!("one address family for both ends"),
    };
    addresses.extend(source.port().to_be_bytes());
    addresses.extend(dest.port().to_be_bytes());
    addresses.extend(tlvs);
    proxy_v2_raw(0x21, family, &addresses)
}

/// A version 2 block with the given version/command and family/protocol
/// bytes and `body` (addresses and TLVs); the length is `body`'s.
pub fn proxy_v2_raw(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.push(version_command);
    out.push(family);
    out.extend(
        u16::try_from(body.len())
            .expect("a short body")
            .to_be_bytes(),
    );
    out.extend(body);
    out
}

/// A TCP connection to `addr` from the loopback address `local` (any
/// port), for a peer that is not 127.0.0.1.
pub async fn connect_from(local: IpAddr, addr: SocketAddr) -> TcpStream {
    crate::tcp::connect_configured(addr, move |socket| {
        socket.bind(&SocketAddr::new(local, 0).into())
    })
    .await
}

/// Writes `prefix` (a PROXY header, say) on `tcp`.
pub async fn send_prefix(tcp: &mut TcpStream, prefix: &[u8]) {
    within("write the prefix", tcp.write_all(prefix))
        .await
        .expect("write the prefix");
}

/// Upgrades `stream` (already connected, perhaps past a prefix or a TLS
/// handshake) to a WebSocket on `path` of `host`, with extra request
/// headers (an `X-Forwarded-For`, ...).
pub async fn upgrade_on<S>(
    stream: S,
    host: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: a TLS stream inside makes the future large (see `tls.rs`).
    Box::pin(within("websocket upgrade", async {
        let mut request = format!("ws://{host}{path}")
            .into_client_request()
            .expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, HeaderValue::from_str(value).expect("header"));
        }
        let (ws, _response) = async_tungstenite::client_async(request, stream)
            .await
            .expect("websocket handshake");
        ws
    }))
    .await
}
