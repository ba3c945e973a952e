//! The cluster's settings: the Redis URL, the namespace, the node's name
//! and the publisher's bounds, as a user builds them. Checked when the
//! server binds; nothing here touches the network.

use std::fmt;

use crate::error::{Error, Result};

/// The default namespace.
const DEFAULT_NAMESPACE: &str = "wharf";
/// Longest namespace and node name, in bytes.
const MAX_NAME: usize = 64;
/// Default largest message payload carried between nodes.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Largest `max_payload`: Redis's own limit on a string is 512 MiB, and an
/// envelope is held in memory on every node that receives it.
const MAX_MAX_PAYLOAD: usize = 64 << 20;
/// Default messages waiting for the publisher.
const DEFAULT_PUBLISH_QUEUE: usize = 4096;

/// A cluster of Wharf servers sharing one Redis: groups, routes and
/// connection ids that span every node (the `cluster` feature).
///
/// Given to [`Server::cluster`](crate::Server#method.cluster), it makes
/// every [`Selector`](crate::Selector) operation cluster-wide: `send`
/// reaches the members on every node, `close` closes them wherever they
/// are and adds up every node's answer, `count` adds up every live node's
/// members, and a [`ConnId`](crate::ConnId) seen on one node can be closed
/// from any other.
///
/// # What crosses Redis
///
/// - One pub/sub channel per group, per route and per node, all under the
///   namespace (`{ns}:c:g:{hex of the name}`, `{ns}:c:r:{hex of the path}`,
///   `{ns}:c:a` for `all()`, `{ns}:n:{node}`): a node subscribes to a
///   group's channel when its first local member joins and unsubscribes
///   when the last leaves, so it receives traffic only for groups it has
///   members in. Names from users are hex-encoded, never spliced into a
///   command or a pattern.
/// - Each send as one small binary envelope, published by one task per
///   node in order (so one node's sends arrive in the order it made them),
///   at most [`max_payload`](Self::max_payload) bytes of message. A node
///   ignores its own envelopes: it delivered to its own members already,
///   so each member gets a message at most once.
/// - Per-node member counts (`{ns}:count:...` hashes, one field per node),
///   written as they change (coalesced: at most one write per group per
///   flush), and an `{ns}:alive:{node}` key refreshed every 2 s with a 6 s
///   expiry. A count adds up only live nodes' fields: **a node that dies
///   stops being counted within 6 s**. A node's graceful shutdown removes
///   its entries at once.
///
/// # Delivery is at most once
///
/// Like Socket.IO's Redis adapter, and Redis pub/sub itself: a message
/// reaches the members on other nodes **at most once**. Nothing is stored
/// or retried. A message sent while the link to Redis is down, while the
/// publisher's queue ([`publish_queue`](Self::publish_queue)) is full, or
/// while a receiving node is reconnecting is lost, and counted in
/// [`Stats`](crate::Stats)' cluster counters. Applications that need every
/// message keep their own log and let clients catch up.
///
/// # When Redis fails
///
/// - Unreachable at start: [`bind`](crate::Server::bind) fails with
///   [`Error::Cluster`](crate::Error::Cluster).
/// - Lost while running: local delivery and local closes go on;
///   cross-node sends and close requests are dropped and counted, `count`
///   fails with `Error::Cluster`; one `warn` line says the link is down.
///   The node reconnects with a backoff from 50 ms to 1 s; once back (one
///   `warn` line says so) it subscribes again to every group with local
///   members and rewrites its counts and alive key (Redis may have
///   restarted empty), with no call from the application. Measured in the
///   tests: cross-node delivery works again within about a second of Redis
///   accepting connections.
///
/// # Connection ids
///
/// At bind the node takes a number from `INCR {ns}:node-seq` (1 to 65535,
/// skipping numbers of nodes still alive) and puts it in the high 16 bits
/// of every [`ConnId`](crate::ConnId) it hands out; the low 48 bits count
/// its connections. Without a cluster the high bits are 0, as before.
///
/// # Runtime and Rust version
///
/// The `redis` crate (1.x) runs on async-io through its `smol-comp`
/// feature, the reactor async-std uses; it spawns its own connection
/// drivers on smol's global executor (one more thread). Its pub/sub driver
/// hands received messages to Wharf through an unbounded channel, which
/// Wharf's receiving task drains without waiting (each message is decoded
/// and queued to members with `try_send`-style pushes), so it holds only
/// what arrives faster than that loop runs. It needs Rust
/// 1.88 or later, where Wharf's default build needs 1.85. Credentials come
/// from the URL (`redis://user:password@host:port/db`) and never appear in
/// logs or errors: Wharf logs the URL with its password replaced by `***`.
/// Redis Cluster (sharded) is not supported: one Redis, or a primary with
/// replicas behind one address.
///
/// # Examples
///
/// ```no_run
/// use wharf as ws;
///
/// #[ws::on("connect")]
/// async fn join(conn: &ws::Conn) -> ws::Result<()> {
///     conn.join("room:lobby")
/// }
///
/// #[ws::on("message")]
/// async fn say(conn: &ws::Conn, msg: ws::Message) {
///     // Every member of the lobby, on every node.
///     conn.registry().group("room:lobby").send(msg);
/// }
///
/// #[async_std::main]
/// async fn main() -> ws::Result<()> {
///     ws::Server::new()
///         .route("/chat", ws::handlers![join, say])
///         .cluster(ws::Cluster::new("redis://127.0.0.1:6379").namespace("chat").node_name("eu-1"))
///         .bind("127.0.0.1:8081")
///         .await?
///         .run()
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Cluster {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) node_name: Option<String>,
    pub(crate) max_payload: usize,
    pub(crate) publish_queue: usize,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &super::keys::redact(&self.url))
            .field("namespace", &self.namespace)
            .field("node_name", &self.node_name)
            .field("max_payload", &self.max_payload)
            .field("publish_queue", &self.publish_queue)
            .finish()
    }
}

impl Cluster {
    /// A cluster on the Redis at `url` (`redis://[user:password@]host[:port][/db]`),
    /// namespace `wharf`, every other setting at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = wharf::Cluster::new("redis://:s3cret@127.0.0.1:6379/0");
    /// // The password never shows.
    /// assert!(!format!("{cluster:?}").contains("s3cret"));
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        Cluster {
            url: url.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            node_name: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            publish_queue: DEFAULT_PUBLISH_QUEUE,
        }
    }

    /// The prefix of every key and channel, so several applications can
    /// share one Redis: 1 to 64 bytes of ASCII letters, digits, `.`, `_`,
    /// `-` and `:`. Servers with the same namespace form one cluster.
    /// Default: `wharf`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = wharf::Cluster::new("redis://127.0.0.1:6379").namespace("chat");
    /// # drop(cluster);
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// A name for this node in logs and in its alive key (1 to 64 bytes,
    /// no control characters); it need not be unique. Default: `node-N`,
    /// with the node's number.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = wharf::Cluster::new("redis://127.0.0.1:6379").node_name("eu-1");
    /// # drop(cluster);
    /// ```
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// The largest message, in bytes, that a send carries to other nodes
    /// (1 byte to 64 MiB); a bigger one reaches this node's members only,
    /// and is counted as dropped. Envelopes bigger than this (plus their
    /// header) are ignored when received. Default: 1 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = wharf::Cluster::new("redis://127.0.0.1:6379").max_payload(64 << 10);
    /// # drop(cluster);
    /// ```
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Envelopes that may wait for this node's publisher (at least 1):
    /// when Redis is slower than the node's sends, further sends to other
    /// nodes are dropped and counted rather than queued without bound.
    /// Default: 4096.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = wharf::Cluster::new("redis://127.0.0.1:6379").publish_queue(16_384);
    /// # drop(cluster);
    /// ```
    pub fn publish_queue(mut self, envelopes: usize) -> Self {
        self.publish_queue = envelopes;
        self
    }

    /// Rejects settings that cannot work, naming the setter.
    pub(crate) fn validate(&self) -> Result<()> {
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > MAX_NAME
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        {
            return Err(Error::config(
                "cluster",
                "the namespace must be 1 to 64 bytes of ASCII letters, digits, '.', '_', '-' and ':'",
            ));
        }
        if let Some(name) = &self.node_name {
            if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
                return Err(Error::config(
                    "cluster",
                    "the node name must be 1 to 64 bytes without control characters",
                ));
            }
        }
        if !(1..=MAX_MAX_PAYLOAD).contains(&self.max_payload) {
            return Err(Error::config(
                "cluster",
                "max_payload must be between 1 byte and 64 MiB",
            ));
        }
        if self.publish_queue == 0 {
            return Err(Error::config("cluster", "publish_queue must be at least 1"));
        }
        Ok(())
    }
}
