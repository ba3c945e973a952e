//! The server-wide state every connection task shares once a server is
//! bound, and the services it gives each connection's driver (deadlines,
//! counters). Built by `builder.rs`; this module never touches a socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::admission::Admission;
use super::config::Config;
#[cfg(feature = "cluster")]
use super::metrics::ClusterStats;
use super::metrics::{Metrics, Stats};
use super::routes::{Endpoint, Route};
use super::shutdown::{Live, Tally, Trigger};
use super::timers::Timers;
use crate::connection::close::{CloseCode, CloseOutcome, Initiator};
use crate::connection::driver::Host;
use crate::connection::handle::ConnId;
use crate::connection::policies::Limits;
use crate::connection::registry::Registry;
use crate::extensions::Extensions;
use crate::net::TrustedProxies;

/// Server-wide state shared by every connection task.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) limits: Limits,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) endpoints: HashMap<String, Endpoint>,
    pub(crate) fallback: Option<Arc<Route>>,
    pub(crate) registry: Registry,
    /// The next connection's number (its id's low 48 bits).
    pub(crate) next_id: AtomicU64,
    /// The high bits of every connection id: the cluster node's number
    /// (see `Cluster`), 0 without a cluster.
    pub(crate) id_base: u64,
    /// This server as a cluster node.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: Option<Arc<crate::cluster::node::Node>>,
    pub(crate) state: Arc<Extensions>,
    pub(crate) admission: Arc<Admission>,
    /// `allowed_origins`, normalized.
    pub(crate) origins: Vec<String>,
    /// `trusted_proxies`, parsed.
    pub(crate) proxies: TrustedProxies,
    pub(crate) metrics: Metrics,
    pub(crate) trigger: Trigger,
    /// Connection tasks, for the drain.
    pub(crate) live: Live,
    /// Every connection's deadlines.
    pub(crate) timers: Arc<Timers>,
    /// How connections ended during a drain.
    pub(crate) tally: Tally,
    /// Rejections being written at accept time; see `reject_early`.
    pub(crate) rejecting: AtomicUsize,
}

/// The low bits of a connection id: its number on its node.
const ID_NUMBER_BITS: u64 = (1 << 48) - 1;

impl Inner {
    /// A new connection's id, unique across the cluster.
    pub(crate) fn next_conn_id(&self) -> ConnId {
        let number = self.next_id.fetch_add(1, Ordering::Relaxed) & ID_NUMBER_BITS;
        ConnId::from(self.id_base | number)
    }

    /// The server's counters, with the cluster link's.
    pub(crate) fn stats(&self) -> Stats {
        #[allow(unused_mut)]
        let mut stats = self.metrics.snapshot();
        #[cfg(feature = "cluster")]
        if let Some(node) = &self.cluster {
            let link = node.stats();
            stats.cluster = Some(ClusterStats {
                up: link.up,
                published: link.published,
                received: link.received,
                dropped: link.dropped,
                invalid: link.invalid,
                reconnects: link.reconnects,
            });
        }
        stats
    }

    /// Whether the listener speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

impl Host for Inner {
    #[cfg(feature = "test-util")]
    fn clock(&self) -> crate::rt::Clock {
        self.timers.clock().clone()
    }

    fn deadline_key(&self) -> u64 {
        self.timers.key()
    }

    fn set_deadline(&self, key: u64, previous: Option<Instant>, at: Instant, waker: &Waker) {
        self.timers.set(key, previous, at, waker);
    }

    fn cancel_deadline(&self, key: u64, at: Instant) {
        self.timers.cancel(key, at);
    }

    fn count_messages(&self, received: u64, sent: u64) {
        self.metrics.messages(received, sent);
    }

    fn count_close(&self, code: CloseCode, initiator: Initiator, outcome: CloseOutcome) {
        self.metrics.closed(code, initiator, outcome);
    }

    fn count_abandoned(&self) {
        self.metrics.handler_abandoned();
    }

    fn reading_paused(&self, paused: bool) {
        self.metrics.reading_paused(paused);
    }

    fn send_queue_full(&self, full: bool) {
        self.metrics.send_queue_full(full);
    }
}
