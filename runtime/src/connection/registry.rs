//! The server's table of live connections and of their groups.
//!
//! A connection is in the registry from the moment its upgrade completes
//! until its socket is closed; the driver removes it before the close
//! handler runs, so the registry never holds a finished connection. The
//! registry holds handles only: it never keeps a socket or a task alive.
//!
//! It also owns group membership: the index from a group's name to its
//! members, and each connection's own list of groups, kept in the
//! connection's entry so that both change under one lock and leave together
//! when the connection leaves the table (the driver's end, or the server's
//! release guard for a task cut short). Membership is bounded: names of at
//! most [`MAX_GROUP_NAME_BYTES`] bytes, at most [`MAX_GROUPS_PER_CONNECTION`]
//! groups per connection. An index entry lives while it has members.
//!
//! With a cluster, every change of a group's, a route's or the server's
//! local member count is reported to the [`Remote`] (which only marks it
//! for its next flush); the registry never waits on it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use futures_util::future::join_all;

use super::close::{CloseCode, CloseOutcome, CloseSummary};
use super::handle::{ConnId, Handle};
use super::message::Message;
use super::target::{Remote, Target};
use crate::error::{Error, Result};

/// The longest group name, in bytes of UTF-8. Longer names are refused
/// with [`Error::InvalidGroup`].
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// The most groups one connection may be in at once; one more
/// [`Conn::join`](crate::Conn::join) is refused with
/// [`Error::TooManyGroups`].
pub const MAX_GROUPS_PER_CONNECTION: usize = 64;

/// Checks a group name: not empty, at most [`MAX_GROUP_NAME_BYTES`] bytes,
/// no control characters.
pub(crate) fn check_group(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidGroup("the name is empty"));
    }
    if name.len() > MAX_GROUP_NAME_BYTES {
        return Err(Error::InvalidGroup("the name is longer than 128 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidGroup("the name holds a control character"));
    }
    Ok(())
}

/// One live connection: its handle and the groups it is in.
struct Entry {
    handle: Handle,
    groups: Vec<Arc<str>>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<ConnId, Entry>,
    /// Group name to members; a group without members has no entry.
    groups: HashMap<Arc<str>, HashSet<ConnId>>,
    /// Request path to the connections accepted on it.
    routes: HashMap<Arc<str>, HashSet<ConnId>>,
}

impl Table {
    fn members(&self, target: &Target) -> Vec<&Handle> {
        let of = |ids: Option<&HashSet<ConnId>>| -> Vec<&Handle> {
            ids.into_iter()
                .flatten()
                .filter_map(|id| self.conns.get(id).map(|e| &e.handle))
                .collect()
        };
        match target {
            Target::All => self.conns.values().map(|e| &e.handle).collect(),
            Target::Route(path) => of(self.routes.get(path)),
            Target::Group(name) => of(self.groups.get(name)),
            Target::Conn(id) => self.conns.get(id).map(|e| &e.handle).into_iter().collect(),
        }
    }

    fn count(&self, target: &Target) -> usize {
        match target {
            Target::All => self.conns.len(),
            Target::Route(path) => self.routes.get(path).map_or(0, HashSet::len),
            Target::Group(name) => self.groups.get(name).map_or(0, HashSet::len),
            Target::Conn(id) => usize::from(self.conns.contains_key(id)),
        }
    }

    fn contains(&self, target: &Target, id: ConnId) -> bool {
        match target {
            Target::All => self.conns.contains_key(&id),
            Target::Conn(only) => *only == id && self.conns.contains_key(&id),
            Target::Route(path) => self.routes.get(path).is_some_and(|s| s.contains(&id)),
            Target::Group(name) => self.groups.get(name).is_some_and(|s| s.contains(&id)),
        }
    }
}

/// Removes `id` from the member set at `key`, dropping the set when empty.
fn remove_member(map: &mut HashMap<Arc<str>, HashSet<ConnId>>, key: &str, id: ConnId) {
    if let Some(members) = map.get_mut(key) {
        members.remove(&id);
        if members.is_empty() {
            map.remove(key);
        }
    }
}

#[derive(Default)]
struct Inner {
    table: Mutex<Table>,
    /// The cluster, when one is configured; set once at bind, before any
    /// connection exists.
    remote: OnceLock<Arc<dyn Remote>>,
}

/// Live connections of one server and their groups: count, look up,
/// select, send, close.
///
/// [`group`](Self::group), [`route`](Self::route), [`conn`](Self::conn)
/// and [`all`](Self::all) return a [`Selector`](crate::Selector), the one way to send to,
/// count and close many connections at once; with a cluster configured
/// ([`Server::cluster`](crate::Server#method.cluster)) its operations reach
/// every node. The other methods see this server's connections only.
///
/// Cloning is cheap; every clone sees the same table.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// A registry reference that does not keep it alive (the cluster's tasks
/// hold one, so that a server's end ends them).
#[derive(Clone)]
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct WeakRegistry(Weak<Inner>);

#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
impl WeakRegistry {
    pub(crate) fn upgrade(&self) -> Option<Registry> {
        self.0.upgrade().map(|inner| Registry { inner })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("count", &self.count())
            .field("cluster", &self.inner.remote.get().is_some())
            .finish()
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakRegistry {
        WeakRegistry(Arc::downgrade(&self.inner))
    }

    /// Closes this node's members of `target` but `except` with an already
    /// validated code and reason, and waits for every handshake.
    pub(crate) async fn close_local(
        &self,
        target: &Target,
        except: Option<ConnId>,
        code: CloseCode,
        reason: &str,
    ) -> CloseSummary {
        let handles = self.members(target, except);
        let outcomes = join_all(handles.iter().map(|h| h.close(code, reason))).await;
        let mut summary = CloseSummary::default();
        for outcome in outcomes.into_iter().flatten() {
            summary.count(outcome);
        }
        summary
    }

    /// The cluster, if one is configured.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn Remote>> {
        self.inner.remote.get()
    }

    /// Connects the registry to its cluster; once, before any connection.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.inner.remote.set(remote);
    }

    /// Tells the cluster that these targets' local member counts changed.
    fn changed(&self, targets: &[Target]) {
        if let Some(remote) = self.remote() {
            for target in targets {
                remote.changed(target);
            }
        }
    }

    pub(crate) fn insert(&self, handle: Handle) {
        let id = handle.id();
        let path: Arc<str> = Arc::clone(&handle.shared.info.path);
        {
            let mut table = self.lock();
            table
                .routes
                .entry(Arc::clone(&path))
                .or_default()
                .insert(id);
            table.conns.insert(
                id,
                Entry {
                    handle,
                    groups: Vec::new(),
                },
            );
        }
        self.changed(&[Target::All, Target::Route(path)]);
    }

    /// Removes connection `id` and its memberships. Idempotent.
    pub(crate) fn remove(&self, id: ConnId) {
        let removed = {
            let mut table = self.lock();
            let Some(entry) = table.conns.remove(&id) else {
                return;
            };
            let path = Arc::clone(&entry.handle.shared.info.path);
            remove_member(&mut table.routes, &path, id);
            for group in &entry.groups {
                remove_member(&mut table.groups, group, id);
            }
            entry
        };
        let mut changed = vec![
            Target::All,
            Target::Route(Arc::clone(&removed.handle.shared.info.path)),
        ];
        changed.extend(removed.groups.iter().cloned().map(Target::Group));
        // The handle is dropped outside the lock.
        drop(removed);
        self.changed(&changed);
    }

    /// Adds connection `id` to `group` (see [`Conn::join`](crate::Conn::join)).
    ///
    /// # Examples
    ///
    /// ```
    /// fn promote(registry: &wharf::Registry, id: wharf::ConnId) -> wharf::Result<()> {
    ///     registry.join(id, "role:admin")
    /// }
    /// ```
    pub fn join(&self, id: ConnId, group: &str) -> Result<()> {
        check_group(group)?;
        let name = {
            let mut table = self.lock();
            // One allocation per group name, shared by its members.
            let name = match table.groups.get_key_value(group) {
                Some((name, _)) => Arc::clone(name),
                None => Arc::from(group),
            };
            let Some(entry) = table.conns.get_mut(&id) else {
                return Err(Error::ConnectionClosed);
            };
            if entry.groups.iter().any(|g| **g == *group) {
                return Ok(());
            }
            if entry.groups.len() >= MAX_GROUPS_PER_CONNECTION {
                return Err(Error::TooManyGroups);
            }
            entry.groups.push(Arc::clone(&name));
            table
                .groups
                .entry(Arc::clone(&name))
                .or_default()
                .insert(id);
            name
        };
        self.changed(&[Target::Group(name)]);
        Ok(())
    }

    /// Removes connection `id` from `group`; whether it was a member (see
    /// [`Conn::leave`](crate::Conn::leave)).
    ///
    /// # Examples
    ///
    /// ```
    /// fn demote(registry: &wharf::Registry, id: wharf::ConnId) -> bool {
    ///     registry.leave(id, "role:admin")
    /// }
    /// ```
    pub fn leave(&self, id: ConnId, group: &str) -> bool {
        let name = {
            let mut table = self.lock();
            let Some(entry) = table.conns.get_mut(&id) else {
                return false;
            };
            let Some(at) = entry.groups.iter().position(|g| **g == *group) else {
                return false;
            };
            let name = entry.groups.swap_remove(at);
            remove_member(&mut table.groups, group, id);
            name
        };
        self.changed(&[Target::Group(name)]);
        true
    }

    /// The groups connection `id` is in, in the order it joined them
    /// (after a [`leave`](Self::leave), the last joined takes the place of
    /// the one left); empty when the connection is not live.
    ///
    /// # Examples
    ///
    /// ```
    /// fn audit(registry: &wharf::Registry, id: wharf::ConnId) {
    ///     tracing::info!(%id, groups = ?registry.groups(id), "membership");
    /// }
    /// ```
    pub fn groups(&self, id: ConnId) -> Vec<String> {
        self.lock()
            .conns
            .get(&id)
            .map(|e| e.groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default()
    }

    /// Queues `msg` on this node's members of `target` but `except`,
    /// without waiting; how many took it (see [`Selector::send`]).
    pub(crate) fn send_local(
        &self,
        target: &Target,
        except: Option<ConnId>,
        msg: &Message,
    ) -> usize {
        self.members(target, except)
            .iter()
            .filter(|h| h.shared.try_broadcast(msg.clone()))
            .count()
    }

    /// This node's members of `target`, but `except`.
    pub(crate) fn members(&self, target: &Target, except: Option<ConnId>) -> Vec<Handle> {
        self.lock()
            .members(target)
            .into_iter()
            .filter(|h| Some(h.id()) != except)
            .cloned()
            .collect()
    }

    /// How many of this node's connections `target` selects, but `except`.
    pub(crate) fn local_count(&self, target: &Target, except: Option<ConnId>) -> usize {
        let table = self.lock();
        let n = table.count(target);
        match except {
            Some(id) if table.contains(target, id) => n - 1,
            _ => n,
        }
    }

    /// Every group and route with local members, and [`Target::All`]: what
    /// a cluster node mirrors in Redis.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn local_targets(&self) -> Vec<Target> {
        let table = self.lock();
        let mut targets = Vec::with_capacity(1 + table.groups.len() + table.routes.len());
        targets.push(Target::All);
        targets.extend(table.groups.keys().cloned().map(Target::Group));
        targets.extend(table.routes.keys().cloned().map(Target::Route));
        targets
    }

    /// Number of live connections on this server.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn on_connect(conn: &wharf::Conn) -> wharf::Result<()> {
    ///     conn.send(format!("{} online", conn.registry().count())).await
    /// }
    /// ```
    pub fn count(&self) -> usize {
        self.lock().conns.len()
    }

    /// The connection with this id, if it is live on this server.
    ///
    /// # Examples
    ///
    /// ```
    /// async fn poke(registry: &wharf::Registry, id: wharf::ConnId) -> wharf::Result<()> {
    ///     match registry.get(id) {
    ///         Some(handle) => handle.send("poke").await,
    ///         None => Ok(()), // already gone
    ///     }
    /// }
    /// ```
    pub fn get(&self, id: ConnId) -> Option<Handle> {
        self.lock().conns.get(&id).map(|e| e.handle.clone())
    }

    /// A snapshot of every live connection on this server, in no
    /// particular order.
    ///
    /// # Examples
    ///
    /// ```
    /// fn tick(registry: &wharf::Registry) {
    ///     for handle in registry.handles() {
    ///         let _ = handle.try_send("tick");
    ///     }
    /// }
    /// ```
    pub fn handles(&self) -> Vec<Handle> {
        self.lock()
            .conns
            .values()
            .map(|e| e.handle.clone())
            .collect()
    }

    /// Closes connection `id` on this server (see [`Handle::close`]);
    /// `None` when it is not live here. To close it wherever it is in a
    /// cluster, use [`conn(id).close(..)`](Self::conn).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn revoke(registry: &wharf::Registry, id: wharf::ConnId) {
    ///     match registry.close(id, wharf::CloseCode::POLICY_VIOLATION, "Token revoked").await {
    ///         Some(Ok(outcome)) => tracing::info!(%id, %outcome, "revoked"),
    ///         Some(Err(err)) => tracing::error!(%id, %err, "bad close code"),
    ///         None => tracing::debug!(%id, "not connected"),
    ///     }
    /// }
    /// ```
    pub async fn close(
        &self,
        id: ConnId,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Option<Result<CloseOutcome>> {
        let handle = self.get(id)?;
        Some(handle.close(code, reason).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_checked() {
        assert!(check_group("room:lobby").is_ok());
        assert!(check_group("é").is_ok());
        assert!(check_group(&"a".repeat(MAX_GROUP_NAME_BYTES)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(129),
            "a\nb".into(),
            "\u{0}".into(),
        ] {
            assert!(
                matches!(check_group(&bad), Err(Error::InvalidGroup(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_error_names_the_group_limit() {
        let text = Error::TooManyGroups.to_string();
        assert!(
            text.contains(&MAX_GROUPS_PER_CONNECTION.to_string()),
            "{text}"
        );
    }
}
