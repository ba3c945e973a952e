//! The trait the router calls, and its object-safe twin.
//!
//! Users implement [`Handler`] with plain `async fn`s (or, with the macro
//! crate, annotate free functions); the server stores routes as
//! `Arc<dyn DynHandler>`, which boxes each call's future. Nothing here runs
//! anything: the driver decides when each method is called.

pub(crate) mod fns;
pub(crate) mod returns;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::connection::close::Closed;
use crate::connection::conn::Conn;
use crate::connection::driver::Events;
use crate::connection::message::Message;
use crate::connection::BoxFuture;
use crate::error::{Error, Result};
use crate::http::request::Request;
use crate::http::Rejection;

/// The events of one route.
///
/// Before the upgrade, `on_upgrade` may refuse the request with an HTTP
/// status ([`Rejection`]): no WebSocket is established and no other method
/// runs. For each connection the server then calls `on_connect` once,
/// then `on_message` for each message in arrival order (never two at once),
/// then `on_close` exactly once, whoever ended the connection. While a
/// handler awaits, the connection keeps answering pings and reading the
/// peer's Close, so `conn.close()` inside a handler completes.
///
/// An `Err` from `on_connect` or `on_message` is logged with the connection
/// id and closes the connection with 1011 "Internal error" (the error text is
/// not sent to the peer).
///
/// Every method has a default: accept, ignore messages, do nothing on close.
///
/// # Examples
///
/// ```
/// use wharf::{CloseCode, Closed, Conn, Handler, Message};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
///         if conn.query("token") != Some("secret") {
///             conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
///         }
///         Ok(())
///     }
///
///     async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
///         conn.send(msg).await
///     }
///
///     async fn on_close(&self, conn: &Conn, closed: &Closed) {
///         tracing::info!(id = %conn.id(), code = %closed.code, "left");
///     }
/// }
///
/// let server = wharf::Server::new().route("/echo", Echo);
/// # drop(server);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a wharf handler",
    note = "implement `wharf::Handler` for it (each method is an `async fn` with a default)"
)]
pub trait Handler: Send + Sync + 'static {
    /// Runs before the `101` is sent, once the request is known to be a
    /// valid upgrade for this route; an `Err` answers with its status and
    /// body instead and closes the socket. Runs under the server's
    /// upgrade timeout.
    fn on_upgrade(&self, req: &Request) -> impl Future<Output = Result<(), Rejection>> + Send {
        let _ = req;
        async { Ok(()) }
    }

    /// Runs once, right after the upgrade. May call `conn.close()`.
    fn on_connect(&self, conn: &Conn) -> impl Future<Output = Result<()>> + Send {
        let _ = conn;
        async { Ok(()) }
    }

    /// Runs for each text or binary message, one at a time.
    fn on_message(&self, conn: &Conn, msg: Message) -> impl Future<Output = Result<()>> + Send {
        let _ = (conn, msg);
        async { Ok(()) }
    }

    /// Runs exactly once when the connection has ended, after its socket is
    /// closed and it has left the registry. Sending fails here.
    fn on_close(&self, conn: &Conn, closed: &Closed) -> impl Future<Output = ()> + Send {
        let _ = (conn, closed);
        async {}
    }

    /// Checks the handler when the server binds; an `Err` fails
    /// [`Server::bind`](crate::Server::bind). Used by [`HandlerFns`](crate::HandlerFns)
    /// to report two handlers for one event.
    #[doc(hidden)]
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// `on_connect` as the driver calls it: one boxed future. Used by
    /// [`HandlerFns`](crate::HandlerFns) to hand over the future its
    /// function already boxed instead of boxing it again.
    #[doc(hidden)]
    fn boxed_connect<'a>(&'a self, conn: &'a Conn) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.on_connect(conn))
    }

    /// `on_message` as the driver calls it: one boxed future, one
    /// allocation per message (see [`boxed_connect`](Self::boxed_connect)).
    #[doc(hidden)]
    fn boxed_message<'a>(&'a self, conn: &'a Conn, msg: Message) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.on_message(conn, msg))
    }
}

/// [`Handler`] with boxed futures, so routes can hold different handler
/// types.
pub(crate) trait DynHandler: Send + Sync {
    fn upgrade<'a>(&'a self, req: &'a Request) -> BoxFuture<'a, Result<(), Rejection>>;
    fn check(&self) -> Result<()>;
    fn close<'a>(&'a self, conn: &'a Conn, closed: &'a Closed) -> BoxFuture<'a, ()>;
    /// The calls the connection driver makes (connect, each message).
    fn events(&self) -> &dyn Events;
}

/// A panic in these futures is caught where the driver polls them (and
/// becomes an error, as a returned `Err` is), so they are boxed once and
/// not wrapped.
impl<H: Handler> Events for H {
    fn connect<'a>(&'a self, conn: &'a Conn) -> BoxFuture<'a, Result<()>> {
        self.boxed_connect(conn)
    }

    fn message<'a>(&'a self, conn: &'a Conn, msg: Message) -> BoxFuture<'a, Result<()>> {
        self.boxed_message(conn, msg)
    }
}

impl<H: Handler> DynHandler for H {
    fn upgrade<'a>(&'a self, req: &'a Request) -> BoxFuture<'a, Result<(), Rejection>> {
        Box::pin(async move {
            match AssertUnwindSafe(self.on_upgrade(req)).catch_unwind().await {
                Ok(verdict) => verdict,
                Err(_) => {
                    tracing::error!(peer = %req.peer_addr(), path = req.path(), "upgrade handler panicked");
                    Err(Rejection::new(500, "Internal server error\n"))
                }
            }
        })
    }

    fn check(&self) -> Result<()> {
        Handler::check(self)
    }

    fn events(&self) -> &dyn Events {
        self
    }

    fn close<'a>(&'a self, conn: &'a Conn, closed: &'a Closed) -> BoxFuture<'a, ()> {
        let id = conn.id();
        Box::pin(async move {
            if let Err(err) = contain(async {
                self.on_close(conn, closed).await;
                Ok(())
            })
            .await
            {
                tracing::error!(%id, error = %err, "close handler failed");
            }
        })
    }
}

/// Turns a panic inside a handler into an error, so one connection's bug
/// closes that connection (1011) instead of unwinding through its driver.
async fn contain(future: impl Future<Output = Result<()>>) -> Result<()> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(Error::handler("handler panicked")),
    }
}
