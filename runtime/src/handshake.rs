//! The HTTP/1.1 side of a connection: reading the upgrade request, deciding
//! between 101 and an error status, and writing the answer.
//!
//! Wharf parses the request itself (with `httparse`) instead of handing the
//! socket to tungstenite's handshake, so that it can answer 404, 405, 426 and
//! 431 with a proper response before any WebSocket work, and bound the time
//! and memory a client can spend before the upgrade. This module never
//! touches WebSocket frames.

use std::io;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::http::{self, HeaderMap, HeaderName, HeaderValue};
use futures_util::{AsyncReadExt, AsyncWriteExt};

use crate::rt::{self, TcpStream};
use crate::upgrade::Rejection;

/// Headers parsed from one request at most; more is answered with 431.
const MAX_HEADERS: usize = 64;
/// How long an error response waits for the client to close after it, so
/// that unread request bytes do not turn our close into a reset that wipes
/// the response from the client's buffer.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and discarded while lingering.
const LINGER_BYTES: usize = 64 << 10;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// HTTP minor version (1 for HTTP/1.1).
    pub(crate) minor_version: u8,
    /// The path without the query string, as sent (not percent-decoded).
    pub(crate) path: String,
    /// The raw query string, without the `?`.
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
}

/// What reading a request head produced.
#[derive(Debug)]
pub(crate) enum Head {
    /// A complete head, and any bytes the client sent after it (the start of
    /// its first WebSocket frame, if it did not wait for our 101).
    Complete(Request, Vec<u8>),
    /// The head grew past the limit or had too many headers: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed,
    /// The client closed before finishing its request.
    Eof,
}

/// Reads one request head of at most `max` bytes.
pub(crate) async fn read_head(stream: &mut TcpStream, max: usize) -> io::Result<Head> {
    let mut buf = vec![0u8; 1024.min(max)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= max {
                return Ok(Head::TooLarge);
            }
            buf.resize((buf.len() * 2).min(max), 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(Head::Eof);
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let Some(request) = convert(&req) else {
                    return Ok(Head::Malformed);
                };
                let rest = buf[len..filled].to_vec();
                return Ok(Head::Complete(request, rest));
            }
            Err(httparse::Error::TooManyHeaders) => return Ok(Head::TooLarge),
            Err(_) => return Ok(Head::Malformed),
        }
    }
}

fn convert(req: &httparse::Request<'_, '_>) -> Option<Request> {
    let target = req.path?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    Some(Request {
        method: req.method?.to_owned(),
        minor_version: req.version?,
        path: path.to_owned(),
        query,
        headers,
    })
}

/// Whether a comma-separated header contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// A `Sec-WebSocket-Key` must be the base64 of 16 bytes: 22 characters of
/// the base64 alphabet then `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

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

/// The accepted parts of a valid upgrade request.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub(crate) accept_key: String,
    pub(crate) subprotocol: Option<String>,
}

/// Checks a request against RFC 6455 section 4.2.1 and picks a subprotocol.
///
/// A request without `Upgrade: websocket` is a plain HTTP request on a
/// WebSocket route: 426. A WebSocket request of another version: 426 with
/// `Sec-WebSocket-Version: 13`. Other defects: 400 or 405.
///
/// The subprotocol is the first one the client lists that the route
/// supports (the client's order is its preference).
pub(crate) fn check_upgrade(req: &Request, supported: &[String]) -> Result<Upgrade, Refusal> {
    if !has_token(&req.headers, "upgrade", "websocket") {
        return Err(Refusal::UpgradeRequired);
    }
    if req.method != "GET" {
        return Err(Refusal::MethodNotAllowed);
    }
    if req.minor_version < 1 {
        return Err(Refusal::BadRequest("WebSocket needs HTTP/1.1\n"));
    }
    // RFC 7230 5.4: exactly one Host; RFC 6455 4.2.1 requires it.
    if req.headers.get_all("host").iter().count() != 1 {
        return Err(Refusal::BadRequest("Need exactly one Host header\n"));
    }
    if !has_token(&req.headers, "connection", "upgrade") {
        return Err(Refusal::BadRequest("Missing 'Connection: Upgrade'\n"));
    }
    if req
        .headers
        .get("sec-websocket-version")
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Refusal::UpgradeRequired);
    }
    let key = match req.headers.get("sec-websocket-key") {
        Some(key) if is_valid_key(key.as_bytes()) => key,
        _ => {
            return Err(Refusal::BadRequest(
                "Missing or invalid Sec-WebSocket-Key\n",
            ))
        }
    };
    let subprotocol = req
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| supported.iter().any(|s| s == offered))
        .map(str::to_owned);
    Ok(Upgrade {
        accept_key: derive_accept_key(key.as_bytes()),
        subprotocol,
    })
}

/// The 101 response that completes an upgrade.
pub(crate) fn switching_protocols(upgrade: &Upgrade) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        upgrade.accept_key
    );
    if let Some(protocol) = &upgrade.subprotocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(protocol);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
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

/// Decodes an `application/x-www-form-urlencoded` query string into pairs:
/// `+` is a space, `%XX` a byte; invalid escapes are kept as written and
/// invalid UTF-8 is replaced with U+FFFD, so no input is refused.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode_component(key), decode_component(value))
        })
        .collect()
}

/// The first value of `key` among decoded query pairs.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let pairs = parse_query("token=s%20e+c&empty=&flag&x=%zz&y=%4&&u=%C3%A9");
        let expect = [
            ("token", "s e c"),
            ("empty", ""),
            ("flag", ""),
            ("x", "%zz"),
            ("y", "%4"),
            ("u", "é"),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert_eq!(parse_query("a=%FF")[0].1, "\u{FFFD}");
        assert_eq!(parse_query("a=%")[0].1, "%");
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        assert!(!is_valid_key(b""));
    }
}
