//! Testing a Wharf application: its routes, handlers, closes and policies,
//! against a real server on 127.0.0.1 with real WebSocket clients.
//!
//! This module is behind the `test-util` feature; turn it on for tests
//! only:
//!
//! ```toml
//! [dev-dependencies]
//! wharf = { version = "0.1", features = ["test-util"] }
//! async-std = { version = "1", features = ["attributes"] }
//! ```
//!
//! A normal build never sees the feature (cargo enables dev-dependencies'
//! features only for tests, examples and benches), so it adds nothing to
//! your program. Add `json` to the features for
//! [`send_json`](TestClient::send_json), [`recv_json`](TestClient::recv_json)
//! and [`expect_json`](TestClient::expect_json).
//!
//! # A test is a list of expectations
//!
//! [`TestServer::start`] takes your [`Server`](crate::Server) as you
//! wrote it (routes, state, policies), binds it to 127.0.0.1 on a free
//! port and runs it in the background. [`TestServer::connect`] opens a
//! [`TestClient`], or returns the server's refusal of the upgrade
//! ([`UpgradeRejected`], with its status, headers and body). The client
//! sends, receives and asserts:
//!
//! ```rust,test_harness
//! use wharf as ws;
//! use ws::test::TestServer;
//! use ws::{CloseCode, Conn, Message, Rejection, Request};
//!
//! #[ws::on("upgrade")]
//! async fn require_token(req: &Request) -> Result<(), Rejection> {
//!     match req.query("token") {
//!         Some("secret") => Ok(()),
//!         _ => Err(Rejection::unauthorized("missing or wrong token\n")),
//!     }
//! }
//!
//! #[ws::on("connect")]
//! async fn check_token(conn: &Conn) -> ws::Result<()> {
//!     if conn.query("token") != Some("secret") {
//!         conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
//!     }
//!     Ok(())
//! }
//!
//! #[ws::on("message")]
//! async fn echo(_conn: &Conn, msg: Message) -> Message {
//!     msg
//! }
//!
//! fn app() -> ws::Server {
//!     ws::Server::new()
//!         .route("/strict", ws::handlers![require_token, echo])
//!         .route("/", ws::handlers![check_token, echo])
//! }
//!
//! #[async_std::test]
//! async fn a_bad_token_is_refused_with_401() {
//!     let server = TestServer::start(app()).await;
//!     let err = server.connect("/strict?token=nope").await.unwrap_err();
//!     assert_eq!(err.status(), 401);
//!     assert_eq!(err.body(), "missing or wrong token\n");
//! }
//!
//! #[async_std::test]
//! async fn a_bad_token_is_closed_with_1008() {
//!     let server = TestServer::start(app()).await;
//!     let mut client = server.connect("/?token=nope").await.expect("upgrade");
//!     client.expect_close(1008, "Invalid authentication").await;
//! }
//!
//! #[async_std::test]
//! async fn the_right_token_gets_its_echo() {
//!     let server = TestServer::start(app()).await;
//!     let mut client = server.connect("/?token=secret").await.expect("upgrade");
//!     client.send_text("hi").await;
//!     client.expect_text("hi").await;
//!     assert!(client.close(1000, "bye").await.is_clean());
//! }
//! ```
//!
//! # Timeouts and failure messages
//!
//! Every step waits at most a timeout, [`DEFAULT_TIMEOUT`] (5 s) unless
//! set for a server's clients ([`TestServer::set_timeout`]) or one client
//! ([`ClientBuilder::timeout`], [`TestClient::set_timeout`]): connecting,
//! each receive, send and close. A test never hangs.
//!
//! The `expect_*` and `recv_*` calls panic, as `assert!` does, with the
//! line of the test that made the call, what was expected, and what
//! arrived instead (a text with its content, a binary message with its
//! length, a Close with its code and reason, EOF without a Close, or
//! nothing within the timeout):
//!
//! ```text
//! expect_close at tests/auth.rs:21:12, on /?token=nope: expected Close 1008 "Invalid authentication", got the text "welcome"
//! expect_text at tests/chat.rs:40:9, on /chat?name=bob: expected the text "ann: hi", got nothing within 5s
//! ```
//!
//! [`expect_no_message`](TestClient::expect_no_message) asserts the
//! opposite: nothing arrives for a while you choose.
//!
//! # Time: policies with long timers, in milliseconds
//!
//! [`TestServer::advance`] moves the server's own clock forward: the
//! `session_ttl`, `idle_timeout`, `heartbeat`, `send_timeout`,
//! `close_timeout`, `upgrade_timeout` and `handler_grace` deadlines see
//! the time pass and act at once, so a 30-minute session is tested
//! without waiting:
//!
//! ```
//! # async_std::task::block_on(async {
//! use std::time::Duration;
//! use wharf::test::TestServer;
//!
//! # #[wharf::on("message")] async fn echo(_c: &wharf::Conn, m: wharf::Message) -> wharf::Message { m }
//! let app = wharf::Server::new()
//!     .fallback(wharf::handlers![echo])
//!     .session_ttl(Duration::from_secs(30 * 60));
//! let server = TestServer::start(app).await;
//! let mut client = server.connect("/").await.expect("upgrade");
//! server.advance(Duration::from_secs(30 * 60));
//! client.expect_close(1008, "Session expired").await;
//! # });
//! ```
//!
//! Each server has its own clock, so tests running in parallel do not
//! disturb each other. Time that handlers read themselves
//! (`Instant::now()`) does not move, nor do the graceful shutdown's
//! `drain_timeout` and the `connect_rate` bucket: for a rule the
//! application times itself, take the duration as a parameter of the
//! function that builds the server and pass a short one (even zero) in
//! the test, as the `session` example's tests do.
//!
//! # Ends
//!
//! Dropping a [`TestClient`] drops its TCP connection without a Close, as
//! a crashed client would (the server's close handler sees 1006); its
//! [`close`](TestClient::close) runs the client's side of the closing
//! handshake and reports how the server answered. Dropping a
//! [`TestServer`] starts its graceful shutdown without waiting for it:
//! connections still open get 1001 "Going away" (or the server's
//! `shutdown_close`). [`TestServer::shutdown`] waits and returns the
//! [`CloseSummary`](crate::CloseSummary).
//!
//! # What the kit does not do
//!
//! Its client is well-behaved: it masks its frames, answers pings and
//! Close frames. To send bytes no client would (a bad frame, a request
//! cut in half), open a TCP connection of your own to
//! [`TestServer::addr`].
//!
//! # Groups
//!
//! A handler joins a connection to groups with
//! [`Conn::join`](crate::Conn::join); a test can do the same for a client
//! with [`TestClient::join`], read a client's groups with
//! [`TestClient::groups`], and address a group through
//! [`TestServer::registry`]:
//!
//! ```
//! # async_std::task::block_on(async {
//! use wharf as ws;
//!
//! /// Members of a room hear each other's lines; the sender does not.
//! #[ws::on("message")]
//! async fn say(conn: &ws::Conn, msg: ws::Message) {
//!     conn.registry().group("room:lobby").except(conn.id()).send(msg);
//! }
//!
//! let server = ws::test::TestServer::start(ws::Server::new().route("/", ws::handlers![say])).await;
//! let mut ann = server.connect("/").await.expect("upgrade");
//! let mut bob = server.connect("/").await.expect("upgrade");
//! let mut eve = server.connect("/").await.expect("upgrade");
//! ann.join("room:lobby");
//! bob.join("room:lobby");
//! ann.send_text("hi").await;
//! bob.expect_text("hi").await;
//! ann.expect_no_message(std::time::Duration::from_millis(20)).await;
//! eve.expect_no_message(std::time::Duration::from_millis(20)).await;
//! assert_eq!(server.registry().group("room:lobby").count().await.unwrap(), 2);
//! # });
//! ```

mod client;
mod received;
mod server;
mod upgrade;

use std::time::Duration;

pub use client::TestClient;
pub use received::{CloseFrame, CloseReport, Received};
pub use server::{ClientBuilder, TestServer};
pub use upgrade::{HttpResponse, UpgradeRejected};

/// How long a test client waits for each step unless told otherwise:
/// long enough for a loaded CI machine, short enough for a failing test to
/// fail promptly.
///
/// # Examples
///
/// ```
/// assert_eq!(wharf::test::DEFAULT_TIMEOUT, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
