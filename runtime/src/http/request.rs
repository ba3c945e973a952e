//! The upgrade request as the application sees it before accepting, and the
//! HTTP answer it may give instead.
//!
//! An `upgrade` handler runs after Wharf has checked that the request is a
//! valid WebSocket upgrade for a known route, and before the `101` is
//! written: rejecting here costs no WebSocket state at all. This module only
//! describes requests and rejections; the server writes the responses.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};

use crate::extensions::Extensions;

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
    pub(crate) peer: SocketAddr,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) extensions: Mutex<Extensions>,
    /// The server's application state.
    pub(crate) state: Arc<Extensions>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("peer", &self.peer)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The peer's socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The request path, without the query string.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The first value of query parameter `key`, percent-decoded.
    pub fn query(&self, key: &str) -> Option<&str> {
        super::query::query_value(&self.query, key)
    }

    /// Every query parameter in request order, percent-decoded.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Data for the connection this request will become; see the type's
    /// docs. The guard locks the map: do not hold it across an `.await`.
    pub fn extensions(&self) -> MutexGuard<'_, Extensions> {
        self.extensions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The application state of type `T` registered with
    /// [`Server::state`](crate::Server::state), if any.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state.get()
    }
}

/// An HTTP answer that refuses an upgrade: a status, a plain-text body and
/// optional extra headers. The socket is closed after it is sent.
///
/// # Examples
///
/// ```
/// use wharf::Rejection;
///
/// let busy = Rejection::too_many_requests("slow down\n").header("Retry-After", "5");
/// assert_eq!(busy.status(), 429);
/// let custom = Rejection::new(451, "unavailable here\n");
/// assert_eq!(custom.status(), 451);
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    status: u16,
    body: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection with `status` and `body`.
    ///
    /// A rejection must be an error: a status outside 400-599 is answered as
    /// 500, and logged, because a `2xx` or `101` here would tell the client
    /// the upgrade went ahead.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(body: impl Into<String>) -> Self {
        Self::new(400, body)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(body: impl Into<String>) -> Self {
        Self::new(401, body)
    }

    /// 403 Forbidden.
    pub fn forbidden(body: impl Into<String>) -> Self {
        Self::new(403, body)
    }

    /// 429 Too Many Requests.
    pub fn too_many_requests(body: impl Into<String>) -> Self {
        Self::new(429, body)
    }

    /// 503 Service Unavailable.
    pub fn unavailable(body: impl Into<String>) -> Self {
        Self::new(503, body)
    }

    /// Adds a response header (`WWW-Authenticate`, `Retry-After`, ...).
    /// A name or value that is not valid HTTP is dropped and logged.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => self.headers.push((name, value)),
            _ => tracing::warn!(name, "invalid rejection header dropped"),
        }
        self
    }

    /// The status that will be sent (500 for one outside 400-599).
    pub fn status(&self) -> u16 {
        if (400..=599).contains(&self.status) {
            self.status
        } else {
            500
        }
    }

    /// The body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The status the handler asked for, before the 400-599 check.
    pub(crate) fn requested_status(&self) -> u16 {
        self.status
    }

    pub(crate) fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}
