//! The transport under HTTP: what a socket carries before the first byte
//! of the upgrade request.
//!
//! This folder owns the connection stream every layer above reads and
//! writes, plain TCP or TLS over TCP ([`stream`]); the TLS settings and
//! handshake ([`tls`], with the `tls` feature); the PROXY protocol header a
//! load balancer puts before everything else ([`proxy_protocol`]); and the
//! list of proxies whose word about a client's address is believed
//! ([`proxies`]). It sits at the bottom with `rt`, whose sockets it wraps,
//! and knows nothing of HTTP, WebSocket frames or the server.

pub(crate) mod proxies;
pub(crate) mod proxy_protocol;
pub(crate) mod stream;
#[cfg(feature = "tls")]
pub(crate) mod tls;

pub(crate) use proxies::TrustedProxies;
pub(crate) use stream::Stream;
