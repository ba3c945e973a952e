//! The `#[on("...")]` attribute and the `handlers![...]` implementation for
//! Wharf, a WebSocket server framework.
//!
//! Use them through the `wharf` crate (`wharf::on`, `wharf::handlers!`),
//! which re-exports them; generated code only names
//! `::wharf::__private::...`. This crate parses and generates code, nothing
//! else: each macro here is a thin shim over a module that parses,
//! validates, then expands (`on.rs`, `args.rs`, `validate.rs`, `expand.rs`;
//! `handlers.rs`).

use proc_macro::TokenStream;

mod args;
mod errors;
mod event;
mod expand;
mod handlers;
mod on;
mod spans;
mod validate;

/// Turns an `async fn` into a handler for one event of a WebSocket route.
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
///
/// The function is kept exactly as written, so it can still be called
/// (from a test, from another handler). Next to it the attribute adds a
/// hidden braced struct of the same name (`struct echo {}`, which does not
/// clash with the function) that tells the runtime which event the function
/// handles and how to call it; `handlers![echo, ...]` lists those structs
/// for a route. Nothing is registered behind your back: a handler runs only
/// on the routes whose `handlers![...]` name it.
///
/// # Events
///
/// The attribute takes the event as a string. Parameter names and patterns
/// are yours (`conn`, `_conn`, `_`); their types are fixed by the event:
///
/// | event | the function | may return |
/// | --- | --- | --- |
/// | `"upgrade"` | `async fn(req: &Request)` | `()` or `Result<(), Rejection>` |
/// | `"connect"` | `async fn(conn: &Conn)` | `()` or `Result<(), E>` |
/// | `"message"` | `async fn(conn: &Conn, msg: Message)` | `()`, a reply, or `Result<reply, E>` |
/// | `"close"` | `async fn(conn: &Conn, closed: &Closed)` | `()` or `Result<(), E>` |
///
/// where `E` is any error with `E: Into<wharf::Error>` (`wharf::Result<()>`
/// is the usual choice) and a reply is one of `Message`, `Option<Message>`
/// (`None` sends nothing), `String` or `&'static str` (a text message),
/// `Vec<u8>` or `Bytes` (a binary message), `Utf8Bytes`.
///
/// - **upgrade** runs before the HTTP `101` is sent, once the request is a
///   valid WebSocket upgrade for the route. `Err(rejection)` answers with
///   the rejection's HTTP status, headers and body and closes the socket: no
///   WebSocket is established and no other handler runs. Values put into
///   `req.extensions()` move into the connection's `conn.extensions()`.
/// - **connect** runs once, right after the upgrade. It may
///   `conn.close(code, reason).await`.
/// - **message** runs for each text or binary message, one at a time, in
///   arrival order. A reply is sent back on the same connection; a reply to
///   a connection that is already closing is dropped.
/// - **close** runs exactly once when a connection that ran `connect` has
///   ended, whoever ended it, with the code and reason in `closed`.
///
/// An `Err` from **connect** or **message** is logged with the connection id
/// and closes the connection with 1011 "Internal error" (the error text is
/// not sent to the peer); so does a panic. An `Err` from **close** is
/// logged. Events without a handler get the defaults: accept every upgrade,
/// ignore messages, do nothing on connect and close.
///
/// # The runtime's path: `crate = "..."`
///
/// Generated code names the runtime as `::wharf`, which works whether you
/// write `#[wharf::on(..)]` or `use wharf as ws;` then `#[ws::on(..)]`. When
/// the crate is not reachable as `::wharf` (renamed in `Cargo.toml`, or
/// re-exported by another crate), say where it is:
/// `#[on("connect", crate = "::my_ws")]` or
/// `#[on("connect", crate = "framework::ws")]`.
///
/// # Compile errors
///
/// Every mistake is a compile error at the offending token that says how to
/// fix it: an unknown event (with the nearest valid name: `"conect"` →
/// `"connect"`), a missing or unquoted event, a second event or an unknown
/// argument, a function that is not `async`, is generic, has a `where`
/// clause, takes `self`, or is `unsafe`/`extern`; the wrong number of
/// parameters for the event, `Conn` or `Closed` by value or `&Message`, a
/// parameter of another type ("expected `&Conn`"), a return type the event
/// cannot use, a future that is not `Send`; the attribute on anything but a
/// function. In `handlers![...]`, two handlers for the same event, or a name
/// that is not an annotated function.
///
/// # Examples
///
/// `upgrade`: refuse some requests before any WebSocket work, and pass data
/// on to the connection.
///
/// ```
/// use wharf::{Conn, Rejection, Request};
///
/// struct User(String);
///
/// #[wharf::on("upgrade")]
/// async fn authenticate(req: &Request) -> Result<(), Rejection> {
///     match req.query("token") {
///         Some("secret") => {
///             req.extensions().insert(User("ann".into()));
///             Ok(())
///         }
///         _ => Err(Rejection::unauthorized("missing or wrong token\n")),
///     }
/// }
///
/// #[wharf::on("connect")]
/// async fn greet(conn: &Conn) -> wharf::Result<()> {
///     let name = conn.extensions().get::<User>().map(|user| user.0.clone());
///     conn.send(format!("hello {}", name.unwrap_or_default())).await
/// }
///
/// let server = wharf::Server::new().route("/", wharf::handlers![authenticate, greet]);
/// # drop(server);
/// ```
///
/// `connect`: close with a policy violation (the client sees 1008).
///
/// ```
/// use wharf::{CloseCode, Conn};
///
/// #[wharf::on("connect")]
/// async fn join(conn: &Conn) -> wharf::Result<()> {
///     if conn.query("token") != Some("secret") {
///         conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
///     }
///     Ok(())
/// }
/// # drop(wharf::handlers![join]);
/// ```
///
/// `message`: the return value is the reply. Here `Err` closes with 1011,
/// `None` sends nothing, and `Some` sends the text back.
///
/// ```
/// use wharf::{Conn, Message};
///
/// #[wharf::on("message")]
/// async fn shout(_conn: &Conn, msg: Message) -> wharf::Result<Option<Message>> {
///     match msg.as_text() {
///         Some("") => Ok(None),
///         Some(text) => Ok(Some(Message::text(text.to_uppercase()))),
///         None => Err(wharf::Error::handler("text only")),
///     }
/// }
/// # drop(wharf::handlers![shout]);
/// ```
///
/// `close`: runs once per connection, with how it ended.
///
/// ```
/// use wharf::{Closed, Conn};
///
/// #[wharf::on("close")]
/// async fn left(conn: &Conn, closed: &Closed) {
///     tracing::info!(id = %conn.id(), code = %closed.code, reason = %closed.reason, "left");
/// }
/// # drop(wharf::handlers![left]);
/// ```
///
/// A runtime reached under another name, and the full set on one route:
///
/// ```
/// extern crate wharf as sockets;
///
/// use sockets::{Closed, Conn, Message, Request};
///
/// #[sockets::on("upgrade", crate = "::sockets")]
/// async fn accept(_req: &Request) {}
///
/// #[sockets::on("connect", crate = "::sockets")]
/// async fn join(conn: &Conn) -> sockets::Result<()> {
///     conn.send("welcome").await
/// }
///
/// #[sockets::on("message", crate = "::sockets")]
/// async fn echo(_conn: &Conn, msg: Message) -> Message {
///     msg
/// }
///
/// #[sockets::on("close", crate = "::sockets")]
/// async fn left(_conn: &Conn, _closed: &Closed) {}
///
/// # async fn run() -> sockets::Result<()> {
/// sockets::Server::new()
///     .route("/chat", sockets::handlers![accept, join, echo, left])
///     .bind("127.0.0.1:8080")
///     .await?
///     .run()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[proc_macro_attribute]
pub fn on(args: TokenStream, item: TokenStream) -> TokenStream {
    on::on(args.into(), item.into()).into()
}

/// The implementation of `wharf::handlers![...]`; use that macro.
///
/// `wharf::handlers![a, b]` calls this as `handlers!($crate; a, b)` (the
/// runtime's path, then the listed paths) and gets an expression building a
/// `wharf::HandlerFns` from the companions of `a` and `b`, preceded by
/// compile-time checks that no two of them handle the same event.
#[proc_macro]
pub fn handlers(input: TokenStream) -> TokenStream {
    handlers::handlers(input.into()).into()
}
