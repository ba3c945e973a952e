//! Selectors: one way to address many connections (a group, a route, one
//! id, or all) and send to, count and close them; and the seam through
//! which a cluster extends each operation to the other nodes.
//!
//! Every operation is local first (this node's members, at once) and then,
//! when a cluster is configured, handed to the [`Remote`] (the `cluster/`
//! folder implements it; this module never names Redis). `send` never
//! waits on either.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join;

use super::close::{validate, CloseCode, CloseSummary};
use super::handle::ConnId;
use super::message::Message;
use super::registry::{check_group, Registry};
use super::target::{Remote, Target};
use crate::error::{Error, Result};

/// Connections addressed together: a group, a route, one connection, or
/// all of them, optionally but one. From [`Registry::group`],
/// [`Registry::route`], [`Registry::conn`] and [`Registry::all`].
///
/// With a cluster configured
/// ([`Server::cluster`](crate::Server#method.cluster)) each operation
/// reaches the members on every node, unless the selector is
/// [`local`](Self::local). Delivery to other nodes is **at most once**:
/// a message published while the link to Redis is down or saturated is
/// dropped (and counted), never queued for later; see the `Cluster` docs.
///
/// # Examples
///
/// ```
/// use wharf::{CloseCode, Conn, Message};
///
/// async fn on_message(conn: &Conn, msg: Message) -> wharf::Result<()> {
///     let room = conn.registry().group("room:lobby");
///     if msg.as_text() == Some("/close-room") {
///         let summary = room.close(CloseCode::NORMAL, "Room closed").await?;
///         tracing::info!(clean = summary.clean, unanswered = summary.unanswered, "room closed");
///     } else {
///         room.except(conn.id()).send(msg);
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Selector {
    registry: Registry,
    /// The target, or why the group name was refused.
    target: std::result::Result<Target, &'static str>,
    except: Option<ConnId>,
    local: bool,
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("target", &self.target)
            .field("except", &self.except)
            .field("local", &self.local)
            .finish()
    }
}

impl Selector {
    pub(crate) fn new(
        registry: Registry,
        target: std::result::Result<Target, &'static str>,
    ) -> Self {
        Selector {
            registry,
            target,
            except: None,
            local: false,
        }
    }

    /// Leaves connection `id` out (typically the sender). A second call
    /// replaces the first.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn relay(conn: &wharf::Conn, msg: wharf::Message) {
    ///     conn.registry().route(conn.path()).except(conn.id()).send(msg);
    /// }
    /// ```
    pub fn except(mut self, id: ConnId) -> Self {
        self.except = Some(id);
        self
    }

    /// Restricts the selector to this server's connections, even with a
    /// cluster: nothing crosses Redis, and `count` never fails for the
    /// link.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn here(conn: &wharf::Conn) -> wharf::Result<usize> {
    ///     conn.registry().group("room:lobby").local().count().await
    /// }
    /// ```
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// The cluster, when this operation must reach other nodes.
    fn remote(&self, target: &Target) -> Option<Arc<dyn Remote>> {
        if self.local {
            return None;
        }
        let remote = self.registry.remote()?;
        match target {
            Target::Conn(id) if remote.owns(*id) => None,
            _ => Some(Arc::clone(remote)),
        }
    }

    /// Queues `msg` on every selected connection without waiting, and
    /// returns how many connections of this server took it.
    ///
    /// A connection whose send queue is full does not get the message (and
    /// is not counted): one slow reader never stalls a send, and one whose
    /// queue stays full meets the slow-consumer policy
    /// ([`Server::send_timeout`](crate::Server::send_timeout)). Nor does
    /// one whose peer broke the protocol: while its handlers finish the
    /// messages received before (their replies are still sent), it is on
    /// its way out. The message is shared, not copied, between
    /// connections.
    ///
    /// With a cluster, the message is also handed to the node's one
    /// publisher, in order, for the members on other nodes; they are not
    /// in the returned count. An invalid group name selects nobody: 0.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_message(conn: &wharf::Conn, msg: wharf::Message) -> wharf::Result<()> {
    ///     let delivered = conn.registry().route(conn.path()).send(msg);
    ///     tracing::debug!(delivered, "sent to the room");
    ///     Ok(())
    /// }
    /// ```
    pub fn send(&self, msg: impl Into<Message>) -> usize {
        let Ok(target) = &self.target else {
            return 0;
        };
        let msg = msg.into();
        let delivered = self.registry.send_local(target, self.except, &msg);
        if let Some(remote) = self.remote(target) {
            remote.send(target, self.except, &msg);
        }
        delivered
    }

    /// Closes every selected connection at once, each through the full
    /// closing handshake (see [`Handle::close`](crate::Handle::close)),
    /// waits for all of them and returns how they ended.
    ///
    /// The code is checked once ([`Error::InvalidCloseCode`] and nothing is
    /// closed); an invalid group name is [`Error::InvalidGroup`]. With a
    /// cluster, every node that has members closes its own and answers
    /// with its counts, which are added up here; nodes that do not answer
    /// within this server's close timeout plus one second are counted in
    /// [`CloseSummary::unanswered`]. While the link is down the close
    /// reaches this node's members only.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn ban(registry: &wharf::Registry, user: &str) -> wharf::Result<()> {
    ///     let group = format!("user:{user}");
    ///     let summary = registry.group(&group).close(4003, "Banned").await?;
    ///     tracing::info!(user, closed = summary.total(), unanswered = summary.unanswered, "banned");
    ///     Ok(())
    /// }
    /// ```
    pub async fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<CloseSummary> {
        let target = self.target.clone().map_err(Error::InvalidGroup)?;
        let started = Instant::now();
        // Validate once, so an invalid code is an error rather than N errors.
        let (code, reason) = validate(code.into(), reason)?;
        let local = self
            .registry
            .close_local(&target, self.except, code, &reason);
        let mut summary = match self.remote(&target) {
            Some(remote) => {
                let (mut here, there) =
                    join(local, remote.close(&target, self.except, code, &reason)).await;
                here.add(&there);
                here
            }
            None => local.await,
        };
        summary.duration = started.elapsed();
        Ok(summary)
    }

    /// How many connections the selector addresses right now, on every
    /// node with a cluster.
    ///
    /// The excepted connection is left out when it is on this node (the
    /// usual case: the sender); one on another node is still counted.
    /// Without a cluster, or [`local`](Self::local), it never fails but for
    /// an invalid group name ([`Error::InvalidGroup`]). With a cluster it
    /// reads the other nodes' counts from Redis (each node writes its own
    /// as they change; a node that died stops being counted within the
    /// `Cluster` docs' bound) and fails with `Error::Cluster` while the link
    /// is down.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn online(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     let n = conn.registry().group("room:lobby").count().await?;
    ///     conn.send(format!("{n} in the lobby")).await
    /// }
    /// ```
    pub async fn count(&self) -> Result<usize> {
        let target = self.target.clone().map_err(Error::InvalidGroup)?;
        let here = self.registry.local_count(&target, self.except);
        match self.remote(&target) {
            Some(remote) => Ok(here + remote.count(&target).await?),
            None => Ok(here),
        }
    }
}

/// The selectors of a registry: written here, beside [`Selector`], so the
/// registry itself knows nothing of selectors.
impl Registry {
    /// Every member of `group`, on every node of the cluster if there is
    /// one. An invalid name selects nobody: its `send` returns 0, its
    /// `count` and `close` fail with [`Error::InvalidGroup`].
    ///
    /// # Examples
    ///
    /// ```
    /// async fn announce(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     conn.join("room:lobby")?;
    ///     let reached = conn.registry().group("room:lobby").except(conn.id()).send("someone joined");
    ///     tracing::debug!(reached, "announced");
    ///     Ok(())
    /// }
    /// ```
    pub fn group(&self, name: &str) -> Selector {
        let target = match check_group(name) {
            Ok(()) => Ok(Target::Group(Arc::from(name))),
            Err(Error::InvalidGroup(why)) => Err(why),
            Err(_) => Err("invalid"),
        };
        Selector::new(self.clone(), target)
    }

    /// Every connection accepted on request path `path` (a route's path,
    /// or the path a fallback connection asked for).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn relay(conn: &wharf::Conn, msg: wharf::Message) {
    ///     conn.registry().route(conn.path()).send(msg);
    /// }
    /// ```
    pub fn route(&self, path: &str) -> Selector {
        Selector::new(self.clone(), Ok(Target::Route(Arc::from(path))))
    }

    /// The connection `id`, wherever it is in the cluster (ids are unique
    /// across nodes: see [`ConnId`]).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn revoke(registry: &wharf::Registry, id: wharf::ConnId) -> wharf::Result<()> {
    ///     let summary = registry.conn(id).close(wharf::CloseCode::POLICY_VIOLATION, "Token revoked").await?;
    ///     tracing::info!(%id, closed = summary.total(), "revoked");
    ///     Ok(())
    /// }
    /// ```
    pub fn conn(&self, id: ConnId) -> Selector {
        Selector::new(self.clone(), Ok(Target::Conn(id)))
    }

    /// Every connection of the server (of every node, with a cluster).
    ///
    /// # Examples
    ///
    /// ```
    /// fn notice(registry: &wharf::Registry) -> usize {
    ///     registry.all().send("maintenance in 5 minutes")
    /// }
    /// ```
    pub fn all(&self) -> Selector {
        Selector::new(self.clone(), Ok(Target::All))
    }

    /// Closes every live connection of this server at once and waits for
    /// all handshakes (each bounded by the close timeout). Returns how they
    /// ended. The same as `all().local().close(..)`.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn maintenance(registry: wharf::Registry) -> wharf::Result<()> {
    ///     let summary = registry.close_all(wharf::CloseCode::SERVICE_RESTART, "Back soon").await?;
    ///     tracing::info!(clean = summary.clean, timed_out = summary.timed_out, "all closed");
    ///     Ok(())
    /// }
    /// ```
    pub async fn close_all(
        &self,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Result<CloseSummary> {
        self.all().local().close(code, reason).await
    }
}
