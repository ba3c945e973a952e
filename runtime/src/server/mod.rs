//! The server: the builder, the accept loop and everything server-wide.
//!
//! This folder owns the [`Server`](builder::Server) builder, its routes and
//! its configuration ([`builder`], [`routes`], [`config`]), the server-wide
//! state connections share ([`state`]), the accept loop and the handle to a
//! running server ([`listening`]), one accepted socket's way from its first
//! byte to its connection task ([`serve`]), admission limits
//! ([`admission`]), the metrics listener ([`scrape`]), graceful shutdown ([`shutdown`]), counters
//! ([`metrics`]) and the deadlines of every connection ([`timers`]). It
//! depends on the transport, the HTTP side and the connection; nothing
//! depends on it but the crate's facade.

pub(crate) mod admission;
pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod listening;
pub(crate) mod metrics;
pub(crate) mod routes;
pub(crate) mod scrape;
pub(crate) mod serve;
pub(crate) mod shutdown;
pub(crate) mod state;
pub(crate) mod timers;
