//! Answers other than `101`: the server's own refusals, an upgrade
//! handler's rejection, pages, and how a final response is written and the
//! socket let go.

use std::time::Duration;

use async_tungstenite::tungstenite::http;
use futures_util::{AsyncReadExt, AsyncWriteExt};

use super::request::Rejection;
use crate::rt::{self, TcpStream};

/// How long an error response waits for the client to close after it, so
/// that unread request bytes do not turn our close into a reset that wipes
/// the response from the client's buffer.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and discarded while lingering.
const LINGER_BYTES: usize = 64 << 10;

/// An error answer to a request, sent instead of an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed,
    UpgradeRequired,
    HeadersTooLarge,
    /// An `Origin` not allowed.
    Forbidden,
    /// Over a per-IP limit.
    TooManyRequests,
    /// Over the overall limit, or shutting down.
    Unavailable(&'static str),
}

impl Refusal {
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::NotFound => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::UpgradeRequired => 426,
            Refusal::HeadersTooLarge => 431,
            Refusal::Forbidden => 403,
            Refusal::TooManyRequests => 429,
            Refusal::Unavailable(_) => 503,
        }
    }

    fn response(self) -> Vec<u8> {
        match self {
            Refusal::BadRequest(why) => {
                response(400, "Bad Request", &[], why.as_bytes(), "text/plain")
            }
            Refusal::NotFound => response(404, "Not Found", &[], b"Not found\n", "text/plain"),
            Refusal::MethodNotAllowed => response(
                405,
                "Method Not Allowed",
                &[("Allow", "GET")],
                b"Use GET\n",
                "text/plain",
            ),
            Refusal::UpgradeRequired => response(
                426,
                "Upgrade Required",
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
                b"This endpoint speaks WebSocket: connect with a WebSocket client.\n",
                "text/plain",
            ),
            Refusal::HeadersTooLarge => response(
                431,
                "Request Header Fields Too Large",
                &[],
                b"Request headers too large\n",
                "text/plain",
            ),
            Refusal::Forbidden => {
                response(403, "Forbidden", &[], b"Origin not allowed\n", "text/plain")
            }
            Refusal::TooManyRequests => response(
                429,
                "Too Many Requests",
                &[("Retry-After", "1")],
                b"Too many connections\n",
                "text/plain",
            ),
            Refusal::Unavailable(why) => response(
                503,
                "Service Unavailable",
                &[("Retry-After", "1")],
                why.as_bytes(),
                "text/plain",
            ),
        }
    }
}
/// A complete `Connection: close` response. When `headers` offer an
/// `Upgrade` (the 426), `Connection` lists `Upgrade` too, as RFC 7230
/// section 6.7 requires.
pub(crate) fn response(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    content_type: &str,
) -> Vec<u8> {
    let offers_upgrade = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("upgrade"));
    let connection = if offers_upgrade {
        "Upgrade, close"
    } else {
        "close"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The response for an upgrade handler's rejection.
pub(crate) fn rejection(rejection: &Rejection) -> Vec<u8> {
    let status = rejection.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Rejected");
    let headers: Vec<(&str, &str)> = rejection
        .extra_headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    response(
        status,
        reason,
        &headers,
        rejection.body().as_bytes(),
        "text/plain; charset=utf-8",
    )
}

/// Sends a refusal and closes the socket.
pub(crate) async fn refuse(stream: TcpStream, refusal: Refusal) {
    send_and_close(stream, &refusal.response()).await;
}

/// Writes a final response, half-closes, and lingers briefly so the client
/// reads the response before the socket goes away.
pub(crate) async fn send_and_close(mut stream: TcpStream, bytes: &[u8]) {
    if rt::timeout(LINGER, stream.write_all(bytes)).await.is_none() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = rt::timeout(LINGER, async {
        let mut scratch = [0u8; 512];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
