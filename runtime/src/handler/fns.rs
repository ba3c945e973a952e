//! Routes built from annotated functions: the [`HandlerFns`] set that
//! `handlers![...]` produces, and the hidden traits the `#[on]` attribute
//! implements.
//!
//! `#[wharf::on("message")] async fn echo(..)` keeps `echo` as written and
//! adds a braced companion `struct echo {}` implementing [`Companion`]: its
//! event, its name, and a plain function pointer that calls the user's
//! function and turns its return value into the runtime's terms (a reply, an
//! error, a rejection). A [`HandlerFns`] set holds at most one function per
//! event and is an ordinary [`Handler`], so the server needs nothing
//! special for it. This module never reaches the network itself.

use std::fmt;

use crate::connection::close::Closed;
use crate::connection::conn::Conn;
use crate::connection::message::Message;
pub use crate::connection::BoxFuture;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::http::request::Request;
use crate::http::Rejection;

/// The events a handler can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Before the HTTP upgrade: may reject the request.
    Upgrade,
    /// After the upgrade, once.
    Connect,
    /// For each message.
    Message,
    /// Once, when the connection has ended.
    Close,
}

impl Event {
    /// The event's name as written in `#[on("...")]`.
    pub const fn name(self) -> &'static str {
        match self {
            Event::Upgrade => "upgrade",
            Event::Connect => "connect",
            Event::Message => "message",
            Event::Close => "close",
        }
    }

    /// Whether two events are the same; usable in `const` assertions.
    pub const fn same(self, other: Event) -> bool {
        self as u8 == other as u8
    }
}

/// An `upgrade` handler as a function pointer.
pub type UpgradeFn = for<'a> fn(&'a Request) -> BoxFuture<'a, Result<(), Rejection>>;
/// A `connect` handler as a function pointer.
pub type ConnectFn = for<'a> fn(&'a Conn) -> BoxFuture<'a, Result<()>>;
/// A `message` handler as a function pointer.
pub type MessageFn = for<'a> fn(&'a Conn, Message) -> BoxFuture<'a, Result<()>>;
/// A `close` handler as a function pointer.
pub type CloseFn = for<'a> fn(&'a Conn, &'a Closed) -> BoxFuture<'a, Result<()>>;

/// What a companion contributes to a route.
#[derive(Clone, Copy)]
pub enum Slot {
    /// An `upgrade` handler.
    Upgrade(UpgradeFn),
    /// A `connect` handler.
    Connect(ConnectFn),
    /// A `message` handler.
    Message(MessageFn),
    /// A `close` handler.
    Close(CloseFn),
}

impl Slot {
    fn event(&self) -> Event {
        match self {
            Slot::Upgrade(_) => Event::Upgrade,
            Slot::Connect(_) => Event::Connect,
            Slot::Message(_) => Event::Message,
            Slot::Close(_) => Event::Close,
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.event().name())
    }
}

/// Implemented by the companion struct that `#[wharf::on("...")]` generates
/// next to the user's function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a wharf handler",
    label = "not annotated with `#[wharf::on(\"...\")]`",
    note = "annotate an `async fn` with `#[wharf::on(\"connect\")]` (or \"message\", \"close\", \"upgrade\") and list its name in `handlers![...]`"
)]
pub trait Companion {
    /// The user's function name, for error messages and logs.
    const NAME: &'static str;
    /// The event it handles.
    const EVENT: Event;
    /// The function the runtime calls.
    fn slot(&self) -> Slot;
}

/// One handler per event for a route, built with [`handlers!`](crate::handlers)
/// from functions annotated with [`#[on]`](crate::on).
///
/// Missing events get the defaults of [`Handler`]: accept every upgrade,
/// ignore messages, do nothing on close. Listing two handlers for one event
/// is a compile error in `handlers![...]`; when a set is built by hand with
/// [`on`](Self::on), [`Server::bind`](crate::Server::bind) fails with
/// [`Error::Config`] naming both functions.
///
/// # Examples
///
/// ```
/// use wharf as ws;
/// use ws::{Conn, Message};
///
/// #[ws::on("message")]
/// async fn echo(_conn: &Conn, msg: Message) -> Message {
///     msg
/// }
///
/// let server = ws::Server::new().route("/echo", ws::handlers![echo]);
/// # drop(server);
/// ```
#[derive(Default, Clone)]
pub struct HandlerFns {
    upgrade: Option<(&'static str, UpgradeFn)>,
    connect: Option<(&'static str, ConnectFn)>,
    message: Option<(&'static str, MessageFn)>,
    close: Option<(&'static str, CloseFn)>,
    duplicate: Option<(Event, &'static str, &'static str)>,
}

impl fmt::Debug for HandlerFns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFns")
            .field("upgrade", &self.upgrade.map(|(name, _)| name))
            .field("connect", &self.connect.map(|(name, _)| name))
            .field("message", &self.message.map(|(name, _)| name))
            .field("close", &self.close.map(|(name, _)| name))
            .finish()
    }
}

impl HandlerFns {
    /// An empty set: every event has its default.
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf as ws;
    ///
    /// #[ws::on("message")]
    /// async fn echo(_conn: &ws::Conn, msg: ws::Message) -> ws::Message {
    ///     msg
    /// }
    ///
    /// // The same as `ws::handlers![echo]`, built by hand.
    /// let fns = ws::HandlerFns::new().on(echo {});
    /// let server = ws::Server::new().route("/", fns);
    /// # drop(server);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an annotated handler (its companion, `name {}`).
    ///
    /// # Examples
    ///
    /// ```
    /// use wharf as ws;
    ///
    /// #[ws::on("connect")]
    /// async fn hello(conn: &ws::Conn) -> ws::Result<()> {
    ///     conn.send("hello").await
    /// }
    ///
    /// let fns = ws::HandlerFns::new().on(hello {});
    /// # drop(fns);
    /// ```
    pub fn on<C: Companion>(mut self, companion: C) -> Self {
        fn put<F>(
            slot: &mut Option<(&'static str, F)>,
            name: &'static str,
            f: F,
        ) -> Option<&'static str> {
            let previous = slot.as_ref().map(|(name, _)| *name);
            *slot = Some((name, f));
            previous
        }
        let name = C::NAME;
        let previous = match companion.slot() {
            Slot::Upgrade(f) => put(&mut self.upgrade, name, f),
            Slot::Connect(f) => put(&mut self.connect, name, f),
            Slot::Message(f) => put(&mut self.message, name, f),
            Slot::Close(f) => put(&mut self.close, name, f),
        };
        if let (Some(first), None) = (previous, self.duplicate) {
            self.duplicate = Some((companion.slot().event(), first, name));
        }
        self
    }
}

impl Handler for HandlerFns {
    async fn on_upgrade(&self, req: &Request) -> Result<(), Rejection> {
        match self.upgrade {
            Some((_, f)) => f(req).await,
            None => Ok(()),
        }
    }

    async fn on_connect(&self, conn: &Conn) -> Result<()> {
        match self.connect {
            Some((_, f)) => f(conn).await,
            None => Ok(()),
        }
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> Result<()> {
        match self.message {
            Some((_, f)) => f(conn, msg).await,
            None => Ok(()),
        }
    }

    async fn on_close(&self, conn: &Conn, closed: &Closed) {
        if let Some((name, f)) = self.close {
            if let Err(err) = f(conn, closed).await {
                tracing::error!(id = %conn.id(), handler = name, error = %err, "close handler failed");
            }
        }
    }

    // The functions box their futures already: handed over as they are,
    // a call costs one allocation, not two.
    fn boxed_connect<'a>(&'a self, conn: &'a Conn) -> BoxFuture<'a, Result<()>> {
        match self.connect {
            Some((_, f)) => f(conn),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn boxed_message<'a>(&'a self, conn: &'a Conn, msg: Message) -> BoxFuture<'a, Result<()>> {
        match self.message {
            Some((_, f)) => f(conn, msg),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn check(&self) -> Result<()> {
        match self.duplicate {
            Some((event, first, second)) => Err(Error::config(
                "route",
                format!(
                    "two `{}` handlers on one route: `{first}` and `{second}`; keep one",
                    event.name()
                ),
            )),
            None => Ok(()),
        }
    }
}
