//! The connection context handed to handlers.
//!
//! A [`Conn`] is a [`Handle`] plus what only the connection's own handlers
//! need: the request that opened it, its per-connection data, the server's
//! registry and application state. It never touches the socket.

use std::ops::Deref;
use std::sync::{Arc, MutexGuard};

use async_tungstenite::tungstenite::http::HeaderMap;

use super::handle::{Handle, Shared};
use super::registry::Registry;
use crate::extensions::Extensions;

/// The context every handler receives: the request that opened the
/// connection, per-connection data, and (through [`Deref`] to [`Handle`])
/// `send`, `close` and the rest of a handle's methods.
#[derive(Debug)]
pub struct Conn {
    handle: Handle,
    registry: Registry,
    state: Arc<Extensions>,
}

impl Deref for Conn {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, registry: Registry, state: Arc<Extensions>) -> Self {
        Conn {
            handle: Handle { shared },
            registry,
            state,
        }
    }

    /// A clonable handle to this connection for other tasks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The first value of query parameter `key`, percent-decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     // ws://host/chat?token=s3cret&name=Ann%20Lee
    ///     if conn.query("token") != Some("s3cret") {
    ///         conn.close(wharf::CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn query(&self, key: &str) -> Option<&str> {
        crate::http::query::query_value(self.query_pairs(), key)
    }

    /// Every query parameter in request order, percent-decoded.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.handle.shared.info.query
    }

    /// The headers of the upgrade request.
    pub fn headers(&self) -> &HeaderMap {
        &self.handle.shared.info.headers
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.handle.shared.info.subprotocol.as_deref()
    }

    /// Typed per-connection data. Its values are dropped when the connection
    /// ends, right after the close handler returns.
    ///
    /// The returned guard locks the map: do not hold it across an `.await`.
    ///
    /// # Examples
    ///
    /// ```
    /// struct User(String);
    ///
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     let name = conn.query("name").unwrap_or("guest").to_owned();
    ///     conn.extensions().insert(User(name));
    ///     Ok(())
    /// }
    ///
    /// async fn on_message(conn: &wharf::Conn, msg: wharf::Message) -> wharf::Result<()> {
    ///     let line = {
    ///         let ext = conn.extensions();
    ///         let name = ext.get::<User>().map_or("?", |u| u.0.as_str());
    ///         format!("{name}: {}", msg.as_text().unwrap_or("<binary>"))
    ///     }; // the guard is dropped before awaiting
    ///     conn.send(line).await
    /// }
    /// ```
    pub fn extensions(&self) -> MutexGuard<'_, Extensions> {
        self.handle
            .shared
            .extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The server's registry of live connections.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The application state of type `T` registered with
    /// [`Server::state`](crate::Server::state), shared by every connection;
    /// `None` when no value of that type was registered.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// #[derive(Default)]
    /// struct Stats {
    ///     messages: AtomicU64,
    /// }
    ///
    /// async fn count(conn: &wharf::Conn, _msg: wharf::Message) -> wharf::Result<()> {
    ///     if let Some(stats) = conn.state::<Stats>() {
    ///         stats.messages.fetch_add(1, Ordering::Relaxed);
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let server = wharf::Server::new().state(Stats::default());
    /// # drop(server);
    /// ```
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state.get()
    }
}
