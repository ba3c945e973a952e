//! The HTTP side, over raw TCP: upgrade requests, whole exchanges, and
//! reading a response head.

use std::net::SocketAddr;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;

use crate::within;

/// A well-formed upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    upgrade_request_with(path, &[])
}

/// A well-formed upgrade request for `path` with extra header lines
/// (`"Origin: http://x"`).
pub fn upgrade_request_with(path: &str, extra: &[&str]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// Sends `request` (whose bytes need not be text) over a fresh TCP
/// connection and returns everything the server answers until it ends the
/// stream (the server closes after every non-101 answer), as text. A read
/// error fails the test; see [`http_exchange_allowing_reset`].
pub async fn http_exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    within("http exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream
            .write_all(request.as_ref())
            .await
            .expect("write request");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read response");
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// [`http_exchange`], where a reset ends the response like the end of the
/// stream: for answers the server may send before it has read the whole
/// request (a refusal at accept time), after which closing the socket
/// resets it. What arrived before the reset is returned.
pub async fn http_exchange_allowing_reset(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    within("http exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream
            .write_all(request.as_ref())
            .await
            .expect("write request");
        let mut out = Vec::new();
        // A reset after the response still leaves the response read.
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
}

/// The status code of an HTTP/1.1 response, if `response` starts with a
/// well-formed status line.
pub fn http_status(response: &str) -> Option<u16> {
    let rest = response.strip_prefix("HTTP/1.1 ")?;
    let code = rest.get(..3)?;
    if rest.as_bytes().get(3) != Some(&b' ') || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

/// The status code of an HTTP/1.1 response; fails the test when
/// `response` does not start with a well-formed status line.
pub fn status(response: &str) -> u16 {
    http_status(response).unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// Reads a response head (up to the blank line) one byte at a time, so
/// nothing after it is consumed. `None` when the stream ends first (the
/// bytes read so far are then in `partial` of the panic message, never
/// silently dropped: a server that answers must answer whole).
pub async fn read_response_head(stream: &mut TcpStream) -> Option<String> {
    within("response head", async {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => {
                    assert!(
                        head.is_empty(),
                        "the stream ended inside a response head: {:?}",
                        String::from_utf8_lossy(&head)
                    );
                    return None;
                }
            }
            assert!(head.len() < 64 << 10, "endless response head");
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    })
    .await
}
