//! The WebSocket upgrade checks of RFC 6455 section 4.2.1 and the `101`
//! answer that completes the opening handshake.

use ::http::HeaderMap;
use async_tungstenite::tungstenite::handshake::derive_accept_key;

use super::head::RequestHead;
use super::request::Reply;
use super::response::Rejection;

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
pub(crate) fn check_upgrade(req: &RequestHead, supported: &[String]) -> Result<Upgrade, Rejection> {
    if !has_token(&req.headers, "upgrade", "websocket") {
        return Err(Rejection::upgrade_required());
    }
    if req.method != "GET" {
        return Err(Rejection::method_not_allowed());
    }
    if req.minor_version < 1 {
        return Err(Rejection::malformed("WebSocket needs HTTP/1.1\n"));
    }
    // RFC 7230 5.4: exactly one Host; RFC 6455 4.2.1 requires it.
    if req.headers.get_all("host").iter().count() != 1 {
        return Err(Rejection::malformed("Need exactly one Host header\n"));
    }
    if !has_token(&req.headers, "connection", "upgrade") {
        return Err(Rejection::malformed("Missing 'Connection: Upgrade'\n"));
    }
    if req
        .headers
        .get("sec-websocket-version")
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Rejection::upgrade_required());
    }
    let key = match req.headers.get("sec-websocket-key") {
        Some(key) if is_valid_key(key.as_bytes()) => key,
        _ => {
            return Err(Rejection::malformed(
                "Missing or invalid Sec-WebSocket-Key\n",
            ))
        }
    };
    let subprotocol = super::head::offered_subprotocols(&req.headers)
        .find(|offered| supported.iter().any(|s| s == offered))
        .map(str::to_owned);
    Ok(Upgrade {
        accept_key: derive_accept_key(key.as_bytes()),
        subprotocol,
    })
}

/// The 101 response that completes an upgrade, with the subprotocol and
/// the headers of `reply` (checked when they were added).
pub(crate) fn switching_protocols(upgrade: &Upgrade, reply: &Reply) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        upgrade.accept_key
    )
    .into_bytes();
    if let Some(protocol) = &reply.subprotocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &reply.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZ!=="));
        assert!(!is_valid_key(b""));
    }
}
