//! Helpers shared by Wharf's integration tests (`runtime/tests/`) and the
//! examples' tests (`examples/tests/`): a real server on 127.0.0.1 with a
//! free port, real clients (async-tungstenite's, over TCP or TLS, and a raw
//! TCP peer that speaks frames by hand), test-time certificates, PROXY
//! protocol headers, a real `redis-server` for the cluster tests
//! ([`RedisServer`]), and a timeout around every await.
//!
//! Not published: a dev-dependency of `wharf` and `wharf-examples`. It
//! depends on `wharf` itself, which cargo allows for integration tests and
//! doc tests (they link the one `wharf` library this crate links), but not
//! for `wharf`'s unit tests, which are a second copy of the crate: they
//! must not use it. A test file writes `use wharf_test_support::*;`.
//!
//! Every helper that waits does so under a timeout ([`STEP`] unless it
//! says otherwise) and fails the test with what it was waiting for.

mod client;
mod cluster;
mod groups;
mod handlers;
mod http;
mod panics;
mod proxy;
mod raw;
mod redis;
mod server;
mod tcp;
mod time;
mod tls;

pub use client::*;
pub use cluster::*;
pub use groups::*;
pub use handlers::*;
pub use http::*;
pub use panics::*;
pub use proxy::*;
pub use raw::*;
pub use redis::*;
pub use server::*;
pub use tcp::*;
pub use time::*;
pub use tls::*;
