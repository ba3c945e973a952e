//! The HTTP side: everything before the `101 Switching Protocols`.
//!
//! Inside Wharf, this folder owns the opening handshake of RFC 6455
//! section 4: reading the request head (`head.rs`), checking it is a valid
//! WebSocket upgrade and writing the `101` (`upgrade.rs`), every other
//! answer the server or an upgrade handler gives instead (`response.rs`),
//! the request as an application sees it, with what its upgrade handler
//! adds to the `101` (`request.rs`), query-string decoding (`query.rs`),
//! the `Origin` check (`origin.rs`), the client address behind trusted
//! proxies (`forwarded.rs`), and the headers as an open connection keeps
//! them (`packed.rs`). It reads and writes the connection stream of
//! `net/` and knows nothing of connections, frames or the server: once
//! the `101` is written the socket belongs to the connection driver.
//!
//! For users, this module holds the header types of the upgrade request
//! ([`HeaderMap`] and friends, from the `http` crate, 1.x).

pub(crate) mod forwarded;
pub(crate) mod head;
pub(crate) mod origin;
pub(crate) mod packed;
pub(crate) mod query;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod upgrade;

pub(crate) use head::{read_head, Head};
pub(crate) use origin::{normalize_origin, origin_allowed};
pub(crate) use packed::PackedHeaders;
pub(crate) use query::Query;
pub(crate) use response::{reject, response, send_and_close, RejectReason, Rejection};
pub(crate) use upgrade::{check_upgrade, switching_protocols, Upgrade};

/// The `http` crate's header types (version 1), in which Wharf hands over
/// the upgrade request's headers. Wharf depends on `http` 1.x directly,
/// not through tungstenite, and re-exports these as a stable part of its
/// API.
pub use ::http::{header, HeaderMap, HeaderName, HeaderValue};
