//! The connection context handed to handlers.
//!
//! A [`Conn`] is a [`Handle`] plus what only the connection's own handlers
//! need: the request that opened it, its per-connection data, the server's
//! registry and application state. It never touches the socket.

use std::sync::{Arc, MutexGuard};

use ::http::HeaderMap;

use super::handle::{connection_methods, Handle, Shared};
use super::registry::Registry;
use crate::extensions::Extensions;

/// The context every handler receives: the request that opened the
/// connection, per-connection data, the server's registry and state, and
/// everything a [`Handle`] can do (`send`, `close`, ...).
///
/// # Examples
///
/// ```
/// use wharf as ws;
///
/// #[ws::on("connect")]
/// async fn hello(conn: &ws::Conn) -> ws::Result<()> {
///     let name = conn.query("name").unwrap_or("guest");
///     conn.send(format!("hello {name}, you are #{}", conn.id())).await
/// }
/// # let _ = ws::handlers![hello];
/// ```
#[derive(Debug)]
pub struct Conn {
    pub(crate) shared: Arc<Shared>,
    registry: Registry,
    state: Arc<Extensions>,
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, registry: Registry, state: Arc<Extensions>) -> Self {
        Conn {
            shared,
            registry,
            state,
        }
    }

    connection_methods!(self => self.shared);

    /// A clonable handle to this connection for other tasks (timers, admin
    /// endpoints); it does not keep the connection open.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) {
    ///     let handle = conn.handle();
    ///     async_std::task::spawn(async move {
    ///         let _ = handle.send("sent from another task").await;
    ///     });
    /// }
    /// ```
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
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
        self.shared.info.query.get(key)
    }

    /// Every query parameter in request order, percent-decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) {
    ///     for (key, value) in conn.query_pairs() {
    ///         tracing::debug!(%key, %value, "query parameter");
    ///     }
    /// }
    /// ```
    pub fn query_pairs(&self) -> &[(String, String)] {
        self.shared.info.query.pairs()
    }

    /// The headers of the upgrade request.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) {
    ///     let agent = conn.headers().get("user-agent").and_then(|v| v.to_str().ok());
    ///     tracing::info!(agent = agent.unwrap_or("?"), "connected");
    /// }
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        self.shared.info.headers.get()
    }

    /// The subprotocol agreed in the opening handshake, if any (see
    /// [`Route::subprotocols`](crate::Route::subprotocols)).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     match conn.subprotocol() {
    ///         Some("chat.v2") => conn.send("speaking v2").await,
    ///         _ => conn.send("speaking v1").await,
    ///     }
    /// }
    /// ```
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.info.subprotocol.as_deref()
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
        self.shared
            .extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Adds this connection to `group` (`"room:lobby"`, `"user:42"`).
    /// Membership ends with the connection, or with [`leave`](Self::leave);
    /// joining a group twice is one membership. A selector
    /// ([`Registry::group`]) then reaches it, on every node with a cluster.
    ///
    /// Refused, with nothing changed: a name that is empty, longer than
    /// [`MAX_GROUP_NAME_BYTES`](crate::MAX_GROUP_NAME_BYTES) or holding a
    /// control character ([`Error::InvalidGroup`](crate::Error::InvalidGroup)),
    /// one group more than
    /// [`MAX_GROUPS_PER_CONNECTION`](crate::MAX_GROUPS_PER_CONNECTION)
    /// ([`Error::TooManyGroups`](crate::Error::TooManyGroups)), and a
    /// connection that has already left the registry (from the close
    /// handler: [`Error::ConnectionClosed`](crate::Error::ConnectionClosed)).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     let user = conn.query("user").unwrap_or("guest");
    ///     conn.join(&format!("user:{user}"))?;
    ///     conn.join("room:lobby")
    /// }
    /// ```
    pub fn join(&self, group: &str) -> crate::Result<()> {
        self.registry.join(self.id(), group)
    }

    /// Removes this connection from `group`; whether it was a member.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_message(conn: &wharf::Conn, msg: wharf::Message) {
    ///     if msg.as_text() == Some("/leave") {
    ///         conn.leave("room:lobby");
    ///     }
    /// }
    /// ```
    pub fn leave(&self, group: &str) -> bool {
        self.registry.leave(self.id(), group)
    }

    /// The groups this connection is in (empty once it has left the
    /// registry, in the close handler).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_message(conn: &wharf::Conn, _msg: wharf::Message) -> wharf::Result<()> {
    ///     conn.send(format!("you are in {:?}", conn.groups())).await
    /// }
    /// ```
    pub fn groups(&self) -> Vec<String> {
        self.registry.groups(self.id())
    }

    /// The server's registry of live connections.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     let online = conn.registry().count();
    ///     conn.send(format!("{online} online")).await
    /// }
    /// ```
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
