//! Wharf: a WebSocket server framework that ends connections properly.
//!
//! Most WebSocket servers can *receive* a close; Wharf makes *performing* one
//! a first-class operation. `conn.close(code, reason)` ([`Handle::close`],
//! on the handler's [`Conn`] or on a [`Handle`] from any task) runs the
//! whole RFC 6455 closing handshake: it validates the
//! code, flushes what was queued, sends exactly one Close frame, waits for
//! the peer's Close under a timeout, lets the server close TCP first, and
//! returns how it went. Every connection end, whoever starts it, runs the
//! close handler once and logs one structured `tracing` event.
//!
//! ```no_run
//! use wharf as ws;
//! use ws::{CloseCode, Closed, Conn, Message};
//!
//! #[ws::on("connect")]
//! async fn join(conn: &Conn) -> ws::Result<()> {
//!     if conn.query("token") != Some("secret") {
//!         conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
//!     }
//!     Ok(())
//! }
//!
//! #[ws::on("message")]
//! async fn relay(conn: &Conn, msg: Message) {
//!     conn.registry().route(conn.path()).send(msg);
//! }
//!
//! #[ws::on("close")]
//! async fn left(conn: &Conn, closed: &Closed) {
//!     tracing::info!(id = %conn.id(), code = %closed.code, "left");
//! }
//!
//! #[async_std::main]
//! async fn main() -> ws::Result<()> {
//!     let summary = ws::Server::new()
//!         .route("/chat", ws::handlers![join, relay, left])
//!         .bind("127.0.0.1:8080")
//!         .await?
//!         .shutdown_on_signals()
//!         .run()
//!         .await?;
//!     tracing::info!(clean = summary.clean, dropped = summary.dropped, "stopped");
//!     Ok(())
//! }
//! ```
//!
//! Handlers can also be written as a type implementing [`Handler`].
//!
//! To test an application, turn on the `test-util` feature in your
//! dev-dependencies and use [`test`](mod@test): a server on 127.0.0.1 and clients
//! whose every receive has a timeout and says what arrived instead.
//!
//! Runtime: async-std with async-tungstenite. Every runtime call sits in one
//! private module so the runtime can change in one place.

#![forbid(unsafe_code)]

#[cfg(feature = "cluster")]
mod cluster;
mod connection;
mod error;
mod extensions;
mod handler;
pub mod http;
mod net;
mod rt;
mod server;
#[cfg(feature = "test-util")]
pub mod test;

#[cfg(feature = "cluster")]
pub use cluster::config::Cluster;
pub use connection::close::{
    CloseCode, CloseOutcome, CloseSummary, Closed, Initiator, MAX_REASON_BYTES,
};
pub use connection::conn::Conn;
pub use connection::handle::{ConnId, Handle, ParseConnIdError};
#[cfg(feature = "json")]
pub use connection::message::Json;
pub use connection::message::{Bytes, Message, Text};
pub use connection::registry::{Registry, MAX_GROUPS_PER_CONNECTION, MAX_GROUP_NAME_BYTES};
pub use connection::selector::Selector;
#[cfg(feature = "json")]
pub use error::JsonError;
pub use error::{Error, Result};
pub use extensions::Extensions;
pub use handler::fns::HandlerFns;
pub use handler::Handler;
pub use http::request::Request;
pub use http::response::{RejectReason, Rejection};
#[cfg(feature = "tls")]
pub use net::tls::TlsConfig;
pub use server::builder::Server;
pub use server::config::{ConnectRate, DEFAULT_READ_BUFFER_SIZE};
pub use server::listening::{Listening, ServerHandle};
pub use server::metrics::{ClusterStats, Stats};
pub use server::routes::Route;

#[doc(inline)]
pub use wharf_macros::on;

/// rustls, the TLS library behind [`TlsConfig`] (the `tls` feature),
/// re-exported so that a [`rustls::ServerConfig`] given to
/// [`TlsConfig::from_rustls`] is of the version Wharf uses (0.23), with
/// its ring provider (`rustls::crypto::ring`).
#[cfg(feature = "tls")]
pub use futures_rustls::rustls;

/// Builds a route's [`HandlerFns`] from functions annotated with
/// [`#[on]`](on): `handlers![join, echo, left]`.
///
/// Each name is a function annotated with `#[wharf::on("...")]` (a path
/// such as `chat::join` works too). Two handlers for the same event in one
/// list are a compile error naming both.
///
/// # Examples
///
/// ```
/// use wharf as ws;
/// use ws::{Closed, Conn, Message};
///
/// #[ws::on("connect")]
/// async fn hello(conn: &Conn) -> ws::Result<()> {
///     conn.send("hello").await
/// }
///
/// #[ws::on("message")]
/// async fn echo(_conn: &Conn, msg: Message) -> Message {
///     msg
/// }
///
/// #[ws::on("close")]
/// async fn bye(conn: &Conn, closed: &Closed) {
///     tracing::info!(id = %conn.id(), code = %closed.code, "left");
/// }
///
/// let server = ws::Server::new().route("/", ws::handlers![hello, echo, bye]);
/// # drop(server);
/// ```
#[macro_export]
macro_rules! handlers {
    ($($handler:path),* $(,)?) => {
        $crate::__private::handlers!($crate; $($handler),*)
    };
}

/// What the macros' generated code uses; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::handler::fns::{
        BoxFuture, CloseFn, Companion, ConnectFn, Event, MessageFn, Slot, UpgradeFn,
    };
    pub use crate::handler::returns::{reply, Outcome, Reply, Verdict};
    pub use wharf_macros::handlers;
}

/// Compiles the README's examples as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
