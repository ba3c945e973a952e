//! The upgrade request as the application sees it before accepting.
//!
//! An `upgrade` handler runs after Wharf has checked that the request is a
//! valid WebSocket upgrade for a known route, and before the `101` is
//! written: rejecting here (with a [`Rejection`](super::response::Rejection))
//! costs no WebSocket state at all. Accepting, the handler may add
//! headers to the `101` and choose the subprotocol ([`Reply`]). This module
//! only describes requests; the server writes the responses.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ::http::header::{self, HeaderName, HeaderValue};
use ::http::HeaderMap;

use super::query::Query;
use crate::error::{Error, Result};
use crate::extensions::Extensions;

/// Headers of the `101` that Wharf writes itself (or that have no place
/// on a response without a body); an upgrade handler may not add them.
const OWNED_HEADERS: [HeaderName; 7] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

/// What the `101` carries besides what the protocol requires: the
/// upgrade handler's headers and the subprotocol.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) subprotocol: Option<String>,
}

/// A WebSocket upgrade request that passed the protocol checks, handed to
/// the route's `upgrade` handler before the server answers it.
///
/// Values put into [`extensions`](Self::extensions) here move into the
/// connection's own [`Conn::extensions`](crate::Conn::extensions) when the
/// upgrade goes ahead (for example the user an auth token belongs to).
///
/// # Examples
///
/// ```
/// use wharf::{Rejection, Request};
///
/// struct User(String);
///
/// async fn check(req: &Request) -> Result<(), Rejection> {
///     match req.query("token") {
///         Some("secret") => {
///             req.extensions().insert(User("ann".into()));
///             Ok(())
///         }
///         _ => Err(Rejection::unauthorized("missing or wrong token\n")),
///     }
/// }
/// ```
pub struct Request {
    /// The client: the TCP peer, or the address trusted proxies name.
    pub(crate) peer: SocketAddr,
    /// The TCP peer.
    pub(crate) tcp_peer: SocketAddr,
    pub(crate) path: String,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) extensions: Mutex<Extensions>,
    /// The server's application state.
    pub(crate) state: Arc<Extensions>,
    /// What the `101` will carry; starts with the route's subprotocol pick.
    pub(crate) reply: Mutex<Reply>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("peer", &self.peer)
            .field("tcp_peer", &self.tcp_peer)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The client's address: the TCP peer's, or, when the TCP peer is a
    /// trusted proxy ([`Server::trusted_proxies`](crate::Server::trusted_proxies)),
    /// the client it names in a PROXY protocol header or a `Forwarded` /
    /// `X-Forwarded-For` header. The port is 0 when the proxy gave none.
    /// This is the address the per-IP limits and the logs use; see
    /// [`tcp_peer_addr`](Self::tcp_peer_addr) for the socket's own peer.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     if req.peer_addr().ip().is_loopback() {
    ///         Ok(())
    ///     } else {
    ///         Err(wharf::Rejection::forbidden("local clients only\n"))
    ///     }
    /// }
    /// ```
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The TCP peer's socket address: the proxy's, for a client behind a
    /// trusted proxy; otherwise the same as [`peer_addr`](Self::peer_addr).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     if req.tcp_peer_addr() != req.peer_addr() {
    ///         tracing::debug!(client = %req.peer_addr(), proxy = %req.tcp_peer_addr(), "proxied");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn tcp_peer_addr(&self) -> SocketAddr {
        self.tcp_peer
    }

    /// The request path, without the query string.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     tracing::debug!(path = req.path(), "upgrade requested");
    ///     Ok(())
    /// }
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first value of query parameter `key`, percent-decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     req.query("room").map(drop).ok_or_else(|| wharf::Rejection::bad_request("which room?\n"))
    /// }
    /// ```
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key)
    }

    /// Every query parameter in request order, percent-decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     if req.query_pairs().len() > 10 {
    ///         return Err(wharf::Rejection::bad_request("too many parameters\n"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn query_pairs(&self) -> &[(String, String)] {
        self.query.pairs()
    }

    /// The request's headers.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     match req.headers().get("authorization") {
    ///         Some(value) if value.as_bytes() == b"Bearer s3cret" => Ok(()),
    ///         _ => Err(wharf::Rejection::unauthorized("bad token\n")),
    ///     }
    /// }
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Data for the connection this request will become; see the type's
    /// docs. The guard locks the map: do not hold it across an `.await`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Room(String);
    ///
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     let room = req.query("room").unwrap_or("lobby").to_owned();
    ///     req.extensions().insert(Room(room)); // read later with conn.extensions()
    ///     Ok(())
    /// }
    /// ```
    pub fn extensions(&self) -> MutexGuard<'_, Extensions> {
        self.extensions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The application state of type `T` registered with
    /// [`Server::state`](crate::Server::state), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashSet;
    ///
    /// struct Tokens(HashSet<String>);
    ///
    /// async fn check(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     let valid = req.state::<Tokens>().is_some_and(|t| req.query("token").is_some_and(|k| t.0.contains(k)));
    ///     if valid { Ok(()) } else { Err(wharf::Rejection::unauthorized("bad token\n")) }
    /// }
    /// ```
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state.get()
    }

    fn reply(&self) -> MutexGuard<'_, Reply> {
        self.reply.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a header to the `101 Switching Protocols` that accepts this
    /// request (a `Set-Cookie`, a request id); a second call with the same
    /// name adds a second header. Checked here, so the response is never
    /// malformed: a name or value that is not valid HTTP (a newline in a
    /// value, say) is an [`Error::InvalidHeader`] and nothing is added, and
    /// so is a header Wharf writes itself (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol`, which
    /// [`select_subprotocol`](Self::select_subprotocol) sets,
    /// `Sec-WebSocket-Extensions`) or one a `101` must not carry
    /// (`Content-Length`, `Transfer-Encoding`). The headers are sent only
    /// if the upgrade goes ahead; a [`Rejection`](crate::Rejection) carries
    /// its own.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn upgrade(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     req.response_header("Set-Cookie", "session=abc; Secure; HttpOnly")
    ///         .map_err(|_| wharf::Rejection::new(500, "bad cookie\n"))?;
    ///     assert!(req.response_header("X-Request-Id", "line\nbreak").is_err());
    ///     assert!(req.response_header("Upgrade", "h2c").is_err());
    ///     Ok(())
    /// }
    /// ```
    pub fn response_header(&self, name: &str, value: &str) -> Result<()> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::InvalidHeader(format!("{name:?} is not a header name")))?;
        if OWNED_HEADERS.contains(&name) {
            return Err(Error::InvalidHeader(format!(
                "{name} is written by Wharf itself and cannot be added"
            )));
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::InvalidHeader(format!(
                "the value of {name} is not a valid header value (control characters or non-ASCII)"
            ))
        })?;
        self.reply().headers.push((name, value));
        Ok(())
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in
    /// its order of preference.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn upgrade(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     if req.offered_subprotocols().next().is_none() {
    ///         return Err(wharf::Rejection::bad_request("offer a subprotocol\n"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn offered_subprotocols(&self) -> impl Iterator<Item = &str> + '_ {
        super::head::offered_subprotocols(&self.headers)
    }

    /// Chooses the subprotocol of the `101`, which must be one the client
    /// offered (otherwise [`Error::SubprotocolNotOffered`], and the choice
    /// stays). It replaces the route's own pick (the first offered one
    /// that [`Route::subprotocols`](crate::Route::subprotocols) lists),
    /// and need not be in that list. [`Conn::subprotocol`](crate::Conn::subprotocol)
    /// reports it.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn upgrade(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     // Prefer v2 whatever the client's order.
    ///     if req.offered_subprotocols().any(|p| p == "chat.v2") {
    ///         req.select_subprotocol("chat.v2").expect("offered");
    ///     }
    ///     assert!(req.select_subprotocol("never-offered").is_err());
    ///     Ok(())
    /// }
    /// ```
    pub fn select_subprotocol(&self, protocol: &str) -> Result<()> {
        if !self
            .offered_subprotocols()
            .any(|offered| offered == protocol)
        {
            return Err(Error::SubprotocolNotOffered(protocol.to_owned()));
        }
        self.reply().subprotocol = Some(protocol.to_owned());
        Ok(())
    }

    /// The subprotocol the `101` will carry so far: the route's pick, or
    /// the one [`select_subprotocol`](Self::select_subprotocol) chose.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn upgrade(req: &wharf::Request) -> Result<(), wharf::Rejection> {
    ///     tracing::debug!(subprotocol = ?req.subprotocol(), "accepting");
    ///     Ok(())
    /// }
    /// ```
    pub fn subprotocol(&self) -> Option<String> {
        self.reply().subprotocol.clone()
    }
}
