//! The cluster: groups, routes and connection ids across several servers
//! sharing one Redis (the `cluster` feature).
//!
//! This folder owns the user's settings ([`config`]), the names of every
//! key and channel and the redacted URL ([`keys`]), the binary envelope one
//! node publishes for the others ([`envelope`]), this server as a node: the
//! registry's [`Remote`](crate::connection::target::Remote), its queues
//! and counters ([`node`]), and the link task that keeps the connections
//! to Redis up and in sync ([`link`]). It sits above `connection/` (it
//! delivers, counts and closes through the registry) and below `server/`
//! (which joins the cluster at bind and leaves it at shutdown). It never
//! touches a client's socket, and it is the only folder that names Redis.

pub(crate) mod config;
pub(crate) mod envelope;
pub(crate) mod keys;
pub(crate) mod link;
pub(crate) mod node;
