//! Reading the HTTP/1.1 upgrade request head.
//!
//! Wharf parses the request itself (with `httparse`) instead of handing the
//! socket to tungstenite's opening handshake, so that it can answer 404, 405,
//! 426 and 431 with a proper response before any WebSocket work, and bound
//! the time and memory a client can spend before the upgrade. This module
//! only reads; it never writes to the socket.

use std::io;

use ::http::{HeaderMap, HeaderName, HeaderValue};
use futures_util::AsyncReadExt;

use crate::net::Stream;

/// Headers parsed from one request at most; more is answered with 431.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
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
    Complete(RequestHead, Vec<u8>),
    /// The head grew past the limit or had too many headers: 431.
    TooLarge,
    /// Not HTTP: 400.
    Malformed,
    /// The client closed before finishing its request.
    Eof,
}

/// Reads one request head of at most `max` bytes.
pub(crate) async fn read_head(stream: &mut Stream, max: usize) -> io::Result<Head> {
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

fn convert(req: &httparse::Request<'_, '_>) -> Option<RequestHead> {
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
    Some(RequestHead {
        method: req.method?.to_owned(),
        minor_version: req.version?,
        path: path.to_owned(),
        query,
        headers,
    })
}

/// The subprotocols a request offers, in the client's order.
pub(crate) fn offered_subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|offered| !offered.is_empty())
}
