//! A connection's life and its close: the heart of Wharf.
//!
//! This folder owns everything from the `101` to the end of the TCP
//! stream: the close codes and outcomes of RFC 6455 section 7 ([`close`]),
//! data messages ([`message`]), the state a connection shares with other
//! tasks and the [`Handle`](handle::Handle) that reaches it ([`handle`]), the
//! handler's context ([`conn`]), the table of live connections and their
//! groups ([`registry`]), the selectors that address many of them at once
//! ([`selector`]) and what they address with the seam a cluster plugs into
//! ([`target`]), the driver task that owns the socket and runs the closing
//! handshake ([`driver`]), and the open connection's policy clocks
//! ([`policies`]). It knows nothing of HTTP parsing, accepting or shutdown.

pub(crate) mod close;
pub(crate) mod conn;
pub(crate) mod driver;
pub(crate) mod handle;
pub(crate) mod message;
pub(crate) mod policies;
pub(crate) mod registry;
pub(crate) mod selector;
pub(crate) mod target;

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: a handler call in progress, or a cluster
/// operation on the other nodes.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
