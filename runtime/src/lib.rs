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
//! use wharf::{CloseCode, Closed, Conn, Handler, Message};
//!
//! struct Chat;
//!
//! impl Handler for Chat {
//!     async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
//!         if conn.query("token") != Some("secret") {
//!             conn.close(CloseCode::POLICY_VIOLATION, "Invalid authentication").await?;
//!         }
//!         Ok(())
//!     }
//!
//!     async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
//!         conn.registry().broadcast(conn.path(), msg);
//!         Ok(())
//!     }
//!
//!     async fn on_close(&self, conn: &Conn, closed: &Closed) {
//!         tracing::info!(id = %conn.id(), code = %closed.code, "left");
//!     }
//! }
//!
//! #[async_std::main]
//! async fn main() -> wharf::Result<()> {
//!     wharf::Server::new()
//!         .route("/chat", Chat)
//!         .bind("127.0.0.1:8080")
//!         .await?
//!         .run()
//!         .await
//! }
//! ```
//!
//! Runtime: async-std with async-tungstenite. Every runtime call sits in one
//! private module so the runtime can change in one place.

#![forbid(unsafe_code)]

mod close;
mod config;
mod conn;
mod driver;
mod error;
mod extensions;
mod handler;
mod handshake;
mod message;
mod registry;
mod rt;
mod server;

pub use close::{CloseCode, CloseOutcome, Closed, Initiator, MAX_REASON_BYTES};
pub use config::Config;
pub use conn::{Conn, ConnId, Handle};
pub use error::{Error, Result};
pub use extensions::Extensions;
pub use handler::Handler;
pub use message::{Bytes, Message, Utf8Bytes};
pub use registry::{CloseCounts, Registry};
pub use server::{Listening, Route, Server};

/// The `http` crate's types used in the request data (`HeaderMap`, ...).
pub use async_tungstenite::tungstenite::http;

/// Compiles the README's examples as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
