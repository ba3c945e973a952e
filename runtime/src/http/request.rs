//! The upgrade request as the application sees it before accepting.
//!
//! An `upgrade` handler runs after Wharf has checked that the request is a
//! valid WebSocket upgrade for a known route, and before the `101` is
//! written: rejecting here (with a [`Rejection`](super::response::Rejection))
//! costs no WebSocket state at all. This module only describes requests;
//! the server writes the responses.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ::http::HeaderMap;

use super::query::Query;
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
    pub(crate) query: Query,
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
}
