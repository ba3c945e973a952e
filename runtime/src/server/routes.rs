//! What a server serves: WebSocket routes and fixed pages, by path.
//!
//! Plain data built by the [`Server`](crate::Server) builder and looked up
//! for each request; this module never touches a socket.

use std::fmt;
use std::sync::Arc;

use crate::connection::message::Bytes;
use crate::handler::{DynHandler, Handler};

/// A WebSocket route: a path, its handler, and the subprotocols it speaks.
///
/// # Examples
///
/// ```
/// use wharf::{Handler, Route, Server};
///
/// struct Chat;
/// impl Handler for Chat {}
///
/// let server = Server::new().mount(Route::new("/chat", Chat).subprotocols(["chat.v2", "chat.v1"]));
/// # drop(server);
/// ```
pub struct Route {
    pub(crate) path: String,
    pub(crate) handler: Arc<dyn DynHandler>,
    pub(crate) subprotocols: Vec<String>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("path", &self.path)
            .field("subprotocols", &self.subprotocols)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// A route serving `handler` at exactly `path` (no prefix matching; the
    /// query string is ignored when matching).
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{Handler, Route};
    ///
    /// struct Chat;
    /// impl Handler for Chat {}
    ///
    /// let route = Route::new("/chat", Chat);
    /// # drop(route);
    /// ```
    pub fn new(path: impl Into<String>, handler: impl Handler) -> Self {
        Route {
            path: path.into(),
            handler: Arc::new(handler),
            subprotocols: Vec::new(),
        }
    }

    /// Subprotocols this route accepts. The opening handshake picks the first one in
    /// the client's `Sec-WebSocket-Protocol` list that appears here; with
    /// none in common the upgrade proceeds without a subprotocol (RFC 6455
    /// 4.2.2) and [`Conn::subprotocol`](crate::Conn::subprotocol) is `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf::{Handler, Route};
    ///
    /// struct Chat;
    /// impl Handler for Chat {}
    ///
    /// // A client offering "chat.v1, chat.v2" gets chat.v1: the client's
    /// // order is its preference.
    /// let route = Route::new("/chat", Chat).subprotocols(["chat.v2", "chat.v1"]);
    /// # drop(route);
    /// ```
    pub fn subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }
}

/// A fixed HTTP response served on a path (for example the page of a chat
/// example). Wharf is not an HTTP framework: pages answer `GET` and `HEAD`
/// with `200` and `Connection: close`, anything else with 405.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
}

#[derive(Debug)]
pub(crate) enum Endpoint {
    Ws(Arc<Route>),
    Page(Page),
}
